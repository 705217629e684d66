// The viewer's top bar: back, the session's name and phase, and its tools
// (view mode and HiDPI, clipboard, Ctrl+Alt+Del, fullscreen, hibernate,
// terminate).

import type { RefObject } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Session, ShareMode } from '../../api';
import { GuestBadge } from './share';
import { PhaseBadge } from '../../components/ui';
import {
  IconBack,
  IconClipboard,
  IconExpand,
  IconFolder,
  IconKeyboard,
  IconMoon,
  IconPower,
  IconShare,
  IconShrink,
} from '../../components/icons';
import { Link } from '../../router';
import { AudioControl, type SessionAudio } from './audio';
import { MicControl, type SessionMic } from './microphone';
import type { ClipboardPolicy, SyncState } from './clipboard';
import { pixelRatio, type RemoteSize, type ViewMode } from './view-mode';

/** Whether `root` is the fullscreen element, and a toggle; `afterToggle` runs either way. */
export function useFullscreen(root: RefObject<HTMLElement | null>, afterToggle: () => void) {
  const [fullscreen, setFullscreen] = useState(false);
  useEffect(() => {
    const onChange = () => setFullscreen(document.fullscreenElement === root.current);
    document.addEventListener('fullscreenchange', onChange);
    return () => document.removeEventListener('fullscreenchange', onChange);
  }, []);

  const toggle = async () => {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await root.current?.requestFullscreen();
    } catch {
      // Refused by the browser (e.g. in an iframe): nothing to undo.
    }
    afterToggle();
  };
  return { fullscreen, toggle };
}

type Props = {
  session: Session;
  /** A web app: no scaling, clipboard or keys, but a new-tab link. */
  web: boolean;
  mode: ViewMode;
  onMode: (mode: ViewMode) => void;
  /** HiDPI: remote mode asks for device pixels. */
  sharp: boolean;
  onSharp: (sharp: boolean) => void;
  /** The framebuffer while connected. */
  remote: RemoteSize | null;
  /** Whether the clipboard panel is open. */
  panel: boolean;
  onPanel: (open: boolean) => void;
  clipboard: ClipboardPolicy;
  clipboardSync: SyncState;
  /** Whether the files panel is open (files.tsx); absent when the template allows no file transfer. */
  files?: boolean;
  onFiles: (open: boolean) => void;
  connected: boolean;
  onCtrlAltDel: () => void;
  fullscreen: boolean;
  onFullscreen: () => void;
  /** A hibernate or terminate request is under way. */
  acting: boolean;
  onHibernate: () => void;
  onTerminate: () => void;
  /** Someone else's session shared with you: its mode (no owner's tools). */
  guest: ShareMode | null;
  /** Opens the Share dialog (owners, for desktops). */
  onShare?: () => void;
  /** The session's sound, when its template has an audio port. */
  audio: SessionAudio | null;
  /** The viewer's microphone, when the template has a microphone port and allows it. */
  mic: SessionMic | null;
};

export function Toolbar(p: Props) {
  const { session, fullscreen } = p;
  const ended = session.phase === 'Terminated' || session.phase === 'Stopping';
  return (
    <header class="viewer-bar">
      <Link href="/sessions" class="icon-btn" aria-label="Back to my sessions" title="Back to my sessions">
        <IconBack />
      </Link>
      <div class="viewer-title">
        <strong>{session.template}</strong>
        <PhaseBadge phase={session.phase} />
        {p.guest && <GuestBadge owner={session.user} mode={p.guest} />}
      </div>
      <div class="viewer-tools" role="toolbar" aria-label="Viewer controls">
        {p.web ? <WebTools session={session} /> : <VncTools {...p} />}
        <button
          type="button"
          class="tool"
          aria-pressed={fullscreen}
          onClick={p.onFullscreen}
          title={fullscreen ? 'Exit fullscreen' : 'Fullscreen'}
        >
          {fullscreen ? <IconShrink /> : <IconExpand />}
          <span class="tool-label">{fullscreen ? 'Exit fullscreen' : 'Fullscreen'}</span>
        </button>
        {!p.guest && p.onShare && !ended && (
          <button type="button" class="tool" onClick={p.onShare} title="Share this session" data-testid="share-button">
            <IconShare />
            <span class="tool-label">Share</span>
          </button>
        )}
        {!p.guest && session.state === 'running' && !ended && session.phase !== 'Failed' && (
          <button
            type="button"
            class="tool"
            disabled={p.acting}
            onClick={p.onHibernate}
            title="Hibernate: pause the session, keep its state"
          >
            <IconMoon />
            <span class="tool-label">Hibernate</span>
          </button>
        )}
        {!p.guest && !ended && (
          <button
            type="button"
            class="tool tool-danger"
            disabled={p.acting}
            onClick={p.onTerminate}
            title="Terminate the session"
          >
            <IconPower />
            <span class="tool-label">Terminate</span>
          </button>
        )}
      </div>
    </header>
  );
}

