// The browser session, outside React: the access token lives in this module's memory only
// (never localStorage or sessionStorage); the refresh token is an HttpOnly cookie that
// only Caregraph's /auth/refresh and /auth/logout read. One refresh runs at a time across
// every tab (Web Locks), because a rotated-out refresh token presented twice revokes the
// whole session. Idleness is the user's: pointer, keyboard and touch input count;
// background refreshes and sockets do not.

export type SignedIn = { accessToken: string; expiresAt: number; idleTimeoutSeconds: number };

type Listener = () => void;

/** Why the session ended, for the sign-in screen. */
export type EndReason = 'signed-out' | 'idle' | 'expired' | null;

const LOCK = 'caregraph-refresh';
const CHANNEL = 'caregraph-session';
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;
const ACTIVITY_EVENTS = ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const;

class Session {
  private current: SignedIn | null = null;
  private listeners = new Set<Listener>();
  private refreshing: Promise<boolean> | null = null;
  private refreshTimer: number | undefined;
  private idleTimer: number | undefined;
  private lastActivity = Date.now();
  private lastServerContact = Date.now();
  private channel: BroadcastChannel | null =
    typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(CHANNEL);
  endReason: EndReason = null;
  /** Seconds left before the idle sign-out, while the warning shows; null otherwise. */
  idleWarning: number | null = null;

  constructor() {
    // Another tab signed out: so does this one (the cookie is gone for every tab).
    this.channel?.addEventListener('message', (e) => {
      if (e.data === 'signed-out' && this.current) this.end('signed-out', false);
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

  get idleTimeoutSeconds(): number {
    return this.current?.idleTimeoutSeconds ?? 900;
  }

  /** The access token is within a minute of its expiry (or past it). */
  get expiresSoon(): boolean {
    return this.current !== null && this.current.expiresAt - Date.now() < REFRESH_MARGIN_MS;
  }

  /** Any answer from the API slides the server's idle window. */
  touched() {
    this.lastServerContact = Date.now();
  }

  /** Sign-in succeeded (login or verifyMfa with refreshTokenIn: COOKIE). */
  begin(accessToken: string, expiresAt: string, idleTimeoutSeconds: number) {
    this.current = { accessToken, expiresAt: Date.parse(expiresAt), idleTimeoutSeconds };
    this.endReason = null;
    this.lastActivity = Date.now();
    this.lastServerContact = Date.now();
    this.schedule();
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
    const run = async () => {
      const res = await fetch('/auth/refresh', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-Caregraph-Refresh': '1' },
      });
      // Read the body either way: a response left unread keeps its request open.
      const body = await res.text();
      if (!res.ok) return null;
      return JSON.parse(body) as {
        accessToken: string;
        expiresAt: string;
        idleTimeoutSeconds: number;
      };
    };
    let answer: Awaited<ReturnType<typeof run>> = null;
    try {
      answer = navigator.locks ? await navigator.locks.request(LOCK, run) : await run();
    } catch {
      answer = null;
    }
    if (!answer) {
      if (this.current) this.end('expired', false);
      return false;
    }
    const wasSignedIn = this.current !== null;
    this.current = {
      accessToken: answer.accessToken,
      expiresAt: Date.parse(answer.expiresAt),
      idleTimeoutSeconds: answer.idleTimeoutSeconds,
    };
    this.lastServerContact = Date.now();
    if (!wasSignedIn) {
      this.lastActivity = Date.now();
      this.endReason = null;
    }
    this.schedule();
    this.emit();
    return true;
  }

  /** Sign out: the server ends the session and clears the cookie; every tab follows. */
  async signOut(reason: EndReason = 'signed-out') {
    this.end(reason, true);
    try {
      const res = await fetch('/auth/logout', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-Caregraph-Refresh': '1' },
      });
      await res.text();
    } catch {
      // The session still ends on the server at its idle timeout.
    }
  }

  private end(reason: EndReason, broadcast: boolean) {
    this.current = null;
    this.endReason = reason;
    this.idleWarning = null;
    window.clearTimeout(this.refreshTimer);
    window.clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    if (broadcast) this.channel?.postMessage('signed-out');
    this.emit();
  }

  /** The user is here: a long-quiet server session is slid. While the warning shows, only
   * its buttons answer it (a press elsewhere must not land on what the dialog covers). */
  activity() {
    if (!this.current || this.idleWarning !== null) return;
    this.lastActivity = Date.now();
    // The server's idle window slides with each request; a user reading one screen for
    // a while makes none, so their activity refreshes the session now and then.
    const quietMs = Date.now() - this.lastServerContact;
    if (quietMs > (this.current.idleTimeoutSeconds * 1000) / 3) {
      this.lastServerContact = Date.now();
      void this.refresh();
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
    if (!this.current) return;
    const wait = Math.max(1_000, this.current.expiresAt - Date.now() - REFRESH_MARGIN_MS);
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
