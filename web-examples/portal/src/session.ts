// The browser session, outside React: the access token lives in this module's memory only
// (never localStorage or sessionStorage); the refresh token is an HttpOnly cookie that
// only Caregraph's /auth/refresh and /auth/logout read. Refreshes run one at a time across
// every tab (Web Locks): a rotated-out refresh token presented twice revokes the whole
// session. A sign-out goes at once (the server ends the session for any of its cookies),
// and again after a refresh it raced, whose answer set a new cookie. Idleness is the
// user's, across tabs: pointer, keyboard, wheel and touch input count; background
// refreshes and sockets do not.

type Listener = () => void;

/** Why the session ended, for the sign-in screen. */
export type EndReason = 'signed-out' | 'idle' | 'expired' | 'switched' | null;

type Current = { accessToken: string; expiresAt: number; idleTimeoutSeconds: number; userId: string };
type Answer = { accessToken: string; expiresAt: string; idleTimeoutSeconds: number };

const LOCK = 'caregraph-refresh';
const CHANNEL = 'caregraph-session';
const ACTIVITY_EVENTS = ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const;
/** Tell the other tabs about activity at most this often. */
const SHARE_ACTIVITY_MS = 5_000;
/** After a refresh that failed for a reason other than a dead session (network, 503, 429). */
const RETRY_MS = 15_000;

/** The `sub` claim of our own access token (who it is for), or '' if unreadable. */
function subjectOf(token: string): string {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return String(JSON.parse(atob(part)).sub ?? '');
  } catch {
    return '';
  }
}

/** Some tab holds the lock or waits for it (a refresh or a sign-out is under way). */
async function lockBusy(): Promise<boolean> {
  if (!navigator.locks) return false;
  const { held = [], pending = [] } = await navigator.locks.query();
  return [...held, ...pending].some((l) => l.name === LOCK);
}

/** Ask the server to end the session and clear the cookie. `keepalive`: the request
 * outlives the page, so a sign-out followed at once by closing the tab still lands. */
async function logout(): Promise<void> {
  const res = await fetch('/auth/logout', {
    method: 'POST',
    credentials: 'same-origin',
    keepalive: true,
    headers: { 'X-Caregraph-Refresh': '1' },
  });
  await res.text();
}

/** Run `f` holding the cross-tab lock (or plainly, where Web Locks are missing). */
async function locked<T>(f: () => Promise<T>): Promise<T> {
  if (!navigator.locks) return f();
  let out!: T;
  await navigator.locks.request(LOCK, async () => {
    out = await f();
  });
  return out;
}

class Session {
  private current: Current | null = null;
  private listeners = new Set<Listener>();
  private refreshing: Promise<boolean> | null = null;
  /** Moves at each sign-in and sign-out: a refresh answer from an older epoch is dropped. */
  private epoch = 0;
  private refreshTimer: number | undefined;
  private idleTimer: number | undefined;
  private lastActivity = Date.now();
  private lastShared = 0;
  private lastServerContact = Date.now();
  private keepAlive: (() => Promise<unknown>) | null = null;
  /** Sign-out requests under way. */
  private outgoing = 0;
  private channel: BroadcastChannel | null =
    typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(CHANNEL);
  endReason: EndReason = null;
  /** Seconds left before the idle sign-out, while the warning shows; null otherwise. */
  idleWarning: number | null = null;
  /** Moves each time the live socket comes back after a drop: screens read again. */
  liveEpoch = 0;

