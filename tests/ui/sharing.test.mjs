// Session sharing in Chromium with real users on a real desktop: alice
// invites bob view-only from the Share dialog; bob finds the session under
// "Shared with me" and sees the same desktop, but what he types never
// reaches it while alice's does; alice sees bob watching and ends his share,
// which closes his viewer within a second; a link alice makes brings carol,
// signed out when she opens it, through the sign-in into the viewer.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ADMIN_PASSWORD,
  RUN,
  apiLogin,
  canvasStats,
  eventually,
  launchBrowser,
  login,
  newPage,
  screenshot,
  typeIntoDesktop,
  waitForDesktop,
} from './lib.mjs';

const alice = { username: `ui-${RUN}-share-alice`, password: 'alice-password-1' };
const bob = { username: `ui-${RUN}-share-bob`, password: 'bob-password-12' };
const carol = { username: `ui-${RUN}-share-carol`, password: 'carol-password-1' };
const DOCS = path.resolve('../../docs/screenshots');

let browser;
let owner; // alice's page
let guest; // bob's page
let adminApi;
let sessionId;

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  for (const u of [alice, bob, carol]) {
    const r = await adminApi('POST', '/users', { ...u, role: 'user' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  const aliceApi = await apiLogin(alice.username, alice.password);
  const launched = await aliceApi('POST', '/sessions', { template: 'desktop' });
  assert.equal(launched.status, 201, JSON.stringify(launched.body));
  sessionId = launched.body.id;
  browser = await launchBrowser();
  owner = await newPage(browser, { name: 'alice' });
  guest = await newPage(browser, { name: 'bob' });
});

after(async () => {
  await browser?.close();
  if (adminApi) {
    const all = await adminApi('GET', '/sessions?all=true');
    for (const s of all.body ?? []) {
      if (s.user === alice.username) await adminApi('DELETE', `/sessions/${s.id}`);
    }
  }
});

/** Whether every VNC WebSocket the page opened is closed or closing. */
function vncSocketsClosed(page) {
  return page.evaluate(() => {
    const vnc = window.__sockets.filter((s) => s.url.includes('/vnc/'));
    return vnc.length > 0 && vnc.every((s) => s.readyState >= WebSocket.CLOSING);
  });
}

test('the owner invites a user view-only from the Share dialog', async () => {
  await login(owner, alice.username, alice.password);
  await owner.goto(`/sessions/${sessionId}`);
  await waitForDesktop(owner);
  await owner.getByTestId('share-button').click();
  const dialog = owner.getByTestId('share-dialog');
  await dialog.waitFor();
  // A user who does not exist is refused at the field.
  await dialog.getByLabel('Username').fill('nobody-by-this-name');
  await dialog.getByRole('button', { name: 'Invite' }).click();
  await dialog.locator('[data-field-error=share-username]').waitFor();
  await dialog.getByLabel('Username').fill(bob.username);
  await dialog.locator('#share-mode').selectOption('view');
  await dialog.getByRole('button', { name: 'Invite' }).click();
  await dialog.locator(`[data-share="${bob.username}"]`).waitFor();
  await dialog.getByTestId('no-watchers').waitFor();
});

test('the guest finds it under Shared with me and sees the same desktop, view only', async () => {
  await login(guest, bob.username, bob.password);
  await guest.goto('/sessions');
  const row = guest.getByTestId('shared-with-me').locator(`[data-shared="${sessionId}"]`);
  await row.waitFor();
  await row.getByRole('link').click();
  await guest.waitForURL(new RegExp(`/sessions/${sessionId}$`));
  await waitForDesktop(guest);
  const badge = guest.getByTestId('guest-badge');
  assert.equal(await badge.getAttribute('data-mode'), 'view');
  assert.equal(await guest.getByTestId('share-button').count(), 0, 'no Share for a guest');
  assert.equal(await guest.getByRole('button', { name: /Terminate/ }).count(), 0, 'no Terminate for a guest');
  // The owner sees bob watching, live.
  await owner.getByTestId('watchers').locator(`[data-watcher="${bob.username}"]`).waitFor({ timeout: 10_000 });
  await screenshot(owner, 'sharing-dialog');
  await owner.screenshot({ path: path.join(DOCS, 'sharing-dialog.png') });
  await screenshot(guest, 'sharing-guest');
  await guest.screenshot({ path: path.join(DOCS, 'sharing-guest.png') });
});

test('what the view-only guest types never reaches the desktop; what the owner types does', async () => {
  await owner.keyboard.press('Escape'); // close the dialog to reach the canvas
  await owner.getByTestId('share-dialog').waitFor({ state: 'detached' });
  const before = await canvasStats(owner);
  const guestBefore = await canvasStats(guest);
  await guest.locator('[data-testid=screen] canvas').click();
  await guest.keyboard.type('echo typed by the guest', { delay: 20 });
  await guest.keyboard.press('Enter');
  // Long enough for the keys to be echoed by the xterm had they arrived.
  await new Promise((r) => setTimeout(r, 2_500));
  assert.equal((await canvasStats(owner)).hash, before.hash, "the owner's screen did not change");
  assert.equal((await canvasStats(guest)).hash, guestBefore.hash, "the guest's screen did not change");

  const after = await typeIntoDesktop(owner, 'echo typed by the owner');
  await eventually("the guest to see the owner's typing", async () => {
    const s = await canvasStats(guest);
    return s && s.hash !== guestBefore.hash ? s : null;
  });
  assert.notEqual(after.hash, before.hash);
  guest.assertNoErrors();
});

test('ending the share closes the guest viewer within a second', async () => {
  await owner.getByTestId('share-button').click();
  const dialog = owner.getByTestId('share-dialog');
  const watcher = dialog.getByTestId('watchers').locator(`[data-watcher="${bob.username}"]`);
  await watcher.waitFor();
  const ended = owner.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/shares/'));
  await watcher.getByRole('button', { name: /End/ }).click();
  assert.equal((await ended).status(), 204);
  const start = Date.now();
  await eventually('the guest viewer to close', () => vncSocketsClosed(guest), { timeout: 1_000, interval: 25 });
  console.log(`the guest's viewer closed ${Date.now() - start} ms after the share ended`);
  await dialog.getByTestId('no-watchers').waitFor({ timeout: 10_000 });
  // The guest is told, and cannot come back.
  await guest.getByTestId('viewer-error').waitFor({ timeout: 15_000 });
  await owner.keyboard.press('Escape');
});

test('a share link brings a signed-out user through the sign-in into the viewer', async () => {
  await owner.getByTestId('share-button').click();
  const dialog = owner.getByTestId('share-dialog');
  await dialog.locator('#link-mode').selectOption('view');
  await dialog.locator('#link-lifetime').selectOption('1h');
  await dialog.getByRole('button', { name: 'Create link' }).click();
  const url = (await dialog.getByTestId('share-link-url').textContent()).trim();
  assert.match(url, /\/join#ssj_[A-Za-z0-9_-]{43}$/);
  await screenshot(owner, 'sharing-link');

  const visitor = await newPage(browser, { name: 'carol' });
  await visitor.goto(url);
  await visitor.getByLabel('Username').fill(carol.username);
  await visitor.getByLabel('Password').fill(carol.password);
  await visitor.getByRole('button', { name: 'Sign in' }).click();
  await visitor.waitForURL(new RegExp(`/sessions/${sessionId}$`), { timeout: 15_000 });
  await waitForDesktop(visitor);
  assert.equal(await visitor.getByTestId('guest-badge').getAttribute('data-mode'), 'view');
  await dialog.getByTestId('watchers').locator(`[data-watcher="${carol.username}"]`).waitFor({ timeout: 10_000 });
  visitor.assertNoErrors();
  owner.assertNoErrors();
});
