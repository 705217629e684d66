// Two-step verification from the account page: a user adds an authenticator
// app (the test reads the secret the page shows and computes codes from it
// itself, RFC 6238 with node's HMAC-SHA1, as a phone app would), keeps the
// recovery codes, signs out, and signs back in with password and code; a
// wrong code is refused on the second step, and a recovery code works too.
// Then an admin requires MFA for everyone: a user without it is taken to the
// account page, which says why, and every other page sends them back there.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, RUN, apiLogin, launchBrowser, login, newPage, screenshot } from './lib.mjs';

const erin = { username: `ui-${RUN}-erin`, password: 'erin-password-1' };
const frank = { username: `ui-${RUN}-frank`, password: 'frank-password-1' };

let browser;
let admin;
let erinId;
let frankId;

before(async () => {
  browser = await launchBrowser();
  admin = await apiLogin('admin', ADMIN_PASSWORD);
  const created = await admin('POST', '/users', { ...erin, role: 'user' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  erinId = created.body.id;
  const other = await admin('POST', '/users', { ...frank, role: 'user' });
  assert.equal(other.status, 201, JSON.stringify(other.body));
  frankId = other.body.id;
});

after(async () => {
  // The server serves the other test files next: whatever happened, MFA is
  // required of nobody again, and the admin signs in with a password alone.
  await restoreAdmin();
  if (erinId) await admin('DELETE', `/users/${erinId}`);
  if (frankId) await admin('DELETE', `/users/${frankId}`);
  await browser?.close();
});

async function setMfaRequired(who) {
  const current = await admin('GET', '/settings');
  assert.equal(current.status, 200, JSON.stringify(current.body));
  const saved = await admin('PUT', '/settings', { ...current.body, mfa_required: who });
  assert.equal(saved.status, 200, JSON.stringify(saved.body));
}

async function restoreAdmin() {
  if (!admin) return;
  await setMfaRequired('off');
  const me = await admin('GET', '/users/me');
  const status = await admin('GET', '/users/me/mfa');
  if (status.body?.totp) {
    const reset = await admin('DELETE', `/users/${me.body.id}/mfa`);
    assert.equal(reset.status, 204, JSON.stringify(reset.body));
  }
}

/** RFC 4648 base32 (no padding) to bytes. */
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, '').toUpperCase()) {
    const index = alphabet.indexOf(ch);
    assert.ok(index >= 0, `not base32: ${ch}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** The 6-digit TOTP code of 30-second time step `step` (RFC 6238, HMAC-SHA1). */
function codeAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', secret).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 1_000_000).padStart(6, '0');
}

const nowStep = () => Math.floor(Date.now() / 1000 / 30);

async function passwordStep(page) {
  await page.goto('/');
  await page.getByLabel('Username').fill(erin.username);
  await page.getByLabel('Password').fill(erin.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Two-step verification' }).waitFor();
}

test('enrol from the account page, then sign in with a code', async () => {
  const page = await newPage(browser, { name: 'mfa' });
  // No second step yet: the password alone signs in.
  await page.goto('/');
  await page.getByLabel('Username').fill(erin.username);
  await page.getByLabel('Password').fill(erin.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('whoami').filter({ hasText: erin.username }).waitFor({ state: 'attached' });

  await page.goto('/account');
  const section = page.getByTestId('mfa');
  await section.getByRole('button', { name: 'Set up an authenticator app' }).click();
  await section.getByTestId('totp-qr').waitFor();
  const shown = (await section.getByTestId('totp-secret').innerText()).trim();
  const secret = base32Decode(shown);
  assert.equal(secret.length, 20, `a 160-bit secret: ${shown}`);
  await screenshot(page, '60-mfa-enrol');

  // A wrong first code is refused at the field.
  const step = nowStep();
  const wrong = codeAt(secret, step + 5);
  await section.getByLabel('Code from the app').fill(wrong);
  await section.getByRole('button', { name: 'Turn on' }).click();
  const refused = page.locator('[data-field-error=mfa-code]');
  await refused.waitFor();
  assert.match(await refused.innerText(), /wrong code/);

  await section.getByLabel('Code from the app').fill(codeAt(secret, step));
  await section.getByRole('button', { name: 'Turn on' }).click();
  const codesBox = section.getByTestId('recovery-codes');
  await codesBox.waitFor();
  const recovery = (await codesBox.locator('pre').innerText()).trim().split('\n');
  assert.equal(recovery.length, 10, recovery.join(','));
  assert.match(recovery[0], /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/);
  await screenshot(page, '61-mfa-recovery-codes');
  await section.getByRole('button', { name: 'I have saved them' }).click();
  await section.getByTestId('mfa-on').filter({ hasText: '10 recovery codes left' }).waitFor();

  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();

  // Back in: the password, then a wrong code, then the app's next code.
  await passwordStep(page);
  await page.getByLabel('Code').fill(wrong);
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong code' }).waitFor();
  await screenshot(page, '62-mfa-wrong-code');
  // The confirming code's step is used: the next one (or now's, if later).
  await page.getByLabel('Code').fill(codeAt(secret, Math.max(step + 1, nowStep())));
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByTestId('whoami').filter({ hasText: erin.username }).waitFor({ state: 'attached' });
  await screenshot(page, '63-mfa-signed-in');

  // A recovery code instead of the app.
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await passwordStep(page);
  await page.getByLabel('Code').fill(recovery[0]);
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByTestId('whoami').filter({ hasText: erin.username }).waitFor({ state: 'attached' });
  await page.goto('/account');
  await page.getByTestId('mfa-on').filter({ hasText: '9 recovery codes left' }).waitFor();
  page.assertNoErrors();
  await page.context().close();
});

test('required MFA takes a user to the account page until they enrol', async () => {
  // The admin enrols first, or the setting would hold them too.
  const started = await admin('POST', '/users/me/mfa/totp');
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const secret = base32Decode(started.body.secret);
  const confirmed = await admin('POST', '/users/me/mfa/totp/confirm', { code: codeAt(secret, nowStep()) });
  assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
  await setMfaRequired('everyone');

  const page = await newPage(browser, { name: 'mfa-required' });
  await login(page, frank.username, frank.password);
  await page.waitForURL('**/account');
  const banner = page.getByTestId('mfa-required');
  await banner.waitFor();
  assert.match(await banner.innerText(), /administrator requires two-step verification/);
  await screenshot(page, '64-mfa-required');
  // Any other page leads back here; the API says why.
  await page.getByRole('link', { name: 'My sessions' }).click();
  await page.waitForURL('**/account');
  const refused = await page.evaluate(async () => {
    const r = await fetch('/api/v1/sessions');
    return { status: r.status, body: await r.json() };
  });
  assert.equal(refused.status, 403);
  assert.match(refused.body.error, /^enrol MFA first/);

  // Enrolling lets them through.
  const section = page.getByTestId('mfa');
  await section.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const own = base32Decode((await section.getByTestId('totp-secret').innerText()).trim());
  await section.getByLabel('Code from the app').fill(codeAt(own, nowStep()));
  await section.getByRole('button', { name: 'Turn on' }).click();
  await section.getByTestId('recovery-codes').waitFor();
  await section.getByRole('button', { name: 'I have saved them' }).click();
  await page.getByRole('link', { name: 'My sessions' }).click();
  await page.waitForURL('**/sessions');
  await page.getByRole('heading', { name: 'My sessions' }).waitFor();
  page.assertNoErrors();
  await page.context().close();
  await restoreAdmin();
});
