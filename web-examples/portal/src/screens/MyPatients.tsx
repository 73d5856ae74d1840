// The provider's patients: those on their care team, searched by family name and birth
// date (exact matches, through Caregraph's blind indexes).
import { useState } from 'react';
import { useQuery } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import type { PatientFilterInput } from '../gql/graphql';
import { Link, Loading, ProblemNote, Screen, day } from '../ui';

const PatientsQuery = graphql(`
  query MyPatients($filter: PatientFilterInput, $after: String) {
    patients(filter: $filter, first: 20, after: $after) {
      totalCount
      edges {
        node {
          id
          mrn
          givenName
          familyName
          birthDate
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export function MyPatients() {
  const [familyName, setFamilyName] = useState('');
  const [birthDate, setBirthDate] = useState('');
  const [filter, setFilter] = useState<PatientFilterInput | null>(null);
  const [after, setAfter] = useState<string | null>(null);
  const [{ data, error, fetching }] = useQuery({ query: PatientsQuery, variables: { filter, after } });
  const list = data?.patients;

  return (
    <Screen title="My patients">
      <form
        role="search"
        aria-label="Find a patient"
        onSubmit={(e) => {
          e.preventDefault();
          setAfter(null);
          const f: PatientFilterInput = {};
          if (familyName.trim()) f.familyName = familyName.trim();
          if (birthDate) f.birthDate = birthDate;
          setFilter(Object.keys(f).length ? f : null);
        }}
      >
        <label htmlFor="family">Family name</label>
        <input id="family" value={familyName} onChange={(e) => setFamilyName(e.target.value)} />
        <label htmlFor="born">Birth date</label>
        <input id="born" type="date" value={birthDate} onChange={(e) => setBirthDate(e.target.value)} />
        <button type="submit">Search</button>{' '}
        {filter && (
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setFamilyName('');
              setBirthDate('');
              setFilter(null);
              setAfter(null);
            }}
          >
            Show all
          </button>
        )}
      </form>
      <ProblemNote problem={problem(error)} />
      {!list ? (
        fetching && <Loading what="patients" />
      ) : list.edges.length === 0 ? (
        <p role="status">No patients match.</p>
      ) : (
        <>
          <p role="status">
            {list.totalCount} patient{list.totalCount === 1 ? '' : 's'}
            {filter ? ' match' : ' on your care team'}.
          </p>
          <table>
            <caption>Patients</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Birth date</th>
                <th scope="col">MRN</th>
              </tr>
            </thead>
            <tbody>
              {list.edges.map(({ node: p }) => (
                <tr key={p.id}>
                  <td>
                    <Link to={`chart/${p.id}`}>
                      {p.familyName}, {p.givenName}
                    </Link>
                  </td>
                  <td>{day(p.birthDate)}</td>
                  <td>{p.mrn}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {list.pageInfo.hasNextPage && list.pageInfo.endCursor && (
            <button type="button" onClick={() => setAfter(list.pageInfo.endCursor)}>
              Next page
            </button>
          )}
        </>
      )}
    </Screen>
  );
}
