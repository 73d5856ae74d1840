// The provider's schedule for a day, live: each booking or change of an appointment they
// may see arrives as an event (ids only) and the day is read again.
import { useMemo, useState } from 'react';
import { useQuery, useSubscription } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import { Link, Loading, ProblemNote, Screen, localDate, useLiveRefetch } from '../ui';

const ScheduleQuery = graphql(`
  query Schedule($from: DateTime!, $to: DateTime!) {
    me {
      id
      provider {
        id
        displayName
        schedule(from: $from, to: $to) {
          id
          startsAt
          endsAt
          status
          reason
          patient {
            id
            givenName
            familyName
          }
        }
      }
    }
  }
`);

const ScheduleChanged = graphql(`
  subscription ScheduleChanged {
    appointmentChanged {
      id
      status
    }
  }
`);

const time = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

export function Schedule() {
  const [date, setDate] = useState(() => localDate(new Date()));
  const range = useMemo(() => {
    const from = new Date(`${date}T00:00:00`);
    const to = new Date(from);
    to.setDate(to.getDate() + 1);
    return { from: from.toISOString(), to: to.toISOString() };
  }, [date]);
  const [{ data, error, fetching, operation }, refetch] = useQuery({ query: ScheduleQuery, variables: range });
  // The day whose appointments are on screen (the answer for the day chosen has arrived).
  const shownDay = data && operation?.variables.from === range.from ? date : undefined;
  const [live] = useSubscription({ query: ScheduleChanged });
  useLiveRefetch(live.data, refetch);
  const items = data?.me.provider?.schedule ?? [];
  const shift = (days: number) => {
    const d = new Date(`${date}T12:00:00`);
    d.setDate(d.getDate() + days);
    setDate(localDate(d));
  };

  return (
    <Screen title="Schedule">
      <div className="toolbar">
        <button type="button" className="secondary" onClick={() => shift(-1)}>
          Previous day
        </button>
        <label htmlFor="day">Day</label>
        <input id="day" type="date" value={date} onChange={(e) => e.target.value && setDate(e.target.value)} />
        <button type="button" className="secondary" onClick={() => shift(1)}>
          Next day
        </button>
      </div>
      <ProblemNote problem={problem(error ?? live.error)} />
      <div data-testid="schedule" data-day={shownDay}>
      {!data ? (
        fetching && <Loading what="the schedule" />
      ) : items.length === 0 ? (
        <p role="status">No appointments on this day.</p>
      ) : (
        <table>
          <caption>Appointments on {new Date(`${date}T12:00:00`).toLocaleDateString(undefined, { dateStyle: 'full' })}</caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Patient</th>
              <th scope="col">Reason</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody aria-live="polite">
            {items.map((a) => (
              <tr key={a.id} data-testid="schedule-item">
                <td>
                  {time.format(new Date(a.startsAt))}–{time.format(new Date(a.endsAt))}
                </td>
                <td>
                  {a.patient ? (
                    <Link to={`chart/${a.patient.id}`}>
                      {a.patient.familyName}, {a.patient.givenName}
                    </Link>
                  ) : (
                    'a patient you may not see'
                  )}
                </td>
                <td>{a.reason}</td>
                <td>{a.status.toLowerCase()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      </div>
    </Screen>
  );
}
