// Admin page "Import templates" (a catalog file): a broken catalog shows its problems with line
// and field and cannot be applied; a valid one previews create / unchanged,
// applies, and its templates appear; a catalog URL is fetched by the browser
// (the page's own request), not by the server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, RUN, apiLogin, eventually, launchBrowser, login, newPage, screenshot } from './lib.mjs';

const ALPHA = `ui-${RUN}-alpha`;
const BETA = `ui-${RUN}-beta`;
const CATALOG = `version: 1
templates:
  - name: ${ALPHA}
    display_name: Imported alpha
    image: streamspace/desktop:local
  - name: ${BETA}
    image: streamspace/desktop:local
    ports:
      - name: vnc
        port: 5901
        protocol: vnc
`;
const BROKEN = CATALOG.replace('port: 5901', 'port: 70000');

let browser;
let page;

before(async () => {
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'catalog' });
  await login(page, 'admin', ADMIN_PASSWORD);
});

after(async () => {
  const api = await apiLogin('admin', ADMIN_PASSWORD);
  for (const name of [ALPHA, BETA]) await api('DELETE', `/templates/${name}`);
  await browser?.close();
});

async function preview(text) {
  await page.getByLabel('Catalog text').fill(text);
  await page.getByRole('button', { name: 'Preview' }).click();
}

test('a broken entry is shown with its line and field, and cannot be applied', async () => {
  await page.getByRole('link', { name: 'Import', exact: true }).click();
  await page.getByRole('heading', { name: 'Import templates' }).waitFor();
  await preview(BROKEN);
  const row = page.locator(`tr[data-problem-field="templates[1].ports[0].port"]`);
  await row.waitFor();
  const cells = await row.locator('td').allInnerTexts();
  assert.equal(cells[0], '10', `line of the bad port: ${cells}`);
  assert.equal(cells[1], BETA);
  assert.match(cells[3], /1 to 65535/);
  assert.ok(await page.getByRole('button', { name: 'Apply' }).isDisabled(), 'no apply without a clean preview');
  await row.scrollIntoViewIfNeeded();
  await screenshot(page, 'catalog-01-problems');
});

test('a valid catalog previews, applies, and re-imports unchanged', async () => {
  await preview(CATALOG);
  await page.locator(`tr[data-import="${ALPHA}"][data-action=create]`).waitFor();
  await page.locator(`tr[data-import="${BETA}"][data-action=create]`).waitFor();
  assert.match(await page.getByTestId('import-summary').innerText(), /2 would be created/);
  await page.getByTestId('import-summary').scrollIntoViewIfNeeded();
  await screenshot(page, 'catalog-02-preview');

  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByTestId('import-summary').filter({ hasText: 'Imported: 2 were created' }).waitFor();

  await preview(CATALOG);
  await page.locator(`tr[data-import="${ALPHA}"][data-action=unchanged]`).waitFor();
  await page.getByRole('link', { name: 'Templates', exact: true }).first().click();
  await page.locator(`tr[data-template="${ALPHA}"]`).waitFor();
});

test('a catalog URL is fetched by the browser and previewed as an update', async () => {
  const url = 'https://catalog.example.test/catalog.yaml';
  let fetchedByPage = 0;
  await page.route(url, (route) => {
    fetchedByPage += 1;
    route.fulfill({
      status: 200,
      headers: { 'content-type': 'application/yaml', 'access-control-allow-origin': '*' },
      body: CATALOG.replace('Imported alpha', 'Renamed alpha'),
    });
  });
  await page.goto('/admin/catalog');
  await page.getByLabel('Catalog URL').fill(url);
  await page.getByRole('button', { name: 'Fetch' }).click();
  const text = page.getByLabel('Catalog text');
  await eventually('the fetched catalog in the text box', async () =>
    (await text.inputValue()).includes('Renamed alpha'),
  );
  assert.equal(fetchedByPage, 1, 'the browser fetched the catalog');
  await page.getByRole('button', { name: 'Preview' }).click();
  const row = page.locator(`tr[data-import="${ALPHA}"][data-action=update]`);
  await row.waitFor();
  assert.match(await row.innerText(), /display_name/);
  await screenshot(page, 'catalog-03-url-update');
});
