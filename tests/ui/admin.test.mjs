// Admin pages: agents (online, enrollment token and its command), users
// (create with a field error, role, delete) and templates (create with a
// field error next to the field, edit, delete, registry credentials that are
// never shown again, pre-pull).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, BASE, RUN, eventually, launchBrowser, login, newPage, screenshot } from './lib.mjs';

let browser;
let page;

before(async () => {
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'admin' });
});

after(async () => {
  await browser?.close();
});

test('the login page is shown first and refuses a wrong password', async () => {
  await page.goto('/');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await screenshot(page, '01-login');
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong username or password' }).waitFor();
  await screenshot(page, '02-login-error');
});

test('admin logs in and sees the catalog with the desktop template', async () => {
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.locator('[data-template=desktop]').waitFor();
  await page.getByRole('link', { name: 'Agents' }).waitFor();
  await screenshot(page, '03-catalog-admin');
});

test('agents page shows the embedded agent online with its load', async () => {
  await page.getByRole('link', { name: 'Agents' }).click();
  const card = page.locator('[data-agent=local]');
  await card.waitFor();
  await eventually('agent "local" online', async () => (await card.getAttribute('data-status')) === 'online');
  assert.match(await card.innerText(), /docker/);
  assert.match(await card.innerText(), /Last heartbeat/i);
  await screenshot(page, '04-admin-agents');
});

test('an enrollment token is created and the exact command is shown', async () => {
  await page.getByRole('button', { name: 'Add agent' }).click();
  await page.getByLabel('Token valid for').selectOption('1h');
  await page.getByRole('button', { name: 'Create token' }).click();
  const command = page.getByTestId('enrollment-command');
  await command.waitFor();
  const text = (await command.innerText()).trim();
  const expected = `streamspace agent docker --control-plane ${BASE} --enrollment-token `;
  assert.ok(text.startsWith(expected), `command ${JSON.stringify(text)} starts with ${JSON.stringify(expected)}`);
  assert.ok(text.length > expected.length + 16, 'the command carries a token');
  await screenshot(page, '05-admin-enrollment-token');
  await page.getByRole('button', { name: 'Done' }).click();
  await command.waitFor({ state: 'detached' });
});