/** For apps that refuse to be framed, or that want the whole window. */
function WebTools({ session }: { session: Session }) {
  if (!session.app_url || session.phase !== 'Running') return null;
  return (
    <a class="tool" href={session.app_url} target="_blank" rel="noopener" title="Open the app in a new tab">
      <IconExpand />
      <span class="tool-label">New tab</span>
    </a>
  );
}

const MODES: { mode: ViewMode; label: string; title: string }[] = [
  { mode: 'remote', label: 'Resize', title: 'Resize the desktop to the window' },
  { mode: 'fit', label: 'Fit', title: 'Scale the desktop to the window' },
  { mode: 'real', label: '1:1', title: 'Actual size (1:1), scroll to see the rest' },
];

/** The view modes, and HiDPI on screens that have it (it matters to remote resizing only). */
function ViewModes(p: Props) {
  const refused = p.remote?.refused ? ' It cannot take the window’s size, so it is scaled.' : '';
  const size = p.remote ? `The desktop is ${p.remote.width}×${p.remote.height}.${refused} ` : '';
  return (
    <>
      <div class="segmented" role="group" aria-label="View mode" title={size}>
        {MODES.map((m) => (
          <button
            key={m.mode}
            type="button"
            aria-pressed={p.mode === m.mode}
            onClick={() => p.onMode(m.mode)}
            title={`${size}${m.title}`}
          >
            {m.label}
          </button>
        ))}
      </div>
      {p.mode === 'remote' && pixelRatio() > 1 && (
        <button
          type="button"
          class="tool"
          aria-pressed={p.sharp}
          onClick={() => p.onSharp(!p.sharp)}
          title="HiDPI: one desktop pixel per screen pixel (sharper, smaller)"
        >
          HiDPI
        </button>
      )}
    </>
  );
}

function clipboardTitle(p: Props): string {
  if (p.clipboardSync === 'on') return 'Clipboard (copy and paste work directly)';
  if (p.clipboardSync === 'blocked') return 'Clipboard (your browser needs the panel to copy and paste)';
  return 'Clipboard';
}

function VncTools(p: Props) {
  const { panel } = p;
  return (
    <>
      <ViewModes {...p} />
      {p.clipboard !== 'off' && (
        <button
          type="button"
          class="tool"
          aria-pressed={panel}
          aria-controls="clipboard-panel"
          onClick={() => p.onPanel(!panel)}
          title={clipboardTitle(p)}
          data-sync={p.clipboardSync}
        >
          <IconClipboard />
          <span class="tool-label">Clipboard</span>
        </button>
      )}
      {p.audio && <AudioControl audio={p.audio} />}
      {p.mic && <MicControl mic={p.mic} />}
      {p.files !== undefined && (
        <button
          type="button"
          class="tool"
          aria-pressed={p.files}
          aria-controls="files-panel"
          onClick={() => p.onFiles(!p.files)}
          title="Files"
        >
          <IconFolder />
          <span class="tool-label">Files</span>
        </button>
      )}
      <button type="button" class="tool" disabled={!p.connected} onClick={p.onCtrlAltDel} title="Send Ctrl+Alt+Del">
        <IconKeyboard />
        <span class="tool-label">Ctrl+Alt+Del</span>
      </button>
    </>
  );
}
