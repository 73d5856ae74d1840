import { ChartTabs, Demographics, useChart } from './Chart';
import { otherProblems } from '../errors';
import { Link, Loading, ProblemNote, Screen } from '../ui';

const CATEGORY_FIELDS = ['labResults', 'visitNotes', 'medications', 'allergies', 'immunizations', 'documents'];

export function PatientChart({ patientId }: { patientId: string }) {
  const [{ data, error, fetching }] = useChart(patientId);
  const p = data?.patient;
  if (!p) {
    return (
      <Screen title="Patient chart">
        {fetching ? <Loading what="the chart" /> : <ProblemNote problem={otherProblems(error, CATEGORY_FIELDS)} />}
        <p>
          <Link to="patients">Back to my patients</Link>
        </p>
      </Screen>
    );
  }
  return (
    <Screen title={`Chart: ${p.givenName} ${p.familyName}`} docTitle="Patient chart">
      <Demographics p={p} />
      <ChartTabs data={data} error={error} fetching={fetching} viewer="provider" />
    </Screen>
  );
}
