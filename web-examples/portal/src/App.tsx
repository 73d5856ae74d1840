// The app: resume the session from the refresh cookie, or sign in; then the screens the
// signed-in role may use. Each sign-in gets its own GraphQL client, so signing out (by
// hand, by idleness, or in another tab) drops every cached PHI with it.
import { useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import { Provider as UrqlProvider, useQuery, useSubscription } from 'urql';
import { makeClient } from './client';
import { problem } from './errors';
import { graphql } from './gql';
import type { MeQuery } from './gql/graphql';
import { session } from './session';
import { Link, Loading, ProblemNote, navigate, resetRoute, useRoute } from './ui';
import { SignIn } from './screens/SignIn';
import { Home } from './screens/Home';
import { Records } from './screens/Records';
import { Appointments } from './screens/Appointments';
import { Messages } from './screens/Messages';
import { Billing } from './screens/Billing';
import { Consents } from './screens/Consents';
import { AccessHistory } from './screens/AccessHistory';
import { Corrections } from './screens/Corrections';
import { Security } from './screens/Security';
import { ExportData } from './screens/ExportData';
import { MyPatients } from './screens/MyPatients';
import { PatientChart } from './screens/PatientChart';
import { Schedule } from './screens/Schedule';
import { EmergencyAccess } from './screens/EmergencyAccess';

const Me = graphql(`
  query Me {
    me {
      id
      email
      role
      patientId
      providerId
      mfaEnrolled
      unreadCount
      provider {
        id
        displayName
      }
    }
  }
`);

const UnreadCount = graphql(`
  subscription UnreadCount {
    unreadCountChanged
  }
`);

export type Viewer = MeQuery['me'];

function useSession() {
  return useSyncExternalStore(
    (l) => session.subscribe(l),
    () => `${session.signedIn}:${session.signingOut}:${session.endReason}:${session.idleWarning}`,
  );
}

export function App() {
  useSession();
  const [resuming, setResuming] = useState(true);
  // A new client (and cache) at each sign-in and each sign-out.
  const signedIn = session.signedIn;
  const portal = useMemo(() => makeClient(signedIn), [signedIn]);
  useEffect(() => () => portal.dispose(), [portal]);

  useEffect(() => {
    if (!signedIn && !resuming) resetRoute();
  }, [signedIn, resuming]);
  useEffect(() => {
    // A reload (or a new tab) resumes the session from the cookie, if it is still live.
    void session.refresh().finally(() => setResuming(false));
  }, []);

  if (resuming && !signedIn) return <Loading what="your session" />;
  if (!signedIn && session.signingOut) {
    return (
      <p className="muted" role="status">
        Signing out…
      </p>
    );
  }
  return (
    <UrqlProvider value={portal.client}>
      {/* Behind the idle warning the page is inert: no focus or click reaches it. */}
      <div inert={signedIn && session.idleWarning !== null}>
        {signedIn ? <Shell /> : <SignIn endReason={session.endReason} />}
      </div>
      {signedIn && session.idleWarning !== null && <IdleWarning seconds={session.idleWarning} />}
    </UrqlProvider>
  );
}

function IdleWarning({ seconds }: { seconds: number }) {
  // Focus goes back where it was when the warning closes.
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    return () => before?.focus();
  }, []);
  return (
    <div className="overlay">
      <div role="alertdialog" aria-modal="true" aria-labelledby="idle-title" aria-describedby="idle-text" className="dialog">
        <h2 id="idle-title">Are you still there?</h2>
        <p id="idle-text">
          For your privacy you will be signed out in {seconds} second{seconds === 1 ? '' : 's'} without activity.
        </p>
        <button type="button" autoFocus onClick={() => session.stay()}>
          Stay signed in
        </button>{' '}
        <button type="button" className="secondary" onClick={() => void session.signOut()}>
          Sign out now
        </button>
      </div>
    </div>
  );
}

const PATIENT_NAV: [string, string][] = [
  ['home', 'Home'],
  ['records', 'Records'],
  ['appointments', 'Appointments'],
  ['messages', 'Messages'],
  ['billing', 'Billing'],
  ['consents', 'Consents'],
  ['access', 'Access history'],
  ['corrections', 'Corrections'],
  ['export', 'Download my data'],
  ['security', 'Security'],
];

const PROVIDER_NAV: [string, string][] = [
  ['patients', 'My patients'],
  ['schedule', 'Schedule'],
  ['messages', 'Messages'],
  ['emergency', 'Emergency access'],
  ['security', 'Security'],
];

function Shell() {
  const [{ data, error, fetching }] = useQuery({ query: Me });
  const route = useRoute();
  const me = data?.me;
  const [live] = useSubscription({ query: UnreadCount, pause: !me });
  const unread = live.data?.unreadCountChanged ?? me?.unreadCount ?? 0;

  const nav = me?.role === 'PATIENT' ? PATIENT_NAV : PROVIDER_NAV;
  const [screen, id] = route.split('/');
  useEffect(() => {
    if (me && !nav.some(([to]) => to === screen) && !(screen === 'chart' && id)) {
      navigate(nav[0][0]);
    }
  }, [me, screen, id, nav]);

  if (!me) {
    return fetching ? <Loading what="your account" /> : <ProblemNote problem={problem(error)} />;
  }
  if (me.role !== 'PATIENT' && me.role !== 'PROVIDER') {
    return (
      <main className="page">
        <p>This portal is for patients and providers. Use the console for {me.role.toLowerCase()} work.</p>
        <button type="button" onClick={() => void session.signOut()}>
          Sign out
        </button>
      </main>
    );
  }

  return (
    <>
      <header className="top">
        <span className="brand">Caregraph</span>
        <span className="who">
          Signed in as {me.provider?.displayName ?? me.email}
        </span>
        <button type="button" className="secondary" onClick={() => void session.signOut()}>
          Sign out
        </button>
      </header>
      <div className="layout">
        <nav aria-label="Main" className="side">
          <ul>
            {nav.map(([to, label]) => (
              <li key={to}>
                <Link to={to} current={screen === to}>
                  {label}
                  {to === 'messages' && unread > 0 && (
                    <span className="badge" data-testid="unread-badge">
                      {unread}
                      <span className="visually-hidden"> unread</span>
                    </span>
                  )}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <main className="page" id="main">
          {screenFor(me, screen, id)}
        </main>
      </div>
    </>
  );
}

function screenFor(me: Viewer, screen: string, id: string | undefined) {
  const patientId = me.patientId ?? '';
  switch (me.role === 'PATIENT' ? screen : `provider:${screen}`) {
    case 'home':
      return <Home patientId={patientId} />;
    case 'records':
      return <Records patientId={patientId} />;
    case 'appointments':
      return <Appointments patientId={patientId} />;
    case 'messages':
    case 'provider:messages':
      return <Messages me={me} threadId={id} />;
    case 'billing':
      return <Billing patientId={patientId} />;
    case 'consents':
      return <Consents patientId={patientId} />;
    case 'access':
      return <AccessHistory patientId={patientId} />;
    case 'corrections':
      return <Corrections patientId={patientId} />;
    case 'export':
      return <ExportData patientId={patientId} />;
    case 'security':
    case 'provider:security':
      return <Security me={me} />;
    case 'provider:patients':
      return <MyPatients />;
    case 'provider:chart':
      return id ? <PatientChart patientId={id} /> : null;
    case 'provider:schedule':
      return <Schedule />;
    case 'provider:emergency':
      return <EmergencyAccess />;
    default:
      return null;
  }
}
