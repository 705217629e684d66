// The viewer fits the desktop to the window and carries the clipboard, on
// the real binary, Docker and the demo desktop image:
// - remote resize: the browser window's size becomes the X screen's size
//   (read from the canvas, which has the framebuffer's pixels, and from the
//   X server inside the container with xwd); HiDPI asks for device pixels;
//   a server that refuses is scaled to the window instead;
// - clipboard with the permissions granted: browser → session (read in the
//   container with xclip) and session → browser (set with xclip, read from
//   the page's clipboard);
// - a template whose clipboard policy is off: no clipboard in the viewer, and
//   the session's Xvnc refuses cut text even from a client that sends it;
//   from_session: copying out works, pasting in does not;
// - the control plane's own part, apart from Xvnc's: behind an echo server
//   (images/echo) every byte the control plane lets through comes back, so
//   a raw client on /vnc sees that cut text towards the session (plain or
//   extended) is dropped when the policy forbids it, and only then.
//
// STREAMSPACE_TEST_DESKTOP_IMAGE picks the image (default the demo one).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import {
  ADMIN_PASSWORD,
  BASE,
  LAPTOP,
  RUN,
  apiLogin,
  eventually,
  launchBrowser,
  login,
  screenshot,
  typeIntoDesktop,
  waitForDesktop,
} from './lib.mjs';

const run = promisify(execFile);
const IMAGE = process.env.STREAMSPACE_TEST_DESKTOP_IMAGE ?? 'streamspace/desktop:local';
const vera = { username: `ui-${RUN}-vera`, password: 'vera-password-12' };
// One template per behaviour: the default policy, clipboard off, and a desktop that refuses resizing.
const TEMPLATES = {
  both: `viewer-both-${RUN}`,
  off: `viewer-off-${RUN}`,
  from: `viewer-from-${RUN}`,
  fixed: `viewer-fixed-${RUN}`,
  echoBoth: `viewer-echo-both-${RUN}`,
  echoOff: `viewer-echo-off-${RUN}`,
};
const ECHO_IMAGE = 'streamspace/echo:local';

let adminApi;
let veraApi;
let browser;

function template(name, extra) {
  return {
    name,
    display_name: `Viewer test ${name}`,
    category: 'Development',
    image: IMAGE,
    ports: [{ name: 'vnc', port: 5901, protocol: 'vnc' }],
    resources: { cpu: '1', memory: '512Mi' },
    ...extra,
  };
}

before(async () => {
  adminApi = await apiLogin('admin', ADMIN_PASSWORD);
  const user = await adminApi('POST', '/users', { ...vera, role: 'user' });
  assert.equal(user.status, 201, JSON.stringify(user.body));
  const echo = (clipboard) => ({ image: ECHO_IMAGE, ports: [{ name: 'vnc', port: 5900, protocol: 'vnc' }], desktop: { clipboard } });
  const bodies = [
    template(TEMPLATES.both, { desktop: { clipboard: 'both' } }),
    template(TEMPLATES.off, { desktop: { clipboard: 'off' } }),
    template(TEMPLATES.from, { desktop: { clipboard: 'from_session' } }),
    template(TEMPLATES.fixed, { env: { VNC_RESIZE: '0' } }),
    template(TEMPLATES.echoBoth, echo('both')),
    template(TEMPLATES.echoOff, echo('off')),
  ];
  await ensureEchoImage();
  await ensureDesktopImage();
  for (const body of bodies) {
    const r = await adminApi('POST', '/templates', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  veraApi = await apiLogin(vera.username, vera.password);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (adminApi) {
    const all = await adminApi('GET', '/sessions?all=true');
    for (const s of all.body ?? []) if (s.user === vera.username) await adminApi('DELETE', `/sessions/${s.id}`);
    for (const name of Object.values(TEMPLATES)) await adminApi('DELETE', `/templates/${name}`);
  }
});

/** The echo image of the tunnel benchmarks, built here (about 4 s) when the engine lacks it. */
async function ensureEchoImage() {
  try {
    await run('docker', ['image', 'inspect', ECHO_IMAGE]);
  } catch {
    await run('bash', ['../../images/echo/build.sh', ECHO_IMAGE], { maxBuffer: 1 << 24 });
  }
}

/**
 * The desktop image, rebuilt (about 20 s) when the engine's copy predates the
 * clipboard policy (its label says the image honours STREAMSPACE_CLIPBOARD).
 */
async function ensureDesktopImage() {
  const { stdout } = await run('docker', [
    'image',
    'inspect',
    '-f',
    '{{index .Config.Labels "io.streamspace.clipboard-env"}}',
    IMAGE,
  ]).catch(() => ({ stdout: '' }));
  if (stdout.trim() !== 'STREAMSPACE_CLIPBOARD') {
    await run('bash', ['../../images/desktop/build.sh', IMAGE], { maxBuffer: 1 << 24 });
  }
}

/** Starts a session of `name` as vera and returns its id. */
async function launch(name) {
  const r = await veraApi('POST', '/sessions', { template: name });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

/** A page in a context of its own (lib's newPage, plus a pixel ratio), failing on uncaught errors. */
async function viewerPage({ viewport = LAPTOP, deviceScaleFactor = 1, name }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor, baseURL: BASE });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(`${name}: ${err.message}`));
  page.assertNoErrors = () => assert.deepEqual(errors, [], 'uncaught errors in the page');
  return page;
}