  constructor() {
    this.channel?.addEventListener('message', (e) => {
      const m = e.data as { type: string; at?: number };
      if (m.type === 'signed-out' && this.current) this.end('signed-out', false);
      // Another tab signed in: resume here (or notice that it is someone else now).
      if (m.type === 'signed-in') void this.refresh();
      if (m.type === 'active' && this.current && m.at) {
        this.lastActivity = Math.max(this.lastActivity, m.at);
        if (this.idleWarning !== null) {
          this.idleWarning = null;
          this.emit();
        }
      }
    });
    for (const name of ACTIVITY_EVENTS) {
      window.addEventListener(name, () => this.activity(), { capture: true, passive: true });
    }
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private emit() {
    for (const l of this.listeners) l();
  }

  get signedIn(): boolean {
    return this.current !== null;
  }

  get token(): string | null {
    return this.current?.accessToken ?? null;
  }

  /** Refresh this long before the access token expires: a minute, or a quarter of a
   * short token's life. */
  private margin = 60_000;

  /** The access token is near its expiry (or past it). */
  get expiresSoon(): boolean {
    const c = this.current;
    return c !== null && c.expiresAt - Date.now() < this.margin;
  }

  /** An answer from the API: the server's idle window slid. */
  touched() {
    this.lastServerContact = Date.now();
  }

  /** What makes an authenticated request (which slides the server's idle window). */
  setKeepAlive(f: (() => Promise<unknown>) | null) {
    this.keepAlive = f;
  }

  liveReconnected() {
    this.liveEpoch += 1;
    this.emit();
  }

  private adopt(a: Answer) {
    const c: Current = {
      accessToken: a.accessToken,
      expiresAt: Date.parse(a.expiresAt),
      idleTimeoutSeconds: a.idleTimeoutSeconds,
      userId: subjectOf(a.accessToken),
    };
    this.margin = Math.min(60_000, Math.max(1_000, (c.expiresAt - Date.now()) / 4));
    this.current = c;
    this.lastServerContact = Date.now();
    this.schedule();
  }

  /** Sign-in succeeded (login or verifyMfa with refreshTokenIn: COOKIE). */
  begin(accessToken: string, expiresAt: string, idleTimeoutSeconds: number) {
    this.epoch += 1;
    this.adopt({ accessToken, expiresAt, idleTimeoutSeconds });
    this.endReason = null;
    this.lastActivity = Date.now();
    this.channel?.postMessage({ type: 'signed-in' });
    this.emit();
  }

  /**
   * Trade the cookie for a new access token (and a rotated cookie). Resolves false when
   * there is no live session. Concurrent callers in this tab share one request; other tabs
   * wait for the lock, then send the cookie this refresh rotated in.
   */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.refreshLocked().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async refreshLocked(): Promise<boolean> {
    const epoch = this.epoch;
    let status = 0;
    let answer: Answer | null = null;
    try {
      answer = await locked(async () => {
        const res = await fetch('/auth/refresh', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'X-Caregraph-Refresh': '1' },
        });
        status = res.status;
        // Read the body either way: a response left unread keeps its request open.
        const body = await res.text();
        return res.ok ? (JSON.parse(body) as Answer) : null;
      });
    } catch {
      answer = null;
    }
    // Signed out (or in) meanwhile: this answer belongs to what came before.
    if (epoch !== this.epoch) return false;
    if (!answer) {
      if (status === 401 || status === 403) {
        if (this.current) this.end('expired', false);
      } else if (this.current) {
        // The server or the network is in trouble, not the session: try again shortly.
        window.clearTimeout(this.refreshTimer);
        this.refreshTimer = window.setTimeout(() => void this.refresh(), RETRY_MS);
      }
      return false;
    }
    const before = this.current;
    if (before && subjectOf(answer.accessToken) !== before.userId) {
      // Someone else signed in in another tab: their cookie is this browser's now.
      this.end('switched', false);
      return false;
    }
    this.adopt(answer);
    if (!before) {
      this.epoch += 1;
      this.lastActivity = Date.now();
      this.endReason = null;
    }
    this.emit();
    return true;
  }

  /** A sign-out's request is still on its way: the sign-in screen waits for it, so that a
   * reload or Back straight after cannot resume the session from the cookie. */
  get signingOut(): boolean {
    return this.outgoing > 0;
  }

  /** Sign out: the PHI goes at once; the server ends the session and clears the cookie;
   * every tab follows. */
  async signOut(reason: EndReason = 'signed-out') {
    this.end(reason, true);
    this.outgoing += 1;
    this.emit();
    try {
      // Sent at once, not after the lock: a page closed meanwhile would never send it. The
      // server ends the session for any of its cookies, one a racing refresh has just
      // rotated out included.
      const busy = lockBusy();
      await logout();
      // That refresh (in any tab) may still set its rotated cookie, dead now: once it is
      // done, clear that one too.
      if (await busy) await locked(logout);
    } catch {
      // The session still ends on the server at its idle timeout.
    } finally {
      this.outgoing -= 1;
      this.emit();
    }
  }

  private end(reason: EndReason, broadcast: boolean) {
    this.epoch += 1;
    this.current = null;
    this.endReason = reason;
    this.idleWarning = null;
    window.clearTimeout(this.refreshTimer);
    window.clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    if (broadcast) this.channel?.postMessage({ type: 'signed-out' });
    this.emit();
  }

  /** The user is here. While the warning shows, only its buttons answer it (a press
   * elsewhere must not land on what the dialog covers). */
  activity() {
    if (!this.current || this.idleWarning !== null) return;
    const now = Date.now();
    this.lastActivity = now;
    if (now - this.lastShared > SHARE_ACTIVITY_MS) {
      this.lastShared = now;
      this.channel?.postMessage({ type: 'active', at: now });
    }
    // The server's idle window slides with each authenticated request; a user reading one
    // screen for a while makes none, so their activity makes one now and then.
    if (now - this.lastServerContact > (this.current.idleTimeoutSeconds * 1000) / 3) {
      this.lastServerContact = now;
      void this.keepAlive?.();
    }
  }

  /** "Stay signed in" on the warning. */
  stay() {
    this.idleWarning = null;
    this.activity();
    this.emit();
  }

  private schedule() {
    window.clearTimeout(this.refreshTimer);
    const c = this.current;
    if (!c) return;
    const wait = Math.max(1_000, c.expiresAt - Date.now() - this.margin);
    this.refreshTimer = window.setTimeout(() => void this.refresh(), wait);
    this.idleTimer ??= window.setInterval(() => this.checkIdle(), 1_000);
  }

  /** Warning at 13/15 of the idle timeout without user activity, sign-out at all of it. */
  private checkIdle() {
    if (!this.current) return;
    const idleMs = this.current.idleTimeoutSeconds * 1000;
    const quiet = Date.now() - this.lastActivity;
    if (quiet >= idleMs) {
      void this.signOut('idle');
      return;
    }
    if (quiet >= (idleMs * 13) / 15) {
      const left = Math.ceil((idleMs - quiet) / 1000);
      if (left !== this.idleWarning) {
        this.idleWarning = left;
        this.emit();
      }
    }
  }
}

export const session = new Session();
