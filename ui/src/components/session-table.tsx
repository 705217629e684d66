import { useState } from 'preact/hooks';
import { api, errorMessage, type DesiredState, type Session } from '../api';
import { useEvents } from '../events';
import { absolute, age, ago, useNow } from '../format';
import { useResource } from '../hooks';
import { Link } from '../router';
import { Button, confirmDialog, EmptyState, ErrorBanner, Loading, PhaseBadge, toast } from './ui';

/** A live list of sessions: loaded once, then kept current by server-sent events. */
export function useSessionList(opts: { all?: boolean; includeTerminated?: boolean; ownerId?: string }) {
  const {
    data: sessions,
    error,
    reload: load,
    setData: setSessions,
  } = useResource(() => api.sessions(opts), [opts.all, opts.includeTerminated]);
  const upsert = (s: Session) =>
    setSessions((list) => {
      if (!list) return list;
      if (opts.ownerId && s.user_id !== opts.ownerId) return list;
      const existing = list.findIndex((x) => x.id === s.id);
      // An answer to our own request may arrive after a newer event.
      if (existing >= 0 && list[existing].updated_at > s.updated_at) return list;
      if (s.phase === 'Terminated' && !opts.includeTerminated) return list.filter((x) => x.id !== s.id);
      if (existing < 0) return [s, ...list];
      const copy = [...list];
      copy[existing] = s;
      return copy;
    });
  useEvents({ session: upsert, resync: load });
  return { sessions, error, reload: load, upsert };
}

export async function changeState(s: Session, state: DesiredState, update: (s: Session) => void) {
  try {
    update(await api.setState(s.id, state));
  } catch (err) {
    toast(errorMessage(err), 'error');
  }
}

export async function terminateSession(s: Session, update: (s: Session) => void): Promise<boolean> {
  const ok = await confirmDialog({
    title: `Terminate this ${s.template} session?`,
    body: (
      <p>
        The session stops and its container is removed. Files outside the persistent home folder are lost. This
        cannot be undone.
      </p>
    ),
    confirm: 'Terminate',
    danger: true,
  });
  if (!ok) return false;
  try {
    update(await api.terminate(s.id));
    return true;
  } catch (err) {
    toast(errorMessage(err), 'error');
    return false;
  }
}

type Props = {
  sessions: Session[] | null;
  error: string | null;
  reload: () => void;
  showUser?: boolean;
  agentNames?: Record<string, string>;
  update: (s: Session) => void;
  empty: preact.ComponentChildren;
};

export function SessionTable({ sessions, error, reload, showUser, agentNames, update, empty }: Props) {
  const now = useNow(15000);
  // The row and action being carried out: that button spins, the row's others wait.
  const [busy, setBusy] = useState<{ id: string; action: string } | null>(null);
  const act = async (id: string, action: string, f: () => Promise<unknown>) => {
    setBusy({ id, action });
    try {
      await f();
    } finally {
      setBusy(null);
    }
  };

  if (error && !sessions) return <ErrorBanner error={error} onRetry={reload} />;
  if (!sessions) return <Loading what="sessions" />;
  if (sessions.length === 0) return <EmptyState title="No sessions">{empty}</EmptyState>;

  const sorted = [...sessions].sort((a, b) => b.created_at.localeCompare(a.created_at));
  return (
    <>
      <ErrorBanner error={error} onRetry={reload} />
      <div class="table-wrap">
        <table class="table responsive" aria-label="Sessions">
          <thead>
            <tr>
              <th scope="col">App</th>
              {showUser && <th scope="col">User</th>}
              <th scope="col">Phase</th>
              <th scope="col">Agent</th>
              <th scope="col">Age</th>
              <th scope="col">Last activity</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((s) => {
              const ended = s.phase === 'Terminated' || s.phase === 'Stopping';
              const canHibernate = !ended && s.state === 'running' && s.phase !== 'Failed';
              const canWake = !ended && (s.phase === 'Hibernated' || s.phase === 'Failed' || s.state === 'hibernated');
              const agent = s.agent_name ?? (s.agent_id ? (agentNames?.[s.agent_id] ?? s.agent_id.slice(0, 8)) : '—');
              return (
                <tr key={s.id} data-session={s.id}>
                  <td data-label="App">
                    <strong>{s.template}</strong>
                    <div class="muted small mono" title={s.id}>
                      {s.id.slice(0, 8)}
                    </div>
                  </td>
                  {showUser && <td data-label="User">{s.user}</td>}
                  <td data-label="Phase">
                    <PhaseBadge phase={s.phase} />
                    {s.usage && s.phase === 'Running' && (
                      <div class="muted small" title="CPU and memory at the agent's last heartbeat">
                        {s.usage.cpu} CPU · {s.usage.memory}
                      </div>
                    )}
                    {s.message && (s.phase === 'Failed' || s.phase !== 'Running') && (
                      <div class={`small ${s.phase === 'Failed' ? 'text-error' : 'muted'}`}>{s.message}</div>
                    )}
                  </td>
                  <td data-label="Agent">
                    {agent}
                    <div class="muted small">{s.platform}</div>
                    {s.agent_status === 'offline' && !ended && (
                      <div class="small text-error" title="The session is kept, but cannot be reached until its agent is back">
                        agent offline
                      </div>
                    )}
                  </td>
                  <td data-label="Age" title={absolute(s.created_at)}>
                    {age(s.created_at, now)}
                  </td>
                  <td data-label="Last activity" title={absolute(s.last_activity)}>
                    {ago(s.last_activity, now)}
                  </td>
                  <td class="actions">
                    <div class="btn-row">
                      {!ended && (
                        <Link
                          href={`/sessions/${s.id}`}
                          class="btn btn-small btn-primary"
                          aria-label={`Open ${s.template} session ${s.id.slice(0, 8)}`}
                        >
                          Open
                        </Link>
                      )}
                      {canHibernate && (
                        <Button
                          small
                          busy={busy?.id === s.id && busy.action === 'hibernate'}
                          disabled={busy?.id === s.id}
                          onClick={() => act(s.id, 'hibernate', () => changeState(s, 'hibernated', update))}
                        >
                          Hibernate
                        </Button>
                      )}
                      {canWake && (
                        <Button
                          small
                          busy={busy?.id === s.id && busy.action === 'wake'}
                          disabled={busy?.id === s.id}
                          onClick={() => act(s.id, 'wake', () => changeState(s, 'running', update))}
                        >
                          {s.phase === 'Failed' ? 'Restart' : 'Wake'}
                        </Button>
                      )}
                      {s.phase !== 'Terminated' && (
                        <Button
                          small
                          variant="danger"
                          busy={busy?.id === s.id && busy.action === 'terminate'}
                          disabled={busy?.id === s.id || s.phase === 'Stopping'}
                          onClick={() => act(s.id, 'terminate', () => terminateSession(s, update))}
                        >
                          Terminate
                        </Button>
                      )}
                    </div>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}