/** A signed-in page of vera's with the clipboard permissions granted, showing session `id`. */
async function openViewer(id, { viewport, deviceScaleFactor, name = 'vera' } = {}) {
  const page = await viewerPage({ viewport, deviceScaleFactor, name });
  await login(page, vera.username, vera.password);
  await page.goto(`/sessions/${id}`);
  await waitForDesktop(page);
  return page;
}

async function containerOf(id) {
  const { stdout } = await run('docker', ['ps', '-q', '--filter', `label=io.streamspace.session-id=${id}`]);
  const container = stdout.trim();
  assert.ok(container && !container.includes('\n'), `one container for session ${id}: ${JSON.stringify(stdout)}`);
  return container;
}

/** The X screen's size inside the container, from the header of an xwd dump of the root window. */
async function xScreenSize(container) {
  const { stdout } = await run('docker', ['exec', container, 'sh', '-c', 'xwd -root -display :1 | head -c 32'], {
    encoding: 'buffer',
  });
  // XWDFileHeader: eight big-endian CARD32s; pixmap_width and pixmap_height are the 5th and 6th.
  return { width: stdout.readUInt32BE(16), height: stdout.readUInt32BE(20) };
}

/** The session's CLIPBOARD selection as an X client in it sees it ('' when nobody owns it). */
async function sessionClipboard(container) {
  try {
    const { stdout } = await run('docker', ['exec', container, 'xclip', '-o', '-selection', 'clipboard', '-display', ':1']);
    return stdout;
  } catch {
    return '';
  }
}

/** Copies `text` in the session, as an app in it would (xclip keeps the selection until someone else takes it). */
async function copyInSession(container, text) {
  await run('docker', [
    'exec',
    '-d',
    container,
    'sh',
    '-c',
    `printf %s '${text}' | xclip -i -selection clipboard -display :1`,
  ]);
}

/** The canvas's size (the framebuffer's pixels) and the screen element's size in CSS pixels. */
function sizes(page) {
  return page.evaluate(() => {
    const screen = document.querySelector('[data-testid=screen]');
    const canvas = screen.querySelector('canvas');
    const r = screen.getBoundingClientRect();
    return { fb: { width: canvas.width, height: canvas.height }, css: { width: r.width, height: r.height } };
  });
}

/** Waits until the framebuffer is the screen element's size times `ratio`, and returns it. */
async function framebufferFollows(page, ratio = 1) {
  return eventually(`the framebuffer to take the window's size (×${ratio})`, async () => {
    const { fb, css } = await sizes(page);
    const want = { width: Math.floor(css.width * ratio), height: Math.floor(css.height * ratio) };
    return fb.width === want.width && fb.height === want.height ? fb : null;
  });
}

/**
 * Speaks RFB straight to the session's Xvnc (its port published on
 * 127.0.0.1), like any VNC client: sends ClientCutText with `text`, then a
 * framebuffer update request, and once the update arrives (Xvnc handles a
 * client's messages in order, so it has handled the cut text) returns what
 * `meanwhile` returns. Xvnc keeps a client's clipboard only while that client
 * is connected, so `meanwhile` runs before the client leaves.
 */
