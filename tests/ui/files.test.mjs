// File transfer in the viewer on a real desktop session (docs/FILES.md): a
// file dropped on the desktop lands in the container's ~/Downloads (checked
// with docker exec), the Files panel lists the folder, a file made in the
// container downloads from the panel byte-identical, the upload button
// works, and a symbolic link is shown but never offered for download.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import {
  ADMIN_PASSWORD,
  RUN,
  apiLogin,
  eventually,
  launchBrowser,
  login,
  newPage,
  screenshot,
  waitForDesktop,
} from './lib.mjs';

const user = { username: `ui-${RUN}-files`, password: 'files-password-1' };
const FOLDER = '/home/user/Downloads';

let browser;
let page;
let adminApi;
let sessionId;

/** `docker exec` in the session's container: stdout as bytes. */
function exec(script) {
  return execFileSync('docker', ['exec', `streamspace-${sessionId}`, 'sh', '-c', script]);
}

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  const r = await adminApi('POST', '/users', { ...user, role: 'user' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const userApi = await apiLogin(user.username, user.password);
  const created = await userApi('POST', '/sessions', { template: 'desktop' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  sessionId = created.body.id;
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'files' });
});

after(async () => {
  await browser?.close();
  if (adminApi && sessionId) await adminApi('DELETE', `/sessions/${sessionId}`);
});

test('a file dropped on the desktop appears in the container', async () => {
  await login(page, user.username, user.password);
  await page.goto(`/sessions/${sessionId}`);
  await waitForDesktop(page);
  const content = crypto.randomBytes(200_000);
  const dataTransfer = await page.evaluateHandle((bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'dropped report.bin', { type: 'application/octet-stream' }));
    return dt;
  }, Array.from(content));
  const screen = page.locator('[data-testid=screen]');
  await screen.dispatchEvent('dragenter', { dataTransfer });
  await screen.dispatchEvent('dragover', { dataTransfer });
  await screen.dispatchEvent('drop', { dataTransfer });

  // The panel opens by itself to show the upload going, then done.
  await page.locator('[data-upload="dropped report.bin"][data-state=done]').waitFor({ timeout: 30_000 });
  const inside = exec(`cat "${FOLDER}/dropped report.bin"`);
  assert.ok(inside.equals(content), `the container has ${inside.length} bytes, not the dropped ${content.length}`);
  assert.equal(exec(`stat -c %u "${FOLDER}/dropped report.bin"`).toString().trim(), '1000', "the session's user owns it");
  await page.locator('[data-testid=files-list] [data-file="dropped report.bin"]').waitFor();
});

test('a file made in the container downloads from the Files panel byte-identical', async () => {
  exec(`head -c 300000 /dev/urandom > ${FOLDER}/made-inside.bin && ln -s /etc/passwd ${FOLDER}/passwd-link`);
  const inside = exec(`cat ${FOLDER}/made-inside.bin`);
  // Reopen the panel so it lists again.
  await page.getByRole('button', { name: 'Close files' }).click();
  await page.getByRole('button', { name: 'Files', exact: true }).click();
  const link = page.locator('[data-file="made-inside.bin"] a');
  await link.waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'made-inside.bin');
  const saved = fs.readFileSync(await download.path());
  assert.ok(saved.equals(inside), `downloaded ${saved.length} bytes that differ from the container's ${inside.length}`);

  // A link is listed, not offered for download.
  const linkRow = page.locator('[data-file="passwd-link"]');
  await linkRow.waitFor();
  assert.equal(await linkRow.locator('a').count(), 0, 'no download link for a symbolic link');
  await screenshot(page, '60-viewer-files');
});

test('the upload button sends the chosen files into the folder', async () => {
  await page.getByLabel('Files to upload').setInputFiles({
    name: 'chosen.txt',
    mimeType: 'text/plain',
    buffer: Buffer.from('chosen with the button\n'),
  });
  await page.locator('[data-upload="chosen.txt"][data-state=done]').waitFor({ timeout: 30_000 });
  assert.equal(exec(`cat ${FOLDER}/chosen.txt`).toString(), 'chosen with the button\n');
  await eventually('the listing shows the upload', async () => (await page.locator('[data-file="chosen.txt"]').count()) === 1);
  page.assertNoErrors();
});