test('users: a too-short password is refused next to the field, then the user is created, promoted and deleted', async () => {
  const username = `ui-${RUN}-carol`;
  await page.getByRole('link', { name: 'Users' }).click();
  await page.locator('tr[data-user=admin]').waitFor();
  await page.getByRole('button', { name: 'Add user' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill('short');
  await page.getByRole('button', { name: 'Create user' }).click();
  const fieldError = page.locator('[data-field-error=user-password]');
  await fieldError.waitFor();
  assert.match(await fieldError.innerText(), /at least 8 characters/);
  await screenshot(page, '06-admin-user-field-error');

  await page.getByLabel('Password').fill('a-long-enough-password');
  await page.getByRole('button', { name: 'Create user' }).click();
  const row = page.locator(`tr[data-user="${username}"]`);
  await row.waitFor();
  await row.getByLabel(`Role of ${username}`).selectOption('admin');
  await eventually('role admin saved', async () => {
    const r = await page.evaluate(() => fetch('/api/v1/users').then((x) => x.json()));
    return r.find((u) => u.username === username)?.role === 'admin';
  });
  await screenshot(page, '07-admin-users');

  await row.getByRole('button', { name: `Delete ${username}` }).click();
  await page.locator('dialog.modal[open]').getByRole('button', { name: 'Delete user' }).click();
  await row.waitFor({ state: 'detached' });
});

test('templates: an API field error is shown next to its field; create, edit and delete', async () => {
  const name = `ui-${RUN}-tpl`;
  await page.getByRole('link', { name: 'Templates' }).click();
  await page.locator('tr[data-template=desktop]').waitFor();
  await screenshot(page, '08-admin-templates');
  await page.getByRole('link', { name: 'New template' }).click();
  await page.locator('#tpl-name').fill(name);
  await page.getByLabel('Display name').fill('UI test app');
  await page.getByLabel('Category').fill('Testing');
  await page.getByLabel('Image').fill('streamspace/desktop:local');
  await page.getByLabel('Memory', { exact: true }).fill('2 gigs');
  await page.getByRole('button', { name: 'Create template' }).click();
  const memoryError = page.locator('[data-field-error=tpl-resources-memory]');
  await memoryError.waitFor();
  assert.match(await memoryError.innerText(), /invalid memory/);
  await screenshot(page, '09-admin-template-field-error');

  // A port out of range is reported on that port's row.
  await page.getByLabel('Memory', { exact: true }).fill('512Mi');
  await page.locator('#tpl-port-0-port').fill('70000');
  await page.getByRole('button', { name: 'Create template' }).click();
  const portError = page.locator('[data-field-error=tpl-port-0-port]');
  await portError.waitFor();
  assert.match(await portError.innerText(), /not a port/);

  await page.locator('#tpl-port-0-port').fill('5901');
  await page.getByRole('button', { name: 'Create template' }).click();
  const row = page.locator(`tr[data-template="${name}"]`);
  await row.waitFor();

  await row.getByRole('link', { name: 'Edit UI test app' }).click();
  await page.getByLabel('Display name').fill('UI test app (edited)');
  // A secret variable, and what users may choose, survive a round trip.
  await page.getByRole('button', { name: 'Add variable' }).click();
  await page.locator('#tpl-env-0-key').fill('LICENSE_KEY');
  await page.locator('#tpl-env-0-secret').check();
  await page.locator('#tpl-env-0-value').fill('s3cret-value');
  assert.equal(await page.locator('#tpl-env-0-value').getAttribute('type'), 'password', 'masked as typed');
  await page.locator('#tpl-user_env').fill('TZ, LANG');
  await page.locator('#tpl-max_resources-memory').fill('1Gi');
  await page.locator('#tpl-capabilities').fill('chown');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await row.filter({ hasText: 'UI test app (edited)' }).waitFor();
  await row.getByRole('link', { name: 'Edit UI test app (edited)' }).click();
  await page.locator('#tpl-env-0-value').waitFor();
  assert.equal(await page.locator('#tpl-env-0-key').inputValue(), 'LICENSE_KEY');
  assert.equal(await page.locator('#tpl-env-0-secret').isChecked(), true);
  assert.equal(await page.locator('#tpl-user_env').inputValue(), 'TZ, LANG');
  assert.equal(await page.locator('#tpl-max_resources-memory').inputValue(), '1Gi');
  assert.equal(await page.locator('#tpl-capabilities').inputValue(), 'CHOWN', 'normalised by the server');
  await screenshot(page, '09b-admin-template-users-may-choose');
  await page.getByRole('link', { name: 'Cancel' }).click();
  await row.waitFor();

  // It is in the catalog, under its category.
  await page.getByRole('link', { name: 'Catalog' }).click();
  await page.getByRole('button', { name: 'Testing' }).click();
  await page.locator(`[data-template="${name}"]`).waitFor();
  assert.equal(await page.locator('[data-template=desktop]').count(), 0, 'the category filter hides other apps');

  await page.getByRole('link', { name: 'Templates' }).click();
  await row.getByRole('button', { name: 'Delete UI test app (edited)' }).click();
  await page.locator('dialog.modal[open]').getByRole('button', { name: 'Delete template' }).click();
  await row.waitFor({ state: 'detached' });
});

test('templates: shared memory, user, read-only root, volumes and GPUs round-trip', async () => {
  const name = `ui-${RUN}-container`;
  await page.getByRole('link', { name: 'Templates' }).click();
  await page.getByRole('link', { name: 'New template' }).click();
  await page.locator('#tpl-name').fill(name);
  await page.getByLabel('Image').fill('streamspace/desktop:local');
  await page.locator('#tpl-shm_size').fill('512Mi');
  await page.locator('#tpl-user').fill('1000:1000');
  await page.locator('#tpl-read_only_root_filesystem').check();
  await page.locator('#tpl-resources-gpu').fill('1');
  await page.locator('#tpl-max_resources-gpu').fill('2');
  await page.getByRole('button', { name: 'Add volume' }).click();
  await page.locator('#tpl-volume-0-source').fill('datasets');
  // A volume over the home is refused, next to its path.
  await page.locator('#tpl-volume-0-path').fill('/home/user/data');
  await page.getByRole('button', { name: 'Create template' }).click();
  const pathError = page.locator('[data-field-error=tpl-volume-0-path]');
  await pathError.waitFor();
  assert.match(await pathError.innerText(), /overlaps home_path/);
  await page.locator('#tpl-volume-0-path').fill('/data');
  await page.getByRole('button', { name: 'Create template' }).click();
  const row = page.locator(`tr[data-template="${name}"]`);
  await row.waitFor();

  await row.getByRole('link', { name: `Edit ${name}` }).click();
  await page.locator('#tpl-volume-0-source').waitFor();
  assert.equal(await page.locator('#tpl-shm_size').inputValue(), '512Mi');
  assert.equal(await page.locator('#tpl-user').inputValue(), '1000:1000');
  assert.equal(await page.locator('#tpl-read_only_root_filesystem').isChecked(), true);
  assert.equal(await page.locator('#tpl-resources-gpu').inputValue(), '1');
  assert.equal(await page.locator('#tpl-max_resources-gpu').inputValue(), '2');
  assert.equal(await page.locator('#tpl-volume-0-source').inputValue(), 'datasets');
  assert.equal(await page.locator('#tpl-volume-0-path').inputValue(), '/data');
  assert.equal(await page.locator('#tpl-volume-0-read_only').isChecked(), true, 'read-only by default');
  await screenshot(page, '09c-admin-template-container');
  await page.getByRole('link', { name: 'Cancel' }).click();
  await row.getByRole('button', { name: `Delete ${name}` }).click();
  await page.locator('dialog.modal[open]').getByRole('button', { name: 'Delete template' }).click();
  await row.waitFor({ state: 'detached' });
});

test('templates: a virtual machine on libvirt, with its firmware and home disk', async () => {
  const name = `ui-${RUN}-vm`;
  await page.getByRole('link', { name: 'Templates' }).click();
  await page.getByRole('link', { name: 'New template' }).click();
  await page.locator('#tpl-name').fill(name);
  await page.locator('#tpl-kind-vm').check();
  // A VM's image is its base disk; the container-only fields are gone.
  await page.getByLabel('Base disk (qcow2 path or pool/volume)').waitFor();
  assert.equal(await page.locator('#tpl-shm_size').count(), 0, 'no container section');
  assert.equal(await page.locator('#tpl-pids_limit').count(), 0, 'no process limit');
  assert.equal(await page.locator('#tpl-resources-gpu').count(), 0, 'no GPUs');
  assert.equal(await page.locator('#tpl-port-0-port').count(), 0, 'one VNC display, not a port list');
  await page.getByLabel('Memory', { exact: true }).fill('256Mi');
  await page.locator('#tpl-persistent_home').check();
  await page.locator('#tpl-vm-firmware').selectOption('uefi');
  await page.locator('#tpl-vm-home_size').fill('2Ti');
  // A path that climbs out is refused next to the base disk.
  await page.locator('#tpl-image').fill('/var/lib/streamspace/../../etc/shadow');
  await page.getByRole('button', { name: 'Create template' }).click();
  const imageError = page.locator('[data-field-error=tpl-image]');
  await imageError.waitFor();
  assert.match(await imageError.innerText(), /pool\/volume/);
  await page.locator('#tpl-image').fill('/var/lib/streamspace/vm/demo.qcow2');
  // So is a home disk out of range, next to its size.
  await page.getByRole('button', { name: 'Create template' }).click();
  const sizeError = page.locator('[data-field-error=tpl-vm-home_size]');
  await sizeError.waitFor();
  assert.match(await sizeError.innerText(), /64Mi to 1Ti/);
  await page.locator('#tpl-vm-home_size').fill('512Mi');
  assert.equal(await page.locator('#tpl-desktop-file_transfer').count(), 0, 'no file transfer into a VM');
  await screenshot(page, '09e-admin-template-vm');
  await page.getByRole('button', { name: 'Create template' }).click();
  const row = page.locator(`tr[data-template="${name}"]`);
  await row.waitFor();
  assert.match(await row.locator('[data-label=Platforms]').innerText(), /libvirt/);
  assert.equal(await row.getByTestId('template-firmware').innerText(), 'VM · UEFI');
  assert.equal(await row.getByRole('button', { name: /Pre-pull/ }).count(), 0, 'nothing to pull for a VM');

  await row.getByRole('link', { name: `Edit ${name}` }).click();
  await page.locator('#tpl-vm-firmware').waitFor();
  assert.equal(await page.locator('#tpl-kind-vm').isChecked(), true);
  assert.equal(await page.locator('#tpl-vm-firmware').inputValue(), 'uefi');
  assert.equal(await page.locator('#tpl-vm-home_size').inputValue(), '512Mi');
  assert.equal(await page.locator('#tpl-image').inputValue(), '/var/lib/streamspace/vm/demo.qcow2');
  await page.getByRole('link', { name: 'Cancel' }).click();
  await row.getByRole('button', { name: `Delete ${name}` }).click();
  await page.locator('dialog.modal[open]').getByRole('button', { name: 'Delete template' }).click();
  await row.waitFor({ state: 'detached' });
});

test('templates: the desktop policy round-trips, and a folder outside the home is refused next to it', async () => {
  const name = `ui-${RUN}-desktop`;
  await page.getByRole('link', { name: 'Templates' }).click();
  await page.getByRole('link', { name: 'New template' }).click();
  await page.locator('#tpl-name').fill(name);
  await page.getByLabel('Image').fill('streamspace/desktop:local');
  await page.locator('#tpl-desktop-clipboard').selectOption('to_session');
  await page.locator('#tpl-desktop-file_transfer').selectOption('download');
  await page.locator('#tpl-desktop-max_upload').fill('2Gi');
  await page.locator('#tpl-desktop-recording').check();
  await page.locator('#tpl-desktop-sharing').uncheck();
  await page.locator('#tpl-desktop-files_folder').fill('../etc');
  await page.getByRole('button', { name: 'Create template' }).click();
  const folderError = page.locator('[data-field-error=tpl-desktop-files_folder]');
  await folderError.waitFor();
  assert.match(await folderError.innerText(), /not a folder under the home/);
  await page.locator('#tpl-desktop-files_folder').fill('inbox');
  await page.getByRole('button', { name: 'Create template' }).click();
  const row = page.locator(`tr[data-template="${name}"]`);
  await row.waitFor();

  await row.getByRole('link', { name: `Edit ${name}` }).click();
  await page.locator('#tpl-desktop-clipboard').waitFor();
  assert.equal(await page.locator('#tpl-desktop-clipboard').inputValue(), 'to_session');
  assert.equal(await page.locator('#tpl-desktop-file_transfer').inputValue(), 'download');
  assert.equal(await page.locator('#tpl-desktop-files_folder').inputValue(), 'inbox');
  assert.equal(await page.locator('#tpl-desktop-max_upload').inputValue(), '2Gi');
  assert.equal(await page.locator('#tpl-desktop-recording').isChecked(), true);
  assert.equal(await page.locator('#tpl-desktop-sharing').isChecked(), false);
  await page.locator('#sec-desktop').scrollIntoViewIfNeeded();
  await screenshot(page, '09d-admin-template-desktop');
  await page.getByRole('link', { name: 'Cancel' }).click();
  await row.getByRole('button', { name: `Delete ${name}` }).click();
  await page.locator('dialog.modal[open]').getByRole('button', { name: 'Delete template' }).click();
  await row.waitFor({ state: 'detached' });
});

test('templates: registry credentials are write-only, and a pre-pull shows each agent', async () => {
  const name = `ui-${RUN}-reg`;
  await page.getByRole('link', { name: 'Templates' }).click();
  await page.getByRole('link', { name: 'New template' }).click();
  await page.locator('#tpl-name').fill(name);
  await page.getByLabel('Image').fill('streamspace/desktop:local');
  await page.locator('#tpl-registry_auth-username').fill('robot');
  await page.locator('#tpl-registry_auth-password').fill('reg-s3cret');
  // The README shows these two fields (docs/screenshots/admin-template-registry.png).
  await page.locator('#tpl-registry_auth-password').evaluate((el) => el.scrollIntoView({ block: 'center' }));
  await screenshot(page, '09f-admin-template-registry');
  await page.getByRole('button', { name: 'Create template' }).click();
  const row = page.locator(`tr[data-template="${name}"]`);
  await row.waitFor();

  // Edited without typing the password: the username shows, the password
  // never does, and saving keeps it (the API would refuse a new template
  // without one, and says so next to the field).
  await row.getByRole('link', { name: `Edit ${name}` }).click();
  await page.locator('#tpl-registry_auth-username').waitFor();
  assert.equal(await page.locator('#tpl-registry_auth-username').inputValue(), 'robot');
  assert.equal(await page.locator('#tpl-registry_auth-password').inputValue(), '');
  assert.equal(await page.locator('#tpl-registry_auth-password').getAttribute('type'), 'password');
  assert.ok(!(await page.content()).includes('reg-s3cret'), 'the password is nowhere on the page');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await row.waitFor();

  // Pre-pull: the embedded agent has the image already.
  await row.getByRole('button', { name: `Pre-pull ${name}` }).click();
  const line = row.locator('[data-prepull-agent]');
  await line.first().waitFor();
  await eventually('the pre-pull is done', async () => /: done/.test(await line.first().innerText()));
  assert.match(await line.first().innerText(), /the image was here already/);
  await screenshot(page, '09c-admin-template-prepull');

  await row.getByRole('button', { name: `Delete ${name}` }).click();
  await page.locator('dialog.modal[open]').getByRole('button', { name: 'Delete template' }).click();
  await row.waitFor({ state: 'detached' });
});

test('admin pages raise no page errors and logout ends the session', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const status = await page.evaluate(() => fetch('/api/v1/users/me').then((r) => r.status));
  assert.equal(status, 401);
  page.assertNoErrors();
});
