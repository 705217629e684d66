import { useState } from 'preact/hooks';
import { api, errorMessage, type Role, type User } from '../../api';
import { useAuth } from '../../auth';
import { useResource } from '../../hooks';
import { Link } from '../../router';
import {
  Button,
  confirmDialog,
  ErrorBanner,
  Field,
  FormErrorBanner,
  Loading,
  Modal,
  PageHeader,
  PasswordField,
  toast,
  useFormError,
} from '../../components/ui';

export function UsersPage() {
  const { user: me } = useAuth();
  const { data: users, error, reload: load, setData: setUsers } = useResource(api.users);
  const [creating, setCreating] = useState(false);
  const [resetting, setResetting] = useState<User | null>(null);

  const setRole = async (u: User, role: Role) => {
    try {
      const updated = await api.updateUser(u.id, { role });
      setUsers((list) => list?.map((x) => (x.id === u.id ? updated : x)) ?? null);
      toast(`${u.username} is now ${role === 'admin' ? 'an admin' : 'a user'}.`);
    } catch (err) {
      toast(errorMessage(err), 'error');
      load();
    }
  };
  const remove = async (u: User) => {
    const ok = await confirmDialog({
      title: `Delete user ${u.username}?`,
      body: <p>They can no longer sign in. Users with sessions must terminate them first.</p>,
      confirm: 'Delete user',
      danger: true,
    });
    if (!ok) return;
    try {
      await api.deleteUser(u.id);
      setUsers((list) => list?.filter((x) => x.id !== u.id) ?? null);
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };

  const sorted = [...(users ?? [])].sort((a, b) => a.username.localeCompare(b.username));
  return (
    <>
      <PageHeader
        title="Users"
        subtitle="Who can sign in, and who administers StreamSpace."
        actions={
          <Button variant="primary" onClick={() => setCreating(true)}>
            Add user
          </Button>
        }
      />
      <ErrorBanner error={error} onRetry={load} />
      {users === null && !error && <Loading what="users" />}
      {users && (
        <div class="table-wrap">
          <table class="table responsive" aria-label="Users">
            <thead>
              <tr>
                <th scope="col">Username</th>
                <th scope="col">Role</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {sorted.map((u) => (
                <tr key={u.id} data-user={u.username}>
                  <td data-label="Username">
                    <strong>{u.username}</strong>
                    {u.id === me.id && <span class="muted small"> (you)</span>}
                  </td>
                  <td data-label="Role">
                    <label class="sr-only" for={`role-${u.id}`}>
                      Role of {u.username}
                    </label>
                    <select
                      id={`role-${u.id}`}
                      value={u.role}
                      disabled={u.id === me.id}
                      title={u.id === me.id ? 'You cannot change your own role' : undefined}
                      onChange={(e) => setRole(u, e.currentTarget.value as Role)}
                    >
                      <option value="user">user</option>
                      <option value="admin">admin</option>
                    </select>
                  </td>
                  <td class="actions">
                    <div class="btn-row">
                      {/* Your own password needs your current one: the Account page asks for it. */}
                      {u.id === me.id ? (
                        <Link class="btn btn-small" href="/account">
                          Change password
                        </Link>
                      ) : (
                        <Button small onClick={() => setResetting(u)}>
                          Set password
                        </Button>
                      )}
                      {u.id !== me.id && (
                        <Button small variant="danger" onClick={() => remove(u)} aria-label={`Delete ${u.username}`}>
                          Delete
                        </Button>
                      )}
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {creating && (
        <UserDialog
          onClose={() => setCreating(false)}
          onSaved={(u) => {
            setUsers((list) => [...(list ?? []), u]);
            setCreating(false);
            toast(`User ${u.username} created.`);
          }}
        />
      )}
      {resetting && (
        <UserDialog
          existing={resetting}
          onClose={() => setResetting(null)}
          onSaved={(u) => {
            setResetting(null);
            toast(`Password of ${u.username} changed.`);
          }}
        />
      )}
    </>
  );
}

function UserDialog({
  existing,
  onClose,
  onSaved,
}: {
  existing?: User;
  onClose: () => void;
  onSaved: (u: User) => void;
}) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<Role>('user');
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const u = existing
        ? await api.updateUser(existing.id, { password })
        : await api.createUser({ username: username.trim(), password, role });
      onSaved(u);
    } catch (err) {
      fail(err);
      setBusy(false);
    }
  };
  return (
    <Modal title={existing ? `Set password of ${existing.username}` : 'Add user'} onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <FormErrorBanner error={error} />
        {!existing && (
          <Field
            label="Username"
            id="user-username"
            error={fieldError('username')}
            hint="Lowercase letters, digits and '-', e.g. ada-lovelace."
          >
            <input
              id="user-username"
              autocomplete="off"
              autocapitalize="none"
              spellcheck={false}
              value={username}
              onInput={(e) => setUsername(e.currentTarget.value)}
              aria-invalid={!!fieldError('username')}
              aria-describedby={fieldError('username') ? 'user-username-error' : undefined}
              autofocus
            />
          </Field>
        )}
        <PasswordField
          label="Password"
          id="user-password"
          value={password}
          onInput={setPassword}
          error={fieldError('password')}
          hint="At least 8 characters."
          autocomplete="new-password"
          autofocus={!!existing}
        />
        {!existing && (
          <Field label="Role" id="user-role" error={fieldError('role')}>
            <select id="user-role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
              <option value="user">user — launches and uses apps</option>
              <option value="admin">admin — also manages agents, users and templates</option>
            </select>
          </Field>
        )}
        <div class="modal-actions">
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" variant="primary" busy={busy}>
            {existing ? 'Set password' : 'Create user'}
          </Button>
        </div>
      </form>
    </Modal>
  );
}
