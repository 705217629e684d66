// A user's whole journey on the real binary and Docker: launch the desktop,
// see the xterm on the noVNC canvas, type into it, hibernate and wake from
// the list and from the viewer, terminate. Then what a non-admin may not do.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ADMIN_PASSWORD,
  PHONE,
  RUN,
  apiLogin,
  canvasStats,
  eventually,
  launchBrowser,
  login,
  newPage,
  rowPhase,
  screenshot,
  typeIntoDesktop,
  waitForDesktop,
} from './lib.mjs';

const alice = { username: `ui-${RUN}-alice`, password: 'alice-password-1' };
const bob = { username: `ui-${RUN}-bob`, password: 'bob-password-12' };

let browser;
let page; // alice
let sessionId;
let adminApi;

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  for (const u of [alice, bob]) {
    const r = await adminApi('POST', '/users', { ...u, role: 'user' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'alice' });
});

after(async () => {
  await browser?.close();
  // Leave nothing running even when a test failed half-way.
  if (adminApi) {
    const all = await adminApi('GET', '/sessions?all=true');
    for (const s of all.body ?? []) {
      if (s.user === alice.username || s.user === bob.username) await adminApi('DELETE', `/sessions/${s.id}`);
    }
  }
});

test('a user logs in and finds the desktop by search and category', async () => {
  await login(page, alice.username, alice.password);
  await page.locator('[data-template=desktop]').waitFor();
  assert.equal(await page.getByRole('link', { name: 'Agents' }).count(), 0, 'no admin links for a user');
  await page.getByLabel('Search apps').fill('no-such-app');
  await page.getByRole('heading', { name: 'Nothing matches' }).waitFor();
  await page.getByLabel('Search apps').fill('termin');
  await page.locator('[data-template=desktop]').waitFor();
  await page.getByRole('button', { name: 'Development' }).click();
  await page.locator('[data-template=desktop]').waitFor();
  await page.getByLabel('Search apps').fill('');
  await screenshot(page, '10-catalog-user');
});

test('Launch creates a session and the viewer shows the xterm on the canvas', async () => {
  await page.getByRole('button', { name: 'Launch Desktop', exact: true }).click();
  await page.waitForURL(/\/sessions\/[0-9a-f-]+$/);
  sessionId = new URL(page.url()).pathname.split('/').pop();
  const stats = await waitForDesktop(page);
  assert.ok(stats.width >= 640 && stats.height >= 400, `a desktop-sized framebuffer: ${stats.width}x${stats.height}`);
  await screenshot(page, '11-viewer-xterm');
});

test('typing through noVNC reaches the xterm and changes the screen', async () => {
  await typeIntoDesktop(page, 'echo hello from the streamspace browser test');
  await screenshot(page, '12-viewer-typed');
});

test('viewer controls: 1:1 and fit scaling, clipboard panel', async () => {
  const canvas = page.locator('[data-testid=screen] canvas');
  await page.getByRole('button', { name: '1:1' }).click();
  const fb = await canvasStats(page);
  await eventually('1:1 shows the framebuffer unscaled', async () => {
    const box = await canvas.boundingBox();
    return box && Math.abs(box.width - fb.width) <= 1;
  });
  await page.getByRole('button', { name: 'Fit' }).click();
  await eventually('fit scales the framebuffer into the window', async () => {
    const box = await canvas.boundingBox();
    const area = await page.locator('[data-testid=screen]').boundingBox();
    return box && area && box.width <= area.width + 1 && box.height <= area.height + 1;
  });
  await page.getByRole('button', { name: 'Clipboard' }).click();
  await page.getByLabel('Send to the session').fill('text for the session clipboard');
  await page.getByRole('button', { name: 'Send to session' }).click();
  await screenshot(page, '13-viewer-clipboard');
  await page.getByRole('button', { name: 'Close clipboard' }).click();
  assert.equal(await page.locator('[data-testid=viewer]').getAttribute('data-conn'), 'connected');
});

test('the viewer reconnects by itself when its connection drops', async () => {
  const viewer = page.locator('[data-testid=viewer]');
  const before = await page.evaluate(() => window.__sockets.length);
  // The screen's socket (the sound's, `/audio/{id}`, opens after it).
  await page.evaluate(() => window.__sockets.filter((s) => s.url.includes('/vnc/')).at(-1).close());
  await eventually('the viewer to notice the drop', async () => (await viewer.getAttribute('data-conn')) !== 'connected', {
    interval: 20,
  });
  await screenshot(page, '13b-viewer-reconnecting');
  await waitForDesktop(page, { timeout: 30_000 });
  const after = await page.evaluate(() => window.__sockets.length);
  assert.ok(after > before, 'a new WebSocket was opened');
  await typeIntoDesktop(page, 'echo reconnected');
});

test('My sessions lists the session live; Hibernate shows Hibernated', async () => {
  await page.getByRole('link', { name: 'Back to my sessions' }).click();
  const row = page.locator(`tr[data-session="${sessionId}"]`);
  await row.waitFor();
  await eventually('phase Running', async () => (await rowPhase(page, sessionId).getAttribute('data-phase')) === 'Running');
  assert.match(await row.innerText(), /desktop/);
  assert.match(await row.innerText(), /docker/);
  await screenshot(page, '14-my-sessions-running');
  await row.getByRole('button', { name: 'Hibernate' }).click();
  // Pushed by server-sent events: no reload.
  await eventually(
    'badge Hibernated',
    async () => (await rowPhase(page, sessionId).getAttribute('data-phase')) === 'Hibernated',
    { timeout: 60_000 },
  );
  await screenshot(page, '15-my-sessions-hibernated');
});

