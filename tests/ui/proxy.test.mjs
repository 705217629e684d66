// The UI behind real reverse proxies over TLS, as users deploy it.
// scripts/test-ui.sh starts Debian's nginx and Caddy in front of the server
// (tests/ui/proxies.sh):
// - recipe: deploy/nginx/streamspace.conf as the README shows it;
// - caddy: deploy/caddy/Caddyfile as the README shows it;
// - upgrade-only: what the README said before (TLS and `Upgrade` headers,
//   nginx buffering responses by default): the server's
//   `X-Accel-Buffering: no` must keep the event stream live;
// - always-buffers: a proxy that buffers whatever the server asks: the UI
//   must notice the silent stream, poll instead, and still open the viewer.
// In each, a user logs in, launches the desktop and sees it on the canvas,
// and the session list follows a change made elsewhere.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, RUN, apiLogin, launchBrowser, login, newPage, screenshot, waitForDesktop } from './lib.mjs';

const carol = { username: `ui-${RUN}-carol`, password: 'carol-password-1' };

const SETUPS = [
  { name: 'recipe', env: 'STREAMSPACE_PROXY_RECIPE', updates: 'live' },
  { name: 'caddy', env: 'STREAMSPACE_PROXY_CADDY', updates: 'live' },
  { name: 'upgrade-only', env: 'STREAMSPACE_PROXY_UPGRADE_ONLY', updates: 'live' },
  { name: 'always-buffers', env: 'STREAMSPACE_PROXY_ALWAYS_BUFFERS', updates: 'polling' },
];

function proxyUrl(env) {
  const url = process.env[env];
  if (!url) throw new Error(`${env} is not set: run the tests through scripts/test-ui.sh BINARY`);
  return url;
}

let browser;
let adminApi;

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  const r = await adminApi('POST', '/users', { ...carol, role: 'user' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (adminApi) {
    const all = await adminApi('GET', '/sessions?all=true');
    for (const s of all.body ?? []) if (s.user === carol.username) await adminApi('DELETE', `/sessions/${s.id}`);
  }
});

for (const setup of SETUPS) {
  test(`behind a proxy (${setup.name}): launch shows the desktop, lists update (${setup.updates})`, async () => {
    const page = await newPage(browser, { name: `carol-${setup.name}`, baseURL: proxyUrl(setup.env) });
    await login(page, carol.username, carol.password);
    await page.getByRole('button', { name: 'Launch Desktop', exact: true }).click();
    await page.waitForURL(/\/sessions\/[0-9a-f-]+$/);
    const id = new URL(page.url()).pathname.split('/').pop();
    await waitForDesktop(page, { timeout: 60_000 });
    await screenshot(page, `30-proxy-${setup.name}-viewer`);

    await page.getByRole('link', { name: 'Back to my sessions' }).click();
    const live = page.getByTestId('live');
    await live.and(page.locator(`[data-state=${setup.updates}]`)).waitFor({ timeout: 20_000 });
    // Ended elsewhere: only the event stream, or polling, can tell this page.
    const ended = await adminApi('DELETE', `/sessions/${id}`);
    assert.ok(ended.status < 300, JSON.stringify(ended.body));
    await page.locator(`tr[data-session="${id}"]`).waitFor({ state: 'detached', timeout: 45_000 });
    await screenshot(page, `31-proxy-${setup.name}-list`);
    page.assertNoErrors();
    await page.context().close();
  });
}

test('a broken event stream: the UI polls, and goes live again once the stream works', async () => {
  const page = await newPage(browser, { name: 'carol-broken-stream' });
  await page.route('**/api/v1/events', (route) => route.abort('connectionreset'));
  await login(page, carol.username, carol.password);
  const live = page.getByTestId('live');
  await live.and(page.locator('[data-state=polling]')).waitFor({ timeout: 10_000 });
  await screenshot(page, '32-events-polling');
  // The browser retries the stream by itself; the next attempt gets through.
  await page.unroute('**/api/v1/events');
  await live.and(page.locator('[data-state=live]')).waitFor({ timeout: 15_000 });
  page.assertNoErrors();
  await page.context().close();
});

