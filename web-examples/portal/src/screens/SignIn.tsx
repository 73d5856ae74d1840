import { useState } from 'react';
import { useMutation } from 'urql';
import { problem, type Problem } from '../errors';
import type { EndReason } from '../session';
import { session } from '../session';
import { graphql } from '../gql';
import { ProblemNote, useTitle } from '../ui';

const Login = graphql(`
  mutation Login($email: String!, $password: String!) {
    login(email: $email, password: $password, refreshTokenIn: COOKIE) {
      accessToken
      expiresAt
      idleTimeoutSeconds
      mfaRequired
      mfaToken
    }
  }
`);

const VerifyMfa = graphql(`
  mutation VerifyMfa($mfaToken: String!, $code: String!) {
    verifyMfa(mfaToken: $mfaToken, code: $code, refreshTokenIn: COOKIE) {
      accessToken
      expiresAt
      idleTimeoutSeconds
      mfaRequired
    }
  }
`);

const ENDED: Record<string, string> = {
  idle: 'You were signed out because there was no activity for a while. Sign in again to continue.',
  expired: 'Your session has ended. Sign in again to continue.',
  'signed-out': 'You have signed out.',
  switched: 'Another account signed in in this browser, so this tab was signed out. Sign in again to continue.',
};

type Tokens = { accessToken: string | null; expiresAt: string | null; idleTimeoutSeconds: number | null };

function begin(t: Tokens) {
  if (t.accessToken && t.expiresAt) session.begin(t.accessToken, t.expiresAt, t.idleTimeoutSeconds ?? 900);
}

export function SignIn({ endReason }: { endReason: EndReason }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [mfaToken, setMfaToken] = useState<string | null>(null);
  const [login, doLogin] = useMutation(Login);
  const [verifying, doVerify] = useMutation(VerifyMfa);
  // A refused code spends the MFA token: back to the password step, saying why.
  const [refusedCode, setRefusedCode] = useState<Problem | null>(null);
  useTitle('Sign in');

  return (
    <main className="signin">
      <h1>Caregraph patient portal</h1>
      {endReason && (
        <p role="status" className="notice">
          {ENDED[endReason]}
        </p>
      )}
      {mfaToken === null ? (
        <form
          aria-label="Sign in"
          onSubmit={async (e) => {
            e.preventDefault();
            setRefusedCode(null);
            const r = await doLogin({ email, password });
            const out = r.data?.login;
            if (!out) return;
            setPassword('');
            if (out.mfaRequired && out.mfaToken) setMfaToken(out.mfaToken);
            else begin(out);
          }}
        >
          <label htmlFor="email">Email</label>
          <input id="email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
          <label htmlFor="password">Password</label>
          <input
            id="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
          <ProblemNote problem={refusedCode ?? problem(login.error)} />
          <button type="submit" disabled={login.fetching}>
            Sign in
          </button>
        </form>
      ) : (
        <form
          aria-label="Two-step sign-in"
          onSubmit={async (e) => {
            e.preventDefault();
            const r = await doVerify({ mfaToken, code });
            if (r.data?.verifyMfa) return begin(r.data.verifyMfa);
            setCode('');
            setMfaToken(null);
            setRefusedCode(problem(r.error));
          }}
        >
          <p>Enter the 6-digit code from your authenticator app.</p>
          <label htmlFor="code">Verification code</label>
          <input
            id="code"
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="[0-9]{6}"
            required
            value={code}
            onChange={(e) => setCode(e.target.value.trim())}
          />
          <button type="submit" disabled={verifying.fetching}>
            Verify
          </button>{' '}
          <button type="button" className="secondary" onClick={() => setMfaToken(null)}>
            Start over
          </button>
        </form>
      )}
    </main>
  );
}
