// Two-step sign-in: enrol an authenticator app by QR code (or its secret), confirm with a
// code. The secret is shown only here, never stored by the page.
import { useEffect, useState } from 'react';
import { useMutation } from 'urql';
import QRCode from 'qrcode';
import { problem } from '../errors';
import { graphql } from '../gql';
import type { Viewer } from '../App';
import { ProblemNote, Screen } from '../ui';

const Enroll = graphql(`
  mutation EnrollMfa {
    enrollMfa {
      secret
      otpauthUrl
    }
  }
`);

const Confirm = graphql(`
  mutation ConfirmMfa($code: String!) {
    confirmMfa(code: $code)
  }
`);

export function Security({ me }: { me: Viewer }) {
  const [enrolment, enroll] = useMutation(Enroll);
  const [confirmed, confirm] = useMutation(Confirm);
  const [qr, setQr] = useState<string | null>(null);
  const [code, setCode] = useState('');
  const e = enrolment.data?.enrollMfa;
  useEffect(() => {
    if (e) void QRCode.toDataURL(e.otpauthUrl, { margin: 1, width: 220 }).then(setQr);
  }, [e]);
  const on = me.mfaEnrolled || confirmed.data?.confirmMfa === true;

  return (
    <Screen title="Security">
      <h2>Two-step sign-in</h2>
      {on ? (
        <p role="status">Two-step sign-in is on: each sign-in asks for a code from your authenticator app.</p>
      ) : !e ? (
        <>
          <p>Protect your account with a code from an authenticator app at each sign-in.</p>
          <ProblemNote problem={problem(enrolment.error)} />
          <button type="button" disabled={enrolment.fetching} onClick={() => void enroll({})}>
            Set up two-step sign-in
          </button>
        </>
      ) : (
        <form
          aria-label="Confirm two-step sign-in"
          onSubmit={async (ev) => {
            ev.preventDefault();
            await confirm({ code });
          }}
        >
          <p>Scan this code with your authenticator app, then enter the code it shows.</p>
          {qr && <img src={qr} width={220} height={220} alt="QR code to add Caregraph to your authenticator app" />}
          <p>
            Or enter this key by hand: <code className="secret">{e.secret}</code>
          </p>
          <label htmlFor="mfa-code">Code from the app</label>
          <input
            id="mfa-code"
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="[0-9]{6}"
            required
            value={code}
            onChange={(ev) => setCode(ev.target.value.trim())}
          />
          <ProblemNote problem={problem(confirmed.error)} />
          <button type="submit" disabled={confirmed.fetching}>
            Turn on two-step sign-in
          </button>
        </form>
      )}
    </Screen>
  );
}
