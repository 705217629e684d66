// The session viewer: the session, kept current, and the pieces around its
// screen: the connection (connection.ts), or for a web app its frame
// (webapp.tsx), the top bar (toolbar.tsx), what covers the screen while
// there is no desktop (overlays.tsx), the clipboard and its panel
// (clipboard.tsx), how the desktop meets the window (view-mode.ts) and the
// files panel with drag-and-drop uploads (files.tsx).
//
// Server-sent events say when the session's phase changes (and so when to
// connect). While the phase is changing the viewer also asks for the session
// itself, so it starts even when no event gets through (a proxy holding the
// stream back).

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, errorMessage, type Phase, type Session } from '../../api';
import { useEvents } from '../../events';
import { Link, navigate } from '../../router';
import { changeState, terminateSession } from '../../components/session-table';
import { Button, Loading } from '../../components/ui';
import { useAuth } from '../../auth';
import { ClipboardPanel, useClipboardSync } from './clipboard';
import { ShareDialog, useGuestMode } from './share';
import { useSessionAudio } from './audio';
import { useSessionMic } from './microphone';
import { FilesPanel, transferPolicy, useFileDrop, useUploads } from './files';
import { useVncConnection } from './connection';
import { Overlay, RecordingNotice } from './overlays';
import { Toolbar, useFullscreen } from './toolbar';
import { saveView, savedView, usePixelRatioChange, useRemoteSize, type ViewMode } from './view-mode';
import { useWebApp, WebAppFrame } from './webapp';

/** Phases that end by themselves; the viewer polls its session through them. */
const CHANGING: Phase[] = ['Pending', 'Pulling', 'Starting', 'Waking', 'Hibernating', 'Stopping'];
/** A desktop starts in a few seconds: poll often enough to open soon after, seldom enough to be cheap. */
const PHASE_POLL_MS = 2_000;

/** How long the note that the desktop refused the window's size stays over it. */
const REFUSED_NOTE_MS = 8_000;

/** True for `ms` after `flag` becomes true (a note that should not cover the desktop for good). */
function useBriefly(flag: boolean, ms: number): boolean {
  const [shown, setShown] = useState(false);
  useEffect(() => {
    setShown(flag);
    if (!flag) return;
    const timer = setTimeout(() => setShown(false), ms);
    return () => clearTimeout(timer);
  }, [flag]);
  return shown;
}

/** Keeps the newer of two views of one session. */
function newer(prev: Session | null, next: Session): Session {
  return prev && prev.updated_at > next.updated_at ? prev : next;
}

