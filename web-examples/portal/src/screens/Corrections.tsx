// Requests to correct a record (45 CFR 164.526): ask, see the answer, and file a statement
// of disagreement with a denial.
import { useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import { Loading, ProblemNote, Screen, day, when } from '../ui';

const CorrectionsQuery = graphql(`
  query Corrections($id: ID!) {
    patient(id: $id) {
      id
      correctionRequests {
        id
        recordId
        status
        text
        requestedAt
        respondedAt
        response
        disagreement
      }
      records(first: 50) {
        edges {
          node {
            id
            kind
            recordedAt
            ... on LabResult {
              display
              code
            }
            ... on Medication {
              drug
            }
            ... on Allergy {
              substance
            }
            ... on VisitNote {
              encounterOn
            }
            ... on Immunization {
              vaccine
            }
            ... on ClinicalDocument {
              title
            }
          }
        }
      }
    }
  }
`);

const RequestCorrection = graphql(`
  mutation RequestCorrection($recordId: ID!, $text: String!) {
    requestCorrection(recordId: $recordId, text: $text) {
      id
      status
    }
  }
`);

const Disagree = graphql(`
  mutation FileDisagreement($id: ID!, $text: String!) {
    fileDisagreement(correctionRequestId: $id, text: $text) {
      id
      status
      disagreement
    }
  }
`);

type Rec = { id: string; kind: string; recordedAt: string } & Record<string, unknown>;

function title(r: Rec) {
  const what =
    (r.display as string) ??
    (r.drug as string) ??
    (r.substance as string) ??
    (r.vaccine as string) ??
    (r.title as string) ??
    (r.encounterOn ? `visit of ${day(r.encounterOn as string)}` : undefined) ??
    (r.code as string) ??
    '';
  return `${r.kind.replace('_', ' ').toLowerCase()}: ${what} (${when(r.recordedAt)})`;
}

export function Corrections({ patientId }: { patientId: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: CorrectionsQuery, variables: { id: patientId } });
  const p = data?.patient;
  const records = (p?.records?.edges.map((e) => e.node) ?? []) as Rec[];
  const byId = new Map(records.map((r) => [r.id, r]));
  const [recordId, setRecordId] = useState('');
  const [text, setText] = useState('');
  const [asked, ask] = useMutation(RequestCorrection);
  const reload = () => refetch({ requestPolicy: 'network-only' });

  return (
    <Screen title="Corrections">
      <ProblemNote problem={problem(error)} />
      {!p ? (
        fetching && <Loading what="your correction requests" />
      ) : (
        <>
          <section aria-labelledby="h-requests">
            <h2 id="h-requests">Your requests</h2>
            {!p.correctionRequests?.length ? (
              <p>You have not asked for a correction.</p>
            ) : (
              <ul className="rows">
                {p.correctionRequests.map((c) => (
                  <li key={c.id}>
                    <p>
                      <strong>{byId.get(c.recordId) ? title(byId.get(c.recordId)!) : 'A record'}</strong> —{' '}
                      {c.status.toLowerCase()} (asked {when(c.requestedAt)})
                    </p>
                    <p>You asked: {c.text}</p>
                    {c.response && <p>Answer: {c.response}</p>}
                    {c.disagreement && <p>Your statement of disagreement: {c.disagreement}</p>}
                    {c.status === 'DENIED' && !c.disagreement && <DisagreeForm id={c.id} onDone={reload} />}
                  </li>
                ))}
              </ul>
            )}
          </section>
          <section aria-labelledby="h-ask">
            <h2 id="h-ask">Ask for a correction</h2>
            <form
              aria-labelledby="h-ask"
              onSubmit={async (e) => {
                e.preventDefault();
                const r = await ask({ recordId, text });
                if (r.data) {
                  setText('');
                  reload();
                }
              }}
            >
              <label htmlFor="record">Record</label>
              <select id="record" required value={recordId} onChange={(e) => setRecordId(e.target.value)}>
                <option value="">Choose a record</option>
                {records.map((r) => (
                  <option key={r.id} value={r.id}>
                    {title(r)}
                  </option>
                ))}
              </select>
              <label htmlFor="what">What is wrong, and why (5 to 2000 characters)</label>
              <textarea id="what" required minLength={5} maxLength={2000} rows={4} value={text} onChange={(e) => setText(e.target.value)} />
              <ProblemNote problem={problem(asked.error)} />
              <button type="submit" disabled={asked.fetching}>
                Send request
              </button>
            </form>
          </section>
        </>
      )}
    </Screen>
  );
}

function DisagreeForm({ id, onDone }: { id: string; onDone: () => void }) {
  const [text, setText] = useState('');
  const [filed, file] = useMutation(Disagree);
  return (
    <form
      aria-label="Statement of disagreement"
      onSubmit={async (e) => {
        e.preventDefault();
        if ((await file({ id, text })).data) onDone();
      }}
    >
      <label htmlFor={`dis-${id}`}>Your statement of disagreement</label>
      <textarea id={`dis-${id}`} required minLength={5} maxLength={2000} rows={3} value={text} onChange={(e) => setText(e.target.value)} />
      <ProblemNote problem={problem(filed.error)} />
      <button type="submit" disabled={filed.fetching}>
        File statement
      </button>
    </form>
  );
}
