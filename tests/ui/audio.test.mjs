// Session sound on the real binary, Docker and Chromium: tones of known
// frequencies are played in a desktop session (raw PCM into its PulseAudio
// through `docker exec -i … pacat`), travel as Opus through `/audio/{id}`,
// are decoded by the viewer's WebCodecs player, and the buffers it schedules
// for playback carry the same dominant frequency. The buffers are read by
// wrapping AudioBufferSourceNode.start before the app loads; nothing in the
// app is there for the test. Also prints the end-to-end latency (tone
// written → decoded sound due at the speakers), and checks mute and volume.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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
  screenshot,
  waitForDesktop,
} from './lib.mjs';

const carol = { username: `ui-${RUN}-listener`, password: 'carol-password-1' };
const RATE = 48_000;

let browser;
let page;
let adminApi;
let sessionId;
let player;

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  const r = await adminApi('POST', '/users', { ...carol, role: 'user' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  browser = await launchBrowser();
  page = await newPage(browser, { name: 'carol' });
  // Keeps a copy of every buffer the page schedules, with when it is due
  // at the speakers on the wall clock (the test's Date.now() is the same clock).
  await page.context().addInitScript(() => {
    window.__played = [];
    const start = AudioBufferSourceNode.prototype.start;
    AudioBufferSourceNode.prototype.start = function (when = 0, ...rest) {
      const ctx = this.context;
      const wall = performance.timeOrigin + performance.now();
      const lead = Math.max(0, when - ctx.currentTime);
      const output = (ctx.baseLatency || 0) + (ctx.outputLatency || 0);
      if (this.buffer) {
        const samples = this.buffer.getChannelData(0).slice();
        window.__played.push({ scheduled: wall, lead: lead * 1000, output: output * 1000, samples });
        if (window.__played.length > 2000) window.__played.splice(0, 500);
      }
      return start.call(this, when, ...rest);
    };
    // And the gain nodes it makes: the volume the user hears.
    window.__gains = [];
    const createGain = AudioContext.prototype.createGain;
    AudioContext.prototype.createGain = function () {
      const node = createGain.call(this);
      window.__gains.push(node);
      return node;
    };
  });
});

after(async () => {
  player?.stdin.end();
  player?.kill();
  await browser?.close();
  if (adminApi) {
    const all = await adminApi('GET', '/sessions?all=true');
    for (const s of all.body ?? []) if (s.user === carol.username) await adminApi('DELETE', `/sessions/${s.id}`);
  }
});

/** Stereo s16le PCM of a sine at half scale. */
function sine(hz, seconds) {
  const frames = Math.round(RATE * seconds);
  const pcm = Buffer.alloc(frames * 4);
  for (let i = 0; i < frames; i++) {
    const v = Math.round(Math.sin((2 * Math.PI * hz * i) / RATE) * 16_000);
    pcm.writeInt16LE(v, i * 4);
    pcm.writeInt16LE(v, i * 4 + 2);
  }
  return pcm;
}

const rms = (x) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);

test('the demo desktop template serves sound on an audio port', async () => {
  const templates = await adminApi('GET', '/templates');
  const desktop = templates.body.find((t) => t.name === 'desktop');
  assert.ok(desktop, 'the demo desktop template exists');
  assert.ok(
    desktop.ports.some((p) => p.protocol === 'audio' && p.port === 5911),
    `an audio port: ${JSON.stringify(desktop.ports)}`,
  );
});

