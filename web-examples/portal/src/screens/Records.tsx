import { ChartTabs, useChart } from './Chart';
import { Screen } from '../ui';

export function Records({ patientId }: { patientId: string }) {
  const [{ data, error, fetching }] = useChart(patientId);
  return (
    <Screen title="My records">
      <ChartTabs data={data} error={error} fetching={fetching} viewer="patient" />
    </Screen>
  );
}
