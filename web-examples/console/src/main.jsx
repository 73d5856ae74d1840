// The provider console: GraphiQL against this server's /graphql and /graphql/ws, with a
// sign-in bar that puts the access token into GraphiQL's Headers pane.
import { useEffect, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import { getIntrospectionQuery } from 'graphql';
import 'graphiql/graphiql.css';
import './console.css';

// GraphiQL's dialogs add one <style> element at run time (react-remove-scroll, through
// react-style-singleton, which takes webpack's nonce global). The server puts a fresh nonce
// into each page and its CSP, so style-src needs no 'unsafe-inline'.
window.__webpack_nonce__ = document.querySelector('meta[property="csp-nonce"]')?.nonce || undefined;

const HTTP_URL = '/graphql';
const WS_URL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;

const LOGIN = `mutation ConsoleLogin($email: String!, $password: String!) {
  login(email: $email, password: $password) { accessToken expiresAt mfaRequired mfaToken }
}`;
const VERIFY_MFA = `mutation ConsoleVerifyMfa($mfaToken: String!, $code: String!) {
  verifyMfa(mfaToken: $mfaToken, code: $code) { accessToken expiresAt mfaRequired mfaToken }
}`;
const ME = '{ me { email role } }';
const LOGOUT = 'mutation ConsoleLogout { logout }';

const DEFAULT_QUERY = `# Sign in above: your access token goes into Headers, below.
{
  me {
    email
    role
  }
}
`;

/** One GraphQL call for the sign-in bar; rejects with the server's error messages. */
async function gql(query, variables, token) {
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(HTTP_URL, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  } catch {
    throw new Error('the server could not be reached');
  }
  const body = await res.json().catch(() => null);
  if (!body) throw new Error(`the server answered ${res.status}`);
  if (body.errors?.length) throw new Error(body.errors.map((e) => e.message).join('; '));
  return body.data;
}

/** The Headers pane's JSON with `Authorization` set to `value`, or removed when null. */
function withAuthorization(text, value) {
  let headers = {};
  try {
    const parsed = text.trim() ? JSON.parse(text) : {};
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) headers = parsed;
  } catch {
    // Not JSON (being edited): start again from just the header we set.
  }
  for (const k of Object.keys(headers)) if (k.toLowerCase() === 'authorization') delete headers[k];
  if (value) headers = { Authorization: value, ...headers };
  return Object.keys(headers).length ? JSON.stringify(headers, null, 2) : '';
}

function authorizationOf(headers) {
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === 'authorization') return String(v);
  return null;
}

// GraphiQL's own introspection query nests type references 9 deep, past the server's depth
// limit (QUERY_DEPTH_LIMIT, 12); 6 fits and covers every type in the schema (`[X!]!` is 3).
const INTROSPECTION = getIntrospectionQuery({ typeDepth: 6 });

/**
 * GraphiQL's fetcher. Queries and mutations go over HTTP with the Headers pane's headers;
 * subscriptions over graphql-ws, whose `connection_init` carries the pane's Authorization
 * (the server reads `payload.authorization`). A new Authorization gets a new socket.
 * The schema is fetched as the signed-in user when the pane has no Authorization (GraphiQL
 * fetches it before the pane shows a new token); a new fetcher per sign-in makes GraphiQL
 * fetch it again.
 */
function consoleFetcher(sessionToken) {
  let current = null;
  const fetcher = (params, opts) => {
    if (params.operationName === 'IntrospectionQuery') {
      params = { ...params, query: INTROSPECTION };
      if (sessionToken && !authorizationOf(opts?.headers)) {
        opts = { ...opts, headers: { ...opts?.headers, Authorization: `Bearer ${sessionToken}` } };
      }
    }
    const auth = authorizationOf(opts?.headers);
    if (!current || current.auth !== auth) {
      current?.client.dispose();
      const client = createClient({
        url: WS_URL,
        lazy: true,
        connectionParams: () => (auth ? { authorization: auth } : {}),
      });
      const fetcher = createGraphiQLFetcher({ url: HTTP_URL, wsClient: client, enableIncrementalDelivery: false });
      current = { auth, client, fetcher };
    }
    return current.fetcher(params, opts);
  };
  fetcher.dispose = () => current?.client.dispose();
  return fetcher;
}

