// The viewer's connection: noVNC's RFB client on the `/vnc/{id}` WebSocket.
//
// The WebSocket is opened only while the session's phase is Running (the
// server answers 409 otherwise). A connection that fails before it ever
// worked is retried quickly (a desktop just reported Running may not accept
// connections yet); one that drops later is retried with backoff for as long
// as the session is still Running. How the desktop meets the window
// (scaled, 1:1, or resized by the server) is in view-mode.ts.

import RFB from '@novnc/novnc';
import type { RefObject } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { errorMessage, type Phase } from '../../api';
import { applyViewMode, requestDevicePixels, requestSize, type ViewMode } from './view-mode';

export type Conn =
  | { kind: 'idle' }
  | { kind: 'connecting'; attempt: number }
  | { kind: 'connected' }
  | { kind: 'lost'; retryAt: number; reason: string };

function vncUrl(id: string): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/vnc/${encodeURIComponent(id)}`;
}

function backoff(attempt: number): number {
  return Math.min(10_000, 1000 * 2 ** Math.min(attempt - 1, 4));
}

type Options = {
  id: string;
  /** The session's phase: connected while Running, disconnected otherwise. */
  phase: Phase | undefined;
  /** Where noVNC draws; must be in the page once the phase is Running. */
  screen: RefObject<HTMLDivElement | null>;
  /** How the remote screen meets the window. */
  mode: ViewMode;
  /** In remote mode, ask for device pixels (HiDPI) rather than CSS pixels. */
  sharp: boolean;
  /** Called when the connection ends unasked. */
  onDrop: () => void;
};

/** Text the session put on its clipboard; `n` counts them, so the same text copied twice is two. */
export type Received = { text: string; n: number };

/** The connection's state, the text the session last copied, and what the toolbar and panels do with it. */
export function useVncConnection({ id, phase, screen, mode, sharp, onDrop }: Options) {
  const [conn, setConn] = useState<Conn>({ kind: 'idle' });
  const [generation, setGeneration] = useState(0);
  const [received, setReceived] = useState<Received>({ text: '', n: 0 });
  // Read by the size requests of whichever client is current.
  const sharpNow = useRef(sharp);
  sharpNow.current = sharp;
  const rfb = useRef<{ client: RFB; close: () => void } | null>(null);
  // `connected`: whether this Running spell has had a working connection yet.
  const retry = useRef<{ attempt: number; connected: boolean; timer?: ReturnType<typeof setTimeout> }>({
    attempt: 0,
    connected: false,
  });

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
    requestDevicePixels(client, () => sharpNow.current);
    applyViewMode(client, mode);
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
    client.addEventListener('clipboard', (e) => {
      const { text } = (e as CustomEvent<{ text: string }>).detail;
      setReceived((prev) => ({ text, n: prev.n + 1 }));
    });
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
      onDrop();
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
    if (rfb.current) applyViewMode(rfb.current.client, mode);
  }, [mode]);
  useEffect(() => {
    if (rfb.current) requestSize(rfb.current.client);
  }, [sharp]);

  const client = () => rfb.current?.client;
  return {
    conn,
    /** What the session last put on its clipboard. */
    received,
    reconnect: () => setGeneration((g) => g + 1),
    /** Asks for the window's size again (the pixel ratio changed). */
    resize: () => {
      const c = client();
      if (c) requestSize(c);
    },
    focus: () => client()?.focus(),
    sendCtrlAltDel: () => {
      client()?.sendCtrlAltDel();
      client()?.focus();
    },
    /** Sends text to the session's clipboard (the panel's button: the desktop gets the keys next). */
    paste: (text: string) => {
      client()?.clipboardPasteFrom(text);
      client()?.focus();
    },
    /** Sends text to the session's clipboard, leaving the focus where it is. */
    sendClipboard: (text: string) => client()?.clipboardPasteFrom(text),
  };
}
