// Small shared pieces: problems shown by code, loading states, dates and money, the router.
import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { ReactNode } from 'react';
import type { Problem } from './errors';
import { session } from './session';

export function ProblemNote({ problem, id }: { problem: Problem | null; id?: string }) {
  if (!problem) return null;
  return (
    <p className="problem" role="alert" id={id} data-code={problem.code}>
      {problem.text} <span className="code">({problem.code})</span>
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}

/** A screen with its heading. `docTitle` is the tab's title, which must carry no PHI (a
 * patient's name stays out of it: browsers keep titles in their history). */
export function Screen({ title, docTitle, children }: { title: string; docTitle?: string; children: ReactNode }) {
  useTitle(docTitle ?? title);
  return (
    <section aria-labelledby="screen-title" className="screen">
      <h1 id="screen-title" tabIndex={-1}>
        {title}
      </h1>
      {children}
    </section>
  );
}

export function useTitle(title: string) {
  useEffect(() => {
    document.title = `${title} · Caregraph`;
  }, [title]);
}

/**
 * Read a screen's data again after each live event (which carries ids only) and after the
 * live socket comes back from a drop (events in between were not delivered).
 */
export function useLiveRefetch(event: unknown, refetch: (o: { requestPolicy: 'network-only' }) => void) {
  const epoch = useSyncExternalStore(
    (l) => session.subscribe(l),
    () => session.liveEpoch,
  );
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    refetch({ requestPolicy: 'network-only' });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [event, epoch]);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });

export const when = (iso: string) => dateTime.format(new Date(iso));
/** A calendar date (`NaiveDate`), shown as that date wherever the browser is. */
export const day = (naive: string) => dateOnly.format(new Date(`${naive}T00:00:00Z`));

export function money(cents: number, currency = 'USD') {
  return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(cents / 100);
}

/** The local calendar date of `d` as YYYY-MM-DD (the value of an `<input type="date">`). */
export function localDate(d: Date) {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** A random idempotency key, made once per intent (a form shown), not per click. */
export const newKey = () => crypto.randomUUID();

// ---------- routing: /portal/<screen>[/<id>] with the history API ----------

const BASE = import.meta.env.BASE_URL; // "/portal/"
const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((l) => l()));

function currentRoute() {
  const p = location.pathname;
  return p.startsWith(BASE) ? p.slice(BASE.length).replace(/\/$/, '') : '';
}

export function useRoute(): string {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    currentRoute,
  );
}

export function navigate(to: string) {
  if (currentRoute() === to) return;
  history.pushState(null, '', BASE + to);
  listeners.forEach((l) => l());
  // Move focus to the new screen's heading, as a screen reader user expects.
  requestAnimationFrame(() => document.getElementById('screen-title')?.focus());
}

/** Back to the portal's root without a history entry: after sign-out, the next person to
 * sign in starts at their home screen, not on the screen the last one left open. */
export function resetRoute() {
  history.replaceState(null, '', BASE);
  listeners.forEach((l) => l());
}

export function Link({ to, children, current }: { to: string; children: ReactNode; current?: boolean }) {
  return (
    <a
      href={BASE + to}
      aria-current={current ? 'page' : undefined}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(to);
      }}
    >
      {children}
    </a>
  );
}

/** `now` fixed when the screen mounts, so a query's variables stay the same across renders. */
export function useNow() {
  const [now] = useState(() => new Date().toISOString());
  return now;
}
