// One server-sent events stream (`GET /api/v1/events`) shared by every view.
// Views subscribe to session and agent changes; `resync` tells them to reload
// their lists. The server sends it when events were missed; this module sends
// it when the stream works again after a break and, while the stream does not
// work, every few seconds instead (polling), so views never go stale.
//
// "Works" means events arrive, not that the connection is open: a reverse
// proxy that buffers the stream opens it and then holds everything back. The
// server sends `ping` as soon as the stream opens and then every
// `interval_ms`, so silence is as telling as an error.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type ApiError, type Agent, type Session } from './api';

type Handlers = {
  session?: (s: Session) => void;
  agent?: (a: Agent) => void;
  resync?: () => void;
};

/** `connecting`: no event yet since login; `live`: events arrive; `polling`: they do not, lists are reloaded every few seconds. */
export type EventsStatus = 'connecting' | 'live' | 'polling';

/** The server pings as soon as the stream opens; a slow start gets this long. */
const FIRST_EVENT_MS = 10_000;
/** Until the first ping names the server's interval. */
const DEFAULT_PING_MS = 15_000;
export const POLL_MS = 5_000;
/** How long to poll before trying a stream that stayed silent again. */
const RETRY_SILENT_MS = 30_000;

const subscribers = new Set<{ current: Handlers }>();
const statusListeners = new Set<(s: EventsStatus) => void>();
let source: EventSource | null = null;
let status: EventsStatus = 'connecting';
let pingMs = DEFAULT_PING_MS;
// Whether events may have been missed since the stream last worked.
let missed = false;
let watchdog: ReturnType<typeof setTimeout> | undefined;
let restart: ReturnType<typeof setTimeout> | undefined;
let poller: ReturnType<typeof setInterval> | undefined;

function setStatus(next: EventsStatus) {
  if (status === next) return;
  status = next;
  clearInterval(poller);
  poller = undefined;
  if (next === 'polling') {
    missed = true;
    // A hidden tab need not refresh; it catches up on the next tick after it shows.
    poller = setInterval(() => document.hidden || dispatch('resync', undefined as never), POLL_MS);
  }
  statusListeners.forEach((l) => l(next));
}

function dispatch<K extends keyof Handlers>(kind: K, data: Parameters<NonNullable<Handlers[K]>>[0]) {
  for (const s of subscribers) {
    const handler = s.current[kind] as ((d: typeof data) => void) | undefined;
    try {
      handler?.(data);
    } catch (err) {
      console.error('event handler failed', err);
    }
  }
}

function parse<T>(e: MessageEvent): T | null {
  try {
    return JSON.parse(e.data) as T;
  } catch {
    return null;
  }
}

/** Any event proves the stream works: go live, catch up, and expect the next ping. */
function heard() {
  clearTimeout(watchdog);
  watchdog = setTimeout(silent, 2 * pingMs + 5_000);
  if (status === 'live') return;
  setStatus('live');
  if (missed) {
    missed = false;
    dispatch('resync', undefined as never);
  }
}

/** No event in time: a proxy holds the stream back, or it died unnoticed. Poll, and try again later. */
function silent() {
  source?.close();
  source = null;
  setStatus('polling');
  clearTimeout(restart);
  restart = setTimeout(startEvents, RETRY_SILENT_MS);
}

/** Opens the stream (after login). EventSource reconnects by itself after network errors. */
export function startEvents() {
  if (source) return;
  const self = new EventSource('/api/v1/events', { withCredentials: true });
  source = self;
  clearTimeout(watchdog);
  watchdog = setTimeout(silent, FIRST_EVENT_MS);
  const on = (kind: string, handle: (e: MessageEvent) => void) =>
    self.addEventListener(kind, (e) => {
      handle(e as MessageEvent);
      heard();
    });
  on('ping', (e) => {
    const ms = parse<{ interval_ms?: number }>(e)?.interval_ms;
    if (typeof ms === 'number' && ms >= 1_000 && ms <= 300_000) pingMs = ms;
  });
  on('session', (e) => {
    const s = parse<Session>(e);
    if (s) dispatch('session', s);
  });
  on('agent', (e) => {
    const a = parse<Agent>(e);
    if (a) dispatch('agent', a);
  });
  on('resync', () => dispatch('resync', undefined as never));
  self.addEventListener('error', () => {
    if (source !== self) return;
    setStatus('polling');
    // The browser retries network errors by itself but gives up on an HTTP
    // error (e.g. 401 after the login expired, 502 from a proxy). Check the
    // login (a 401 logs the UI out) and start a new stream a little later.
    if (self.readyState !== EventSource.CLOSED) return;
    source = null;
    clearTimeout(watchdog);
    restart = setTimeout(() => {
      api.me().then(startEvents, (err: ApiError) => {
        // A 401 logs the UI out, which stops events; otherwise try again.
        if (err.status !== 401) restart = setTimeout(startEvents, 5000);
      });
    }, 3000);
  });
}

export function stopEvents() {
  clearTimeout(restart);
  clearTimeout(watchdog);
  source?.close();
  source = null;
  missed = false;
  setStatus('connecting');
}

/** Subscribes the calling component for as long as it is mounted. */
export function useEvents(handlers: Handlers) {
  const ref = useRef(handlers);
  ref.current = handlers;
  useEffect(() => {
    subscribers.add(ref);
    return () => {
      subscribers.delete(ref);
    };
  }, []);
}

/** Whether live updates arrive now, or lists are polled instead. */
export function useEventsStatus(): EventsStatus {
  const [now, setNow] = useState(status);
  useEffect(() => {
    statusListeners.add(setNow);
    setNow(status);
    return () => {
      statusListeners.delete(setNow);
    };
  }, []);
  return now;
}
