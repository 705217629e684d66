// Your account: change your password (your other sign-ins end) and sign out
// everywhere (every sign-in ends, this one too).

import { useState } from 'preact/hooks';
import { api, ApiError, errorMessage } from '../api';
import { useAuth } from '../app';
import { Button, confirmDialog, ErrorBanner, Field, PageHeader, toast } from '../components/ui';

export function AccountPage() {
  const { user, logout } = useAuth();

  const signOutEverywhere = async () => {
    const ok = await confirmDialog({
      title: 'Sign out everywhere?',
      body: <p>Every browser and script signed in as {user.username} is signed out, this one too.</p>,
      confirm: 'Sign out everywhere',
      danger: true,
    });
    if (ok) await logout({ everywhere: true });
  };

  return (
    <>
      <PageHeader title="Your account" subtitle={`Signed in as ${user.username} (${user.role}).`} />
      <div class="card narrow">
        <h2>Change password</h2>
        <PasswordForm />
      </div>
      <div class="card narrow">
        <h2>Sign out everywhere</h2>
        <p class="muted">Ends every sign-in of yours: other browsers, other devices, scripts with a token.</p>
        <Button variant="danger" onClick={signOutEverywhere}>
          Sign out everywhere
        </Button>
      </div>
    </>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const fieldError = (f: string) => (error?.field === f ? error.detail : null);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.changePassword(current, next);
      setCurrent('');
      setNext('');
      toast('Password changed. Your other sign-ins have ended.');
    } catch (err) {
      // A wrong current password is a 403 about that field.
      if (err instanceof ApiError && err.status === 403) setError(new ApiError(403, err.message, 'current_password'));
      else setError(err instanceof ApiError ? err : new ApiError(0, errorMessage(err)));
    }
    setBusy(false);
  };

  const input = (id: string, field: string, value: string, set: (v: string) => void, autocomplete: string) => (
    <input
      id={id}
      type="password"
      autocomplete={autocomplete}
      required
      value={value}
      onInput={(e) => set(e.currentTarget.value)}
      aria-invalid={!!fieldError(field)}
      aria-describedby={fieldError(field) ? `${id}-error` : undefined}
    />
  );
  return (
    <form onSubmit={submit} noValidate>
      {error && !error.field && <ErrorBanner error={error.message} />}
      <Field label="Current password" id="account-current" error={fieldError('current_password')}>
        {input('account-current', 'current_password', current, setCurrent, 'current-password')}
      </Field>
      <Field label="New password" id="account-new" error={fieldError('new_password')} hint="At least 8 characters.">
        {input('account-new', 'new_password', next, setNext, 'new-password')}
      </Field>
      <Button type="submit" variant="primary" busy={busy}>
        Change password
      </Button>
    </form>
  );
}
