// "Download my data": the patient's whole record as a FHIR R4 Bundle, saved as a file. The
// export is read fresh (never from the cache) and kept only in the download.
import { useState } from 'react';
import { useClient } from 'urql';
import { problem, type Problem } from '../errors';
import { graphql } from '../gql';
import { ProblemNote, Screen } from '../ui';

const Export = graphql(`
  query ExportMyData($id: ID!) {
    patient(id: $id) {
      id
      fhirExport
    }
  }
`);

export function ExportData({ patientId }: { patientId: string }) {
  const client = useClient();
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<Problem | null>(null);
  const [done, setDone] = useState(false);

  async function download() {
    setBusy(true);
    setFailure(null);
    setDone(false);
    try {
      const r = await client.query(Export, { id: patientId }, { requestPolicy: 'network-only' }).toPromise();
      if (!r.data) return setFailure(problem(r.error));
      const blob = new Blob([JSON.stringify(r.data.patient.fhirExport, null, 2)], { type: 'application/fhir+json' });
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = `caregraph-export-${new Date().toISOString().slice(0, 10)}.json`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setDone(true);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Screen title="Download my data">
      <p>
        Your whole record — demographics, records, medications, allergies, immunizations, documents and any statements of
        disagreement — as one FHIR R4 file that other health apps can read.
      </p>
      <ProblemNote problem={failure} />
      <button type="button" disabled={busy} onClick={() => void download()}>
        {busy ? 'Preparing your file…' : 'Download my data'}
      </button>
      {done && (
        <p role="status" className="notice">
          Your file has been downloaded. It holds your health information: keep it safe.
        </p>
      )}
    </Screen>
  );
}