async function cutTextToXvnc(container, text, meanwhile) {
  const { stdout } = await run('docker', ['port', container, '5901/tcp']);
  const port = Number(stdout.trim().split('\n')[0].split(':').pop());
  const socket = net.connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  let wake = () => {};
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    wake();
  });
  const read = async (n) => {
    while (buf.length < n) await new Promise((r) => (wake = r));
    const out = buf.subarray(0, n);
    buf = buf.subarray(n);
    return out;
  };
  try {
    await read(12);
    socket.write('RFB 003.008\n');
    const types = await read((await read(1))[0]);
    assert.ok(types.includes(1), 'the session offers security type None');
    socket.write(Buffer.from([1]));
    assert.equal((await read(4)).readUInt32BE(0), 0, 'security handshake');
    socket.write(Buffer.from([1])); // ClientInit, shared
    const init = await read(24);
    await read(init.readUInt32BE(20)); // the desktop's name
    const data = Buffer.from(text, 'latin1');
    const cut = Buffer.alloc(8);
    cut.writeUInt8(6, 0);
    cut.writeUInt32BE(data.length, 4);
    const update = Buffer.from([3, 0, 0, 0, 0, 0, 0, 1, 0, 1]); // non-incremental, 1×1 at 0,0
    socket.write(Buffer.concat([cut, data, update]));
    for (;;) {
      const type = (await read(1))[0];
      if (type === 0) return await meanwhile(); // FramebufferUpdate: the cut text is behind us
      if (type === 2) continue; // Bell
      assert.equal(type, 3, `a server message this client knows (got type ${type})`);
      const head = await read(7);
      await read(head.readUInt32BE(3)); // ServerCutText
    }
  } finally {
    socket.destroy();
  }
}

test('remote resize: the desktop takes the browser window’s size, in the stream and in the X server', async () => {
  const id = await launch(TEMPLATES.both);
  const page = await openViewer(id);
  const container = await containerOf(id);
  await page.getByRole('button', { name: 'Resize', pressed: true }).waitFor();
  const first = await framebufferFollows(page);
  assert.deepEqual(await xScreenSize(container), first, 'Xvnc’s screen is the framebuffer the browser shows');
  await screenshot(page, 'viewer-01-remote-resize');

  await page.setViewportSize({ width: 1000, height: 640 });
  const smaller = await framebufferFollows(page);
  assert.ok(smaller.width < first.width && smaller.height < first.height, `${JSON.stringify(smaller)} after shrinking`);
  await eventually('the X screen to follow', async () => {
    const x = await xScreenSize(container);
    return x.width === smaller.width && x.height === smaller.height;
  });
  await page.locator(`[data-testid=screen][data-remote-size="${smaller.width}x${smaller.height}"]`).waitFor();
  assert.equal(await page.getByTestId('resize-refused').count(), 0);

  // Fit and 1:1 leave the desktop's size alone.
  // Each mode is in force (its button pressed) before the window changes:
  // a resize that comes first is the previous mode's to handle.
  await page.getByRole('button', { name: 'Fit' }).click();
  await page.getByRole('button', { name: 'Fit', pressed: true }).waitFor();
  await page.setViewportSize({ width: 1200, height: 760 });
  await page.getByRole('button', { name: '1:1' }).click();
  await page.getByRole('button', { name: '1:1', pressed: true }).waitFor();
  assert.deepEqual((await sizes(page)).fb, smaller, 'fit and 1:1 do not resize the desktop');
  await page.getByRole('button', { name: 'Resize' }).click();
  await framebufferFollows(page);
  page.assertNoErrors();
  await page.context().close();
});

test('HiDPI: with two device pixels per CSS pixel, the desktop gets device pixels and stays sharp', async () => {
  const id = (await veraApi('GET', '/sessions')).body.find((s) => s.template === TEMPLATES.both).id;
  const page = await openViewer(id, { viewport: { width: 900, height: 600 }, deviceScaleFactor: 2, name: 'vera-hidpi' });
  const soft = await framebufferFollows(page, 1);
  await page.getByRole('button', { name: 'HiDPI' }).click();
  const sharp = await framebufferFollows(page, 2);
  assert.ok(sharp.width >= soft.width * 2 - 1, `${JSON.stringify(sharp)} is twice ${JSON.stringify(soft)}`);
  // Scaled down by the ratio: the canvas still fits the screen element.
  const box = await page.locator('[data-testid=screen] canvas').boundingBox();
  const area = await page.getByTestId('screen').boundingBox();
  assert.ok(box.width <= area.width + 1 && box.height <= area.height + 1, 'the sharp desktop fits the window');
  await typeIntoDesktop(page, 'echo sharp');
  await screenshot(page, 'viewer-02-hidpi');
  await page.getByRole('button', { name: 'HiDPI' }).click();
  await framebufferFollows(page, 1);
  page.assertNoErrors();
  await page.context().close();
});

