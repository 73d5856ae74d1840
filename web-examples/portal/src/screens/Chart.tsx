// A patient's chart by category, for the patient (Records) and their providers
// (PatientChart). Each category is its own field: one the viewer's consent does not cover
// comes back null with CONSENT_REQUIRED, and its tab says so, while the rest still show.
import { useState } from 'react';
import { useQuery } from 'urql';
import type { CombinedError } from '@urql/core';
import { fieldProblem, otherProblems } from '../errors';
import { graphql } from '../gql';
import type { ChartQuery } from '../gql/graphql';
import { Loading, ProblemNote, day, when } from '../ui';

const ChartQueryDoc = graphql(`
  query Chart($id: ID!) {
    patient(id: $id) {
      id
      mrn
      givenName
      familyName
      birthDate
      sexAtBirth
      phone
      email
      labResults(first: 20) {
        edges {
          node {
            ...LabResultFields
          }
        }
      }
      visitNotes(first: 20) {
        edges {
          node {
            id
            encounterOn
            text
            author {
              id
              displayName
            }
          }
        }
      }
      medications {
        id
        drug
        dose
        route
        frequency
        status
        startOn
        stopOn
      }
      allergies {
        id
        substance
        reaction
        severity
        status
      }
      immunizations(first: 20) {
        edges {
          node {
            id
            vaccine
            administeredOn
            dose
            doseUnit
          }
        }
      }
      documents(first: 20) {
        edges {
          node {
            id
            title
            documentType
            contentType
            size
            recordedAt
          }
        }
      }
    }
  }
`);

type P = NonNullable<ChartQuery['patient']>;

const CATEGORIES: { field: keyof P & string; label: string; scope: string }[] = [
  { field: 'labResults', label: 'Lab results', scope: 'RECORDS' },
  { field: 'visitNotes', label: 'Visit notes', scope: 'RECORDS' },
  { field: 'medications', label: 'Medications', scope: 'MEDICATIONS' },
  { field: 'allergies', label: 'Allergies', scope: 'ALLERGIES' },
  { field: 'immunizations', label: 'Immunizations', scope: 'IMMUNIZATIONS' },
  { field: 'documents', label: 'Documents', scope: 'DOCUMENTS' },
];

export function useChart(patientId: string) {
  return useQuery({ query: ChartQueryDoc, variables: { id: patientId } });
}

export function Demographics({ p }: { p: P }) {
  return (
    <dl className="facts" aria-label="Demographics">
      <dt>Name</dt>
      <dd>
        {p.givenName} {p.familyName}
      </dd>
      <dt>Date of birth</dt>
      <dd>{day(p.birthDate)}</dd>
      <dt>Medical record number</dt>
      <dd>{p.mrn}</dd>
      <dt>Sex at birth</dt>
      <dd>{p.sexAtBirth.toLowerCase()}</dd>
      {p.phone && (
        <>
          <dt>Phone</dt>
          <dd>{p.phone}</dd>
        </>
      )}
      {p.email && (
        <>
          <dt>Email</dt>
          <dd>{p.email}</dd>
        </>
      )}
    </dl>
  );
}

export function ChartTabs({ data, error, fetching, viewer }: {
  data: ChartQuery | undefined;
  error: CombinedError | undefined;
  fetching: boolean;
  viewer: 'patient' | 'provider';
}) {
  const [tab, setTab] = useState(0);
  const p = data?.patient;
  if (!p) return fetching ? <Loading what="the chart" /> : <ProblemNote problem={otherProblems(error, [])} />;
  const c = CATEGORIES[tab];
  const refused = fieldProblem(error, c.field);
  return (
    <>
      <ProblemNote problem={otherProblems(error, CATEGORIES.map((x) => x.field))} />
      <div role="tablist" aria-label="Record categories" className="tabs">
        {CATEGORIES.map((x, i) => (
          <button
            key={x.field}
            type="button"
            role="tab"
            id={`tab-${x.field}`}
            aria-selected={i === tab}
            aria-controls="category-panel"
            tabIndex={i === tab ? 0 : -1}
            onClick={() => setTab(i)}
            onKeyDown={(e) => {
              const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
              if (!step) return;
              const next = (tab + step + CATEGORIES.length) % CATEGORIES.length;
              setTab(next);
              document.getElementById(`tab-${CATEGORIES[next].field}`)?.focus();
            }}
          >
            {x.label}
            {fieldProblem(error, x.field)?.code === 'CONSENT_REQUIRED' && <span className="tag"> · no consent</span>}
          </button>
        ))}
      </div>
      <div role="tabpanel" id="category-panel" aria-labelledby={`tab-${c.field}`} className="panel" tabIndex={0}>
        {refused?.code === 'CONSENT_REQUIRED' ? (
          <div className="consent-required" role="note" data-code="CONSENT_REQUIRED">
            <h2>Consent required</h2>
            <p>
              {viewer === 'provider'
                ? `The patient's consent does not cover ${c.label.toLowerCase()} (${c.scope}). Their demographics and the categories their consent covers are shown; ask the patient to grant ${c.scope} to see this one.`
                : `This category is not shared under your current consents.`}
            </p>
          </div>
        ) : refused ? (
          <ProblemNote problem={refused} />
        ) : (
          <Category p={p} field={c.field} />
        )}
      </div>
    </>
  );
}

