// Single sign-on in a real browser against a real OpenID Connect provider
// (the certified `oidc-provider`, started on loopback by scripts/test-ui.sh
// from tests/oidc/): Chromium clicks "Sign in with Test IdP", signs in at
// the provider's own login form, and lands back signed in. A user in the
// admin group is an admin; one outside it is not. A refused login comes
// back to the login page with the reason.
//
// Group membership from the claim controls which templates a user sees: a
// template limited to the team (`allowed_groups`) is listed for a member
// and not for a user in no group.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, RUN, apiLogin, launchBrowser, newPage, screenshot } from './lib.mjs';

const PROVIDER = 'Test IdP';
const ADA = process.env.STREAMSPACE_OIDC_ADMIN_USER; // in the admin group
const BEN = process.env.STREAMSPACE_OIDC_PLAIN_USER; // in the team group only
const CY = process.env.STREAMSPACE_OIDC_OUTSIDER_USER; // in no group
const TEAM = process.env.STREAMSPACE_OIDC_TEAM_GROUP;
const TEAM_APP = `ui-${RUN}-team-only`;

let browser;

before(async () => {
  assert.ok(ADA && BEN && CY && TEAM, 'scripts/test-ui.sh starts the OIDC provider and names its users');
  browser = await launchBrowser();
});

after(async () => {
  const api = await apiLogin('admin', ADMIN_PASSWORD);
  await api('DELETE', `/templates/${TEAM_APP}`);
  for (const name of [ADA, BEN, CY]) {
    const users = await api('GET', '/users');
    const user = users.body?.find((u) => u.username === name);
    if (user) await api('DELETE', `/users/${user.id}`);
  }
  await browser?.close();
});

/** Signs in through the provider's own login form; answers /users/me as the page sees it. */
async function signIn(page, username) {
  await page.goto('/');
  await page.getByRole('link', { name: `Sign in with ${PROVIDER}` }).click();
  // oidc-provider's development login form: any password for a known user.
  await page.locator('input[name="login"]').fill(username);
  await page.locator('input[name="password"]').fill('any-password');
  await page.locator('button[type="submit"]').click();
  await page.getByTestId('whoami').filter({ hasText: username }).waitFor({ timeout: 20_000 });
  return page.evaluate(async () => (await fetch('/api/v1/users/me')).json());
}

/** A template only members of TEAM see. */
async function createTeamTemplate(api) {
  const res = await api('POST', '/templates', {
    name: TEAM_APP,
    display_name: 'Team only',
    image: 'streamspace/desktop:local',
    allowed_groups: [TEAM],
  });
  assert.equal(res.status, 201, `creating a group-limited template: ${JSON.stringify(res.body)}`);
}

test('a user in the admin group signs in with the provider and is an admin', async () => {
  const page = await newPage(browser, { name: 'oidc-admin' });
  const me = await signIn(page, ADA);
  assert.equal(me.username, ADA);
  assert.equal(me.role, 'admin');
  await page.getByText('admin', { exact: true }).first().waitFor();
  await screenshot(page, 'oidc-01-admin-signed-in');
  page.assertNoErrors();
  await page.context().close();
});

test('a user outside the admin group is not an admin; the groups claim limits what they see', async () => {
  const api = await apiLogin('admin', ADMIN_PASSWORD);
  await createTeamTemplate(api);
  const page = await newPage(browser, { name: 'oidc-user' });
  const me = await signIn(page, BEN);
  assert.equal(me.username, BEN);
  assert.equal(me.role, 'user');
  const adminChip = page.getByTestId('whoami').locator('.role-chip');
  assert.equal(await adminChip.count(), 0, 'no admin chip');
  const names = async (p) => (await p.evaluate(async () => (await fetch('/api/v1/templates')).json())).map((x) => x.name);
  assert.ok((await names(page)).includes(TEAM_APP), `${BEN} is in ${TEAM} and sees ${TEAM_APP}`);
  const outsider = await newPage(browser, { name: 'oidc-outsider' });
  assert.equal((await signIn(outsider, CY)).role, 'user');
  assert.ok(!(await names(outsider)).includes(TEAM_APP), `${CY} is in no group and does not see ${TEAM_APP}`);
  await outsider.context().close();
  await screenshot(page, 'oidc-02-user-signed-in');
  page.assertNoErrors();
  await page.context().close();
});

test('a refused sign-in comes back to the login page with the reason', async () => {
  const page = await newPage(browser, { name: 'oidc-refused' });
  await page.goto('/');
  await page.getByRole('link', { name: `Sign in with ${PROVIDER}` }).waitFor();
  // The provider sends the browser back, but to a tab whose login cookie is
  // gone: the state cannot be checked, and the login page says so.
  await page.context().clearCookies();
  await page.goto('/api/v1/auth/oidc/callback?code=x&state=forged');
  await page.getByText(/no single sign-on login is in progress/).waitFor();
  await page.getByRole('link', { name: `Sign in with ${PROVIDER}` }).waitFor();
  await screenshot(page, 'oidc-03-refused');
  await page.context().close();
});

test('with password login off, the page offers the provider and the break-glass admin still signs in', async () => {
  const api = await apiLogin('admin', ADMIN_PASSWORD);
  const before = await api('GET', '/settings');
  assert.equal(before.status, 200, JSON.stringify(before.body));
  const off = await api('PUT', '/settings', { ...before.body, password_login: false, break_glass_admin: 'admin' });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  try {
    const page = await newPage(browser, { name: 'oidc-passwords-off' });
    await page.goto('/');
    await page.getByRole('link', { name: `Sign in with ${PROVIDER}` }).waitFor();
    const breakGlass = page.getByRole('button', { name: 'Administrator sign-in with a password' });
    await breakGlass.waitFor();
    assert.equal(await page.getByLabel('Username').count(), 0, 'no password form until asked for');
    await screenshot(page, 'oidc-04-passwords-off');
    await breakGlass.click();
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in with a password' }).click();
    await page.getByTestId('whoami').filter({ hasText: 'admin' }).waitFor({ timeout: 15_000 });
    page.assertNoErrors();
    await page.context().close();
  } finally {
    const restored = await api('PUT', '/settings', before.body);
    assert.equal(restored.status, 200, JSON.stringify(restored.body));
  }
});
