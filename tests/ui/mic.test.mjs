// The viewer's microphone into a desktop session, on the real binary, Docker
// and Chromium: Chromium's fake capture device plays an 880 Hz tone (a WAV
// this test writes), the viewer's Microphone toggle encodes it to Opus and
// sends it through `/audio/{id}/microphone`, and inside the session's
// container the default source (the virtual microphone's monitor, recorded
// with `docker exec … parec`) carries that tone. Turned off, the source is
// silent again. The image is STREAMSPACE_TEST_MIC_IMAGE (default the demo
// desktop image, streamspace/desktop:local).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  ADMIN_PASSWORD,
  RUN,
  apiLogin,
  dominantFrequency,
  eventually,
  launchBrowser,
  login,
  newPage,
  waitForDesktop,
} from './lib.mjs';

const dave = { username: `ui-${RUN}-dave`, password: 'dave-password-1' };
const IMAGE = process.env.STREAMSPACE_TEST_MIC_IMAGE ?? 'streamspace/desktop:local';
const RATE = 48_000;
const TONE_HZ = 880;

let browser;
let page;
let adminApi;
let sessionId;

/** A mono 16-bit WAV of a sine at half scale. */
function wav(hz, seconds) {
  const frames = Math.round(RATE * seconds);
  const out = Buffer.alloc(44 + frames * 2);
  out.write('RIFF', 0);
  out.writeUInt32LE(36 + frames * 2, 4);
  out.write('WAVEfmt ', 8);
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20); // PCM
  out.writeUInt16LE(1, 22); // mono
  out.writeUInt32LE(RATE, 24);
  out.writeUInt32LE(RATE * 2, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36);
  out.writeUInt32LE(frames * 2, 40);
  for (let i = 0; i < frames; i++) out.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / RATE) * 16_000), 44 + i * 2);
  return out;
}

/** About a second of the session's default source (the viewer's microphone), as floats. */
function recordInSession() {
  const raw = execFileSync('docker', ['exec', `streamspace-${sessionId}`, 'timeout', '1.2', 'parec', '--raw',
    '--format=s16le', '--rate=48000', '--channels=1', '--latency-msec=20'], { maxBuffer: 1 << 24 });
  const samples = [];
  for (let i = 0; i + 1 < raw.length; i += 2) samples.push(raw.readInt16LE(i) / 32768);
  return samples;
}

const rms = (x) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / Math.max(1, x.length));

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  const r = await adminApi('POST', '/users', { ...dave, role: 'user' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const dir = mkdtempSync(join(tmpdir(), 'streamspace-mic-'));
  const tone = join(dir, 'tone.wav');
  writeFileSync(tone, wav(TONE_HZ, 3));
  browser = await launchBrowser([
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${tone}`,
  ]);
  page = await newPage(browser, { name: 'dave' });
  await page.context().grantPermissions(['microphone']);
});

after(async () => {
  await browser?.close();
  if (adminApi) {
    const all = await adminApi('GET', '/sessions?all=true');
    for (const s of all.body ?? []) if (s.user === dave.username) await adminApi('DELETE', `/sessions/${s.id}`);
  }
});

test('the demo desktop template takes a microphone on a microphone port', async () => {
  const templates = await adminApi('GET', '/templates');
  const desktop = templates.body.find((t) => t.name === 'desktop');
  assert.ok(
    desktop.ports.some((p) => p.protocol === 'microphone' && p.port === 5912),
    `a microphone port: ${JSON.stringify(desktop.ports)}`,
  );
  assert.equal(desktop.desktop.microphone, true);
});

test('the viewer’s microphone reaches the session’s default source, and stops when turned off', async () => {
  const name = `mic-${RUN}`;
  const created = await adminApi('POST', '/templates', {
    name,
    image: IMAGE,
    ports: [
      { name: 'vnc', port: 5901, protocol: 'vnc' },
      { name: 'audio', port: 5911, protocol: 'audio' },
      { name: 'microphone', port: 5912, protocol: 'microphone' },
    ],
    platforms: ['docker'],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const api = await apiLogin(dave.username, dave.password);
  const s = await api('POST', '/sessions', { template: name });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  sessionId = s.body.id;
  await login(page, dave.username, dave.password);
  await page.goto(`/sessions/${sessionId}`);
  await waitForDesktop(page);

  const button = page.getByTestId('microphone');
  assert.equal(await button.getAttribute('aria-pressed'), 'false');
  assert.ok(rms(recordInSession()) < 1e-3, 'the session hears nothing before the microphone is on');
  await button.click();
  await eventually('the microphone to be on', async () => (await button.getAttribute('data-mic-state')) === 'on');
  const heard = await eventually('the tone in the session', async () => {
    const samples = recordInSession();
    return rms(samples) > 0.02 ? samples : null;
  }, { timeout: 15_000, interval: 200 });
  const found = dominantFrequency(heard.slice(0, 0.5 * RATE));
  assert.ok(Math.abs(found - TONE_HZ) <= 5, `the viewer sent ${TONE_HZ} Hz, the session heard ${found} Hz`);
  console.log(`microphone: sent ${TONE_HZ} Hz, the session's default source heard ${found} Hz at RMS ${rms(heard).toFixed(3)}`);

  await button.click();
  await eventually('the microphone to be off', async () => (await button.getAttribute('data-mic-state')) === 'off');
  await eventually('silence once the microphone is off', async () => rms(recordInSession()) < 1e-3, { timeout: 10_000 });
  page.assertNoErrors();
});
