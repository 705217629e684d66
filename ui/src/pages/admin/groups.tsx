// Admin: groups, their members, quota and agent pools (docs/GROUPS.md).
// Groups and memberships from the identity provider (source "oidc") come
// back at the member's next login, so removing one asks first and says so.
import { useState } from 'preact/hooks';
import { api, ApiError, errorMessage, type Group, type Limits, type User } from '../../api';
import { useResource } from '../../hooks';
import {
  Badge,
  Button,
  confirmDialog,
  EmptyState,
  ErrorBanner,
  Field,
  FormErrorBanner,
  Loading,
  Modal,
  PageHeader,
  toast,
  useFormError,
} from '../../components/ui';

export function GroupsPage() {
  const { data: groups, error, reload, setData: setGroups } = useResource(api.groups);
  const [editing, setEditing] = useState<Group | 'new' | null>(null);
  const [members, setMembers] = useState<Group | null>(null);

  const put = (g: Group) =>
    setGroups((list) => (list ? [...list.filter((x) => x.id !== g.id), g] : [g]));
  const remove = async (g: Group) => {
    const ok = await confirmDialog({
      title: `Delete group ${g.name}?`,
      body: <p>Its members lose the templates, agent pools and quota it gives them.</p>,
      confirm: 'Delete group',
      danger: true,
    });
    if (!ok) return;
    try {
      await deleteConfirmingClaims(g);
      setGroups((list) => list?.filter((x) => x.id !== g.id) ?? null);
      toast(`Group ${g.name} deleted.`);
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };

  const sorted = [...(groups ?? [])].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <>
      <PageHeader
        title="Groups"
        subtitle="Who may launch which templates, on which agent pools, with how much."
        actions={
          <Button variant="primary" onClick={() => setEditing('new')}>
            Add group
          </Button>
        }
      />
      <ErrorBanner error={error} onRetry={reload} />
      {groups === null && !error && <Loading what="groups" />}
      {groups && groups.length === 0 && (
        <EmptyState title="No groups yet">
          <p class="muted">Without groups, everyone uses the agents of pool “default” and their own quota.</p>
        </EmptyState>
      )}
      {groups && groups.length > 0 && (
        <div class="table-wrap">
          <table class="table responsive" aria-label="Groups">
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Members</th>
                <th scope="col">Agent pools</th>
                <th scope="col">Quota</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {sorted.map((g) => (
                <tr key={g.id} data-group={g.name}>
                  <td data-label="Group">
                    <strong>{g.name}</strong>{' '}
                    {g.source === 'oidc' && <Badge tone="blue">from sign-in</Badge>}
                  </td>
                  <td data-label="Members" data-testid="group-members">
                    {g.members.map((m) => m.username).join(', ') || <span class="muted">none</span>}
                  </td>
                  <td data-label="Agent pools" data-testid="group-pools">
                    {g.pools.join(', ') || <span class="muted">none</span>}
                  </td>
                  <td data-label="Quota">{describeQuota(g.quota)}</td>
                  <td class="actions">
                    <div class="btn-row">
                      <Button small onClick={() => setMembers(g)}>
                        Members
                      </Button>
                      <Button small onClick={() => setEditing(g)}>
                        Edit
                      </Button>
                      <Button small variant="danger" onClick={() => remove(g)} aria-label={`Delete ${g.name}`}>
                        Delete
                      </Button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {editing && (
        <GroupDialog
          existing={editing === 'new' ? undefined : editing}
          onClose={() => setEditing(null)}
          onSaved={(g) => {
            put(g);
            setEditing(null);
            toast(`Group ${g.name} saved.`);
          }}
        />
      )}
      {members && (
        <MembersDialog
          group={members}
          onChanged={(g) => {
            put(g);
            setMembers(g);
          }}
          onClose={() => setMembers(null)}
        />
      )}
    </>
  );
}

/** "3 sessions · 4 CPU · 8Gi memory", or that the group sets none. */
function describeQuota(q: Limits): string {
  const parts = [
    q.max_sessions != null && `${q.max_sessions} sessions`,
    q.cpu != null && `${q.cpu} CPU`,
    q.memory != null && `${q.memory} memory`,
  ].filter(Boolean);
  return parts.join(' · ') || 'sets none';
}

/** A claimed group with members comes back at their next login: say so, and force only if confirmed. */
async function deleteConfirmingClaims(g: Group) {
  try {
    await api.deleteGroup(g.id);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) throw err;
    const ok = await confirmDialog({
      title: `${g.name} comes from the identity provider`,
      body: <p>{err.message}</p>,
      confirm: 'Delete anyway',
      danger: true,
    });
    if (!ok) throw new Error(`Group ${g.name} was kept.`);
    await api.deleteGroup(g.id, true);
  }
}

/** A number when the text is one; otherwise the text, so the API's message quotes it. */
function limitValue(text: string): number | string | null {
  const t = text.trim();
  if (t === '') return null;
  return /^\d+$/.test(t) ? Number(t) : t;
}

function GroupDialog({
  existing,
  onClose,
  onSaved,
}: {
  existing?: Group;
  onClose: () => void;
  onSaved: (g: Group) => void;
}) {
  const [name, setName] = useState(existing?.name ?? '');
  const [pools, setPools] = useState(existing?.pools.join(', ') ?? '');
  const [sessions, setSessions] = useState(existing?.quota.max_sessions?.toString() ?? '');
  const [cpu, setCpu] = useState(existing?.quota.cpu ?? '');
  const [mem, setMem] = useState(existing?.quota.memory ?? '');
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();
  const claimed = existing?.source === 'oidc';

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body = {
      name: name.trim(),
      pools: pools
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
      // The API reads the quantities and says what is wrong with them.
      quota: { max_sessions: limitValue(sessions), cpu: cpu.trim() || null, memory: mem.trim() || null } as Limits,
    };
    try {
      onSaved(existing ? await api.updateGroup(existing.id, body) : await api.createGroup(body));
    } catch (err) {
      fail(err);
      setBusy(false);
    }
  };
  const input = (id: string, value: string, set: (v: string) => void, field: string, extra = {}) => (
    <input
      id={id}
      value={value}
      onInput={(e) => set(e.currentTarget.value)}
      aria-invalid={!!fieldError(field)}
      aria-describedby={fieldError(field) ? `${id}-error` : undefined}
      {...extra}
    />
  );
  return (
    <Modal title={existing ? `Edit group ${existing.name}` : 'Add group'} onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <FormErrorBanner error={error} />
        <Field
          label="Name"
          id="group-name"
          error={fieldError('name')}
          hint={claimed ? 'Named by the identity provider’s groups claim.' : 'What templates’ “allowed groups” name.'}
        >
          {input('group-name', name, setName, 'name', { disabled: claimed, autofocus: !existing })}
        </Field>
        <Field
          label="Agent pools"
          id="group-pools"
          error={fieldError('pools') ?? poolsError(fieldError, pools)}
          hint="Comma-separated, e.g. team-a, gpu. Members place sessions only on agents in these pools (none: “default”)."
        >
          {input('group-pools', pools, setPools, 'pools')}
        </Field>
        <fieldset class="field">
          <legend>Quota</legend>
          <small class="hint">
            Empty: the group sets none. A member gets, per limit, the most generous of their own and their groups’.
          </small>
          <Field label="Sessions" id="group-sessions" error={fieldError('quota.max_sessions')}>
            {input('group-sessions', sessions, setSessions, 'quota.max_sessions', { inputMode: 'numeric' })}
          </Field>
          <Field label="CPU" id="group-cpu" error={fieldError('quota.cpu')} hint="e.g. 4 or 500m">
            {input('group-cpu', cpu, setCpu, 'quota.cpu')}
          </Field>
          <Field label="Memory" id="group-memory" error={fieldError('quota.memory')} hint="e.g. 8Gi">
            {input('group-memory', mem, setMem, 'quota.memory')}
          </Field>
        </fieldset>
        <div class="modal-actions">
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" variant="primary" busy={busy}>
            {existing ? 'Save group' : 'Create group'}
          </Button>
        </div>
      </form>
    </Modal>
  );
}

/** The API names a bad pool as pools[i]: show it at the pools field. */
function poolsError(fieldError: (f: string) => string | null, pools: string): string | null {
  const count = pools.split(',').length;
  for (let i = 0; i < count; i++) {
    const e = fieldError(`pools[${i}]`);
    if (e) return e;
  }
  return null;
}

function MembersDialog({
  group,
  onChanged,
  onClose,
}: {
  group: Group;
  onChanged: (g: Group) => void;
  onClose: () => void;
}) {
  const { data: users, error } = useResource(api.users);
  const [adding, setAdding] = useState('');
  const inGroup = new Set(group.members.map((m) => m.user_id));
  const candidates = (users ?? []).filter((u: User) => !inGroup.has(u.id));

  const add = async () => {
    if (!adding) return;
    try {
      onChanged(await api.addGroupMember(group.id, adding));
      setAdding('');
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };
  const remove = async (userId: string, username: string, claimed: boolean) => {
    if (claimed) {
      const ok = await confirmDialog({
        title: `Remove ${username} from ${group.name}?`,
        body: (
          <p>
            {username} is in this group by the identity provider’s groups claim: their next sign-in adds them back.
            Remove them at the provider to make it last.
          </p>
        ),
        confirm: 'Remove until next sign-in',
        danger: true,
      });
      if (!ok) return;
    }
    try {
      onChanged(await api.removeGroupMember(group.id, userId, claimed));
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };
  return (
    <Modal title={`Members of ${group.name}`} onClose={onClose}>
      <ErrorBanner error={error} />
      <ul class="member-list" aria-label="Members">
        {group.members.length === 0 && <li class="muted">No members yet.</li>}
        {group.members.map((m) => (
          <li key={m.user_id} data-member={m.username}>
            <strong>{m.username}</strong> {m.source === 'oidc' && <Badge tone="blue">from sign-in</Badge>}{' '}
            <Button
              small
              variant="danger"
              onClick={() => remove(m.user_id, m.username, m.source === 'oidc')}
              aria-label={`Remove ${m.username}`}
            >
              Remove
            </Button>
          </li>
        ))}
      </ul>
      <Field label="Add a member" id="member-add">
        <div class="btn-row">
          <select id="member-add" value={adding} onChange={(e) => setAdding(e.currentTarget.value)}>
            <option value="">Choose a user…</option>
            {candidates.map((u) => (
              <option key={u.id} value={u.id}>
                {u.username}
              </option>
            ))}
          </select>
          <Button onClick={add} disabled={!adding}>
            Add
          </Button>
        </div>
      </Field>
      <div class="modal-actions">
        <Button variant="primary" onClick={onClose}>
          Done
        </Button>
      </div>
    </Modal>
  );
}
