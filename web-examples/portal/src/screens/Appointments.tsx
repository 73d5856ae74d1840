// The patient's appointments: book with a care-team provider from their free slots,
// reschedule (by the version read, so a change made meanwhile is CONFLICT, not lost),
// cancel with a reason.
import { useMemo, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import { Loading, ProblemNote, Screen, newKey, useNow, when } from '../ui';

const MyAppointments = graphql(`
  query MyAppointments($id: ID!, $now: DateTime!) {
    patient(id: $id) {
      id
      careTeam {
        id
        displayName
        specialty
      }
      appointments(status: SCHEDULED, from: $now, first: 20) {
        edges {
          node {
            id
            startsAt
            endsAt
            durationMinutes
            reason
            version
            provider {
              id
              displayName
            }
          }
        }
      }
    }
  }
`);

const Availability = graphql(`
  query Availability($providerId: ID!, $from: DateTime!, $to: DateTime!) {
    providerAvailability(providerId: $providerId, from: $from, to: $to) {
      startsAt
      endsAt
    }
  }
`);

const Book = graphql(`
  mutation Book($input: ScheduleAppointmentInput!, $key: String) {
    scheduleAppointment(input: $input, idempotencyKey: $key) {
      id
      startsAt
      status
      version
    }
  }
`);

const Reschedule = graphql(`
  mutation Reschedule($id: ID!, $expectedVersion: Int!, $startsAt: DateTime!) {
    rescheduleAppointment(id: $id, expectedVersion: $expectedVersion, startsAt: $startsAt) {
      id
      startsAt
      endsAt
      version
    }
  }
`);

const Cancel = graphql(`
  mutation CancelAppointment($id: ID!, $reason: String!) {
    cancelAppointment(id: $id, reason: $reason) {
      id
      status
    }
  }
`);

const DAYS = 14;

/** A provider's free slots over the next two weeks, as a labelled select. */
function SlotPicker({ providerId, label, value, onChange }: {
  providerId: string;
  label: string;
  value: string;
  onChange: (startsAt: string, minutes: number) => void;
}) {
  const range = useMemo(() => {
    const from = new Date();
    return { from: from.toISOString(), to: new Date(from.getTime() + DAYS * 86_400_000).toISOString() };
  }, []);
  const [{ data, error, fetching }] = useQuery({
    query: Availability,
    variables: { providerId, ...range },
    pause: !providerId,
    requestPolicy: 'network-only',
  });
  const slots = data?.providerAvailability ?? [];
  const id = `slot-${label.replace(/\W/g, '')}`;
  if (fetching && !data) return <Loading what="free times" />;
  return (
    <>
      <ProblemNote problem={problem(error)} />
      <label htmlFor={id}>{label}</label>
      <select
        id={id}
        required
        value={value}
        onChange={(e) => {
          const s = slots.find((x) => x.startsAt === e.target.value);
          onChange(e.target.value, s ? (Date.parse(s.endsAt) - Date.parse(s.startsAt)) / 60_000 : 0);
        }}
      >
        <option value="">{slots.length ? 'Choose a time' : 'No free times in the next two weeks'}</option>
        {slots.slice(0, 200).map((s) => (
          <option key={s.startsAt} value={s.startsAt}>
            {when(s.startsAt)}
          </option>
        ))}
      </select>
    </>
  );
}

export function Appointments({ patientId }: { patientId: string }) {
  const now = useNow();
  const [{ data, error, fetching }, refetch] = useQuery({ query: MyAppointments, variables: { id: patientId, now } });
  const p = data?.patient;
  const reload = () => refetch({ requestPolicy: 'network-only' });

  return (
    <Screen title="Appointments">
      {!p ? (
        fetching ? <Loading what="your appointments" /> : <ProblemNote problem={problem(error)} />
      ) : (
        <>
          <section aria-labelledby="h-upcoming">
            <h2 id="h-upcoming">Upcoming</h2>
            {p.appointments?.edges.length ? (
              <ul className="rows">
                {p.appointments.edges.map(({ node: a }) => (
                  <AppointmentRow key={a.id} a={a} onChanged={reload} />
                ))}
              </ul>
            ) : (
              <p>No upcoming appointments.</p>
            )}
          </section>
          <BookForm patientId={patientId} careTeam={p.careTeam ?? []} onBooked={reload} />
        </>
      )}
    </Screen>
  );
}

type Appt = {
  id: string;
  startsAt: string;
  durationMinutes: number;
  reason: string;
  version: number;
  provider: { id: string; displayName: string };
};

function AppointmentRow({ a, onChanged }: { a: Appt; onChanged: () => void }) {
  const [mode, setMode] = useState<'view' | 'move' | 'cancel'>('view');
  const [startsAt, setStartsAt] = useState('');
  const [reason, setReason] = useState('');
  const [moved, move] = useMutation(Reschedule);
  const [cancelled, cancel] = useMutation(Cancel);
  const label = `${when(a.startsAt)} with ${a.provider.displayName}`;
  return (
    <li>
      <p>
        <strong>{label}</strong> — {a.reason} ({a.durationMinutes} min)
      </p>
      {mode === 'view' && (
        <>
          <button type="button" aria-label={`Reschedule ${label}`} onClick={() => setMode('move')}>
            Reschedule
          </button>{' '}
          <button type="button" className="secondary" aria-label={`Cancel ${label}`} onClick={() => setMode('cancel')}>
            Cancel
          </button>
        </>
      )}
      {mode === 'move' && (
        <form
          aria-label={`Reschedule ${label}`}
          onSubmit={async (e) => {
            e.preventDefault();
            const r = await move({ id: a.id, expectedVersion: a.version, startsAt });
            if (r.data) {
              setMode('view');
              onChanged();
            }
          }}
        >
          <SlotPicker providerId={a.provider.id} label="New time" value={startsAt} onChange={(s) => setStartsAt(s)} />
          <ProblemNote problem={problem(moved.error)} />
          <button type="submit" disabled={!startsAt || moved.fetching}>
            Move appointment
          </button>{' '}
          <button type="button" className="secondary" onClick={() => setMode('view')}>
            Keep as is
          </button>
        </form>
      )}
      {mode === 'cancel' && (
        <form
          aria-label={`Cancel ${label}`}
          onSubmit={async (e) => {
            e.preventDefault();
            const r = await cancel({ id: a.id, reason });
            if (r.data) onChanged();
          }}
        >
          <label htmlFor={`why-${a.id}`}>Reason for cancelling</label>
          <input id={`why-${a.id}`} required maxLength={500} value={reason} onChange={(e) => setReason(e.target.value)} />
          <ProblemNote problem={problem(cancelled.error)} />
          <button type="submit" disabled={cancelled.fetching}>
            Cancel appointment
          </button>{' '}
          <button type="button" className="secondary" onClick={() => setMode('view')}>
            Keep appointment
          </button>
        </form>
      )}
    </li>
  );
}

function BookForm({ patientId, careTeam, onBooked }: {
  patientId: string;
  careTeam: { id: string; displayName: string; specialty: string | null }[];
  onBooked: () => void;
}) {
  const [providerId, setProviderId] = useState(careTeam[0]?.id ?? '');
  const [startsAt, setStartsAt] = useState('');
  const [minutes, setMinutes] = useState(0);
  const [reason, setReason] = useState('');
  const [key, setKey] = useState(newKey);
  const [booked, book] = useMutation(Book);
  const [done, setDone] = useState<string | null>(null);
  const [bookings, setBookings] = useState(0);

  return (
    <section aria-labelledby="h-book">
      <h2 id="h-book">Book an appointment</h2>
      {careTeam.length === 0 ? (
        <p>You have no care-team provider to book with yet.</p>
      ) : (
        <form
          aria-labelledby="h-book"
          onSubmit={async (e) => {
            e.preventDefault();
            const r = await book({
              input: { patientId, providerId, startsAt, durationMinutes: minutes, reason },
              key,
            });
            if (r.data) {
              setDone(r.data.scheduleAppointment.startsAt);
              setStartsAt('');
              setReason('');
              setKey(newKey());
              setBookings((n) => n + 1);
              onBooked();
            }
          }}
        >
          <label htmlFor="provider">Provider</label>
          <select
            id="provider"
            value={providerId}
            onChange={(e) => {
              setProviderId(e.target.value);
              setStartsAt('');
            }}
          >
            {careTeam.map((c) => (
              <option key={c.id} value={c.id}>
                {c.displayName}
                {c.specialty ? ` (${c.specialty})` : ''}
              </option>
            ))}
          </select>
          <SlotPicker
            key={`${providerId}:${bookings}`}
            providerId={providerId}
            label="Time"
            value={startsAt}
            onChange={(s, m) => {
              setStartsAt(s);
              setMinutes(m);
            }}
          />
          <label htmlFor="reason">Reason for the visit</label>
          <input id="reason" required maxLength={500} value={reason} onChange={(e) => setReason(e.target.value)} />
          <ProblemNote problem={problem(booked.error)} />
          <button type="submit" disabled={!startsAt || booked.fetching}>
            Book appointment
          </button>
          {done && (
            <p role="status" className="notice">
              Booked for {when(done)}.
            </p>
          )}
        </form>
      )}
    </section>
  );
}
