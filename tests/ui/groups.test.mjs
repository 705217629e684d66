// Admin: groups (create with a field error next to the field, members,
// quota, pools), a template's allowed groups (hidden from users outside
// them), and agent pools (shown, changed with a field error for a bad name,
// chosen on the enrollment-token form).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, RUN, apiLogin, launchBrowser, login, newPage, screenshot } from './lib.mjs';

const GROUP = `ui-${RUN}-team`;
const POOL = `ui-${RUN}-pool`;
const MEMBER = `ui-${RUN}-gina`;
const OUTSIDER = `ui-${RUN}-otto`;
const PASSWORD = 'a-long-enough-password';
const TEMPLATE = `ui-${RUN}-team-app`;

let browser;
let page;
let admin;

before(async () => {
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'groups' });
  admin = await apiLogin('admin', ADMIN_PASSWORD);
  for (const username of [MEMBER, OUTSIDER]) {
    const created = await admin('POST', '/users', { username, password: PASSWORD });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
});

after(async () => {
  await admin?.('DELETE', `/templates/${TEMPLATE}`);
  await admin?.('DELETE', `/groups/${encodeURIComponent(GROUP)}`);
  for (const username of [MEMBER, OUTSIDER]) {
    const users = await admin?.('GET', '/users');
    const user = users?.body?.find((u) => u.username === username);
    if (user) await admin('DELETE', `/users/${user.id}`);
  }
  await browser?.close();
});

test('a group is created with its pools and quota; a bad pool is refused at the field', async () => {
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'Groups' }).click();
  await page.getByRole('button', { name: 'Add group' }).click();
  await page.getByLabel('Name', { exact: true }).fill(GROUP);
  await page.getByLabel('Agent pools').fill('Not A Pool');
  await page.getByLabel('Sessions').fill('3');
  await page.getByRole('button', { name: 'Create group' }).click();
  const fieldError = page.locator('[data-field-error=group-pools]');
  await fieldError.waitFor();
  assert.match(await fieldError.innerText(), /lowercase letters/);
  await screenshot(page, 'groups-01-pool-field-error');

  await page.getByLabel('Agent pools').fill(`${POOL}, default`);
  await page.getByRole('button', { name: 'Create group' }).click();
  const row = page.locator(`tr[data-group="${GROUP}"]`);
  await row.waitFor();
  assert.equal((await row.getByTestId('group-pools').innerText()).trim(), `default, ${POOL}`);
  assert.match(await row.innerText(), /3 sessions/);
});

test('a member is added in the members dialog, and the group lists them', async () => {
  const row = page.locator(`tr[data-group="${GROUP}"]`);
  await row.getByRole('button', { name: 'Members' }).click();
  await page.getByLabel('Add a member').selectOption({ label: MEMBER });
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.locator(`[data-member="${MEMBER}"]`).waitFor();
  await screenshot(page, 'groups-02-members');
  await page.getByRole('button', { name: 'Done' }).click();
  assert.equal((await row.getByTestId('group-members').innerText()).trim(), MEMBER);
});

test('a template limited to the group is shown to its member and not to others', async () => {
  const created = await admin('POST', '/templates', { name: TEMPLATE, image: 'streamspace/desktop:local' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await page.goto(`/admin/templates/${TEMPLATE}`);
  await page.getByLabel('Allowed groups').fill(GROUP);
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.waitForURL('**/admin/templates');
  const stored = await admin('GET', `/templates/${TEMPLATE}`);
  assert.deepEqual(stored.body.allowed_groups, [GROUP]);

  const seen = async (username) => {
    const other = await newPage(browser, { name: username });
    await login(other, username, PASSWORD);
    await other.locator('[data-template=desktop]').waitFor();
    const count = await other.locator(`[data-template="${TEMPLATE}"]`).count();
    await other.close();
    return count;
  };
  assert.equal(await seen(MEMBER), 1, 'the member sees it');
  assert.equal(await seen(OUTSIDER), 0, 'the outsider does not');
});

test('the agent shows its pool; a bad pool is refused at the field; a change is saved and undone', async () => {
  await page.getByRole('link', { name: 'Agents' }).click();
  const card = page.locator('[data-agent=local]');
  await card.waitFor();
  assert.equal((await card.getByTestId('agent-pool').locator('dd').innerText()).trim(), 'default');
  await card.getByRole('button', { name: 'Change pool' }).click();
  await page.getByLabel('Agent pool').fill('Bad Pool');
  await page.getByRole('button', { name: 'Move agent' }).click();
  await page.locator('[data-field-error=agent-pool]').waitFor();
  await page.getByLabel('Agent pool').fill(POOL);
  await page.getByRole('button', { name: 'Move agent' }).click();
  await card.getByTestId('agent-pool').filter({ hasText: POOL }).waitFor();
  await screenshot(page, 'groups-03-agent-pool');
  // Back, so the other tests' sessions still find the agent.
  await card.getByRole('button', { name: 'Change pool' }).click();
  await page.getByLabel('Agent pool').fill('default');
  await page.getByRole('button', { name: 'Move agent' }).click();
  await card.getByTestId('agent-pool').filter({ hasText: 'default' }).waitFor();
});

test('an enrollment token is made for a pool', async () => {
  await page.getByRole('button', { name: 'Add agent' }).click();
  await page.getByLabel('Agent pool').fill(POOL);
  await page.getByRole('button', { name: 'Create token' }).click();
  const said = page.getByTestId('enrollment-pool');
  await said.waitFor();
  assert.match(await said.innerText(), new RegExp(`joins pool ${POOL}`));
  await page.getByRole('button', { name: 'Done' }).click();
});
