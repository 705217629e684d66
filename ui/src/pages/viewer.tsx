// The session viewer: noVNC's RFB client on the `/vnc/{id}` WebSocket.
//
// The WebSocket is opened only while the session's phase is Running (the
// server answers 409 otherwise); other phases show an overlay and the
// server-sent events tell us when to connect. While the phase is changing the
// viewer also asks for the session itself, so it starts even when no event
// gets through (a proxy holding the stream back). A dropped connection is
// retried with backoff for as long as the session is still Running.

import RFB from '@novnc/novnc';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, errorMessage, type Phase, type Session } from '../api';
import { useEvents } from '../events';
import { Link, navigate } from '../router';
import { changeState, terminateSession } from '../components/session-table';
import { Button, CopyButton, ErrorBanner, Loading, PhaseBadge, Spinner } from '../components/ui';
import {
  IconAlert,
  IconBack,
  IconClipboard,
  IconClose,
  IconExpand,
  IconKeyboard,
  IconMoon,
  IconPower,
  IconShrink,
} from '../components/icons';

type Conn =
  | { kind: 'idle' }
  | { kind: 'connecting'; attempt: number }
  | { kind: 'connected' }
  | { kind: 'lost'; retryAt: number; reason: string };

const SCALE_KEY = 'streamspace.viewer.scale';
/** Phases that end by themselves; the viewer polls its session through them. */
const CHANGING: Phase[] = ['Pending', 'Starting', 'Waking', 'Hibernating', 'Stopping'];
/** A desktop starts in a few seconds: poll often enough to open soon after, seldom enough to be cheap. */
const PHASE_POLL_MS = 2_000;

