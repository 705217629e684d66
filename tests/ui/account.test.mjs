// Your account: a wrong current password is refused next to the field;
// changing the password signs your other browser out by itself (the
// server ends its event stream, and it finds its sign-in gone); signing out
// everywhere ends every sign-in, this one too.

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
  await here.getByRole('button', { name: 'Sign out everywhere' }).click();
  await here.getByRole('dialog').getByRole('button', { name: 'Sign out everywhere' }).click();
  await here.getByRole('heading', { name: 'Sign in' }).waitFor();
  const me = await script('GET', '/users/me');
  assert.equal(me.status, 401, 'the script’s token ended too');
  here.assertNoErrors();
  await here.context().close();
});
