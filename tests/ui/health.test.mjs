// Platform health on the agents page: an agent whose platform health check
// fails shows `degraded` with the reason (its own component, agent-health),
// and `online` without it once its platform answers again. The agent here
// is a small protocol-level one (enrolled through the API, speaking the
// control channel over a WebSocket this file frames itself: Node 20 has no
// WebSocket client that sends headers), so no engine has to be broken.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, BASE, RUN, apiLogin, eventually, launchBrowser, login, newPage, screenshot } from './lib.mjs';

let browser;
let page;
let agent;

/** One masked text frame (clients must mask), of any length. */
function textFrame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, 0x80 | n]) : Buffer.from([0x81, 0x80 | 126, n >> 8, n & 0xff]);
  assert.ok(n < 65_536, 'messages here are small');
  const mask = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, body]);
}

/** Opens the agent's control channel; resolves to its socket. */
function connect(secret) {
  const url = new URL('/api/v1/agents/connect', BASE);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      headers: {
        Authorization: `Bearer ${secret}`,
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      },
    });
    req.on('upgrade', (_res, socket) => {
      socket.on('data', () => {}); // welcome, pings: nothing to answer
      resolve(socket);
    });
    req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
    req.on('error', reject);
    req.end();
  });
}

/** A fake agent that heartbeats every second with the health it is given. */
async function fakeAgent(api, name) {
  const { body: token } = await api('POST', '/agents/enrollment-tokens', {});
  const res = await fetch(`${BASE}/api/v1/agents/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ enrollment_token: token.token, name, platform: 'docker', capacity: { max_sessions: 1 } }),
  });
  const registered = await res.json();
  assert.equal(res.status, 201, JSON.stringify(registered));
  const socket = await connect(registered.secret);
  const send = (message) => socket.write(textFrame(JSON.stringify(message)));
  send({ type: 'hello', protocol_version: 1, agent_version: 'ui-test', platform: 'docker', capacity: { max_sessions: 1 } });
  send({ type: 'inventory', sessions: [] });
  let health = {};
  const beat = () => send({ type: 'heartbeat', metrics: { sessions_running: 0 }, health });
  const timer = setInterval(beat, 1000);
  return {
    setHealth(h) {
      health = h;
      beat();
    },
    close() {
      clearInterval(timer);
      socket.destroy();
    },
  };
}

before(async () => {
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'health' });
});

after(async () => {
  agent?.close();
  await browser?.close();
});

test('a degraded agent shows its reason on the agents page, and recovers', async () => {
  const api = await apiLogin('admin', ADMIN_PASSWORD);
  const name = `ui-${RUN}-frozen`;
  agent = await fakeAgent(api, name);
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'Agents' }).click();
  const card = page.locator(`[data-agent="${name}"]`);
  await card.waitFor();
  await eventually(`agent ${name} online`, async () => (await card.getAttribute('data-status')) === 'online');
  assert.equal(await card.getByTestId('agent-health').count(), 0, 'a healthy agent has no problem shown');

  const problem = 'the docker platform did not answer its health check within 2s';
  agent.setHealth({ problem });
  await eventually(`agent ${name} degraded`, async () => (await card.getAttribute('data-status')) === 'degraded');
  const shown = card.getByTestId('agent-health');
  await shown.waitFor();
  assert.match(await shown.innerText(), /did not answer its health check within 2s/);
  assert.match(await card.getByTestId('agent-status').innerText(), /degraded/);
  await card.scrollIntoViewIfNeeded();
  await screenshot(page, 'agent-degraded');

  agent.setHealth({});
  await eventually(`agent ${name} online again`, async () => (await card.getAttribute('data-status')) === 'online');
  await shown.waitFor({ state: 'detached' });
});