test('a desktop that refuses to resize is scaled to the window, and the viewer says so', async () => {
  const id = await launch(TEMPLATES.fixed);
  const page = await openViewer(id, { viewport: { width: 1000, height: 640 }, name: 'vera-fixed' });
  await page.locator('[data-testid=screen][data-resize-refused=true]').waitFor({ timeout: 10_000 });
  await page.getByTestId('resize-refused').waitFor();
  const { fb, css } = await sizes(page);
  assert.deepEqual(fb, { width: 1280, height: 800 }, 'the image’s own geometry stays');
  const box = await page.locator('[data-testid=screen] canvas').boundingBox();
  assert.ok(box.width <= css.width + 1 && box.height <= css.height + 1, 'scaled down into the window');
  assert.ok(box.width < fb.width, 'scaled, not clipped');
  await screenshot(page, 'viewer-03-resize-refused');
  page.assertNoErrors();
  await page.context().close();
  await veraApi('DELETE', `/sessions/${id}`);
});

test('clipboard both ways: the browser’s text reaches the session, the session’s reaches the browser', async () => {
  const id = (await veraApi('GET', '/sessions')).body.find((s) => s.template === TEMPLATES.both).id;
  const page = await openViewer(id, { name: 'vera-clipboard' });
  const container = await containerOf(id);

  // Copied on this computer (another tab), then back to the viewer.
  const mine = `copied in the browser ✓ naïve 你好 ${RUN}`;
  const other = await page.context().newPage();
  await other.goto('/');
  await other.evaluate((t) => navigator.clipboard.writeText(t), mine);
  await page.bringToFront();
  await page.evaluate(() => window.dispatchEvent(new Event('focus')));
  await eventually('the session’s clipboard to hold the browser’s text', async () => (await sessionClipboard(container)) === mine);

  // Copied in the session: lands on this computer's clipboard by itself.
  const theirs = `copied in the session ✓ naïve 你好 ${RUN}`;
  await copyInSession(container, theirs);
  await eventually('the browser’s clipboard to hold the session’s text', async () =>
    (await page.evaluate(() => navigator.clipboard.readText())) === theirs,
  );
  await page.getByRole('button', { name: 'Clipboard' }).click();
  assert.equal(await page.getByLabel('From the session').inputValue(), theirs);
  await page.getByTestId('clipboard-note').filter({ hasText: 'Copy and paste work directly' }).waitFor();
  await screenshot(page, 'viewer-04-clipboard');

  page.assertNoErrors();
  await page.context().close();
});

test('clipboard policy off: no clipboard in the viewer, and the session refuses cut text from any client', async () => {
  const id = await launch(TEMPLATES.off);
  const session = await veraApi('GET', `/sessions/${id}`);
  assert.equal(session.body.desktop?.clipboard, 'off', 'the session view carries the policy');
  const page = await openViewer(id, { name: 'vera-off' });
  const container = await containerOf(id);
  assert.equal(await page.getByRole('button', { name: 'Clipboard' }).count(), 0, 'no clipboard button');

  // The page's clipboard holds text and the page gets the focus: nothing is sent.
  const mine = `must stay in the browser ${RUN}`;
  await page.evaluate((t) => navigator.clipboard.writeText(t), mine);
  await page.evaluate(() => window.dispatchEvent(new Event('focus')));
  // Keys travel the same stream after whatever the focus sent: once typed text shows, it has arrived.
  await typeIntoDesktop(page, 'echo after the focus');
  assert.equal(await sessionClipboard(container), '', 'the session’s clipboard is empty');

  // A VNC client that sends cut text anyway, straight to the session's Xvnc:
  // refused here, taken by the session whose policy allows it.
  const raw = `sent by a raw client ${RUN}`;
  const refused = await cutTextToXvnc(container, raw, () => sessionClipboard(container));
  assert.equal(refused, '', 'Xvnc refused the cut text (-AcceptCutText=0)');
  const both = (await veraApi('GET', '/sessions')).body.find((s) => s.template === TEMPLATES.both);
  const allowed = await containerOf(both.id);
  assert.equal(await cutTextToXvnc(allowed, raw, () => sessionClipboard(allowed)), raw, 'the same client, allowed');

  // The session's copies stay in the session.
  await copyInSession(container, `must stay in the session ${RUN}`);
  await eventually('xclip to own the session’s clipboard', async () => (await sessionClipboard(container)) !== '');
  await typeIntoDesktop(page, 'echo after the copy');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), mine, 'the browser’s clipboard unchanged');
  await screenshot(page, 'viewer-05-clipboard-off');
  page.assertNoErrors();
  await page.context().close();
});

