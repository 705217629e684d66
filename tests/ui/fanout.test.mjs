// Admin: the agents page lists the control plane's replicas (one here:
// `streamspace up` on SQLite), the one serving the page marked, with the
// agents it holds, as GET /api/v1/replicas says; and the agent names the
// replica that holds it.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, apiLogin, eventually, launchBrowser, login, newPage, screenshot } from './lib.mjs';

let browser;
let page;
let admin;

before(async () => {
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'fanout' });
  admin = await apiLogin('admin', ADMIN_PASSWORD);
});

after(async () => {
  await browser?.close();
});

test('the agents page shows the replicas and the agents each holds', async () => {
  const listed = await admin('GET', '/replicas');
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  assert.equal(listed.body.length, 1, JSON.stringify(listed.body));
  const [replica] = listed.body;
  assert.equal(replica.serving, true);

  await login(page, 'admin', ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'Agents' }).click();
  const table = page.getByRole('table', { name: 'Replicas' });
  await table.waitFor();
  const row = table.locator(`tr[data-replica="${replica.id}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /this page/);
  assert.match(await row.innerText(), new RegExp(replica.internal_url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
  // The embedded agent connects to this replica: the count follows it.
  await eventually('the embedded agent counted on its replica', async () => {
    await page.reload();
    const agents = table.locator(`tr[data-replica="${replica.id}"]`).getByTestId('replica-agents');
    await agents.waitFor();
    return (await agents.innerText()).trim() === '1';
  });
  const agents = await admin('GET', '/agents');
  const local = agents.body.find((a) => a.name === 'local');
  assert.equal(local?.replica_id, replica.id, JSON.stringify(local));
  await table.scrollIntoViewIfNeeded();
  await screenshot(page, 'fanout-01-replicas');
});