export function ViewerPage({ id }: { id: string }) {
  const [session, setSession] = useState<Session | null>(null);
  const [loadError, setLoadError] = useState<ApiError | null>(null);
  const [mode, setMode] = useState<ViewMode>(() => savedView().mode);
  const [sharp, setSharp] = useState(() => savedView().sharp);
  const [panel, setPanel] = useState(false);
  const [acting, setActing] = useState(false);
  const [sharing, setSharing] = useState(false);
  const { user } = useAuth();
  const [filesOpen, setFilesOpen] = useState(false);
  const [filesChanged, setFilesChanged] = useState(0);
  const body = useRef<HTMLDivElement>(null);
  const root = useRef<HTMLDivElement>(null);
  const screen = useRef<HTMLDivElement>(null);

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

  const guest = useGuestMode(session, user.id, user.role === 'admin');
  const web = !!session?.app_url;
  const app = useWebApp(session);
  // A web app's session may also have a VNC port: the viewer shows the app.
  const vnc = useVncConnection({ id, phase: web ? undefined : session?.phase, screen, mode, sharp, onDrop: load });
  const vncConnected = !web && vnc.conn.kind === 'connected';
  const remote = useRemoteSize(screen, vncConnected, mode, sharp);
  usePixelRatioChange(vnc.resize);
  const clipboard = session?.desktop.clipboard ?? 'both';
  const clipboardSync = useClipboardSync({
    policy: web ? 'off' : clipboard,
    connected: vncConnected,
    received: vnc.received,
    send: vnc.sendClipboard,
  });

  useEffect(() => saveView(mode, sharp), [mode, sharp]);
  const refusedNote = useBriefly(remote?.refused ?? false, REFUSED_NOTE_MS);

  const hasAudio = !web && !!session?.ports.some((p) => p.protocol === 'audio');
  const audio = useSessionAudio(id, hasAudio && vnc.conn.kind === 'connected');
  // The microphone is input: not for view-only guests (the server refuses them too).
  const hasMic =
    !web &&
    guest !== 'view' &&
    !!session?.desktop.microphone &&
    !!session?.ports.some((p) => p.protocol === 'microphone');
  const mic = useSessionMic(id, hasMic && vnc.conn.kind === 'connected');

  const { fullscreen, toggle: toggleFullscreen } = useFullscreen(root, vnc.focus);
  const uploads = useUploads(id, () => setFilesChanged((n) => n + 1));
  // Files are the owner's (and admins'): guests get no panel and no drop.
  const policy = session && !guest ? transferPolicy(session) : { upload: false, download: false };
  const dropping = useFileDrop(body, policy.upload && !web && session?.phase === 'Running', (files) => {
    setFilesOpen(true);
    uploads.start(files);
  });

  const act = async (f: () => Promise<unknown>) => {
    setActing(true);
    try {
      await f();
    } finally {
      setActing(false);
    }
  };
  const update = (s: Session) => setSession((prev) => newer(prev, s));

  // A 404 after the session was shown: it is gone, or a guest's share ended.
  if (loadError && (!session || loadError.status === 404)) return <CannotOpen error={loadError} onRetry={load} />;
  if (!session) {
    return (
      <main class="center-page">
        <Loading what="session" />
      </main>
    );
  }

  const conn = web ? app.conn : vnc.conn;
  const connected = conn.kind === 'connected';
  return (
    <div class="viewer" ref={root} data-testid="viewer" data-conn={conn.kind} data-phase={session.phase}>
      <Toolbar
        session={session}
        web={web}
        mode={mode}
        onMode={setMode}
        sharp={sharp}
        onSharp={setSharp}
        remote={remote}
        panel={panel}
        onPanel={setPanel}
        clipboard={clipboard}
        clipboardSync={clipboardSync}
        files={policy.upload || policy.download ? filesOpen : undefined}
        onFiles={setFilesOpen}
        connected={connected}
        onCtrlAltDel={vnc.sendCtrlAltDel}
        fullscreen={fullscreen}
        onFullscreen={toggleFullscreen}
        audio={hasAudio ? audio : null}
        mic={hasMic ? mic : null}
        acting={acting}
        guest={guest}
        onShare={web ? undefined : () => setSharing(true)}
        onHibernate={() => act(() => changeState(session, 'hibernated', update))}
        onTerminate={() =>
          act(async () => {
            if (await terminateSession(session, update)) navigate('/sessions');
          })
        }
      />
      {sharing && <ShareDialog session={session} onClose={() => setSharing(false)} />}
      <div class={`viewer-body${dropping ? ' drop-target' : ''}`} ref={body}>
        <div class="screen-wrap">
          {web ? (
            <WebAppFrame session={session} frameKey={app.key} onLoad={app.onLoad} />
          ) : (
            <div
              class={`screen screen-${mode}`}
              ref={screen}
              data-testid="screen"
              data-remote-size={remote ? `${remote.width}x${remote.height}` : undefined}
              data-resize-refused={remote?.refused ? 'true' : undefined}
            />
          )}
          {refusedNote && (
            <p class="screen-note" role="status" data-testid="resize-refused">
              This desktop cannot take the window's size: it is scaled to fit.
            </p>
          )}
          {session.recorded && !web && <RecordingNotice />}
          <Overlay
            session={session}
            conn={conn}
            acting={acting}
            onWake={() => act(() => changeState(session, 'running', update))}
            onReconnect={vnc.reconnect}
          />
        </div>
        <ClipboardPanel
          open={panel && !web}
          onClose={() => setPanel(false)}
          policy={clipboard}
          sync={clipboardSync}
          received={vnc.received.text}
          connected={connected}
          onSend={vnc.paste}
        />
        <FilesPanel
          open={filesOpen && !web}
          onClose={() => setFilesOpen(false)}
          session={session}
          uploads={uploads.uploads}
          onUpload={uploads.start}
          refresh={filesChanged}
        />
      </div>
    </div>
  );
}

/** The session cannot be loaded: gone (or someone else's), or the server cannot be reached. */
function CannotOpen({ error, onRetry }: { error: ApiError; onRetry: () => void }) {
  const gone = error.status === 404;
  return (
    <main class="center-page">
      <div class="card narrow" role="alert" data-testid="viewer-error">
        <h1>{gone ? 'Session not found' : 'Cannot open this session'}</h1>
        <p class="muted">
          {gone
            ? 'It may have ended, or it belongs to another user who has not shared it with you (or no longer does).'
            : error.message}
        </p>
        <div class="btn-row">
          {!gone && (
            <Button variant="primary" onClick={onRetry}>
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
