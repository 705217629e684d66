// A web-app session (the webvnc image: noVNC served over HTTP inside the
// session) in Chromium: launched from the catalog it opens in the viewer's
// frame, its WebSocket draws the desktop; opened on its own host the app's
// scripts cannot use the control plane's login; hibernated, the viewer's
// Wake brings the app back.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, BASE, RUN, apiLogin, eventually, launchBrowser, login, newPage, screenshot } from './lib.mjs';

const dora = { username: `ui-${RUN}-dora`, password: 'dora-password-12' };
const TEMPLATE = `web-${RUN}`;
const APPS_DOMAIN = process.env.STREAMSPACE_APPS_DOMAIN ?? 'apps.localhost';

let browser;
let page;
let adminApi;
let doraApi;
let sessionId;

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  const user = await adminApi('POST', '/users', { ...dora, role: 'user' });
  assert.equal(user.status, 201, JSON.stringify(user.body));
  const template = await adminApi('POST', '/templates', {
    name: TEMPLATE,
    display_name: 'Web desktop test',
    category: 'Development',
    image: 'streamspace/webvnc:local',
    ports: [
      { name: 'web', port: 6080, protocol: 'http', path: '/' },
      { name: 'vnc', port: 5901, protocol: 'vnc' },
    ],
    resources: { cpu: '1', memory: '512Mi' },
  });
  assert.equal(template.status, 201, JSON.stringify(template.body));
  doraApi = await apiLogin(dora.username, dora.password);
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'dora' });
});

after(async () => {
  await browser?.close();
  if (adminApi) {
    const all = await adminApi('GET', '/sessions?all=true');
    for (const s of all.body ?? []) if (s.user === dora.username) await adminApi('DELETE', `/sessions/${s.id}`);
    await adminApi('DELETE', `/templates/${TEMPLATE}`);
  }
});

/** The noVNC canvas inside the app's frame, once it has pixels. */
async function appCanvas(frame) {
  await eventually(
    'the app draws the remote desktop',
    async () => {
      const size = await frame
        .locator('canvas')
        .first()
        .evaluate((c) => c.width * c.height)
        .catch(() => 0);
      return size > 0 ? size : null;
    },
    { timeout: 90_000 },
  );
}

test('Launch opens the web app in the viewer frame, and its WebSocket draws the desktop', async () => {
  await login(page, dora.username, dora.password);
  await page.getByRole('button', { name: 'Launch Web desktop test' }).click();
  await page.waitForURL(/\/sessions\/[0-9a-f-]+$/);
  sessionId = new URL(page.url()).pathname.split('/').pop();
  await page.getByTestId('app-frame').waitFor({ timeout: 90_000 });
  const frame = page.frameLocator('[data-testid=app-frame]');
  await appCanvas(frame);
  const src = await page.getByTestId('app-frame').evaluate((f) => f.contentWindow.location.pathname);
  assert.match(src, new RegExp(`^/apps/${sessionId}/6080/`), 'path mode on this origin');
  await page.getByRole('link', { name: 'New tab' }).waitFor();
  await screenshot(page, '40-viewer-web-app');
});

test("on its own host, the app's scripts cannot use the control plane's login", async () => {
  const own = await newPage(browser, { name: 'dora-app-host' });
  await login(own, dora.username, dora.password);
  await own.goto(`/api/v1/sessions/${sessionId}/apps/6080?mode=subdomain`);
  await own.waitForURL((url) => url.hostname === `${sessionId}--6080.${APPS_DOMAIN}`, { timeout: 30_000 });
  await own.locator('canvas').first().waitFor({ timeout: 60_000 });
  const probe = await own.evaluate(async (base) => {
    let api;
    try {
      const r = await fetch(`${base}/api/v1/sessions`, { credentials: 'include' });
      api = `read ${r.status}`;
    } catch {
      api = 'blocked';
    }
    return { api, cookies: document.cookie };
  }, BASE);
  assert.equal(probe.api, 'blocked', 'a cross-origin read of the API must fail');
  assert.ok(!probe.cookies.includes('streamspace'), `cookies the app's scripts see: ${probe.cookies}`);
  await screenshot(own, '41-web-app-own-host');
  await own.context().close();
});

test('a hibernated web app shows Wake, and waking brings the app back', async () => {
  const r = await doraApi('PUT', `/sessions/${sessionId}/state`, { state: 'hibernated' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await page.getByRole('button', { name: 'Wake' }).waitFor({ timeout: 60_000 });
  await page.getByRole('button', { name: 'Wake' }).click();
  await appCanvas(page.frameLocator('[data-testid=app-frame]'));
});
