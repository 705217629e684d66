// What covers the screen when there is no desktop to show: a phase on its
// way (starting, waking, hibernating, stopping), one that needs the user
// (hibernated, failed, terminated), or a connection not made or lost.

import { useEffect, useState } from 'preact/hooks';
import type { Session } from '../../api';
import { Button, ErrorBanner, Spinner } from '../../components/ui';
import { IconAlert, IconMoon } from '../../components/icons';
import { Link } from '../../router';
import type { Conn } from './connection';

type OverlayProps = {
  session: Session;
  conn: Conn;
  acting: boolean;
  onWake: () => void;
  onReconnect: () => void;
};

export function Overlay({ session, conn, acting, onWake, onReconnect }: OverlayProps) {
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
    case 'Pulling':
      // The agent's message carries the progress: "pulling …: 42% (120 MB of 286 MB)".
      body = waiting(`Downloading ${session.template}…`, session.message ?? 'The image of this app is being downloaded.');
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

/** Tells everyone watching that this session's screen is being recorded (docs/RECORDING.md). */
export function RecordingNotice() {
  return (
    <div class="recording-notice" role="status" data-testid="recording-notice" title="An admin can replay what this viewer shows.">
      <span class="recording-dot" aria-hidden="true" /> This session is recorded
    </div>
  );
}
