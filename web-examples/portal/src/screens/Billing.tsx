// Statements, payments and coverage. A payment's idempotency key is made once per payment
// form, and the button takes one press at a time: a double click charges once.
import { useRef, useState } from 'react';
import { useMutation, useQuery } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import { Loading, ProblemNote, Screen, day, money, newKey, when } from '../ui';

const BillingQuery = graphql(`
  query Billing($id: ID!) {
    billingStatements(patientId: $id, first: 20) {
      edges {
        node {
          id
          issuedOn
          dueOn
          currency
          totalCents
          status
          balanceCents
          lineItems {
            serviceDate
            description
            code
            amountCents
          }
          payments {
            id
            status
            amountCents
            refundedCents
            createdAt
          }
        }
      }
    }
    patient(id: $id) {
      id
      coverages {
        id
        payer
        planName
        memberId
        groupNumber
        subscriberRelationship
        effectiveFrom
        effectiveTo
      }
    }
  }
`);

const Pay = graphql(`
  mutation Pay($statementId: ID!, $amountCents: Int!, $token: String!, $key: String!) {
    makePayment(statementId: $statementId, amountCents: $amountCents, paymentMethodToken: $token, idempotencyKey: $key) {
      id
      status
      amountCents
    }
  }
`);

const Verify = graphql(`
  mutation VerifyCoverage($id: ID!) {
    verifyCoverage(coverageId: $id) {
      status
      checkedAt
      planName
      copayCents
    }
  }
`);

/** The sandbox gateway's test cards (Caregraph's billing sandbox). */
const CARDS = [
  ['tok_sandbox_approve', 'Sandbox card that is approved'],
  ['tok_sandbox_decline', 'Sandbox card that is declined'],
] as const;