test('Wake from the list, then the viewer works again', async () => {
  const row = page.locator(`tr[data-session="${sessionId}"]`);
  await row.getByRole('button', { name: 'Wake' }).click();
  await eventually(
    'badge Running after wake',
    async () => (await rowPhase(page, sessionId).getAttribute('data-phase')) === 'Running',
    { timeout: 60_000 },
  );
  await row.getByRole('link', { name: /^Open/ }).click();
  await waitForDesktop(page);
  await typeIntoDesktop(page, 'echo awake again');
  await screenshot(page, '16-viewer-after-wake');
});

test('hibernating from the viewer shows the overlay; its Wake button brings the desktop back', async () => {
  await page.getByRole('button', { name: 'Hibernate' }).click();
  const wake = page.getByRole('button', { name: 'Wake', exact: true });
  await wake.waitFor({ timeout: 60_000 });
  await page.getByRole('heading', { name: 'This session is hibernated' }).waitFor();
  await screenshot(page, '17-viewer-hibernated-overlay');
  await wake.click();
  await waitForDesktop(page);
  await typeIntoDesktop(page, 'echo woken from the viewer');
});

test('admin sees the session under All sessions', async () => {
  const admin = await newPage(browser, { name: 'admin' });
  await login(admin, 'admin', ADMIN_PASSWORD);
  await admin.getByRole('link', { name: 'All sessions' }).click();
  const row = admin.locator(`tr[data-session="${sessionId}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), new RegExp(alice.username));
  assert.match(await row.innerText(), /local/, 'the agent is named');
  await screenshot(admin, '18-admin-all-sessions');
  admin.assertNoErrors();
  await admin.context().close();
});

test('a non-admin cannot open admin pages nor another user’s viewer', async () => {
  const other = await newPage(browser, { name: 'bob' });
  await login(other, bob.username, bob.password);
  await other.goto('/admin/agents');
  await other.getByTestId('forbidden').waitFor();
  assert.match(await other.getByTestId('forbidden').innerText(), /Admins only/);
  await screenshot(other, '19-non-admin-forbidden');
  for (const url of ['/api/v1/agents', '/api/v1/users', '/api/v1/sessions?all=true']) {
    const status = await other.evaluate((u) => fetch(u).then((r) => r.status), url);
    assert.equal(status, 403, `${url} answers 403 to a non-admin`);
  }

  await other.goto(`/sessions/${sessionId}`);
  await other.getByTestId('viewer-error').waitFor();
  assert.match(await other.getByTestId('viewer-error').innerText(), /Session not found/);
  assert.equal(await other.locator('[data-testid=screen] canvas').count(), 0);
  await screenshot(other, '20-non-admin-other-viewer');
  const status = await other.evaluate((id) => fetch(`/api/v1/sessions/${id}`).then((r) => r.status), sessionId);
  assert.equal(status, 404);
  // The VNC WebSocket itself is refused too.
  const opened = await other.evaluate(
    (id) =>
      new Promise((resolve) => {
        const ws = new WebSocket(`ws://${location.host}/vnc/${id}`, ['binary']);
        ws.onopen = () => resolve(true);
        ws.onerror = () => resolve(false);
      }),
    sessionId,
  );
  assert.equal(opened, false, 'bob cannot open alice’s VNC WebSocket');
  other.assertNoErrors();
  await other.context().close();
});

test('on a phone the catalog and the session list stay usable', async () => {
  const phone = await newPage(browser, { name: 'alice-phone', viewport: PHONE });
  await login(phone, alice.username, alice.password);
  await phone.locator('[data-template=desktop]').waitFor();
  await screenshot(phone, '21-phone-catalog');
  await phone.getByRole('button', { name: 'Menu' }).click();
  await phone.getByRole('link', { name: 'My sessions' }).click();
  await phone.locator(`tr[data-session="${sessionId}"]`).getByRole('button', { name: 'Terminate' }).waitFor();
  await screenshot(phone, '22-phone-sessions');
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= PHONE.width, `no horizontal scrolling (page is ${width}px wide)`);
  phone.assertNoErrors();
  await phone.context().close();
});

test('Terminate asks for confirmation, then the session leaves the list', async () => {
  await page.goto('/sessions');
  const row = page.locator(`tr[data-session="${sessionId}"]`);
  await row.getByRole('button', { name: 'Terminate' }).click();
  const dialog = page.locator('dialog.modal[open]');
  await dialog.waitFor();
  await screenshot(page, '23-terminate-confirm');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await row.count(), 1, 'cancel keeps the session');

  await row.getByRole('button', { name: 'Terminate' }).click();
  await dialog.getByRole('button', { name: 'Terminate' }).click();
  await row.waitFor({ state: 'detached', timeout: 60_000 });
  await eventually(
    'the session is terminated',
    async () => {
      const r = await adminApi('GET', `/sessions/${sessionId}`);
      return r.body?.phase === 'Terminated';
    },
    { timeout: 60_000 },
  );
  await page.getByRole('heading', { name: 'No sessions' }).waitFor();
  await screenshot(page, '24-my-sessions-empty');
  page.assertNoErrors();
});