test('the viewer plays the session sound: tones arrive with their frequency', async () => {
  await login(page, carol.username, carol.password);
  await page.locator('[data-template=desktop]').waitFor();
  await page.getByRole('button', { name: 'Launch Desktop', exact: true }).click();
  await page.waitForURL(/\/sessions\/[0-9a-f-]+$/);
  sessionId = new URL(page.url()).pathname.split('/').pop();
  await waitForDesktop(page);
  const control = page.getByTestId('audio');
  await control.waitFor();
  // A click in the page is the gesture browsers want before they play sound.
  await page.locator('[data-testid=screen] canvas').click();
  await eventually('the sound to play', async () => (await control.getAttribute('data-audio-state')) === 'playing');

  player = spawn('docker', ['exec', '-i', `streamspace-${sessionId}`, 'pacat', '--raw', '--format=s16le',
    '--rate=48000', '--channels=2', '--latency-msec=10'], { stdio: ['pipe', 'ignore', 'inherit'] });
  await new Promise((r) => setTimeout(r, 1500));
  const latencies = [];
  for (const hz of [440, 1250, 440, 1250, 2000]) {
    const written = Date.now();
    player.stdin.write(sine(hz, 0.5));
    const played = await eventually(`the ${hz} Hz tone to be decoded and scheduled`, async () => {
      const buffers = await page.evaluate(
        (since) => window.__played.filter((b) => b.scheduled >= since).map((b) => ({ ...b, samples: Array.from(b.samples) })),
        written,
      );
      const onset = buffers.findIndex((b) => rms(b.samples) > 0.05);
      // Wait for 300 ms of sound after the onset, then look at it.
      return onset >= 0 && buffers.length - onset >= 30 ? buffers.slice(onset) : null;
    }, { timeout: 10_000, interval: 100 });
    const first = played[0];
    latencies.push({ decoded: first.scheduled - written, lead: first.lead, output: first.output });
    // Skip the onset's first 50 ms; 200 ms gives 5 Hz bins.
    const samples = played.slice(5).flatMap((b) => b.samples).slice(0, 0.2 * RATE);
    const found = dominantFrequency(samples);
    assert.ok(Math.abs(found - hz) <= 5, `played ${hz} Hz, the viewer decoded ${found} Hz`);
    await new Promise((r) => setTimeout(r, 700));
  }
  const median = (f) => latencies.map(f).sort((x, y) => x - y)[2];
  const decoded = median((l) => l.decoded);
  const due = median((l) => l.decoded + l.lead + l.output);
  console.log(
    `audio latency (median of 5), tone written in the session → decoded in the page ${decoded.toFixed(0)} ms; ` +
      `+ jitter buffer ${median((l) => l.lead).toFixed(0)} ms + output ${median((l) => l.output).toFixed(0)} ms ` +
      `→ due at the speakers ${due.toFixed(0)} ms`,
  );
  assert.ok(due < 300, `median latency to the speakers ${due} ms`);
  await screenshot(page, '60-viewer-audio');
  page.assertNoErrors();
});

/** The gain of the viewer's newest gain node, once it is `want`. */
async function gainBecomes(want) {
  return eventually(`the sound's gain to be ${want}`, async () => {
    const gain = await page.evaluate(() => window.__gains.at(-1)?.gain.value);
    return gain !== undefined && Math.abs(gain - want) < 1e-3;
  });
}

test('mute and volume set the gain, and are kept across a reload', async () => {
  const control = page.getByTestId('audio');
  await page.getByRole('button', { name: 'Mute' }).click();
  assert.equal(await page.getByRole('button', { name: 'Unmute' }).getAttribute('aria-pressed'), 'true');
  await gainBecomes(0);
  await page.getByLabel('Volume').fill('0.3');
  // The volume is stored after the render the input causes: reload only then.
  await page.waitForFunction(() => localStorage.getItem('streamspace.viewer.volume') === '0.3');
  await page.reload();
  await waitForDesktop(page);
  await control.waitFor();
  assert.equal(await page.getByRole('button', { name: 'Unmute' }).getAttribute('aria-pressed'), 'true');
  assert.equal(await page.getByLabel('Volume').inputValue(), '0.3');
  await gainBecomes(0);
  await page.getByRole('button', { name: 'Unmute' }).click();
  assert.equal(await page.getByRole('button', { name: 'Mute' }).getAttribute('aria-pressed'), 'false');
  await gainBecomes(0.3);
  page.assertNoErrors();
});

test('a session without an audio port has no sound control', async () => {
  const name = `noaudio-${RUN}`;
  const created = await adminApi('POST', '/templates', {
    name,
    image: 'streamspace/desktop:local',
    ports: [{ name: 'vnc', port: 5901, protocol: 'vnc' }],
    platforms: ['docker'],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const api = await apiLogin(carol.username, carol.password);
  await api('DELETE', `/sessions/${sessionId}`);
  const s = await api('POST', '/sessions', { template: name });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  await page.goto(`/sessions/${s.body.id}`);
  await waitForDesktop(page);
  assert.equal(await page.getByTestId('audio').count(), 0, 'no sound control');
  page.assertNoErrors();
  await api('DELETE', `/sessions/${s.body.id}`);
});
