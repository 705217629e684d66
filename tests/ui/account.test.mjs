// Your account: a blank current password is caught before it is sent and a
// wrong one is refused next to the field; changing the password signs your
// other browser out by itself (the server ends its event stream, and it
// finds its sign-in gone); signing out everywhere ends every sign-in, this
// one too, and says so when it fails; an admin's own row on the users page
// leads here instead of setting the password without the current one.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, RUN, apiLogin, launchBrowser, login, newPage, screenshot } from './lib.mjs';

const dave = { username: `ui-${RUN}-dave`, password: 'dave-password-1' };
const NEW_PASSWORD = 'dave-password-2';

let browser;
let admin;
let daveId;

before(async () => {
  browser = await launchBrowser();
  admin = await apiLogin('admin', ADMIN_PASSWORD);
  const created = await admin('POST', '/users', { ...dave, role: 'user' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  daveId = created.body.id;
});

after(async () => {
  if (daveId) await admin('DELETE', `/users/${daveId}`);
  await browser?.close();
});

test('changing your password signs your other browser out', async () => {
  const here = await newPage(browser, { name: 'here' });
  const there = await newPage(browser, { name: 'there' });
  await login(here, dave.username, dave.password);
  await login(there, dave.username, dave.password);

  await here.getByTestId('whoami').click();
  await here.getByRole('heading', { name: 'Your account' }).waitFor();
  // A blank current password is caught in the page, never sent (the server
  // would count it as a wrong one).
  const sent = [];
  here.on('request', (r) => r.url().endsWith('/api/v1/users/me/password') && sent.push(r.method()));
  await here.getByLabel('New password').fill(NEW_PASSWORD);
  await here.getByRole('button', { name: 'Change password' }).click();
  const blank = here.locator('[data-field-error=account-current]');
  await blank.waitFor();
  assert.match(await blank.innerText(), /enter your current password/);
  assert.deepEqual(sent, [], 'nothing was sent');

  await here.getByLabel('Current password').fill('not-my-password');
  await here.getByLabel('New password').fill(NEW_PASSWORD);
  await here.getByRole('button', { name: 'Change password' }).click();
  const wrong = here.locator('[data-field-error=account-current]');
  await wrong.waitFor();
  assert.match(await wrong.innerText(), /current password is wrong/);
  await screenshot(here, '20-account-wrong-current-password');

  await here.getByLabel('Current password').fill(dave.password);
  await here.getByRole('button', { name: 'Change password' }).click();
  await here.getByText('Password changed. Your other sign-ins have ended.').waitFor();
  await screenshot(here, '21-account-password-changed');

  // Nobody touches the other browser: it notices on its own.
  await there.getByRole('heading', { name: 'Sign in' }).waitFor({ timeout: 20_000 });
  await screenshot(there, '22-other-browser-signed-out');
  await here.reload();
  await here.getByTestId('whoami').filter({ hasText: dave.username }).waitFor();
  here.assertNoErrors();
  there.assertNoErrors();
  await here.context().close();
  await there.context().close();
});

test('signing out everywhere ends every sign-in, this one too', async () => {
  const here = await newPage(browser, { name: 'everywhere' });
  const script = await apiLogin(dave.username, NEW_PASSWORD);
  await login(here, dave.username, NEW_PASSWORD);
  await here.goto('/account');
  const signOutEverywhere = async () => {
    await here.getByRole('button', { name: 'Sign out everywhere' }).click();
    await here.getByRole('dialog').getByRole('button', { name: 'Sign out everywhere' }).click();
  };

  // When it fails, nothing ended: the page says so and stays signed in.
  await here.route('**/api/v1/auth/logout-all', (route) =>
    route.fulfill({ status: 500, contentType: 'application/json', body: '{"error":"the database is down"}' }),
  );
  await signOutEverywhere();
  await here.getByRole('alert').filter({ hasText: 'Could not sign out everywhere: the database is down' }).waitFor();
  await screenshot(here, '23-sign-out-everywhere-failed');
  await here.getByRole('heading', { name: 'Your account' }).waitFor();
  assert.equal((await script('GET', '/users/me')).status, 200, 'nothing ended');
  await here.unroute('**/api/v1/auth/logout-all');

  await signOutEverywhere();
  await here.getByRole('heading', { name: 'Sign in' }).waitFor();
  const me = await script('GET', '/users/me');
  assert.equal(me.status, 401, 'the script’s token ended too');
  here.assertNoErrors();
  await here.context().close();
});

test('an admin changes their own password on the account page, not the users page', async () => {
  const page = await newPage(browser, { name: 'admin-users' });
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.goto('/admin/users');
  const own = page.locator('tr[data-user=admin]');
  await own.getByRole('link', { name: 'Change password' }).waitFor();
  assert.equal(await own.getByRole('button', { name: 'Set password' }).count(), 0);
  const others = page.locator(`tr[data-user=${dave.username}]`);
  await others.getByRole('button', { name: 'Set password' }).waitFor();
  await own.getByRole('link', { name: 'Change password' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  page.assertNoErrors();
  await page.context().close();
});
