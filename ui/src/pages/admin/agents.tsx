import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Agent, type EnrollmentToken } from '../../api';
import { useEvents } from '../../events';
import { useResource } from '../../hooks';
import { absolute, ago, bytes, memory, useNow } from '../../format';
import { AgentPoolDialog } from './agent-pool';
import { ReplicasTable } from './replicas';
import { AgentHealth, agentTone } from './agent-health';
import {
  Badge,
  Button,
  confirmDialog,
  CopyButton,
  EmptyState,
  ErrorBanner,
  Field,
  Loading,
  Modal,
  PageHeader,
  toast,
} from '../../components/ui';

export function AgentsPage() {
  const { data: agents, error, reload: load, setData: setAgents } = useResource(api.agents);
  const [enrolling, setEnrolling] = useState(false);
  const [moving, setMoving] = useState<Agent | null>(null);
  const now = useNow(5000);

  useEffect(() => {
    // Heartbeats do not all arrive as events; a slow poll keeps "last heartbeat" honest.
    const t = setInterval(load, 15000);
    return () => clearInterval(t);
  }, []);
  const upsert = (a: Agent) =>
    setAgents((list) => (list ? [...list.filter((x) => x.id !== a.id), a] : list));
  useEvents({ agent: upsert, resync: load });

  const act = async (f: () => Promise<Agent | void>, removedId?: string) => {
    try {
      const a = await f();
      if (a) upsert(a);
      if (removedId) setAgents((list) => list?.filter((x) => x.id !== removedId) ?? null);
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };
  const remove = async (a: Agent) => {
    const ok = await confirmDialog({
      title: `Remove agent ${a.name}?`,
      body: (
        <p>
          The agent is disconnected and forgotten; it must enroll again with a new token to come back. Agents with
          sessions cannot be removed: drain it and terminate its sessions first.
        </p>
      ),
      confirm: 'Remove agent',
      danger: true,
    });
    if (ok) act(() => api.deleteAgent(a.id), a.id);
  };

  const sorted = [...(agents ?? [])].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <>
      <PageHeader
        title="Agents"
        subtitle="Machines and clusters that run sessions."
        actions={
          <Button variant="primary" onClick={() => setEnrolling(true)}>
            Add agent
          </Button>
        }
      />
      <ErrorBanner error={error} onRetry={load} />
      {agents === null && !error && <Loading what="agents" />}
      {agents && agents.length === 0 && (
        <EmptyState title="No agents yet">
          <p class="muted">Add an agent to run sessions: it needs an enrollment token.</p>
        </EmptyState>
      )}
      <ul class="agent-grid" aria-label="Agents">
        {sorted.map((a) => (
          <AgentCard
            key={a.id}
            agent={a}
            now={now}
            onDrain={() => act(() => (a.draining ? api.undrain(a.id) : api.drain(a.id)))}
            onRemove={() => remove(a)}
            onPool={() => setMoving(a)}
          />
        ))}
      </ul>
      <ReplicasTable />
      {enrolling && <EnrollDialog onClose={() => setEnrolling(false)} />}
      {moving && (
        <AgentPoolDialog
          agent={moving}
          onClose={() => setMoving(null)}
          onSaved={(a) => {
            upsert(a);
            setMoving(null);
            toast(`Agent ${a.name} is in pool ${a.pool} now.`);
          }}
        />
      )}
    </>
  );
}

