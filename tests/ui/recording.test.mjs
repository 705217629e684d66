// Recording and playback on the real binary, Docker and Chromium: a template
// that requires recording; its viewer shows the notice; the frame the live
// viewer showed at a moment is the frame the admin's player shows at the
// same moment of the recording; delete removes it.

import assert from 'node:assert/strict';
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
  typeIntoDesktop,
  waitForDesktop,
} from './lib.mjs';

const carol = { username: `ui-${RUN}-recorded`, password: 'carol-password-1' };
const TEMPLATE = `recorded-${RUN}`;

let browser;
let adminApi;
let sessionId;
/** The live viewer's pixels at `at` (Unix ms). */
let live;

/** The pixels of the canvas inside `selector`. */
function pixels(page, selector) {
  return page.evaluate((sel) => {
    const canvas = document.querySelector(`${sel} canvas`);
    if (!canvas || !canvas.width) return null;
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    return { width: canvas.width, height: canvas.height, data: Array.from(data) };
  }, selector);
}

/** How many pixels differ in colour between two frames of one size. */
function difference(a, b) {
  assert.equal(a.width, b.width, 'the same framebuffer width');
  assert.equal(a.height, b.height, 'the same framebuffer height');
  let differ = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    if (a.data[i] !== b.data[i] || a.data[i + 1] !== b.data[i + 1] || a.data[i + 2] !== b.data[i + 2]) differ++;
  }
  return differ;
}

/** A typed line of text changes a few hundred pixels; the same frame, none. */
const SAME = 10;
const CHANGED = 150;

/** Waits until the player's frame stands in `relation` to `other`; says how far it got if not. */
async function replayFrame(page, what, accept) {
  let last;
  try {
    return await eventually(
      what,
      async () => {
        const frame = await pixels(page, '[data-testid=replay]');
        if (!frame) return null;
        last = accept(frame);
        return last.ok ? frame : null;
      },
      { timeout: 20_000 },
    );
  } catch (err) {
    throw new Error(`${err.message}; last comparison: ${JSON.stringify(last?.detail)}`);
  }
}

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  const r = await adminApi('POST', '/users', { ...carol, role: 'user' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const desktop = (await adminApi('GET', '/templates')).body.find((t) => t.name === 'desktop');
  assert.ok(desktop, 'the demo desktop template');
  const template = {
    name: TEMPLATE,
    display_name: 'Recorded desktop',
    image: desktop.image,
    ports: [{ name: 'vnc', port: 5901, protocol: 'vnc' }],
    platforms: ['docker'],
    desktop: { recording: 'required' },
  };
  const created = await adminApi('POST', '/templates', template);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (adminApi) {
    if (sessionId) await adminApi('DELETE', `/sessions/${sessionId}`);
    await adminApi('DELETE', `/templates/${TEMPLATE}`);
  }
});

test('a recorded session’s viewer shows the notice, and its screen is recorded', async () => {
  const page = await newPage(browser, { name: 'carol' });
  await login(page, carol.username, carol.password);
  const created = await page.evaluate(async (template) => {
    const r = await fetch('/api/v1/sessions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ template }),
    });
    return r.json();
  }, TEMPLATE);
  sessionId = created.id;
  assert.ok(sessionId, JSON.stringify(created));
  await page.goto(`/sessions/${sessionId}`);
  await waitForDesktop(page);
  await page.getByTestId('recording-notice').waitFor();
  assert.match(await page.getByTestId('recording-notice').innerText(), /recorded/);

  await typeIntoDesktop(page, 'echo this frame is recorded');
  // Let the screen settle (the cursor, the last update), then take the frame.
  await new Promise((r) => setTimeout(r, 1500));
  const frame = await pixels(page, '[data-testid=screen]');
  live = { at: Date.now(), frame };
  await screenshot(page, '60-recording-live');
  // Something changes afterwards, so a player stuck at the end would differ.
  await new Promise((r) => setTimeout(r, 1000));
  await typeIntoDesktop(page, 'echo and this comes later');
  await new Promise((r) => setTimeout(r, 500));
  await page.close(); // The viewer closes: the recording ends.
});

test('the admin replays the recording: the frame at that moment matches the live one', async () => {
  assert.ok(live, 'the live frame of the previous test');
  const listed = await eventually('the finished recording', async () => {
    const r = await adminApi('GET', `/recordings?session_id=${sessionId}`);
    return r.body?.length === 1 && !r.body[0].recording ? r.body[0] : null;
  });
  const offset = live.at - Date.parse(listed.started_at);
  assert.ok(offset > 0 && offset < listed.duration_ms, `the moment is inside the recording: ${offset}`);

  const page = await newPage(browser, { name: 'admin' });
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.goto('/admin/recordings');
  await page.locator(`tr[data-recording="${listed.id}"]`).waitFor();
  await page.locator(`tr[data-recording="${listed.id}"]`).getByRole('button', { name: 'Play', exact: true }).click();
  const player = page.getByTestId('player');
  await player.waitFor();
  page.on('console', (m) => m.type() === 'error' && console.log(`admin page: ${m.text()}`));
  await eventually('the player to load the recording', async () => Number(await player.getAttribute('data-duration')) > 0);

  // Seek to the live frame's moment (the range input, as a user drags it).
  const seek = (ms) =>
    page.getByLabel('Position').evaluate((input, value) => {
      input.value = String(value);
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }, ms);
  await seek(offset);
  const same = (frame) => {
    const differ = difference(frame, live.frame);
    return { ok: differ <= SAME, detail: { differ_from_live: differ } };
  };
  const replayed = await replayFrame(page, 'the replayed frame to match the live one', same);
  await screenshot(page, '61-recording-playback');

  // The end of the recording shows the later command: a different frame.
  await seek(listed.duration_ms);
  await replayFrame(page, 'the end of the recording to show the later command', (frame) => {
    const differ = difference(frame, replayed);
    return { ok: differ >= CHANGED, detail: { differ_from_the_moment: differ } };
  });
  // Back to the moment: seeking backwards replays from the start.
  await seek(offset);
  await replayFrame(page, 'seeking back to show the live frame again', same);

  // Play at 4×, then pause: the position moves, then holds.
  await page.getByLabel('Speed').selectOption('4');
  await seek(0);
  await player.getByRole('button', { name: 'Play', exact: true }).click();
  await eventually('playback to advance', async () => Number(await player.getAttribute('data-position')) > 500);
  await player.getByRole('button', { name: 'Pause', exact: true }).click();
  const paused = Number(await player.getAttribute('data-position'));
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(Number(await player.getAttribute('data-position')), paused, 'paused holds the position');

  // Delete: gone from the list and the API, and audited.
  await player.getByRole('button', { name: 'Close player' }).click();
  await page.locator(`tr[data-recording="${listed.id}"]`).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await page.locator(`tr[data-recording="${listed.id}"]`).waitFor({ state: 'detached' });
  assert.equal((await adminApi('GET', `/recordings/${listed.id}`)).status, 404);
  const audit = await adminApi('GET', `/audit?kind=recording.&target=session:${sessionId}`);
  // The player's replay is a download: audited as who watched it.
  const kinds = [...new Set(audit.body.events.map((e) => e.kind))].sort();
  assert.deepEqual(kinds, ['recording.delete', 'recording.download', 'recording.start']);
  page.assertNoErrors?.();
});