test('clipboard policy from_session: the session’s text reaches the browser, the browser’s does not reach the session', async () => {
  const id = await launch(TEMPLATES.from);
  const page = await openViewer(id, { name: 'vera-from' });
  const container = await containerOf(id);
  // Beyond Latin-1: RFB's plain cut text cannot carry it, its extended clipboard (UTF-8) can.
  const theirs = `copied out of the session ✓ naïve 你好 ${RUN}`;
  await copyInSession(container, theirs);
  await eventually('the browser’s clipboard to hold the session’s text', async () =>
    (await page.evaluate(() => navigator.clipboard.readText())) === theirs,
  );
  await page.getByRole('button', { name: 'Clipboard' }).click();
  assert.equal(await page.getByLabel('Send to the session').count(), 0, 'no way to send in the panel');
  assert.equal(await page.getByLabel('From the session').inputValue(), theirs);
  await screenshot(page, 'viewer-06-clipboard-from-session');

  const mine = `must not reach the session ${RUN}`;
  await page.evaluate((t) => navigator.clipboard.writeText(t), mine);
  await page.evaluate(() => window.dispatchEvent(new Event('focus')));
  await typeIntoDesktop(page, 'echo after the focus');
  assert.equal(await sessionClipboard(container), theirs, 'the session keeps its own text');
  page.assertNoErrors();
  await page.context().close();
  await veraApi('DELETE', `/sessions/${id}`);
});

/** Bytes of the RFB client messages the control-plane test sends. */
const u32 = (n) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const ascii = (t) => [...Buffer.from(t, 'latin1')];
const RFB = {
  handshake: [...ascii('RFB 003.008\n'), 1, 0], // version, security None, ClientInit not shared
  cutText: (t) => [6, 0, 0, 0, ...u32(ascii(t).length), ...ascii(t)],
  // Extended clipboard (negative length): flags = action | text format.
  extended: (action, body = []) => [6, 0, 0, 0, ...u32(-(4 + body.length)), ...u32(action | 1), ...body],
  key: [4, 1, 0, 0, 0, 0, 0, 0x61], // 'a' down: the end marker
};
const CAPS = 1 << 24;
const REQUEST = 1 << 25;
const NOTIFY = 1 << 27;
const PROVIDE = 1 << 28;

/**
 * In the signed-in page: a raw RFB client on /vnc/{id} (the browser sends
 * the login cookie) that sends `bytes` after the server's banner and returns
 * everything that came back, up to the end marker.
 */
function echoThroughVnc(page, id, bytes) {
  return page.evaluate(
    async ({ id, bytes, marker }) => {
      const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/vnc/${id}`, ['binary']);
      ws.binaryType = 'arraybuffer';
      const got = [];
      const done = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no end marker within 15 s; got ${got.length} bytes`)), 15_000);
        ws.onmessage = (e) => {
          got.push(...new Uint8Array(e.data));
          if (got.length === 12) ws.send(new Uint8Array(bytes)); // after the banner
          if (got.slice(-marker.length).join() === marker.join() && got.length > 12) {
            clearTimeout(timer);
            resolve(got);
          }
        };
        ws.onclose = () => reject(new Error(`closed after ${got.length} bytes`));
      });
      try {
        return await done;
      } finally {
        ws.onclose = null;
        ws.close();
      }
    },
    { id, bytes, marker: RFB.key },
  );
}

test('the control plane drops cut text towards the session when the policy forbids it, and only then', async () => {
  const page = await viewerPage({ name: 'vera-echo' });
  await login(page, vera.username, vera.password);
  const secret = `cut text ${RUN}`;
  const messages = [
    ...RFB.cutText(secret),
    ...RFB.extended(CAPS, u32(1 << 16)),
    ...RFB.extended(REQUEST),
    ...RFB.extended(NOTIFY),
    ...RFB.extended(PROVIDE, [0x78, 0x9c, 3, 0, 0, 0, 0, 1]),
    ...RFB.key,
  ];
  const banner = ascii('RFB 003.008\n');
  for (const [name, expected] of [
    // Nothing parsed: every byte comes back as sent.
    [TEMPLATES.echoBoth, [...banner, ...RFB.handshake, ...messages]],
    // Every cut-text message dropped, plain and extended (TigerVNC, without
    // the viewer's extended-clipboard capabilities, then pushes the session's
    // text unasked, so copying out still works); shared forced on.
    [TEMPLATES.echoOff, [...banner, ...ascii('RFB 003.008\n'), 1, 1, ...RFB.key]],
  ]) {
    const id = await launch(name);
    await eventually(`session ${name} running`, async () => (await veraApi('GET', `/sessions/${id}`)).body.phase === 'Running', {
      timeout: 60_000,
    });
    const got = await echoThroughVnc(page, id, [...RFB.handshake, ...messages]);
    assert.deepEqual(got, expected, `what the session received under ${name}`);
    await veraApi('DELETE', `/sessions/${id}`);
  }
  page.assertNoErrors();
  await page.context().close();
});
