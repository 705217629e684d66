// One server-sent events stream (`GET /api/v1/events`) shared by every view.
// Views subscribe to session and agent changes; `resync` (events were
// missed) and a reconnect of the stream both tell them to reload their lists.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type ApiError, type Agent, type Session } from './api';

type Handlers = {
  session?: (s: Session) => void;
  agent?: (a: Agent) => void;
  resync?: () => void;
};

const subscribers = new Set<{ current: Handlers }>();
let source: EventSource | null = null;
let restart: ReturnType<typeof setTimeout> | undefined;
let connected = false;
const statusListeners = new Set<(up: boolean) => void>();

function setConnected(up: boolean) {
  if (connected === up) return;
  connected = up;
  statusListeners.forEach((l) => l(up));
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

/** Opens the stream (after login). EventSource reconnects by itself. */
export function startEvents() {
  if (source) return;
  let opened = false;
  source = new EventSource('/api/v1/events', { withCredentials: true });
  source.addEventListener('open', () => {
    setConnected(true);
    // After a reconnect, whatever happened meanwhile was missed.
    if (opened) dispatch('resync', undefined as never);
    opened = true;
  });
  const self = source;
  source.addEventListener('error', () => {
    setConnected(false);
    // The browser retries network errors by itself but gives up on an HTTP
    // error (e.g. 401 after the login expired, 502 from a proxy). Check the
    // login (a 401 logs the UI out) and start a new stream a little later.
    if (self.readyState === EventSource.CLOSED && source === self) {
      source = null;
      restart = setTimeout(() => {
        api.me().then(
          () => {
            startEvents();
            dispatch('resync', undefined as never);
          },
          (err: ApiError) => {
            // A 401 logs the UI out, which stops events; otherwise try again.
            if (err.status !== 401) restart = setTimeout(startEvents, 5000);
          },
        );
      }, 3000);
    }
  });
  source.addEventListener('session', (e) => {
    const s = parse<Session>(e as MessageEvent);
    if (s) dispatch('session', s);
  });
  source.addEventListener('agent', (e) => {
    const a = parse<Agent>(e as MessageEvent);
    if (a) dispatch('agent', a);
  });
  source.addEventListener('resync', () => dispatch('resync', undefined as never));
}

export function stopEvents() {
  clearTimeout(restart);
  source?.close();
  source = null;
  setConnected(false);
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

/** Whether the live-update stream is connected now. */
export function useEventsConnected(): boolean {
  const [up, setUp] = useState(connected);
  useEffect(() => {
    statusListeners.add(setUp);
    setUp(connected);
    return () => {
      statusListeners.delete(setUp);
    };
  }, []);
  return up;
}
