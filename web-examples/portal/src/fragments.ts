// Fields more than one screen reads, written once. Operations spread them by name; the
// generated documents (and the persisted-documents manifest) carry the fragment's text.
import { graphql } from './gql';

/** A lab result as the home screen and the chart show it. */
export const LabResultFields = graphql(`
  fragment LabResultFields on LabResult {
    id
    code
    display
    value
    unit
    referenceRange
    abnormal
    observedAt
  }
`);
