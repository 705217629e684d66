// A session whose first port is a web app (KasmVNC, Selkies, code-server,
// noVNC inside the image): the app in a frame, opened through the control
// plane's redirect so the app gets a cookie of its own and never the login.
// The frame is (re)loaded when the session runs; apps that refuse to be
// framed open in a new tab from the toolbar.
//
// The owner's frame uses path mode (`/apps/…` on this origin): an app on
// another site could not keep its cookie inside a frame (browsers treat it
// as a third-party cookie). Admins viewing someone else's app, and the
// new tab, use the app's own host when the server has an apps domain.

import { useState } from 'preact/hooks';
import type { Session } from '../../api';
import { useAuth } from '../../auth';
import type { Conn } from './connection';

/** The frame's state in the viewer's terms, for the overlays. */
export function useWebApp(session: Session | null) {
  const [loadedFor, setLoadedFor] = useState<string | null>(null);
  const running = session?.phase === 'Running' && session.state === 'running';
  // A new key each time the session starts running again (woken, restarted).
  const key = running && session ? `${session.id}:${session.updated_at}` : null;
  const conn: Conn = key && loadedFor === key ? { kind: 'connected' } : { kind: 'connecting', attempt: 1 };
  return { running, key, conn, onLoad: () => setLoadedFor(key) };
}

export function WebAppFrame({ session, frameKey, onLoad }: { session: Session; frameKey: string | null; onLoad: () => void }) {
  const { user } = useAuth();
  if (!session.app_url || !frameKey) return null;
  const own = user.id === session.user_id;
  return (
    <iframe
      key={frameKey}
      class="app-frame"
      data-testid="app-frame"
      title={`${session.template} (web app)`}
      src={own ? `${session.app_url}?mode=path` : session.app_url}
      onLoad={onLoad}
      allow="clipboard-read; clipboard-write; fullscreen; autoplay; microphone; camera"
    />
  );
}
