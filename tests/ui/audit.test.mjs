// The audit log in the UI: an admin filters it, pages back with "Show
// older" and downloads the export; the Settings page saves the retention
// (and the change shows in the log); a user sees their own sign-ins, the
// failed one too, on their account page.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, BASE, RUN, apiLogin, launchBrowser, login, newPage, screenshot } from './lib.mjs';

const erin = { username: `ui-${RUN}-erin`, password: 'erin-password-1' };

let browser;
let admin;
let erinId;

before(async () => {
  browser = await launchBrowser();
  admin = await apiLogin('admin', ADMIN_PASSWORD);
  const created = await admin('POST', '/users', { ...erin, role: 'user' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  erinId = created.body.id;
});

after(async () => {
  if (erinId) await admin('DELETE', `/users/${erinId}`);
  await browser?.close();
});

/** A login attempt through the API: its status. */
async function tryLogin(username, password) {
  const res = await fetch(`${BASE}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  return res.status;
}

test('an admin filters the audit log, pages back and exports it', async () => {
  // 55 quota changes on erin: more than one page (50).
  for (let i = 1; i <= 55; i++) {
    const set = await admin('PUT', `/users/${erinId}/quota`, { max_sessions: i });
    assert.equal(set.status, 200, JSON.stringify(set.body));
  }
  const page = await newPage(browser, { name: 'admin' });
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  await page.getByTestId('audit-event').first().waitFor();

  await page.getByLabel('Kind').fill('user.quota');
  await page.getByLabel('Target').fill(`user:${erin.username}`);
  await page.getByRole('button', { name: 'Apply' }).click();
  const rows = page.getByTestId('audit-event');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=audit-event]').length === 50);
  assert.equal(await rows.count(), 50);
  // Newest first: the last change (55 sessions) heads the list.
  assert.match(await rows.first().innerText(), /"max_sessions":55/);
  await screenshot(page, '60-audit-filtered');

  await page.getByRole('button', { name: 'Show older' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=audit-event]').length === 55);
  assert.match(await rows.last().innerText(), /"max_sessions":1\b/);
  assert.equal(await page.getByRole('button', { name: 'Show older' }).count(), 0, 'no more pages');

  // The export link carries the filters; the browser's cookie downloads it.
  const href = await page.getByTestId('audit-export').getAttribute('href');
  assert.match(href, /kind=user\.quota/);
  const exported = await page.request.get(href);
  assert.equal(exported.status(), 200);
  const lines = (await exported.text()).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 55);
  assert.ok(lines.every((l) => l.kind === 'user.quota' && l.target === `user:${erin.username}`));
  await page.assertNoErrors?.();
  await page.context().close();
});

test('the settings page saves the retention, and the change is in the log', async () => {
  const page = await newPage(browser, { name: 'admin-settings' });
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  const retention = page.getByLabel('Keep audit events for (days)');
  const before = await retention.inputValue();
  await retention.fill('0');
  await page.getByRole('button', { name: 'Save settings' }).click();
  const refused = page.locator('[data-field-error=settings-retention]');
  await refused.waitFor();
  await retention.fill('30');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByText('Settings saved.').waitFor();
  await screenshot(page, '61-settings-saved');
  await page.reload();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  assert.equal(await page.getByLabel('Keep audit events for (days)').inputValue(), '30');

  const log = await admin('GET', '/audit?kind=settings.update&limit=1');
  assert.equal(log.status, 200);
  const [change] = log.body.events;
  assert.equal(change.actor, 'user:admin');
  assert.equal(change.detail.after.audit_retention_days, 30);
  const restored = await admin('PUT', '/settings', { ...change.detail.after, audit_retention_days: Number(before) });
  assert.equal(restored.status, 200, JSON.stringify(restored.body));
  await page.context().close();
});

test('a user sees their own sign-ins, the failed one too', async () => {
  assert.equal(await tryLogin(erin.username, 'not-erins-password'), 401);
  const page = await newPage(browser, { name: 'erin' });
  await login(page, erin.username, erin.password);
  await page.getByTestId('whoami').click();
  const recent = page.getByTestId('recent-logins');
  await recent.getByTestId('login').first().waitFor();
  const outcomes = await recent.getByTestId('login').evaluateAll((items) => items.map((i) => i.dataset.outcome));
  assert.deepEqual(outcomes, ['success', 'failure']);
  assert.match(await recent.innerText(), /Failed/);
  assert.match(await recent.innerText(), /password/);
  await screenshot(page, '62-account-recent-sign-ins');
  await page.context().close();
});