export function Billing({ patientId }: { patientId: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: BillingQuery, variables: { id: patientId } });
  const statements = data?.billingStatements.edges.map((e) => e.node) ?? [];
  // Kept here, not in the form: a payment of the whole balance closes the statement, and its
  // form goes with it.
  const [outcome, setOutcome] = useState<string | null>(null);
  return (
    <Screen title="Billing">
      <ProblemNote problem={problem(error)} />
      {outcome && (
        <p role="status" className="notice">
          {outcome}
        </p>
      )}
      {!data && fetching && <Loading what="your statements" />}
      <section aria-labelledby="h-statements">
        <h2 id="h-statements">Statements</h2>
        {data && statements.length === 0 && <p>No statements.</p>}
        {statements.map((s) => (
          <article key={s.id} className="card" aria-labelledby={`st-${s.id}`}>
            <h3 id={`st-${s.id}`}>
              Statement of {day(s.issuedOn)} — {s.status.toLowerCase()}
            </h3>
            <p>
              Total {money(s.totalCents, s.currency)}; balance <strong>{money(s.balanceCents, s.currency)}</strong>, due{' '}
              {day(s.dueOn)}.
            </p>
            <table>
              <caption>Services</caption>
              <thead>
                <tr>
                  <th scope="col">Date</th>
                  <th scope="col">Service</th>
                  <th scope="col">Amount</th>
                </tr>
              </thead>
              <tbody>
                {s.lineItems.map((l, i) => (
                  <tr key={i}>
                    <td>{day(l.serviceDate)}</td>
                    <td>
                      {l.description} ({l.code})
                    </td>
                    <td>{money(l.amountCents, s.currency)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {s.payments.length > 0 && (
              <ul aria-label="Payments">
                {s.payments.map((p) => (
                  <li key={p.id} data-testid="payment">
                    {money(p.amountCents, s.currency)} on {when(p.createdAt)} — {p.status.toLowerCase()}
                    {p.refundedCents > 0 && `, ${money(p.refundedCents, s.currency)} refunded`}
                  </li>
                ))}
              </ul>
            )}
            {s.status === 'OPEN' && s.balanceCents > 0 && (
              <PayForm
                statementId={s.id}
                balanceCents={s.balanceCents}
                currency={s.currency}
                onPaid={(message) => {
                  setOutcome(message);
                  refetch({ requestPolicy: 'network-only' });
                }}
              />
            )}
          </article>
        ))}
      </section>
      <Coverages coverages={data?.patient.coverages ?? []} />
    </Screen>
  );
}

function PayForm({ statementId, balanceCents, currency, onPaid }: {
  statementId: string;
  balanceCents: number;
  currency: string;
  onPaid: (message: string) => void;
}) {
  const [amount, setAmount] = useState((balanceCents / 100).toFixed(2));
  const [token, setToken] = useState<string>(CARDS[0][0]);
  // One key per payment intent: a retry (or a second click) of the same payment is the
  // same request to the server, which charges once.
  const key = useRef(newKey());
  const busy = useRef(false);
  const [paid, pay] = useMutation(Pay);
  const cents = Math.round(Number(amount) * 100);

  return (
    <form
      aria-labelledby={`st-${statementId}`}
      onSubmit={async (e) => {
        e.preventDefault();
        if (busy.current) return;
        busy.current = true;
        try {
          const r = await pay({ statementId, amountCents: cents, token, key: key.current });
          if (r.data) {
            key.current = newKey();
            onPaid(`Payment ${r.data.makePayment.status.toLowerCase()}: ${money(r.data.makePayment.amountCents, currency)}.`);
          }
        } finally {
          busy.current = false;
        }
      }}
    >
      <label htmlFor={`amount-${statementId}`}>Amount to pay ({currency})</label>
      <input
        id={`amount-${statementId}`}
        inputMode="decimal"
        required
        pattern="[0-9]+(\.[0-9]{1,2})?"
        value={amount}
        onChange={(e) => {
          setAmount(e.target.value);
          key.current = newKey();
        }}
      />
      <label htmlFor={`card-${statementId}`}>Card</label>
      <select
        id={`card-${statementId}`}
        value={token}
        onChange={(e) => {
          setToken(e.target.value);
          key.current = newKey();
        }}
      >
        {CARDS.map(([t, label]) => (
          <option key={t} value={t}>
            {label}
          </option>
        ))}
      </select>
      <ProblemNote problem={problem(paid.error)} />
      <button type="submit" disabled={paid.fetching || !(cents > 0)}>
        Pay {Number.isFinite(cents) && cents > 0 ? money(cents, currency) : ''}
      </button>
    </form>
  );
}

type Cov = {
  id: string;
  payer: string;
  planName: string;
  memberId: string;
  groupNumber: string | null;
  subscriberRelationship: string;
  effectiveFrom: string;
  effectiveTo: string | null;
};

function Coverages({ coverages }: { coverages: Cov[] }) {
  return (
    <section aria-labelledby="h-coverage">
      <h2 id="h-coverage">Coverage</h2>
      {coverages.length === 0 ? (
        <p>No insurance coverage on file.</p>
      ) : (
        <ul className="rows">
          {coverages.map((c) => (
            <CoverageRow key={c.id} c={c} />
          ))}
        </ul>
      )}
    </section>
  );
}

function CoverageRow({ c }: { c: Cov }) {
  const [checked, verify] = useMutation(Verify);
  const e = checked.data?.verifyCoverage;
  return (
    <li>
      <p>
        <strong>
          {c.payer}, {c.planName}
        </strong>{' '}
        — member {c.memberId}
        {c.groupNumber && `, group ${c.groupNumber}`}; from {day(c.effectiveFrom)}
        {c.effectiveTo && ` to ${day(c.effectiveTo)}`} ({c.subscriberRelationship.toLowerCase()})
      </p>
      <button type="button" disabled={checked.fetching} onClick={() => void verify({ id: c.id })} aria-label={`Check coverage ${c.planName}`}>
        Check coverage
      </button>
      <ProblemNote problem={problem(checked.error)} />
      {e && (
        <p role="status">
          {e.status.toLowerCase()} as of {when(e.checkedAt)}
          {e.copayCents !== null && `; copay ${money(e.copayCents)}`}
        </p>
      )}
    </li>
  );
}