function Meter({ label, value, max, text }: { label: string; value: number; max: number; text: string }) {
  const pct = max > 0 ? Math.min(100, Math.max(0, (value / max) * 100)) : 0;
  const tone = pct > 90 ? 'red' : pct > 70 ? 'amber' : 'green';
  return (
    <div class="meter">
      <div class="meter-label">
        <span>{label}</span>
        <span class="muted">{text}</span>
      </div>
      <div
        class="meter-track"
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={max}
        aria-valuenow={value}
        aria-valuetext={text}
      >
        <div class={`meter-fill meter-${tone}`} style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

function AgentCard({
  agent: a,
  now,
  onDrain,
  onRemove,
  onPool,
}: {
  agent: Agent;
  now: number;
  onDrain: () => void;
  onRemove: () => void;
  onPool: () => void;
}) {
  const tone = agentTone(a.status);
  // A number the agent did not report is 0, as in the agent protocol.
  const m = a.metrics && {
    sessions_running: a.metrics.sessions_running,
    cpu_percent: a.metrics.cpu_percent ?? 0,
    memory_used_bytes: a.metrics.memory_used_bytes ?? 0,
    memory_total_bytes: a.metrics.memory_total_bytes ?? 0,
  };
  const maxSessions = a.capacity.max_sessions ?? 0;
  return (
    <li class="card agent-card" data-agent={a.name} data-status={a.status}>
      <div class="agent-head">
        <div>
          <h2>{a.name}</h2>
          <div class="muted small">
            {a.platform}
            {a.region && ` · ${a.region}`}
            {a.version && ` · v${a.version}`}
          </div>
        </div>
        <span data-testid="agent-status">
          <Badge tone={tone} pulse={a.status === 'online'}>
            {a.status}
          </Badge>
        </span>
      </div>
      <dl class="facts">
        <div data-testid="agent-pool">
          <dt>Pool</dt>
          <dd>{a.pool}</dd>
        </div>
        <div>
          <dt>Sessions</dt>
          <dd>
            {a.session_count}
            {maxSessions > 0 ? ` / ${maxSessions}` : ''}
            {m && <span class="muted"> ({m.sessions_running} running)</span>}
          </dd>
        </div>
        <div>
          <dt>Capacity</dt>
          <dd>
            {[
              maxSessions > 0 ? `${maxSessions} sessions` : 'no session limit',
              a.capacity.cpu && `${a.capacity.cpu} CPU`,
              a.capacity.memory && `${memory(a.capacity.memory)} memory`,
            ]
              .filter(Boolean)
              .join(' · ')}
          </dd>
        </div>
        {(a.capacity.gpus ?? 0) > 0 && (
          <div data-testid="agent-gpus">
            <dt>GPUs</dt>
            <dd>
              {a.gpus_in_use} / {a.capacity.gpus} in use
              {a.capacity.gpu_model && <span class="muted"> · {a.capacity.gpu_model}</span>}
            </dd>
          </div>
        )}
        {a.capabilities.acceleration && (
          <div data-testid="agent-acceleration">
            <dt>Virtual machines</dt>
            <dd>
              {a.capabilities.acceleration === 'kvm' ? (
                'KVM'
              ) : (
                <>
                  TCG <span class="muted">(emulated, slower: the host has no KVM)</span>
                </>
              )}
            </dd>
          </div>
        )}
        <div>
          <dt>Last heartbeat</dt>
          <dd title={absolute(a.last_heartbeat)}>{ago(a.last_heartbeat, now)}</dd>
        </div>
        <div>
          <dt>Features</dt>
          <dd>
            {[
              a.capabilities.hibernation &&
                (a.capabilities.hibernation_keeps_memory ? 'hibernation (keeps memory)' : 'hibernation'),
              a.capabilities.persistent_storage && 'persistent homes',
              a.capabilities.gpu && 'GPU',
            ]
              .filter(Boolean)
              .join(', ') || '—'}
          </dd>
        </div>
      </dl>
      <AgentHealth agent={a} />
      {a.unverified_sessions?.length > 0 && (
        <details class="unverified" data-testid="unverified">
          <summary>
            {a.unverified_sessions.length} unverified session{a.unverified_sessions.length === 1 ? '' : 's'} on this
            host
          </summary>
          <p class="muted small">
            In nobody’s list: the host holds them, but this control plane cannot tell it placed them. A trustworthy
            agent has none; check the host.
          </p>
          <ul>
            {a.unverified_sessions.map((u) => (
              <li key={u.session_id}>
                <code>{u.session_id}</code> ({u.phase}
                {u.claimed_user && `, labelled as ${u.claimed_user}’s`}
                {u.claimed_template && ` ${u.claimed_template}`}): {u.reason}
              </li>
            ))}
          </ul>
        </details>
      )}
      {m ? (
        <div class="meters">
          <Meter label="CPU" value={m.cpu_percent} max={100} text={`${m.cpu_percent.toFixed(1)} %`} />
          <Meter
            label="Memory"
            value={m.memory_used_bytes}
            max={m.memory_total_bytes}
            text={`${bytes(m.memory_used_bytes)} of ${bytes(m.memory_total_bytes)}`}
          />
        </div>
      ) : (
        <p class="muted small">No load reported yet.</p>
      )}
      <div class="btn-row">
        <Button small onClick={onPool} title="Which groups’ sessions may run here">
          Change pool
        </Button>
        <Button small onClick={onDrain} title={a.draining ? 'Accept new sessions again' : 'Place no new sessions here'}>
          {a.draining ? 'Undrain' : 'Drain'}
        </Button>
        <Button small variant="danger" onClick={onRemove}>
          Remove
        </Button>
      </div>
    </li>
  );
}

function EnrollDialog({ onClose }: { onClose: () => void }) {
  const [ttl, setTtl] = useState('24h');
  const [pool, setPool] = useState('default');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [token, setToken] = useState<EnrollmentToken | null>(null);
  const create = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setToken(await api.enrollmentToken(ttl, pool.trim()));
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title="Add an agent" onClose={onClose} wide>
      {!token ? (
        <form onSubmit={create}>
          <p class="muted">
            Create a single-use enrollment token, then run the command it gives on the machine that should run
            sessions (it needs Docker).
          </p>
          <Field label="Token valid for" id="enroll-ttl" error={error}>
            <select id="enroll-ttl" value={ttl} onChange={(e) => setTtl(e.currentTarget.value)}>
              <option value="1h">1 hour</option>
              <option value="24h">24 hours</option>
              <option value="7d">7 days</option>
            </select>
          </Field>
          <Field
            label="Agent pool"
            id="enroll-pool"
            hint="Only members of groups with this pool get sessions on the agent (“default”: users in no such group)."
          >
            <input id="enroll-pool" value={pool} onInput={(e) => setPool(e.currentTarget.value)} />
          </Field>
          <div class="modal-actions">
            <Button onClick={onClose}>Cancel</Button>
            <Button type="submit" variant="primary" busy={busy}>
              Create token
            </Button>
          </div>
        </form>
      ) : (
        <div data-testid="enrollment">
          <p>Run this on the new agent’s machine. The token works once and expires {absolute(token.expires_at)}.</p>
          <p data-testid="enrollment-pool">
            The agent joins pool <strong>{token.pool}</strong>.
          </p>
          <pre class="command" data-testid="enrollment-command" tabIndex={0} aria-label="Command that starts the agent">
            {token.command}
          </pre>
          <div class="modal-actions">
            <CopyButton text={token.command} label="Copy command" />
            <Button variant="primary" onClick={onClose}>
              Done
            </Button>
          </div>
        </div>
      )}
    </Modal>
  );
}