function Empty() {
  return <p>Nothing recorded in this category.</p>;
}

function Category({ p, field }: { p: P; field: string }) {
  switch (field) {
    case 'labResults': {
      const rows = p.labResults?.edges ?? [];
      if (!rows.length) return <Empty />;
      return (
        <table>
          <caption>Lab results</caption>
          <thead>
            <tr>
              <th scope="col">Test</th>
              <th scope="col">Value</th>
              <th scope="col">Reference range</th>
              <th scope="col">Observed</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(({ node: l }) => (
              <tr key={l.id}>
                <td>{l.display ?? l.code}</td>
                <td>
                  {l.value} {l.unit} {l.abnormal && <strong>(abnormal)</strong>}
                </td>
                <td>{l.referenceRange ?? '—'}</td>
                <td>{when(l.observedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      );
    }
    case 'visitNotes': {
      const rows = p.visitNotes?.edges ?? [];
      if (!rows.length) return <Empty />;
      return (
        <ul className="notes">
          {rows.map(({ node: n }) => (
            <li key={n.id}>
              <h3>
                {day(n.encounterOn)}
                {n.author && ` — ${n.author.displayName}`}
              </h3>
              <p>{n.text}</p>
            </li>
          ))}
        </ul>
      );
    }
    case 'medications': {
      const rows = p.medications ?? [];
      if (!rows.length) return <Empty />;
      return (
        <table>
          <caption>Medications</caption>
          <thead>
            <tr>
              <th scope="col">Drug</th>
              <th scope="col">How</th>
              <th scope="col">Status</th>
              <th scope="col">Since</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((m) => (
              <tr key={m.id}>
                <td>{m.drug}</td>
                <td>
                  {m.dose}, {m.route}, {m.frequency}
                </td>
                <td>{m.status.toLowerCase()}</td>
                <td>
                  {day(m.startOn)}
                  {m.stopOn && ` to ${day(m.stopOn)}`}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      );
    }
    case 'allergies': {
      const rows = p.allergies ?? [];
      if (!rows.length) return <Empty />;
      return (
        <ul>
          {rows.map((a) => (
            <li key={a.id}>
              {a.substance} — {a.severity.toLowerCase()}
              {a.reaction && `, ${a.reaction}`} ({a.status.toLowerCase()})
            </li>
          ))}
        </ul>
      );
    }
    case 'immunizations': {
      const rows = p.immunizations?.edges ?? [];
      if (!rows.length) return <Empty />;
      return (
        <ul>
          {rows.map(({ node: i }) => (
            <li key={i.id}>
              {i.vaccine}, {day(i.administeredOn)}
              {i.dose && ` — ${i.dose} ${i.doseUnit ?? ''}`}
            </li>
          ))}
        </ul>
      );
    }
    default: {
      const rows = p.documents?.edges ?? [];
      if (!rows.length) return <Empty />;
      return (
        <ul>
          {rows.map(({ node: d }) => (
            <li key={d.id}>
              {d.title} ({d.documentType}, {Math.ceil(d.size / 1024)} KiB) — {when(d.recordedAt)}
            </li>
          ))}
        </ul>
      );
    }
  }
}