function vncUrl(id: string): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/vnc/${encodeURIComponent(id)}`;
}

function backoff(attempt: number): number {
  return Math.min(10_000, 1000 * 2 ** Math.min(attempt - 1, 4));
}

/** Keeps the newer of two views of one session. */
function newer(prev: Session | null, next: Session): Session {
  return prev && prev.updated_at > next.updated_at ? prev : next;
}

export function ViewerPage({ id }: { id: string }) {
  const [session, setSession] = useState<Session | null>(null);
  const [loadError, setLoadError] = useState<ApiError | null>(null);
  const [conn, setConn] = useState<Conn>({ kind: 'idle' });
  const [generation, setGeneration] = useState(0);
  const [fit, setFit] = useState(localStorage.getItem(SCALE_KEY) !== 'real');
  const [panel, setPanel] = useState(false);
  const [received, setReceived] = useState('');
  const [outgoing, setOutgoing] = useState('');
  const [fullscreen, setFullscreen] = useState(false);
  const [acting, setActing] = useState(false);
  const root = useRef<HTMLDivElement>(null);
  const screen = useRef<HTMLDivElement>(null);
  const rfb = useRef<{ client: RFB; close: () => void } | null>(null);
  // `connected`: whether this Running spell has had a working connection yet.
  const retry = useRef<{ attempt: number; connected: boolean; timer?: ReturnType<typeof setTimeout> }>({
    attempt: 0,
    connected: false,
  });

  const load = () =>
    api.session(id).then(
      (s) => {
        setSession((prev) => newer(prev, s));
        setLoadError(null);
      },
      (err) => setLoadError(err instanceof ApiError ? err : new ApiError(0, errorMessage(err))),
    );

  useEffect(() => {
    load();
  }, [id]);
  useEvents({
    session: (s) => s.id === id && setSession((prev) => newer(prev, s)),
    resync: load,
  });

  const changing = session !== null && CHANGING.includes(session.phase);
  useEffect(() => {
    if (!changing) return;
    const timer = setInterval(load, PHASE_POLL_MS);
    return () => clearInterval(timer);
  }, [changing, id]);

  useEffect(() => {
    document.title = `${session?.template ?? 'Session'} · StreamSpace`;
  }, [session?.template]);

  const phase = session?.phase;

  // Connect while Running; disconnect otherwise.
  useEffect(() => {
    clearTimeout(retry.current.timer);
    if (phase !== 'Running') {
      rfb.current?.close();
      rfb.current = null;
      retry.current.attempt = 0;
      retry.current.connected = false;
      setConn({ kind: 'idle' });
      return;
    }
    if (rfb.current || !screen.current) return;
    let intentional = false;
    let client: RFB;
    try {
      client = new RFB(screen.current, vncUrl(id), { wsProtocols: ['binary'], shared: true });
    } catch (err) {
      setConn({ kind: 'lost', retryAt: 0, reason: errorMessage(err) });
      return;
    }
    client.background = '#0b0d12';
    client.scaleViewport = fit;
    client.clipViewport = false;
    client.qualityLevel = 6;
    client.compressionLevel = 2;
    rfb.current = {
      client,
      close: () => {
        intentional = true;
        client.disconnect();
      },
    };
    setConn({ kind: 'connecting', attempt: retry.current.attempt });
    client.addEventListener('connect', () => {
      retry.current.attempt = 0;
      retry.current.connected = true;
      setConn({ kind: 'connected' });
      client.focus();
    });
    client.addEventListener('clipboard', (e) => setReceived((e as CustomEvent<{ text: string }>).detail.text));
    client.addEventListener('securityfailure', (e) => {
      const detail = (e as CustomEvent<{ reason?: string }>).detail;
      console.warn('VNC security failure', detail);
    });
    client.addEventListener('disconnect', () => {
      if (rfb.current?.client === client) rfb.current = null;
      if (intentional) return;
      const attempt = ++retry.current.attempt;
      if (!retry.current.connected && attempt <= 10) {
        // Just started or woken: the desktop may not accept connections yet.
        setConn({ kind: 'connecting', attempt });
      } else {
        setConn({
          kind: 'lost',
          retryAt: Date.now() + backoff(attempt),
          reason: retry.current.connected ? 'The connection to the session dropped.' : 'The desktop does not answer.',
        });
      }
      const delay = retry.current.connected ? backoff(attempt) : Math.min(3000, 500 * attempt);
      // The session may have changed phase (hibernated, failed, ended).
      load();
      retry.current.timer = setTimeout(() => setGeneration((g) => g + 1), delay);
    });
  }, [phase, generation, id]);

  // Disconnect when leaving the page.
  useEffect(
    () => () => {
      clearTimeout(retry.current.timer);
      rfb.current?.close();
      rfb.current = null;
    },
    [],
  );

  useEffect(() => {
    if (rfb.current) rfb.current.client.scaleViewport = fit;
    localStorage.setItem(SCALE_KEY, fit ? 'fit' : 'real');
  }, [fit]);

  useEffect(() => {
    const onChange = () => setFullscreen(document.fullscreenElement === root.current);
    document.addEventListener('fullscreenchange', onChange);
    return () => document.removeEventListener('fullscreenchange', onChange);
  }, []);

  const toggleFullscreen = async () => {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await root.current?.requestFullscreen();
    } catch {
      // Refused by the browser (e.g. in an iframe): nothing to undo.
    }
    rfb.current?.client.focus();
  };

  const act = async (f: () => Promise<unknown>) => {
    setActing(true);
    try {
      await f();
    } finally {
      setActing(false);
    }
  };
  const update = (s: Session) => setSession((prev) => newer(prev, s));

  if (loadError && !session) {
    const gone = loadError.status === 404;
    return (
      <main class="center-page">
        <div class="card narrow" role="alert" data-testid="viewer-error">
          <h1>{gone ? 'Session not found' : 'Cannot open this session'}</h1>
          <p class="muted">
            {gone
              ? 'It may have ended, or it belongs to another user. You can only open your own sessions.'
              : loadError.message}
          </p>
          <div class="btn-row">
            {!gone && (
              <Button variant="primary" onClick={load}>
                Try again
              </Button>
            )}
            <Link href="/sessions" class="btn">
              My sessions
            </Link>
            <Link href="/" class="btn">
              Catalog
            </Link>
          </div>
        </div>
      </main>
    );
  }
  if (!session) {
    return (
      <main class="center-page">
        <Loading what="session" />
      </main>
    );
  }

  const ended = session.phase === 'Terminated' || session.phase === 'Stopping';
  const connected = conn.kind === 'connected';
  return (
    <div class="viewer" ref={root} data-testid="viewer" data-conn={conn.kind} data-phase={session.phase}>
      <header class="viewer-bar">
        <Link href="/sessions" class="icon-btn" aria-label="Back to my sessions" title="Back to my sessions">
          <IconBack />
        </Link>
        <div class="viewer-title">
          <strong>{session.template}</strong>
          <PhaseBadge phase={session.phase} />
        </div>
        <div class="viewer-tools" role="toolbar" aria-label="Viewer controls">
          <div class="segmented" role="group" aria-label="Scaling">
            <button type="button" aria-pressed={fit} onClick={() => setFit(true)} title="Scale to window">
              Fit
            </button>
            <button type="button" aria-pressed={!fit} onClick={() => setFit(false)} title="Actual size (1:1)">
              1:1
            </button>
          </div>
          <button
            type="button"
            class="tool"
            aria-pressed={panel}
            aria-controls="clipboard-panel"
            onClick={() => setPanel(!panel)}
            title="Clipboard"
          >
            <IconClipboard />
            <span class="tool-label">Clipboard</span>
          </button>
          <button
            type="button"
            class="tool"
            disabled={!connected}
            onClick={() => {
              rfb.current?.client.sendCtrlAltDel();
              rfb.current?.client.focus();
            }}
            title="Send Ctrl+Alt+Del"
          >
            <IconKeyboard />
            <span class="tool-label">Ctrl+Alt+Del</span>
          </button>
          <button
            type="button"
            class="tool"
            aria-pressed={fullscreen}
            onClick={toggleFullscreen}
            title={fullscreen ? 'Exit fullscreen' : 'Fullscreen'}
          >
            {fullscreen ? <IconShrink /> : <IconExpand />}
            <span class="tool-label">{fullscreen ? 'Exit fullscreen' : 'Fullscreen'}</span>
          </button>
          {session.state === 'running' && !ended && session.phase !== 'Failed' && (
            <button
              type="button"
              class="tool"
              disabled={acting}
              onClick={() => act(() => changeState(session, 'hibernated', update))}
              title="Hibernate: pause the session, keep its state"
            >
              <IconMoon />
              <span class="tool-label">Hibernate</span>
            </button>
          )}
          {!ended && (
            <button
              type="button"
              class="tool tool-danger"
              disabled={acting}
              onClick={() =>
                act(async () => {
                  if (await terminateSession(session, update)) navigate('/sessions');
                })
              }
              title="Terminate the session"
            >
              <IconPower />
              <span class="tool-label">Terminate</span>
            </button>
          )}
        </div>
      </header>
      <div class="viewer-body">
        <div class="screen-wrap">
          <div class={`screen${fit ? ' fit' : ''}`} ref={screen} data-testid="screen" />
          <Overlay
            session={session}
            conn={conn}
            acting={acting}
            onWake={() => act(() => changeState(session, 'running', update))}
            onReconnect={() => setGeneration((g) => g + 1)}
          />
        </div>
        {panel && (
          <aside id="clipboard-panel" class="clipboard-panel" aria-label="Clipboard">
            <div class="panel-head">
              <h2>Clipboard</h2>
              <button type="button" class="icon-btn" aria-label="Close clipboard" onClick={() => setPanel(false)}>
                <IconClose />
              </button>
            </div>
            <div class="field">
              <label for="clip-in">From the session</label>
              <textarea id="clip-in" readOnly rows={5} value={received} placeholder="Text copied in the session appears here." />
              <div class="btn-row">
                <CopyButton text={received} label="Copy to this computer" />
              </div>
            </div>
            <form
              class="field"
              onSubmit={(e) => {
                e.preventDefault();
                rfb.current?.client.clipboardPasteFrom(outgoing);
                rfb.current?.client.focus();
              }}
            >
              <label for="clip-out">Send to the session</label>
              <textarea
                id="clip-out"
                rows={5}
                value={outgoing}
                onInput={(e) => setOutgoing(e.currentTarget.value)}
                placeholder="Paste text here, send it, then paste inside the session."
              />
              <div class="btn-row">
                <Button type="submit" variant="primary" small disabled={!connected || !outgoing}>
                  Send to session
                </Button>
              </div>
            </form>
          </aside>
        )}
      </div>
    </div>
  );
}

type OverlayProps = {
  session: Session;
  conn: Conn;
  acting: boolean;
  onWake: () => void;
  onReconnect: () => void;
};

function Overlay({ session, conn, acting, onWake, onReconnect }: OverlayProps) {
  // Re-render every half second while counting down to the next attempt.
  const [, setTick] = useState(0);
  useEffect(() => {
    if (conn.kind !== 'lost') return;
    const t = setInterval(() => setTick((n) => n + 1), 500);
    return () => clearInterval(t);
  }, [conn.kind]);

  let body: preact.JSX.Element | null = null;
  const waiting = (title: string, text: string) => (
    <>
      <Spinner size={36} />
      <h2>{title}</h2>
      <p>{text}</p>
    </>
  );
  switch (session.phase) {
    case 'Pending':
    case 'Starting':
      body = waiting(`Starting ${session.template}…`, 'Your session is being created. This usually takes a few seconds.');
      break;
    case 'Waking':
      body = waiting('Waking up…', 'Your session is resuming where you left it.');
      break;
    case 'Hibernating':
      body = waiting('Hibernating…', 'Saving the session so it uses no CPU while you are away.');
      break;
    case 'Hibernated':
      body = (
        <>
          <div class="overlay-icon" aria-hidden="true">
            <IconMoon size={26} />
          </div>
          <h2>This session is hibernated</h2>
          <p>Its apps are paused. Wake it to continue where you left off.</p>
          <Button variant="primary" busy={acting} onClick={onWake} autoFocus>
            Wake
          </Button>
        </>
      );
      break;
    case 'Stopping':
      body = waiting('Stopping…', 'The session is being terminated.');
      break;
    case 'Terminated':
      body = (
        <>
          <h2>This session has ended</h2>
          <p>Launch the app again from the catalog to start a new session.</p>
          <div class="btn-row center">
            <Link href="/" class="btn btn-primary">
              Catalog
            </Link>
            <Link href="/sessions" class="btn">
              My sessions
            </Link>
          </div>
        </>
      );
      break;
    case 'Failed':
      body = (
        <>
          <div class="overlay-icon error" aria-hidden="true">
            <IconAlert size={28} />
          </div>
          <h2>The session failed</h2>
          <ErrorBanner error={session.message ?? 'The agent reported a failure without a message.'} />
          <Button variant="primary" busy={acting} onClick={onWake}>
            Restart session
          </Button>
        </>
      );
      break;
    case 'Running':
      if (conn.kind === 'idle') {
        body = waiting('Connecting…', 'Opening the remote display.');
      } else if (conn.kind === 'connecting') {
        body = waiting(
          'Connecting…',
          conn.attempt > 1 ? 'Waiting for the desktop to accept connections.' : 'Opening the remote display.',
        );
      } else if (conn.kind === 'lost') {
        const secs = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
        body = (
          <>
            <Spinner size={36} />
            <h2>Connection lost</h2>
            <p>
              {conn.reason} Reconnecting {secs > 0 ? `in ${secs} s` : 'now'}…
            </p>
            <Button onClick={onReconnect}>Reconnect now</Button>
          </>
        );
      }
      break;
  }
  if (!body) return null;
  return (
    <div class="overlay" role="status" aria-live="polite" data-testid="overlay">
      <div class="overlay-card">{body}</div>
    </div>
  );
}
