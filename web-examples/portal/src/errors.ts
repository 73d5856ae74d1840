// Errors are shown by their `extensions.code`, never by guessing at message text. The
// server's messages carry no PHI and no input echoed back, so VALIDATION and CONFLICT show
// theirs (they say what to change); the others get a sentence of their own.
import type { CombinedError } from '@urql/core';

export type Problem = { code: string; text: string };

const TEXT: Record<string, string> = {
  UNAUTHENTICATED: 'Your session has ended. Sign in again.',
  FORBIDDEN: 'You are not allowed to do this.',
  CONSENT_REQUIRED: "The patient's consent does not cover this information.",
  NOT_FOUND: 'Not found.',
  RATE_LIMITED: 'Too many attempts. Wait a moment, then try again.',
  PERSISTED_QUERY_NOT_IN_LIST:
    'This version of the portal is not accepted by the server. Reload the page.',
  PERSISTED_QUERY_NOT_FOUND: 'The server does not know this request. Reload the page.',
  RESYNC: 'Live updates fell behind; they have been restarted.',
  INTERNAL: 'Something went wrong on our side. Try again in a moment.',
  NETWORK: 'The server cannot be reached. Check your connection and try again.',
};

export function problemOf(code: string | undefined, message?: string): Problem {
  const c = code ?? 'INTERNAL';
  if ((c === 'VALIDATION' || c === 'CONFLICT') && message) return { code: c, text: message };
  if (c === 'RATE_LIMITED' && message) return { code: c, text: message };
  return { code: c, text: TEXT[c] ?? TEXT.INTERNAL };
}

/** The first error of a result, by code. */
export function problem(error: CombinedError | undefined): Problem | null {
  if (!error) return null;
  const first = error.graphQLErrors[0];
  if (!first) return problemOf('NETWORK');
  return problemOf(first.extensions?.code as string | undefined, first.message);
}

/** The error a field of a partial result carries (`path` ends at that field), by code. */
export function fieldProblem(error: CombinedError | undefined, field: string): Problem | null {
  const e = error?.graphQLErrors.find((g) => g.path?.includes(field));
  return e ? problemOf(e.extensions?.code as string | undefined, e.message) : null;
}

/** The errors of a partial result that no field-level explanation covers. */
export function otherProblems(error: CombinedError | undefined, fields: string[]): Problem | null {
  const rest = error?.graphQLErrors.filter((g) => !fields.some((f) => g.path?.includes(f)));
  if (!error) return null;
  if (error.networkError && !error.graphQLErrors.length) return problemOf('NETWORK');
  const first = rest?.[0];
  return first ? problemOf(first.extensions?.code as string | undefined, first.message) : null;
}
