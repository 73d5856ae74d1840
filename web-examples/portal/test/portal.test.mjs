// The portal in Debian's Chromium against caregraph in `trusted` mode (scripts/portal-test.sh
// starts it): PORTAL_URL serves the build at /portal/ with the portal's own manifest;
// IDLE_PORTAL_URL is the same with a 30-second idle timeout. Every screen is scanned with
// axe-core (no serious or critical violation) and photographed into SCREENSHOTS. The steps
// build on each other (the demo patient's booking, reply, consent and payment), so they run
// in order in one suite.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

const base = process.env.PORTAL_URL ?? 'http://127.0.0.1:8080';
const idleBase = process.env.IDLE_PORTAL_URL;
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const shots = process.env.SCREENSHOTS ?? '/tmp/portal-screenshots';
const PASSWORD = 'caregraph-demo';
const PATIENT = 'Testy Demopatient';
// Launch flags for this machine's closed network (no background connections, no QUIC).
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

/** RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret. */
function totp(secret) {
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    bits += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

describe('patient portal and provider console', () => {
  let browser;
  const problems = []; // page errors and CSP violations, from every page
  const axeResults = []; // [screen, violations of any impact]
  const pages = {};

  async function newPage(who, url = base) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, baseURL: url });
    // A value thrown or rejected that is not an Error reaches 'pageerror' as its bare type
    // ("Object"); the page says what it was.
    await context.addInitScript(() => {
      const tell = (kind, v) => {
        let text;
        try {
          text = JSON.stringify(v, v && typeof v === 'object' ? Object.getOwnPropertyNames(v) : undefined);
        } catch {
          text = String(v);
        }
        console.error(`caregraph-test ${kind}: ${v?.constructor?.name ?? typeof v} ${text}`);
      };
      addEventListener('unhandledrejection', (e) => tell('unhandled rejection', e.reason));
      addEventListener('error', (e) => tell('uncaught', e.error));
    });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => problems.push(`${who}: ${e.message} ${e.stack ?? ''}`.trim()));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to|^caregraph-test /.test(m.text())) problems.push(`${who}: ${m.text()}`);
    });
    return page;
  }

  async function signIn(page, email) {
    await page.goto('/portal/');
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
  }

  /** Scan the page with axe-core and photograph it as `name`. */
  async function check(page, name) {
    // Settled: nothing is loading any more.
    await page.getByRole('status').filter({ hasText: /^Loading / }).first().waitFor({ state: 'detached' });
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    const { violations } = await new AxeBuilder({ page }).analyze();
    axeResults.push([name, violations.map((v) => `${v.impact}: ${v.id} (${v.nodes.length})`)]);
    const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(
      bad.map((v) => `${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
      [],
      `axe on ${name}`,
    );
  }

  async function go(page, label) {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label }).click();
  }

  before(async () => {
    browser = await chromium.launch({ executablePath, headless: true, args: ARGS });
  });

  after(async () => {
    await browser?.close();
    const lines = axeResults.map(([n, v]) => `${n}: ${v.length ? v.join('; ') : 'no violations'}`);
    writeFileSync(join(shots, 'axe.txt'), `${lines.join('\n')}\n`);
    console.log(`axe-core, by screen (also in ${join(shots, 'axe.txt')}):\n  ${lines.join('\n  ')}`);
  });

  test('the sign-in screen is labelled, and a wrong password is refused by its code', async () => {
    const page = await newPage('anonymous');
    await page.goto('/portal/');
    await check(page, '01-sign-in');
    await page.getByLabel('Email').fill('patient@caregraph.dev');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'UNAUTHENTICATED' }).waitFor();
    await page.context().close();
  });

  test('the patient signs in and sees the home screen; the tokens stay out of reach of script', async () => {
    const page = await newPage('patient');
    pages.patient = page;
    const login = page.waitForResponse(
      (r) => r.request().method() === 'POST' && r.url().endsWith('/graphql') && r.request().postData()?.includes('"Login"'),
    );
    await signIn(page, 'patient@caregraph.dev');
    const answer = await login;
    const body = await answer.json();
    assert.ok(body.data.login.accessToken, 'the sign-in answered an access token');
    // The refresh token came as a cookie, not in the body the page's script reads.
    const setCookie = (await answer.headerValue('set-cookie')) ?? '';
    assert.match(setCookie, /^__Host-cg_refresh=[^;]+;.*HttpOnly/);
    assert.ok(!JSON.stringify(body).includes(setCookie.split(';')[0].split('=')[1]));

    await page.getByRole('heading', { name: `Welcome, ${PATIENT}` }).waitFor();
    for (const h of ['Next appointments', 'Active medications', 'Allergies', 'Recent lab results', 'Messages', 'Open balance']) {
      await page.getByRole('heading', { name: h, exact: true }).waitFor();
    }
    await check(page, '02-patient-home');

    const stored = await page.evaluate(() => ({
      local: JSON.stringify(Object.entries(localStorage)),
      session: JSON.stringify(Object.entries(sessionStorage)),
      cookie: document.cookie,
    }));
    assert.equal(stored.local, '[]', 'nothing in localStorage');
    assert.equal(stored.session, '[]', 'nothing in sessionStorage');
    assert.ok(!stored.cookie.includes('cg_refresh'), 'the refresh cookie is not readable by script');
    const cookies = await page.context().cookies();
    const refresh = cookies.find((c) => c.name === '__Host-cg_refresh');
    assert.ok(refresh, 'the refresh cookie is set');
    assert.equal(refresh.httpOnly, true);
    assert.equal(refresh.secure, true);
    assert.equal(refresh.sameSite, 'Strict');
    assert.equal(refresh.path, '/');

    // A reload keeps the session (the cookie buys a new access token), and the app is
    // still the only thing that holds it.
    await page.reload();
    await page.getByRole('heading', { name: `Welcome, ${PATIENT}` }).waitFor();
  });

  test('a hand-written query sent from the page is refused in trusted mode', async () => {
    const answer = await pages.patient.evaluate(async () => {
      const r = await fetch('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ patients(first: 100) { edges { node { id givenName familyName } } } }' }),
      });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(answer.body.errors?.[0]?.extensions?.code, 'PERSISTED_QUERY_NOT_IN_LIST', JSON.stringify(answer));
    assert.equal(answer.body.data, undefined);
  });

  test('every patient screen renders, with no serious accessibility violation', async () => {
    const page = pages.patient;
    await go(page, 'Records');
    await page.getByRole('tab', { name: 'Lab results' }).waitFor();
    await page.getByRole('table', { name: 'Lab results' }).waitFor();
    await check(page, '03-patient-records');
    await page.getByRole('tab', { name: 'Allergies' }).click();
    await page.getByRole('tabpanel').getByRole('listitem').first().waitFor();

    await go(page, 'Appointments');
    await page.getByRole('heading', { name: 'Book an appointment' }).waitFor();
    await page.getByLabel('Time', { exact: true }).waitFor();
    await check(page, '04-patient-appointments');

    await go(page, 'Messages');
    await page.getByRole('list', { name: 'Conversations' }).waitFor();
    await check(page, '05-patient-messages');

    await go(page, 'Billing');
    await page.getByRole('heading', { name: 'Statements' }).waitFor();
    await page.getByRole('heading', { name: 'Coverage' }).waitFor();
    await check(page, '06-patient-billing');

    await go(page, 'Consents');
    await page.getByRole('heading', { name: 'What your care team may see' }).waitFor();
    await check(page, '07-patient-consents');

    await go(page, 'Access history');
    await page.getByRole('table', { name: 'Accesses to your record' }).getByRole('row').nth(1).waitFor();
    await check(page, '08-patient-access-history');

    await go(page, 'Corrections');
    await page.getByRole('heading', { name: 'Ask for a correction' }).waitFor();
    await page.getByLabel('Record', { exact: true }).locator('option').nth(1).waitFor({ state: 'attached' });
    await page.getByLabel('Record', { exact: true }).selectOption({ index: 1 });
    await page.getByLabel(/What is wrong/).fill('This is not the dose I was prescribed.');
    await page.getByRole('button', { name: 'Send request' }).click();
    await page.getByText('You asked: This is not the dose I was prescribed.').waitFor();
    await check(page, '09-patient-corrections');

    await go(page, 'Download my data');
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: 'Download my data' }).click();
    const file = await download;
    assert.match(file.suggestedFilename(), /^caregraph-export-.*\.json$/);
    const bundle = JSON.parse(await new Response(await file.createReadStream()).text());
    assert.equal(bundle.resourceType, 'Bundle');
    assert.ok(bundle.entry.some((e) => e.resource?.resourceType === 'Patient'));
    await check(page, '10-patient-download');
  });

  test('the patient books an appointment and the doctor sees it on the schedule without reloading', async () => {
    const patient = pages.patient;
    const doctor = await newPage('doctor');
    pages.doctor = doctor;
    await signIn(doctor, 'doctor@caregraph.dev');
    await go(doctor, 'Schedule');
    await doctor.getByLabel('Day').waitFor();

    await go(patient, 'Appointments');
    const time = patient.getByLabel('Time', { exact: true });
    await time.locator('option').nth(1).waitFor({ state: 'attached' });
    const startsAt = await time.locator('option').nth(1).getAttribute('value');
    // The doctor looks at that day, before the booking exists.
    const day = await doctor.evaluate((iso) => {
      const d = new Date(iso);
      return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
    }, startsAt);
    await doctor.getByLabel('Day').fill(day);
    await doctor.locator(`[data-testid="schedule"][data-day="${day}"]`).waitFor();
    const reason = `Browser booking ${Date.now()}`;
    assert.equal(await doctor.getByText(reason).count(), 0);
    await check(doctor, '11-doctor-schedule');

    await time.selectOption(startsAt);
    await patient.getByLabel('Reason for the visit').fill(reason);
    await patient.getByRole('button', { name: 'Book appointment' }).click();
    await patient.getByRole('status').filter({ hasText: 'Booked for' }).waitFor();
    await patient.getByRole('heading', { name: 'Upcoming' }).waitFor();

    // No reload, no navigation: the subscription brings it.
    await doctor.getByRole('row').filter({ hasText: reason }).waitFor({ timeout: 10_000 });
    assert.ok((await doctor.getByRole('row').filter({ hasText: reason }).innerText()).includes('Demopatient'));

    // Reschedule it to the earliest free time, then cancel it; the doctor's day follows.
    const booked = patient.getByRole('listitem').filter({ hasText: reason });
    await booked.getByRole('button', { name: /^Reschedule/ }).click();
    const newTime = booked.getByLabel('New time');
    await newTime.locator('option').nth(1).waitFor({ state: 'attached' });
    const movedTo = await newTime.locator('option').nth(1).innerText();
    await newTime.selectOption({ index: 1 });
    await booked.getByRole('button', { name: 'Move appointment' }).click();
    await patient.getByRole('listitem').filter({ hasText: reason }).filter({ hasText: movedTo }).waitFor();
    const moved = patient.getByRole('listitem').filter({ hasText: reason });
    await moved.getByRole('button', { name: /^Cancel/ }).click();
    await moved.getByLabel('Reason for cancelling').fill('Feeling better');
    await moved.getByRole('button', { name: 'Cancel appointment' }).click();
    await patient.getByRole('listitem').filter({ hasText: reason }).waitFor({ state: 'detached' });
    await doctor.getByRole('row').filter({ hasText: reason }).waitFor({ state: 'detached', timeout: 10_000 });
  });

  test('the doctor replies to a message and the patient sees it without reloading', async () => {
    const { patient, doctor } = pages;
    await go(patient, 'Messages');
    await patient.getByRole('list', { name: 'Conversations' }).getByRole('link').first().click();
    await patient.getByRole('list', { name: 'Messages in this conversation' }).waitFor();
    await check(patient, '12-patient-thread');

    await go(doctor, 'Messages');
    await doctor.getByRole('list', { name: 'Conversations' }).getByRole('link').first().click();
    const reply = `Your results look fine (${Date.now()}).`;
    await doctor.getByLabel('Your reply').fill(reply);
    await check(doctor, '13-doctor-thread');
    await doctor.getByRole('button', { name: 'Send reply' }).click();
    await doctor.getByRole('list', { name: 'Messages in this conversation' }).getByText(reply).waitFor();

    await patient.getByRole('list', { name: 'Messages in this conversation' }).getByText(reply).waitFor({ timeout: 10_000 });

    // A message arriving while the patient is elsewhere lights the unread badge, live; reading
    // the thread puts it out.
    await go(patient, 'Home');
    await patient.getByRole('heading', { name: `Welcome, ${PATIENT}` }).waitFor();
    assert.equal(await patient.getByTestId('unread-badge').count(), 0);
    await doctor.getByLabel('Your reply').fill(`One more thing (${Date.now()}).`);
    await doctor.getByRole('button', { name: 'Send reply' }).click();
    await patient.getByTestId('unread-badge').filter({ hasText: '1' }).waitFor({ timeout: 10_000 });
    await go(patient, 'Messages');
    await patient.getByRole('list', { name: 'Conversations' }).getByRole('link').first().click();
    await patient.getByRole('list', { name: 'Messages in this conversation' }).getByText('One more thing').waitFor();
    await patient.getByTestId('unread-badge').waitFor({ state: 'detached', timeout: 10_000 });
  });

  test("the patient withdraws the doctor's MEDICATIONS consent: the chart says consent required, demographics stay", async () => {
    const { patient, doctor } = pages;
    await go(doctor, 'My patients');
    await doctor.getByLabel('Family name').fill('Demopatient');
    await doctor.getByLabel('Birth date').fill('1980-01-01');
    await doctor.getByRole('button', { name: 'Search' }).click();
    await doctor.getByRole('status').filter({ hasText: '1 patient match' }).waitFor();
    await check(doctor, '14-doctor-patients');
    await doctor.getByRole('link', { name: 'Demopatient, Testy' }).click();
    await doctor.getByRole('heading', { name: `Chart: ${PATIENT}` }).waitFor();
    await doctor.getByRole('tab', { name: 'Medications' }).click();
    await doctor.getByRole('table', { name: 'Medications' }).waitFor();
    await check(doctor, '15-doctor-chart');
    const chartUrl = doctor.url();

    await go(patient, 'Consents');
    await patient.getByRole('button', { name: 'Withdraw MEDICATIONS from Dr. Demo Doctor' }).click();
    await patient.getByRole('status').filter({ hasText: 'no longer shared' }).waitFor();
    await patient.getByRole('heading', { name: 'History' }).waitFor();
    await patient.getByRole('table', { name: 'Earlier consents' }).waitFor();
    // The other scopes are still granted.
    await patient.getByRole('button', { name: 'Withdraw ALLERGIES from Dr. Demo Doctor' }).waitFor();

    await doctor.goto(chartUrl);
    await doctor.getByRole('heading', { name: `Chart: ${PATIENT}` }).waitFor();
    await doctor.getByRole('term').filter({ hasText: 'Date of birth' }).waitFor();
    await doctor.getByRole('tab', { name: 'Medications' }).click();
    await doctor.getByRole('heading', { name: 'Consent required' }).waitFor();
    assert.match(await doctor.getByRole('tabpanel').innerText(), /MEDICATIONS/);
    await check(doctor, '16-doctor-chart-consent-required');
    await doctor.getByRole('tab', { name: 'Allergies' }).click();
    assert.equal(await doctor.getByRole('heading', { name: 'Consent required' }).count(), 0);

    // Granted again, the category is back.
    await patient.getByRole('checkbox', { name: 'Medications', exact: true }).check();
    await patient.getByRole('button', { name: 'Grant consent' }).click();
    await patient.getByRole('button', { name: 'Withdraw MEDICATIONS from Dr. Demo Doctor' }).waitFor();
    await doctor.reload();
    await doctor.getByRole('tab', { name: 'Medications' }).click();
    await doctor.getByRole('table', { name: 'Medications' }).waitFor();
  });

  test('the patient pays a statement once, even when the button is double-clicked', async () => {
    const page = pages.patient;
    await go(page, 'Billing');
    const pay = page.getByRole('button', { name: /^Pay / }).first();
    await pay.waitFor();
    const before = await page.getByTestId('payment').count();
    await pay.dblclick();
    await page.getByRole('status').filter({ hasText: 'Payment succeeded' }).waitFor();
    // The statement read again after the payment lists it; a second charge would be there too.
    await page.getByTestId('payment').nth(before).waitFor();
    await page.waitForTimeout(1_000);
    assert.equal(await page.getByTestId('payment').count(), before + 1);
    await check(page, '17-patient-paid');
    // The server agrees after a reload (nothing cached).
    await page.reload();
    await page.getByRole('heading', { name: 'Statements' }).waitFor();
    await page.getByTestId('payment').first().waitFor();
    assert.equal(await page.getByTestId('payment').count(), before + 1);
  });

  test('break-glass: a doctor outside the care team opens emergency access, and the patient sees it flagged', async () => {
    const { patient, doctor } = pages;
    const patientId = new URL(doctor.url()).pathname.split('/').pop();
    const second = await newPage('doctor2');
    await signIn(second, 'doctor2@caregraph.dev');
    await go(second, 'Emergency access');
    await second.getByLabel('Patient ID').fill(patientId);
    await second.getByLabel('Reason').fill('Unconscious in the emergency department; no care team reachable');
    await check(second, '18-doctor-emergency-access');
    await second.getByRole('button', { name: 'Open emergency access' }).click();
    await second.getByRole('status').filter({ hasText: 'Emergency access is open' }).waitFor();
    await second.getByRole('button', { name: 'Open the chart' }).click();
    await second.getByRole('heading', { name: `Chart: ${PATIENT}` }).waitFor();
    await second.context().close();

    await go(patient, 'Home');
    await go(patient, 'Access history');
    await patient.getByText('Emergency access', { exact: false }).first().waitFor();
    await check(patient, '19-patient-access-history-break-glass');
  });

  test('two tabs share one session: reloaded at once they refresh one at a time, and sign out together', async () => {
    const page = pages.patient;
    const other = await page.context().newPage();
    await other.goto('/portal/');
    await other.getByRole('navigation', { name: 'Main' }).waitFor();
    // Both resume from the cookie at the same moment. Without the cross-tab lock one would
    // present the cookie the other just rotated out, which revokes the session.
    await Promise.all([page.reload(), other.reload()]);
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    await other.getByRole('navigation', { name: 'Main' }).waitFor();
    await other.reload();
    await other.getByRole('navigation', { name: 'Main' }).waitFor();
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await other.close();
  });

  test('sign-out clears the PHI: nothing of it is left on the page, in the title or in history', async () => {
    const page = pages.patient;
    await signIn(page, 'patient@caregraph.dev');
    await page.getByRole('heading', { name: `Welcome, ${PATIENT}` }).waitFor();
    assert.ok(!(await page.title()).includes('Demopatient'), 'no name in the tab title');
    const cookie = (await page.context().cookies()).find((c) => c.name === '__Host-cg_refresh');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.ok(!(await page.locator('body').innerText()).includes('Demopatient'));
    await page.goBack();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.ok(!(await page.locator('body').innerText()).includes('Demopatient'));
    assert.equal((await page.context().cookies()).filter((c) => c.name === '__Host-cg_refresh').length, 0);
    assert.ok(!(await page.title()).includes('Demopatient'));
    // The session is over on the server too: the cookie it had, replayed, buys nothing.
    const replay = await fetch(`${base}/auth/refresh`, {
      method: 'POST',
      headers: { 'x-caregraph-refresh': '1', cookie: `${cookie.name}=${cookie.value}` },
    });
    assert.equal(replay.status, 401);
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.context().close();
    await pages.doctor.context().close();
  });

  test('keyboard only: sign in, enrol two-step sign-in by its QR code, and sign in again with a code', async () => {
    const page = await newPage('patient2');
    await page.goto('/portal/');
    await page.getByLabel('Email').waitFor();
    await page.keyboard.press('Tab'); // the first control is the e-mail field
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'email');
    await page.keyboard.type('patient2@caregraph.dev');
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Welcome, Sample Examplepatient' }).waitFor();

    // Tab through the header and the navigation to Security, and open it with Enter.
    for (let i = 0; i < 30; i += 1) {
      await page.keyboard.press('Tab');
      if ((await page.evaluate(() => document.activeElement?.textContent)) === 'Security') break;
    }
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Security' }).waitFor();
    await page.getByRole('button', { name: 'Set up two-step sign-in' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('img', { name: /QR code/ }).waitFor();
    await check(page, '20-patient-mfa-enrolment');
    const secret = await page.locator('code.secret').innerText();
    await page.getByLabel('Code from the app').focus();
    await page.keyboard.type(totp(secret));
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: 'Two-step sign-in is on' }).waitFor();

    // Sign in again with a code. The one just spent on confirming is refused (each code
    // works once), which sends the user back to the password step: then the next period's.
    await page.getByRole('button', { name: 'Sign out' }).click();
    const home = page.getByRole('heading', { name: 'Welcome, Sample Examplepatient' });
    for (let attempt = 0; ; attempt += 1) {
      await page.getByLabel('Email').fill('patient2@caregraph.dev');
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('textbox', { name: 'Verification code' }).waitFor();
      if (attempt === 0) await check(page, '21-sign-in-code');
      await page.getByRole('textbox', { name: 'Verification code' }).fill(totp(secret));
      await page.getByRole('button', { name: 'Verify' }).click();
      const refused = page.getByRole('alert').filter({ hasText: 'UNAUTHENTICATED' });
      await Promise.race([home.waitFor(), refused.waitFor()]);
      if (await home.isVisible()) break;
      assert.ok(attempt < 1, 'a fresh code is accepted');
      await new Promise((r) => setTimeout(r, 30_000 - (Date.now() % 30_000) + 500));
    }
    await home.waitFor();
    await page.context().close();
  });

  test('inactivity: a warning, "Stay signed in" keeps the session, then sign-out at the timeout', { skip: !idleBase && 'IDLE_PORTAL_URL not set' }, async () => {
    const page = await newPage('idle patient', idleBase);
    await signIn(page, 'patient@caregraph.dev');
    const signedInAt = Date.now();
    await page.getByRole('heading', { name: `Welcome, ${PATIENT}` }).waitFor();
    const warning = page.getByRole('alertdialog', { name: 'Are you still there?' });
    // 13/15 of 30 s without input: the warning (answers to background requests do not count).
    await warning.waitFor({ timeout: 35_000 });
    await page.getByRole('button', { name: 'Stay signed in' }).click();
    await warning.waitFor({ state: 'hidden' });
    await page.getByRole('heading', { name: `Welcome, ${PATIENT}` }).waitFor();
    // "Stay" kept the server's session too: past the deadline the sign-in set (30 s, no
    // request since the home screen's), the next screen's data still comes.
    await page.waitForTimeout(Math.max(0, signedInAt + 32_000 - Date.now()));
    await go(page, 'Records');
    await page.getByRole('table', { name: 'Lab results' }).waitFor();

    // Then nothing at all: the warning again, then signed out, with the reason, and no PHI left.
    await warning.waitFor({ timeout: 35_000 });
    await page.screenshot({ path: join(shots, '22-idle-warning.png') });
    const { violations } = await new AxeBuilder({ page }).include('[role=alertdialog]').analyze();
    axeResults.push(['22-idle-warning', violations.map((v) => `${v.impact}: ${v.id} (${v.nodes.length})`)]);
    assert.deepEqual(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id), []);
    await page.getByText('You were signed out because there was no activity').waitFor({ timeout: 15_000 });
    await check(page, '23-idle-signed-out');
    assert.ok(!(await page.locator('body').innerText()).includes('Demopatient'));
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.context().close();
  });

  test('no page error and no Content-Security-Policy violation on any page', () => {
    assert.deepEqual(problems, []);
  });
});
