// Break-glass: a provider outside a patient's care team opens time-limited, read-only
// access with a written reason. It is audited and shown in the patient's access history.
import { useState } from 'react';
import { useMutation } from 'urql';
import { problem } from '../errors';
import { graphql } from '../gql';
import { ProblemNote, Screen, navigate, when } from '../ui';

const Open = graphql(`
  mutation OpenEmergencyAccess($patientId: ID!, $reason: String!) {
    openEmergencyAccess(patientId: $patientId, reason: $reason) {
      id
      patientId
      expiresAt
    }
  }
`);

export function EmergencyAccess() {
  const [patientId, setPatientId] = useState('');
  const [reason, setReason] = useState('');
  const [opened, open] = useMutation(Open);
  const grant = opened.data?.openEmergencyAccess;
  return (
    <Screen title="Emergency access">
      <p>
        Use this only when a patient outside your care team needs care now. You get read-only access for a limited time;
        your reason is recorded and the patient sees this access in their history.
      </p>
      <form
        aria-label="Open emergency access"
        onSubmit={async (e) => {
          e.preventDefault();
          await open({ patientId: patientId.trim(), reason });
        }}
      >
        <label htmlFor="ea-patient">Patient ID</label>
        <input id="ea-patient" required value={patientId} onChange={(e) => setPatientId(e.target.value)} />
        <label htmlFor="ea-reason">Reason</label>
        <textarea id="ea-reason" required minLength={10} rows={3} value={reason} onChange={(e) => setReason(e.target.value)} />
        <ProblemNote problem={problem(opened.error)} />
        <button type="submit" className="danger" disabled={opened.fetching}>
          Open emergency access
        </button>
      </form>
      {grant && (
        <p role="status" className="notice">
          Emergency access is open until {when(grant.expiresAt)}.{' '}
          <button type="button" onClick={() => navigate(`chart/${grant.patientId}`)}>
            Open the chart
          </button>
        </p>
      )}
    </Screen>
  );
}
