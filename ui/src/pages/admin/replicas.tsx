// The control plane's replicas, for admins on the agents page
// (docs/ARCHITECTURE.md#replicas): which are alive, where the others reach
// them, how many agents each holds. One row on SQLite.

import { useEffect } from 'preact/hooks';
import type { components } from '../../api-schema';
import { request } from '../../api';
import { useResource } from '../../hooks';
import { absolute, ago, useNow } from '../../format';
import { Badge, ErrorBanner } from '../../components/ui';

export type Replica = components['schemas']['ReplicaView'];

const listReplicas = () => request<Replica[]>('GET', '/replicas');

/** How often the list is read again: replicas beat every 2 s and expire after 10 s. */
const POLL_MS = 5000;

export function ReplicasTable() {
  const { data: replicas, error, reload } = useResource(listReplicas);
  const now = useNow(POLL_MS);
  useEffect(() => {
    const t = setInterval(reload, POLL_MS);
    return () => clearInterval(t);
  }, []);
  if (!replicas && !error) return null;
  return (
    <section class="replicas" aria-labelledby="replicas-title" style={{ marginTop: '2rem' }}>
      <h2 id="replicas-title">Control-plane replicas</h2>
      <p class="muted">
        Each beats every 2 s; one silent for 10 s is dropped and its agents reconnect to another.
      </p>
      <ErrorBanner error={error} onRetry={reload} />
      {replicas && (
        <div class="table-wrap">
          <table class="table responsive" aria-label="Replicas">
            <thead>
              <tr>
                <th scope="col">Replica</th>
                <th scope="col">Internal address</th>
                <th scope="col">Version</th>
                <th scope="col">Started</th>
                <th scope="col">Last heartbeat</th>
                <th scope="col">Agents</th>
              </tr>
            </thead>
            <tbody>
              {replicas.map((r) => (
                <tr key={r.id} data-replica={r.id}>
                  <td data-label="Replica">
                    <code>{r.id}</code> {r.serving && <Badge tone="blue">this page</Badge>}{' '}
                    {r.draining && <Badge tone="amber">draining</Badge>}
                  </td>
                  <td data-label="Internal address">
                    <code>{r.internal_url}</code>
                  </td>
                  <td data-label="Version">{r.version}</td>
                  <td data-label="Started" title={absolute(r.started_at)}>
                    {ago(r.started_at, now)}
                  </td>
                  <td data-label="Last heartbeat" title={absolute(r.heartbeat_at)}>
                    {ago(r.heartbeat_at, now)}
                  </td>
                  <td data-label="Agents" data-testid="replica-agents">
                    {r.agents_connected}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
