// The console in Debian's Chromium against a running caregraph (scripts/browser-test.sh
// starts one). CONSOLE_URL: the server; CHROMIUM: the browser; SCREENSHOT: where to save one.
// The steps build on each other, so they run in order in one suite.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const base = process.env.CONSOLE_URL ?? 'http://127.0.0.1:8080';
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const screenshot = process.env.SCREENSHOT ?? '/tmp/console.png';
const serverHost = new URL(base).hostname;

const selectors = {
  queryEditor: '.graphiql-query-editor .CodeMirror',
  headersEditor: '.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror',
  result: '.graphiql-response .result-window .CodeMirror',
  run: 'button.graphiql-execute-button',
  session: '[data-testid="session"]',
};

/** POST one GraphQL operation to the server, outside the browser. */
async function gql(query, variables = {}, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  return res.json();
}

/** RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret, `steps` periods from now. */
function totp(secret, steps = 0) {
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    bits += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + steps));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

describe('provider console', () => {
  let browser;
  let page;
  const urls = [];
  const cspMessages = [];
  const pageErrors = [];
  let token;

  /** The text of the CodeMirror 5 editor under `selector`. */
  const editorText = (selector) =>
    page.$eval(selector, (el) => el.CodeMirror.getValue());

  before(async () => {
    // Root (as in CI) cannot use Chromium's sandbox.
    browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    page.setDefaultTimeout(15_000);
    page.on('request', (r) => urls.push(r.url()));
    page.on('websocket', (ws) => urls.push(ws.url()));
    page.on('console', (m) => {
      if (/content security policy|refused to/i.test(m.text())) cspMessages.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // The page's clock runs as usual until a test moves it on.
    await page.clock.install();
    // Runs before the page's own scripts, outside its CSP.
    await page.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) =>
        window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'}`),
      );
    });
  });

  after(async () => {
    await browser?.close();
  });

  test('GET /graphql shows GraphiQL under a same-origin CSP', async () => {
    const response = await page.goto(`${base}/graphql`);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'] ?? '';
    const directives = Object.fromEntries(
      csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values.join(' ')]),
    );
    assert.equal(directives['default-src'], "'self'", csp);
    assert.equal(directives['script-src'], "'self'", csp);
    assert.equal(directives['connect-src'], "'self'", csp);
    assert.equal(directives['frame-ancestors'], "'none'", csp);
    assert.equal(directives['base-uri'], "'none'", csp);
    assert.equal(directives['form-action'], "'none'", csp);
    await page.locator(selectors.queryEditor).waitFor({ state: 'visible' });
    await page.locator(selectors.run).waitFor({ state: 'visible' });
    await page.getByRole('button', { name: 'Sign in' }).waitFor({ state: 'visible' });
  });

  test('signing in as the doctor puts the token into the Headers pane', async () => {
    await page.getByLabel('E-mail').fill('doctor@caregraph.dev');
    await page.getByLabel('Password').fill('caregraph-demo');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const session = page.locator(selectors.session);
    await session.waitFor({ state: 'visible' });
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.includes('PROVIDER'), selectors.session);
    assert.match(await session.textContent(), /doctor@caregraph\.dev/);
    const headers = JSON.parse(await editorText(selectors.headersEditor));
    assert.match(headers.Authorization, /^Bearer \S+$/);
    token = headers.Authorization.slice('Bearer '.length);
  });

  test('a query typed into GraphiQL runs as the doctor', async () => {
    await page.locator(selectors.queryEditor).click();
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    await page.keyboard.type('{ me { role } }');
    await page.keyboard.press('Escape'); // any completion hint
    assert.equal(await editorText(selectors.queryEditor), '{ me { role } }');
    await page.locator(selectors.run).click();
    await page.waitForFunction((sel) => {
      const text = document.querySelector(sel)?.CodeMirror.getValue() ?? '';
      return text.includes('"role"');
    }, selectors.result);
    const result = JSON.parse(await editorText(selectors.result));
    assert.deepEqual(result, { data: { me: { role: 'PROVIDER' } } });
    await page.locator(selectors.result).getByText('"PROVIDER"').waitFor({ state: 'visible' });
    // The schema arrived too: the documentation explorer lists the root types.
    await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
    await page.locator('.graphiql-doc-explorer').getByText('Query', { exact: true }).first().waitFor({ state: 'visible' });
    await page.screenshot({ path: screenshot });
  });

  test('the subscriptions socket is allowed by the CSP and takes the token', async () => {
    const answer = await page.evaluate(
      (bearer) =>
        new Promise((resolve) => {
          const ws = new WebSocket(`ws://${location.host}/graphql/ws`, 'graphql-transport-ws');
          ws.onopen = () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: bearer } }));
          ws.onmessage = (m) => {
            resolve(JSON.parse(m.data).type);
            ws.close();
          };
          ws.onclose = (e) => resolve(`closed ${e.code}`);
          ws.onerror = () => resolve('error');
        }),
      `Bearer ${token}`,
    );
    assert.equal(answer, 'connection_ack');
  });

  test("GraphiQL's dialogs and panels open", async () => {
    for (const name of ['Open settings dialog', 'Open short keys dialog']) {
      await page.getByRole('button', { name }).click();
      await page.locator('.graphiql-dialog').waitFor({ state: 'visible' });
      // Stylesheets added at run time (the dialog's scroll lock) carry the page's nonce.
      const styles = await page.$$eval('style', (els) => els.map((e) => Boolean(e.nonce)));
      assert.ok(styles.every(Boolean), `a <style> without the nonce: ${styles}`);
      await page.keyboard.press('Escape');
      await page.locator('.graphiql-dialog').waitFor({ state: 'hidden' });
    }
    await page.getByRole('button', { name: 'Show History' }).click();
    await page.locator('.graphiql-history').waitFor({ state: 'visible' });
  });

  test('signing out ends the session and clears the header', async () => {
    const logout = page.waitForResponse(
      (r) => r.request().method() === 'POST' && (r.request().postData() ?? '').includes('logout'),
    );
    await page.getByRole('button', { name: 'Sign out' }).click();
    assert.deepEqual(await (await logout).json(), { data: { logout: true } });
    await page.getByRole('button', { name: 'Sign in' }).waitFor({ state: 'visible' });
    assert.doesNotMatch(await editorText(selectors.headersEditor), /authorization/i);
    // The server ended the session: the old token no longer works.
    const r = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: '{ me { role } }' }),
    }).then((res) => res.json());
    assert.equal(r.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED', JSON.stringify(r));
  });

  test('a wrong password shows the server message', async () => {
    await page.getByLabel('E-mail').fill('doctor@caregraph.dev');
    await page.getByLabel('Password').fill('not-the-password');
    const login = page.waitForResponse((r) => (r.request().postData() ?? '').includes('ConsoleLogin'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    const { errors } = await (await login).json();
    assert.ok(errors?.[0]?.message, JSON.stringify(errors));
    const alert = page.getByRole('alert');
    await alert.waitFor({ state: 'visible' });
    assert.equal(await alert.textContent(), errors[0].message);
  });

  test('an account with MFA signs in with a code', async () => {
    // Enrol doctor2 outside the browser. The confirming code uses this time step; the
    // server refuses a step twice, so the console gets the next one (within its skew).
    const login = await gql('mutation { login(email: "doctor2@caregraph.dev", password: "caregraph-demo") { accessToken } }');
    const setupToken = login.data.login.accessToken;
    const { data } = await gql('mutation { enrollMfa { secret } }', {}, setupToken);
    const confirmed = await gql('mutation($c: String!) { confirmMfa(code: $c) }', { c: totp(data.enrollMfa.secret) }, setupToken);
    assert.equal(confirmed.data?.confirmMfa, true, JSON.stringify(confirmed));
    await gql('mutation { logout }', {}, setupToken);

    await page.getByLabel('E-mail').fill('doctor2@caregraph.dev');
    await page.getByLabel('Password').fill('caregraph-demo');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByLabel('One-time code').fill(totp(data.enrollMfa.secret, 1));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.includes('doctor2@caregraph.dev'), selectors.session);
    assert.match(await page.locator(selectors.session).textContent(), /PROVIDER/);
    assert.match(JSON.parse(await editorText(selectors.headersEditor)).Authorization, /^Bearer \S+$/);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor({ state: 'visible' });
  });

  test('an expired access token is dropped, not refreshed', async () => {
    await page.getByLabel('E-mail').fill('doctor@caregraph.dev');
    await page.getByLabel('Password').fill('caregraph-demo');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator(selectors.session).waitFor({ state: 'visible' });
    await page.clock.fastForward('16:00');
    await page.getByRole('button', { name: 'Sign in' }).waitFor({ state: 'visible' });
    assert.match(await page.getByRole('alert').textContent(), /expired/);
    assert.doesNotMatch(await editorText(selectors.headersEditor), /authorization/i);
  });

  test('nothing came from elsewhere, nothing broke the CSP', async () => {
    const foreign = urls.filter((u) => /^(https?|wss?):/.test(u) && new URL(u).hostname !== serverHost);
    assert.deepEqual(foreign, [], 'requests to other hosts');
    assert.deepEqual(cspMessages, [], 'CSP messages in the console');
    assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'CSP violations');
    assert.deepEqual(pageErrors, [], 'uncaught errors');
  });
});
