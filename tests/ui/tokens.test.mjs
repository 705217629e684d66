// API tokens on the account page: a bad name is refused next to its field;
// a token made in the UI is shown once and works as `Authorization: Bearer`;
// the list shows its name and when it was used, never the secret; revoking
// it in the UI ends it at once.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, BASE, RUN, apiLogin, eventually, launchBrowser, login, newPage, screenshot } from './lib.mjs';

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

/** `GET /users/me` with `token` as the bearer: its status. */
async function meWith(token) {
  const res = await fetch(`${BASE}/api/v1/users/me`, { headers: { Authorization: `Bearer ${token}` } });
  return res.status;
}

test('create an API token, use it, see it used, revoke it', async () => {
  const page = await newPage(browser, { name: 'tokens' });
  await login(page, erin.username, erin.password);
  await page.goto('/account');
  const section = page.getByTestId('api-tokens');
  await section.getByRole('heading', { name: 'API tokens' }).waitFor();
  await section.getByText('You have no API tokens.').waitFor();

  // A blank name is refused by the server, next to the field.
  await section.getByRole('button', { name: 'Create token' }).click();
  const blank = page.locator('[data-field-error=token-name]');
  await blank.waitFor();
  assert.match(await blank.innerText(), /name/);

  await section.getByLabel('Token name').fill('deploy script');
  await section.getByLabel('Expires after').selectOption('30d');
  await section.getByRole('button', { name: 'Create token' }).click();
  const secret = (await page.getByTestId('new-token-secret').innerText()).trim();
  assert.match(secret, /^ssp_[A-Za-z0-9_-]{43}$/);
  await screenshot(page, '60-api-token-created');
  const row = section.locator('tr[data-token="deploy script"]');
  await row.waitFor();
  assert.match(await row.innerText(), /never/, 'not used yet');

  // The token works as a bearer, and the list says it was used.
  assert.equal(await meWith(secret), 200);
  await page.getByRole('button', { name: 'Done' }).click();
  await page.getByTestId('new-token').waitFor({ state: 'detached' });
  await eventually('the list to show the token was used', async () => {
    await page.reload();
    return /just now|s ago/.test(await section.locator('tr[data-token="deploy script"]').innerText());
  });
  // Shown once: nowhere on the page now.
  assert.equal((await page.content()).includes(secret), false, 'the secret is not shown again');

  await section.getByRole('button', { name: 'Revoke deploy script' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await page.getByText('Token “deploy script” revoked.').waitFor();
  await section.getByText('You have no API tokens.').waitFor();
  await screenshot(page, '61-api-token-revoked');
  assert.equal(await meWith(secret), 401, 'the revoked token is refused');
  page.assertNoErrors();
  await page.context().close();
});
