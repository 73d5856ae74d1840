// The patient's consents: what each care-team provider may see, granted and withdrawn
// here, with the history. A consent covers several scopes; withdrawing one scope grants
// the rest anew first, then withdraws the old consent, so nothing is uncovered between.
import { useState } from 'react';
import { useClient, useMutation, useQuery } from 'urql';
import { problem, type Problem } from '../errors';
import { graphql } from '../gql';
import type { ConsentScope } from '../gql/graphql';
import { Loading, ProblemNote, Screen, when } from '../ui';

const ConsentsQuery = graphql(`
  query Consents($id: ID!) {
    consents(patientId: $id) {
      id
      granteeProviderId
      scopes
      status
      grantedAt
      expiresAt
      withdrawnAt
    }
    patient(id: $id) {
      id
      careTeam {
        id
        displayName
      }
    }
  }
`);

const Grant = graphql(`
  mutation GrantConsent($input: GrantConsentInput!) {
    grantConsent(input: $input) {
      id
      status
      scopes
    }
  }
`);

const Withdraw = graphql(`
  mutation WithdrawConsent($id: ID!) {
    withdrawConsent(id: $id) {
      id
      status
      withdrawnAt
    }
  }
`);

const SCOPES: [ConsentScope, string][] = [
  ['RECORDS', 'Medical records and notes'],
  ['MEDICATIONS', 'Medications'],
  ['ALLERGIES', 'Allergies'],
  ['IMMUNIZATIONS', 'Immunizations'],
  ['DOCUMENTS', 'Documents'],
  ['MESSAGES', 'Messages'],
  ['BILLING', 'Billing'],
  ['SENSITIVE', 'Sensitive records (mental health, substance use, HIV, reproductive health)'],
  ['DEMOGRAPHICS_SHARING', 'Sharing my demographics beyond my care'],
  ['RESEARCH', 'De-identified use in research'],
];
const scopeName = (s: string) => SCOPES.find(([x]) => x === s)?.[1] ?? s;

export function Consents({ patientId }: { patientId: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: ConsentsQuery, variables: { id: patientId } });
  const client = useClient();
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<Problem | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const names = new Map((data?.patient.careTeam ?? []).map((p) => [p.id, p.displayName]));
  const nameOf = (id: string) => names.get(id) ?? 'a provider no longer on your care team';
  const active = data?.consents.filter((c) => c.status === 'ACTIVE') ?? [];
  const past = data?.consents.filter((c) => c.status !== 'ACTIVE') ?? [];
  const reload = () => refetch({ requestPolicy: 'network-only' });

  async function withdrawScope(c: (typeof active)[number], scope: ConsentScope) {
    setBusy(true);
    setFailure(null);
    setDone(null);
    try {
      const rest = c.scopes.filter((s) => s !== scope);
      if (rest.length) {
        const g = await client
          .mutation(Grant, { input: { patientId, granteeProviderId: c.granteeProviderId, scopes: rest, expiresAt: c.expiresAt } })
          .toPromise();
        if (g.error) return setFailure(problem(g.error));
      }
      const w = await client.mutation(Withdraw, { id: c.id }).toPromise();
      if (w.error) return setFailure(problem(w.error));
      setDone(`${scopeName(scope)} is no longer shared with ${nameOf(c.granteeProviderId)}.`);
      reload();
    } finally {
      setBusy(false);
    }
  }

  return (
    <Screen title="Consents">
      <ProblemNote problem={problem(error)} />
      <ProblemNote problem={failure} />
      {done && (
        <p role="status" className="notice">
          {done}
        </p>
      )}
      {!data ? (
        fetching && <Loading what="your consents" />
      ) : (
        <>
          <section aria-labelledby="h-active">
            <h2 id="h-active">What your care team may see</h2>
            {active.length === 0 && <p>You share nothing beyond your demographics.</p>}
            {active.map((c) => (
              <article key={c.id} className="card" aria-labelledby={`c-${c.id}`}>
                <h3 id={`c-${c.id}`}>{nameOf(c.granteeProviderId)}</h3>
                <p className="muted">
                  Granted {when(c.grantedAt)}
                  {c.expiresAt ? `, until ${when(c.expiresAt)}` : ''}
                </p>
                <ul className="rows">
                  {c.scopes.map((s) => (
                    <li key={s}>
                      {scopeName(s)}{' '}
                      <button
                        type="button"
                        className="secondary"
                        disabled={busy}
                        aria-label={`Withdraw ${s} from ${nameOf(c.granteeProviderId)}`}
                        onClick={() => void withdrawScope(c, s)}
                      >
                        Withdraw
                      </button>
                    </li>
                  ))}
                </ul>
              </article>
            ))}
          </section>
          <GrantForm patientId={patientId} careTeam={data.patient.careTeam ?? []} onGranted={reload} />
          <section aria-labelledby="h-history">
            <h2 id="h-history">History</h2>
            {past.length === 0 ? (
              <p>No withdrawn or expired consents.</p>
            ) : (
              <table>
                <caption>Earlier consents</caption>
                <thead>
                  <tr>
                    <th scope="col">Provider</th>
                    <th scope="col">Covered</th>
                    <th scope="col">Granted</th>
                    <th scope="col">Ended</th>
                  </tr>
                </thead>
                <tbody>
                  {past.map((c) => (
                    <tr key={c.id}>
                      <td>{nameOf(c.granteeProviderId)}</td>
                      <td>{c.scopes.map(scopeName).join(', ')}</td>
                      <td>{when(c.grantedAt)}</td>
                      <td>
                        {c.status.toLowerCase()}
                        {c.withdrawnAt ? ` ${when(c.withdrawnAt)}` : c.expiresAt ? ` ${when(c.expiresAt)}` : ''}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      )}
    </Screen>
  );
}

function GrantForm({ patientId, careTeam, onGranted }: {
  patientId: string;
  careTeam: { id: string; displayName: string }[];
  onGranted: () => void;
}) {
  const [provider, setProvider] = useState(careTeam[0]?.id ?? '');
  const [scopes, setScopes] = useState<ConsentScope[]>([]);
  const [granted, grant] = useMutation(Grant);
  if (!careTeam.length) return null;
  return (
    <section aria-labelledby="h-grant">
      <h2 id="h-grant">Share more</h2>
      <form
        aria-labelledby="h-grant"
        onSubmit={async (e) => {
          e.preventDefault();
          const r = await grant({ input: { patientId, granteeProviderId: provider, scopes } });
          if (r.data) {
            setScopes([]);
            onGranted();
          }
        }}
      >
        <label htmlFor="grantee">Provider</label>
        <select id="grantee" value={provider} onChange={(e) => setProvider(e.target.value)}>
          {careTeam.map((p) => (
            <option key={p.id} value={p.id}>
              {p.displayName}
            </option>
          ))}
        </select>
        <fieldset>
          <legend>What they may see</legend>
          {SCOPES.map(([s, label]) => (
            <div key={s} className="check">
              <input
                type="checkbox"
                id={`scope-${s}`}
                checked={scopes.includes(s)}
                onChange={(e) => setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))}
              />
              <label htmlFor={`scope-${s}`}>{label}</label>
            </div>
          ))}
        </fieldset>
        <ProblemNote problem={problem(granted.error)} />
        <button type="submit" disabled={!scopes.length || granted.fetching}>
          Grant consent
        </button>
      </form>
    </section>
  );
}
