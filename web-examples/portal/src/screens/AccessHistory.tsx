// Who saw my data: the patient's access history from the audit log, newest first, with
// emergency (break-glass) access flagged.
import { useState } from 'react';
import { useQuery } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import { Loading, ProblemNote, Screen, when } from '../ui';

const History = graphql(`
  query AccessHistory($id: ID!, $after: String) {
    accessHistory(patientId: $id, first: 50, after: $after) {
      edges {
        cursor
        node {
          occurredAt
          actorId
          actorRole
          action
          outcome
          breakGlass
          reason
          basis
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

const BASIS: Record<string, string> = {
  CARE_TEAM_CONSENT: 'care team, under your consent',
  SHARE: 'a record you shared',
  BREAK_GLASS: 'emergency access',
  OWNER: 'you',
  ADMIN: 'administrator',
};

export function AccessHistory({ patientId }: { patientId: string }) {
  const [pages, setPages] = useState<(string | null)[]>([null]);
  return (
    <Screen title="Access history">
      <p>Every time someone opened or changed your information, newest first.</p>
      <table>
        <caption>Accesses to your record</caption>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Who</th>
            <th scope="col">What</th>
            <th scope="col">Under</th>
            <th scope="col">Outcome</th>
          </tr>
        </thead>
        {pages.map((after, i) => (
          <Page
            key={after ?? 'first'}
            patientId={patientId}
            after={after}
            last={i === pages.length - 1}
            onMore={(c) => setPages([...pages, c])}
          />
        ))}
      </table>
    </Screen>
  );
}

function Page({ patientId, after, last, onMore }: {
  patientId: string;
  after: string | null;
  last: boolean;
  onMore: (cursor: string) => void;
}) {
  const [{ data, error, fetching }] = useQuery({ query: History, variables: { id: patientId, after } });
  const h = data?.accessHistory;
  return (
    <tbody>
      {!h && (
        <tr>
          <td colSpan={5}>{fetching ? <Loading what="the access history" /> : <ProblemNote problem={problem(error)} />}</td>
        </tr>
      )}
      {h?.edges.map(({ cursor, node: e }) => (
        <tr key={cursor} className={e.breakGlass ? 'flagged' : ''}>
          <td>{when(e.occurredAt)}</td>
          <td>{e.actorRole ? e.actorRole.toLowerCase() : 'unknown'}</td>
          <td>
            {e.action}
            {e.reason && <div className="muted">Reason given: {e.reason}</div>}
          </td>
          <td>
            {e.breakGlass && <strong className="flag">Emergency access </strong>}
            {e.basis ? BASIS[e.basis] : '—'}
          </td>
          <td>{e.outcome.toLowerCase()}</td>
        </tr>
      ))}
      {last && h?.pageInfo.hasNextPage && h.pageInfo.endCursor && (
        <tr>
          <td colSpan={5}>
            <button type="button" onClick={() => onMore(h.pageInfo.endCursor!)}>
              Show older
            </button>
          </td>
        </tr>
      )}
    </tbody>
  );
}
