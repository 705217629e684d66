// Shared helpers of the browser tests: the browser, API calls for setup,
// polling with deadlines, canvas pixels and screenshots.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = mustEnv('STREAMSPACE_URL');
export const ADMIN_PASSWORD = mustEnv('STREAMSPACE_ADMIN_PASSWORD');
/** A per-run id in test usernames, so nothing collides with other data on the engine. */
export const RUN = process.env.STREAMSPACE_TEST_RUN ?? Math.random().toString(16).slice(2, 8);
export const ARTIFACTS = process.env.STREAMSPACE_ARTIFACTS ?? path.resolve('../../test-artifacts/ui');

function mustEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through scripts/test-ui.sh BINARY`);
  return value;
}

/**
 * Debian's Chromium, headless, offline-friendly; Playwright gives it a fresh
 * profile directory. STREAMSPACE_CHROMIUM_PRELOAD (tests/ui/no-netlink.c)
 * keeps Docker's network changes from ending its connections.
 */
export async function launchBrowser(extraArgs = []) {
  const preload = process.env.STREAMSPACE_CHROMIUM_PRELOAD;
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    env: preload ? { ...process.env, LD_PRELOAD: preload } : process.env,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      // The certificate of the test's nginx, and nothing else, is trusted.
      ...(process.env.STREAMSPACE_PROXY_SPKI
        ? [`--ignore-certificate-errors-spki-list=${process.env.STREAMSPACE_PROXY_SPKI}`]
        : []),
      ...extraArgs,
    ],
  });
}

export const LAPTOP = { width: 1366, height: 820 };
export const PHONE = { width: 390, height: 780 };

/**
 * A page in its own browser context (its own cookies), on the server or on
 * `baseURL` (a proxy in front). Uncaught page errors are collected:
 * `page.assertNoErrors()` fails the test on any.
 */
export async function newPage(browser, { viewport = LAPTOP, name = 'page', baseURL = BASE } = {}) {
  const context = await browser.newContext({ viewport, baseURL });
  // Keeps every WebSocket the page opens in window.__sockets, so a test can
  // drop the viewer's connection the way a network failure would.
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    // A Proxy, not a subclass: noVNC checks the socket's own prototype for send/close.
    window.WebSocket = new Proxy(Native, {
      construct(target, args) {
        const socket = new target(...args);
        window.__sockets.push(socket);
        return socket;
      },
    });
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (process.env.UI_TEST_VERBOSE) console.log(`[${name} console.${msg.type()}] ${msg.text()}`);
  });
  page.on('requestfailed', (req) => {
    if (process.env.UI_TEST_VERBOSE) console.log(`[${name} failed] ${req.url()}: ${req.failure()?.errorText}`);
  });
  page.assertNoErrors = () => assert.deepEqual(errors, [], 'uncaught errors in the page');
  return page;
}

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: false });
}

/** Polls `probe` until it returns a truthy value, or fails after `timeout` ms with `what`. */
export async function eventually(what, probe, { timeout = 30_000, interval = 250 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Logs in through the login form. */
export async function login(page, username, password) {
  await page.goto('/');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('whoami').filter({ hasText: username }).waitFor({ state: 'attached', timeout: 15_000 });
}

/** The API with a bearer token, for setup the tests do not exercise through the UI. */
export async function apiLogin(username, password) {
  const res = await fetch(`${BASE}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const answer = await res.text();
  assert.equal(res.status, 200, `login of ${username}: ${answer}`);
  const { token } = JSON.parse(answer);
  return async (method, url, body) => {
    const r = await fetch(`${BASE}/api/v1${url}`, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
}

/**
 * Statistics of the viewer's canvas pixels: its size, how many distinct
 * colours, how many pixels differ from the most common colour, and a hash of
 * all pixels (to see that the screen changed).
 */
export async function canvasStats(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector('[data-testid=screen] canvas');
    if (!canvas || !canvas.width || !canvas.height) return null;
    const ctx = canvas.getContext('2d');
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const counts = new Map();
    let hash = 2166136261;
    for (let i = 0; i < data.length; i += 4) {
      const v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(v, (counts.get(v) ?? 0) + 1);
      hash = Math.imul(hash ^ v, 16777619);
    }
    let dominant = 0;
    for (const c of counts.values()) dominant = Math.max(dominant, c);
    return {
      width: canvas.width,
      height: canvas.height,
      colors: counts.size,
      nonDominant: data.length / 4 - dominant,
      hash: hash >>> 0,
    };
  });
}

/** Waits until the viewer is connected and its canvas shows a real picture (not one flat colour). */
export async function waitForDesktop(page, { timeout = 90_000 } = {}) {
  await page.locator('[data-testid=viewer][data-conn=connected]').waitFor({ timeout });
  // The first frame may arrive in pieces: wait for text-like detail.
  return eventually(
    'the viewer canvas to show the xterm (more than one colour)',
    async () => {
      const s = await canvasStats(page);
      return s && s.colors >= 2 && s.nonDominant >= 200 ? s : null;
    },
    { timeout: 30_000 },
  );
}

/** Types a shell command into the session and waits until the canvas changes accordingly. */
export async function typeIntoDesktop(page, text) {
  const before = await canvasStats(page);
  await page.locator('[data-testid=screen] canvas').click();
  await page.keyboard.type(text, { delay: 20 });
  await page.keyboard.press('Enter');
  return eventually(
    `the screen to change after typing ${JSON.stringify(text)}`,
    async () => {
      const s = await canvasStats(page);
      return s && s.hash !== before.hash && s.nonDominant > before.nonDominant + 100 ? s : null;
    },
    { timeout: 20_000 },
  );
}

/** The phase badge of a session's row in a session table. */
export function rowPhase(page, sessionId) {
  return page.locator(`tr[data-session="${sessionId}"] [data-testid=phase]`);
}

/** The frequency (1 Hz steps, 50–8000 Hz) with the most power in `x`, sampled at `rate`: a coarse DFT scan, then a fine one. */
export function dominantFrequency(x, rate = 48_000) {
  const power = (hz) => {
    let re = 0;
    let im = 0;
    const w = (2 * Math.PI * hz) / rate;
    for (let i = 0; i < x.length; i++) {
      re += x[i] * Math.cos(w * i);
      im += x[i] * Math.sin(w * i);
    }
    return re * re + im * im;
  };
  const best = (from, to, step) => {
    let top = from;
    for (let hz = from; hz <= to; hz += step) if (power(hz) > power(top)) top = hz;
    return top;
  };
  const coarse = best(50, 8000, 10);
  return best(coarse - 10, coarse + 10, 1);
}
