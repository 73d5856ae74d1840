import { useQuery } from 'urql';
import { fieldProblem, otherProblems } from '../errors';
import { graphql } from '../gql';
import { Link, Loading, ProblemNote, Screen, day, money, useNow, when } from '../ui';

// Workload (f) of the benchmarks (bench/run.mjs `HOME`) plus the unread count and the open
// balance: the whole home screen in one request.
const HomeQuery = graphql(`
  query Home($id: ID!, $now: DateTime!) {
    patient(id: $id) {
      id
      givenName
      familyName
      birthDate
      appointments(status: SCHEDULED, from: $now, first: 3) {
        edges {
          node {
            id
            startsAt
            endsAt
            status
            reason
            provider {
              id
              displayName
            }
          }
        }
      }
      medications(activeOnly: true) {
        id
        drug
        dose
        route
        frequency
        startOn
      }
      allergies {
        id
        substance
        reaction
        severity
        status
      }
      labResults(first: 5) {
        edges {
          node {
            ...LabResultFields
          }
        }
      }
    }
    me {
      id
      unreadCount
    }
    billingStatements(patientId: $id, status: OPEN, first: 20) {
      edges {
        node {
          id
          currency
          balanceCents
        }
      }
    }
  }
`);

const PARTS = ['appointments', 'medications', 'allergies', 'labResults', 'billingStatements'];

export function Home({ patientId }: { patientId: string }) {
  const now = useNow();
  const [{ data, error, fetching }] = useQuery({ query: HomeQuery, variables: { id: patientId, now } });
  const p = data?.patient;
  if (!p) return fetching ? <Loading what="your summary" /> : <ProblemNote problem={otherProblems(error, [])} />;
  const open = data?.billingStatements.edges.map((e) => e.node) ?? [];
  const balance = open.reduce((sum, s) => sum + s.balanceCents, 0);

  return (
    <Screen title={`Welcome, ${p.givenName} ${p.familyName}`} docTitle="Home">
      <ProblemNote problem={otherProblems(error, PARTS)} />
      <div className="cards">
        <section aria-labelledby="h-appts" className="card">
          <h2 id="h-appts">Next appointments</h2>
          <ProblemNote problem={fieldProblem(error, 'appointments')} />
          {p.appointments?.edges.length ? (
            <ul>
              {p.appointments.edges.map(({ node: a }) => (
                <li key={a.id}>
                  {when(a.startsAt)} with {a.provider.displayName}: {a.reason}
                </li>
              ))}
            </ul>
          ) : (
            <p>No upcoming appointments.</p>
          )}
          <Link to="appointments">Book or change an appointment</Link>
        </section>
        <section aria-labelledby="h-meds" className="card">
          <h2 id="h-meds">Active medications</h2>
          <ProblemNote problem={fieldProblem(error, 'medications')} />
          {p.medications?.length ? (
            <ul>
              {p.medications.map((m) => (
                <li key={m.id}>
                  {m.drug} {m.dose}, {m.route}, {m.frequency}
                </li>
              ))}
            </ul>
          ) : (
            p.medications && <p>No active medications.</p>
          )}
        </section>
        <section aria-labelledby="h-allergies" className="card">
          <h2 id="h-allergies">Allergies</h2>
          <ProblemNote problem={fieldProblem(error, 'allergies')} />
          {p.allergies?.length ? (
            <ul>
              {p.allergies.map((a) => (
                <li key={a.id}>
                  {a.substance} ({a.severity.toLowerCase()}){a.reaction ? `: ${a.reaction}` : ''}
                  {a.status !== 'ACTIVE' && ` — ${a.status.toLowerCase()}`}
                </li>
              ))}
            </ul>
          ) : (
            p.allergies && <p>No allergies on record.</p>
          )}
        </section>
        <section aria-labelledby="h-labs" className="card">
          <h2 id="h-labs">Recent lab results</h2>
          <ProblemNote problem={fieldProblem(error, 'labResults')} />
          {p.labResults?.edges.length ? (
            <ul>
              {p.labResults.edges.map(({ node: l }) => (
                <li key={l.id}>
                  {l.display ?? l.code}: {l.value} {l.unit}
                  {l.abnormal && <strong> (outside the reference range)</strong>} — {day(l.observedAt.slice(0, 10))}
                </li>
              ))}
            </ul>
          ) : (
            p.labResults && <p>No lab results yet.</p>
          )}
        </section>
        <section aria-labelledby="h-msgs" className="card">
          <h2 id="h-msgs">Messages</h2>
          <p>
            {data?.me.unreadCount ?? 0} unread message{data?.me.unreadCount === 1 ? '' : 's'}.
          </p>
          <Link to="messages">Open messages</Link>
        </section>
        <section aria-labelledby="h-balance" className="card">
          <h2 id="h-balance">Open balance</h2>
          <ProblemNote problem={fieldProblem(error, 'billingStatements')} />
          <p>{money(balance, open[0]?.currency)}</p>
          <Link to="billing">Billing and payments</Link>
        </section>
      </div>
    </Screen>
  );
}
