// The clipboard: kept in step with this computer's by itself where the
// browser allows it (the Async Clipboard API), and the panel as the way
// that always works: text the session copied, to copy to this computer,
// and text to send to the session. Both follow the template's policy
// (`desktop.clipboard`): both ways, to the session only, from it only, or
// off. The policy is enforced outside the browser too: the control plane
// drops what a viewer sends when it forbids "to the session", and the demo
// images' Xvnc refuses the forbidden directions itself.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { Session } from '../../api';
import { Button, CopyButton } from '../../components/ui';
import { IconClose } from '../../components/icons';
import type { Received } from './connection';

export type ClipboardPolicy = Session['desktop']['clipboard'];

export const toSession = (p: ClipboardPolicy) => p === 'both' || p === 'to_session';
export const fromSession = (p: ClipboardPolicy) => p === 'both' || p === 'from_session';

/** The most text sent at once: the demo images' Xvnc takes no more (its MaxCutText). */
export const MAX_CLIPBOARD_TEXT = 256 * 1024;

/**
 * Whether copy and paste cross by themselves: `on` once the browser let the
 * page read or write its clipboard, `blocked` when it refused (or cannot:
 * Firefox and Safari ask on every paste, so they use the panel), `unknown`
 * before either.
 */
export type SyncState = 'unknown' | 'on' | 'blocked';

/** Reading without asking each time is Chromium's "clipboard-read" permission; other browsers have none. */
async function mayRead(): Promise<boolean> {
  if (!navigator.clipboard?.readText) return false;
  try {
    const status = await navigator.permissions.query({ name: 'clipboard-read' as PermissionName });
    return status.state !== 'denied';
  } catch {
    return false;
  }
}

type SyncOptions = {
  policy: ClipboardPolicy;
  connected: boolean;
  received: Received;
  /** Sends text to the session's clipboard. */
  send: (text: string) => void;
};

/**
 * Session → computer: what the session copies is written to this computer's
 * clipboard (at once when the page has the focus, else when it gets it).
 * Computer → session: when the page gets the focus back, this computer's
 * clipboard is read and, when it is new, sent. Text that came from one side
 * is never sent back to it.
 */
export function useClipboardSync({ policy, connected, received, send }: SyncOptions): SyncState {
  const [state, setState] = useState<SyncState>('unknown');
  // The text both sides last had: reading it back is no news.
  const shared = useRef<string | null>(null);
  // Session text waiting for the page to get the focus.
  const pending = useRef<string | null>(null);

  const flush = async () => {
    const text = pending.current;
    if (text === null || !document.hasFocus()) return;
    pending.current = null;
    try {
      await navigator.clipboard.writeText(text);
      setState('on');
    } catch {
      setState('blocked');
    }
  };

  const pull = async () => {
    if (!toSession(policy) || !(await mayRead())) return;
    try {
      const text = await navigator.clipboard.readText();
      setState('on');
      if (!text || text === shared.current || text.length > MAX_CLIPBOARD_TEXT) return;
      shared.current = text;
      send(text);
    } catch {
      // Refused (the page lost the focus meanwhile, or the user said no).
      setState('blocked');
    }
  };

  useEffect(() => {
    if (!received.n || !fromSession(policy)) return;
    shared.current = received.text;
    if (!navigator.clipboard?.writeText) {
      setState('blocked');
      return;
    }
    pending.current = received.text;
    void flush();
  }, [received.n, policy]);

  useEffect(() => {
    if (policy === 'off' || !connected) return;
    const onFocus = () => {
      void flush();
      void pull();
    };
    const onVisible = () => document.visibilityState === 'visible' && onFocus();
    window.addEventListener('focus', onFocus);
    document.addEventListener('visibilitychange', onVisible);
    if (document.hasFocus()) onFocus();
    return () => {
      window.removeEventListener('focus', onFocus);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [policy, connected]);

  return policy === 'off' ? 'blocked' : state;
}

type Props = {
  open: boolean;
  onClose: () => void;
  policy: ClipboardPolicy;
  sync: SyncState;
  /** What the session last copied. */
  received: string;
  connected: boolean;
  onSend: (text: string) => void;
};

function syncNote(policy: ClipboardPolicy, sync: SyncState): string {
  const one =
    policy === 'to_session'
      ? 'This app takes text from your computer but keeps its own clipboard in the session.'
      : policy === 'from_session'
        ? 'This app lets you copy from the session but not paste into it.'
        : '';
  const how =
    sync === 'on'
      ? 'Copy and paste work directly; this panel is here if you need it.'
      : sync === 'blocked'
        ? 'Your browser does not let this page use the clipboard by itself: copy and paste through this panel.'
        : 'Copy and paste work directly where your browser allows it; otherwise use this panel.';
  return `${one} ${how}`.trim();
}

/** Rendered even while closed (as nothing), so text typed to send survives closing the panel. */
export function ClipboardPanel({ open, onClose, policy, sync, received, connected, onSend }: Props) {
  const [outgoing, setOutgoing] = useState('');
  if (!open || policy === 'off') return null;
  return (
    <aside id="clipboard-panel" class="clipboard-panel" aria-label="Clipboard" data-sync={sync}>
      <div class="panel-head">
        <h2>Clipboard</h2>
        <button type="button" class="icon-btn" aria-label="Close clipboard" onClick={onClose}>
          <IconClose />
        </button>
      </div>
      <p class="muted small" data-testid="clipboard-note">
        {syncNote(policy, sync)}
      </p>
      {fromSession(policy) && (
        <div class="field">
          <label for="clip-in">From the session</label>
          <textarea id="clip-in" readOnly rows={5} value={received} placeholder="Text copied in the session appears here." />
          <div class="btn-row">
            <CopyButton text={received} label="Copy to this computer" />
          </div>
        </div>
      )}
      {toSession(policy) && (
        <form
          class="field"
          onSubmit={(e) => {
            e.preventDefault();
            onSend(outgoing);
          }}
        >
          <label for="clip-out">Send to the session</label>
          <textarea
            id="clip-out"
            rows={5}
            maxLength={MAX_CLIPBOARD_TEXT}
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
      )}
    </aside>
  );
}