function SignIn({ onSignedIn }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [mfaToken, setMfaToken] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  const finish = async (payload) => {
    if (payload.mfaRequired) {
      setMfaToken(payload.mfaToken);
      setCode('');
      return;
    }
    const me = await gql(ME, {}, payload.accessToken).then(
      (d) => d.me,
      (e) => ({ email, role: null, error: e.message }),
    );
    onSignedIn({ token: payload.accessToken, expiresAt: payload.expiresAt, me });
  };

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mfaToken) {
        await finish((await gql(VERIFY_MFA, { mfaToken, code: code.trim() })).verifyMfa);
      } else {
        await finish((await gql(LOGIN, { email: email.trim(), password })).login);
      }
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="cg-signin" onSubmit={submit} aria-label="Sign in">
      {mfaToken ? (
        <>
          <span className="cg-muted">Code from your authenticator app for {email}</span>
          <input
            name="code"
            aria-label="One-time code"
            placeholder="123456"
            inputMode="numeric"
            autoComplete="one-time-code"
            required
            autoFocus
            value={code}
            onChange={(e) => setCode(e.target.value)}
          />
          <button type="submit" disabled={busy}>Verify</button>
          <button type="button" className="cg-link" onClick={() => setMfaToken(null)}>Back</button>
        </>
      ) : (
        <>
          <input
            name="email"
            type="email"
            aria-label="E-mail"
            placeholder="e-mail"
            autoComplete="username"
            required
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
          <input
            name="password"
            type="password"
            aria-label="Password"
            placeholder="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
          <button type="submit" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
        </>
      )}
      {error && <span className="cg-error" role="alert">{error}</span>}
    </form>
  );
}

function Console() {
  const [session, setSession] = useState(null);
  const [headers, setHeaders] = useState('');
  const [error, setError] = useState(null);
  const fetcher = useMemo(() => consoleFetcher(session?.token), [session?.token]);
  useEffect(() => () => fetcher.dispose(), [fetcher]);

  const signedIn = ({ token, expiresAt, me }) => {
    setSession({ token, expiresAt, me });
    setError(me.error ?? null);
    setHeaders((h) => withAuthorization(h, `Bearer ${token}`));
  };

  // No silent refresh: that would keep an idle session alive for as long as the tab is
  // open. When the access token expires, the console says so and drops it.
  useEffect(() => {
    const expires = Date.parse(session?.expiresAt ?? '');
    if (Number.isNaN(expires)) return undefined;
    const timer = setTimeout(() => {
      setSession(null);
      setHeaders((h) => withAuthorization(h, null));
      setError('the access token expired: sign in again');
    }, Math.max(0, expires - Date.now()));
    return () => clearTimeout(timer);
  }, [session]);

  const signOut = async () => {
    const { token } = session;
    setSession(null);
    setHeaders((h) => withAuthorization(h, null));
    try {
      await gql(LOGOUT, {}, token);
      setError(null);
    } catch (e) {
      setError(`signed out here, but the server said: ${e.message}`);
    }
  };

  return (
    <div className="cg-console">
      <header className="cg-bar">
        <span className="cg-brand">
          Caregraph <span className="cg-muted">console</span>
        </span>
        {session ? (
          <span className="cg-session" data-testid="session">
            Signed in as <strong>{session.me.email}</strong>
            {session.me.role && <span className="cg-role">{session.me.role}</span>}
            <button type="button" onClick={signOut}>Sign out</button>
          </span>
        ) : (
          <SignIn onSignedIn={signedIn} />
        )}
        {error && <span className="cg-error" role="alert">{error}</span>}
      </header>
      <main className="cg-graphiql">
        <GraphiQL
          fetcher={fetcher}
          // The server answers introspection only to a signed-in user: fetch the schema
          // after sign-in, rather than greet everyone with its UNAUTHENTICATED error.
          schema={session ? undefined : null}
          defaultQuery={DEFAULT_QUERY}
          headers={headers}
          defaultHeaders={session ? withAuthorization('', `Bearer ${session.token}`) : undefined}
          onEditHeaders={setHeaders}
          isHeadersEditorEnabled
          defaultEditorToolsVisibility="headers"
          shouldPersistHeaders={false}
          // Tabs and history (which keeps each run's headers) last only as long as the
          // browser tab: tokens and patient data do not stay behind in localStorage.
          storage={window.sessionStorage}
        />
      </main>
    </div>
  );
}

createRoot(document.getElementById('console')).render(<Console />);
