// Session recordings (admins): every recording, or one session's
// (`?session=ID`), newest first; play one back in the page (play, pause,
// seek, speed), download or delete it. Deleting is audited
// (recording.delete).

import { useEffect, useRef, useState } from 'preact/hooks';
import { errorMessage } from '../../api';
import { recordingsApi, type RecordingView } from '../../api-recordings';
import { Badge, Button, confirmDialog, EmptyState, ErrorBanner, Loading, PageHeader, toast } from '../../components/ui';
import { absolute, bytes } from '../../format';
import { useResource } from '../../hooks';
import { parseRecording, Player, type PlayerState } from './recording-player';

const SPEEDS = [0.5, 1, 2, 4, 8];

function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function RecordingsPage() {
  const session = new URLSearchParams(location.search).get('session') ?? undefined;
  const { data, error, reload } = useResource(() => recordingsApi.list(session), [session]);
  const [playing, setPlaying] = useState<RecordingView | null>(null);

  const remove = async (r: RecordingView) => {
    const ok = await confirmDialog({
      title: 'Delete this recording?',
      body: `The recording of ${r.viewer} from ${absolute(r.started_at)} is deleted for good.`,
      confirm: 'Delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await recordingsApi.remove(r.id);
      if (playing?.id === r.id) setPlaying(null);
      toast('Recording deleted.');
      reload();
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };

  return (
    <>
      <PageHeader
        title="Recordings"
        subtitle={session ? `Recordings of session ${session}.` : 'What recorded sessions’ viewers were shown.'}
        actions={<Button onClick={reload}>Refresh</Button>}
      />
      <ErrorBanner error={error} onRetry={reload} />
      {data === null && !error && <Loading what="recordings" />}
      {data && data.length === 0 && (
        <EmptyState title="No recordings">
          <p class="muted">
            Sessions are recorded when their template requires it or when “Record every session” is on in Settings.
          </p>
        </EmptyState>
      )}
      {playing && <PlayerPanel key={playing.id} recording={playing} onClose={() => setPlaying(null)} />}
      {data && data.length > 0 && (
        <div class="table-wrap">
          <table class="table responsive" aria-label="Recordings">
            <thead>
              <tr>
                <th scope="col">Started</th>
                <th scope="col">Session</th>
                <th scope="col">Viewer</th>
                <th scope="col">Length</th>
                <th scope="col">Size</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.map((r) => (
                <tr key={r.id} data-recording={r.id}>
                  <td data-label="Started" title={r.started_at}>
                    {absolute(r.started_at)}
                  </td>
                  <td data-label="Session" class="mono small">
                    <a href={`/admin/recordings?session=${encodeURIComponent(r.session_id)}`}>{r.session_id}</a>
                  </td>
                  <td data-label="Viewer">{r.viewer}</td>
                  <td data-label="Length">
                    {clock(r.duration_ms)} {r.recording && <Badge tone="green" pulse>recording</Badge>}
                    {r.stopped && <Badge tone="amber">{r.stopped}</Badge>}
                  </td>
                  <td data-label="Size">{bytes(r.bytes)}</td>
                  <td class="btn-row">
                    <Button small onClick={() => setPlaying(r)}>
                      Play
                    </Button>
                    <a class="btn small" href={recordingsApi.fileUrl(r.id)} download>
                      Download
                    </a>
                    <Button small variant="danger" disabled={r.recording} onClick={() => remove(r)}>
                      Delete
                    </Button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function PlayerPanel({ recording, onClose }: { recording: RecordingView; onClose: () => void }) {
  const screen = useRef<HTMLDivElement>(null);
  const player = useRef<Player | null>(null);
  const [state, setState] = useState<PlayerState>({ position: 0, playing: false, speed: 1 });
  const [duration, setDuration] = useState(0);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let gone = false;
    recordingsApi.file(recording.id).then(
      (buffer) => {
        if (gone || !screen.current) return;
        try {
          const parsed = parseRecording(buffer);
          setDuration(parsed.durationMs);
          player.current = new Player(screen.current, parsed, setState);
        } catch (err) {
          setError(errorMessage(err));
        }
      },
      (err) => !gone && setError(errorMessage(err)),
    );
    return () => {
      gone = true;
      player.current?.destroy();
      player.current = null;
    };
  }, [recording.id]);

  return (
    <section
      class="card"
      aria-label="Playback"
      data-testid="player"
      data-position={Math.round(state.position)}
      data-duration={duration}
    >
      <div class="btn-row">
        <strong>
          {recording.viewer}, {absolute(recording.started_at)}
        </strong>
        <Button small onClick={onClose}>
          Close player
        </Button>
      </div>
      <ErrorBanner error={error} />
      <div ref={screen} data-testid="replay" class="replay-screen" style={{ height: '60vh', background: '#0b0d12' }} />
      <div class="btn-row">
        {state.playing ? (
          <Button small onClick={() => player.current?.pause()}>
            Pause
          </Button>
        ) : (
          <Button small variant="primary" onClick={() => player.current?.play()}>
            Play
          </Button>
        )}
        <input
          type="range"
          aria-label="Position"
          min={0}
          max={duration}
          step="any"
          value={state.position}
          onInput={(e) => player.current?.seek(e.currentTarget.valueAsNumber)}
          style={{ flex: 1 }}
        />
        <span class="mono small" aria-label="Time">
          {clock(state.position)} / {clock(duration)}
        </span>
        <label>
          Speed{' '}
          <select
            aria-label="Speed"
            value={String(state.speed)}
            onChange={(e) => player.current?.setSpeed(Number(e.currentTarget.value))}
          >
            {SPEEDS.map((s) => (
              <option key={s} value={String(s)}>
                {s}×
              </option>
            ))}
          </select>
        </label>
      </div>
    </section>
  );
}