test('the README shows the recipes these tests run, as they are', () => {
  const read = (file) => fs.readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');
  const readme = read('README.md');
  for (const [lang, file] of [
    ['nginx', 'deploy/nginx/streamspace.conf'],
    ['caddy', 'deploy/caddy/Caddyfile'],
  ]) {
    const block = readme.match(new RegExp(`\`\`\`${lang}\n([\\s\\S]*?)\`\`\``))?.[1];
    assert.equal(block, read(file), `the README's ${lang} block is ${file}`);
  }
});

test('behind nginx (recipe): plain HTTP redirects to HTTPS', async () => {
  const res = await fetch(`${proxyUrl('STREAMSPACE_PROXY_REDIRECT')}/sessions`, { redirect: 'manual' });
  assert.equal(res.status, 301);
  assert.match(res.headers.get('location'), /^https:\/\/127\.0\.0\.1\/sessions$/);
});

test('behind nginx (recipe): an agent connects through the proxy', async () => {
  const base = proxyUrl('STREAMSPACE_PROXY_RECIPE');
  const minted = await adminApi('POST', '/agents/enrollment-tokens', {});
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  const name = `ui-${RUN}-via-nginx`;
  const res = await fetch(`${base}/api/v1/agents/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ enrollment_token: minted.body.token, name, platform: 'docker' }),
  });
  const registered = await res.json();
  assert.equal(res.status, 201, JSON.stringify(registered));
  try {
    const hello = { type: 'hello', protocol_version: 1, agent_version: 'test', platform: 'docker' };
    const answer = JSON.parse(await firstMessage(base, registered.secret, JSON.stringify(hello)));
    assert.equal(answer.type, 'welcome', JSON.stringify(answer));
    assert.equal(answer.agent_id, registered.agent_id);
  } finally {
    // Gone once the control plane sees the connection closed.
    const deadline = Date.now() + 20_000;
    while ((await adminApi('DELETE', `/agents/${registered.agent_id}`)).status >= 300 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
});

/**
 * Opens the agents' WebSocket through the proxy with a bearer secret (which
 * a browser cannot send), sends one text message and resolves with the first
 * text message back. Just enough of RFC 6455 for that.
 */
function firstMessage(base, secret, text) {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL('/api/v1/agents/connect', base), {
      headers: {
        Authorization: `Bearer ${secret}`,
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
      },
    });
    req.setTimeout(15_000, () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', reject);
    req.on('response', (res) => reject(new Error(`no upgrade: HTTP ${res.statusCode}`)));
    req.on('upgrade', (_res, socket, head) => {
      let received = head;
      socket.on('error', reject);
      socket.on('data', (chunk) => {
        received = Buffer.concat([received, chunk]);
        try {
          const message = textFrame(received);
          if (message === null) return;
          socket.destroy();
          resolve(message);
        } catch (err) {
          socket.destroy();
          reject(err);
        }
      });
      socket.write(maskedTextFrame(text));
    });
    req.end();
  });
}

/** A client's text frame: masked, payload under 64 KiB. */
function maskedTextFrame(text) {
  const payload = Buffer.from(text);
  const mask = crypto.randomBytes(4);
  const length =
    payload.length < 126 ? [0x80 | payload.length] : [0x80 | 126, payload.length >> 8, payload.length & 0xff];
  return Buffer.concat([Buffer.from([0x81, ...length]), mask, payload.map((b, i) => b ^ mask[i % 4])]);
}

/** The first frame's payload as text once it is complete (server frames are unmasked), else null. */
function textFrame(buf) {
  if (buf.length < 2) return null;
  let length = buf[1] & 0x7f;
  let start = 2;
  if (length === 126) {
    if (buf.length < 4) return null;
    length = buf.readUInt16BE(2);
    start = 4;
  } else if (length === 127) {
    if (buf.length < 10) return null;
    length = Number(buf.readBigUInt64BE(2));
    start = 10;
  }
  if ((buf[0] & 0x0f) !== 1) throw new Error(`the first frame is not text (opcode ${buf[0] & 0x0f})`);
  return buf.length < start + length ? null : buf.subarray(start, start + length).toString();
}
