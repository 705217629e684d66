// Your account: two-step verification (first: a user the administrator
// requires it of can reach only this page until they enrol), change your
// password (your other sign-ins end) and sign out everywhere (every sign-in
// ends, this one too).

import { useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { useAuth } from '../auth';
import { ApiTokensSection } from './account-tokens';
import { RecentLogins } from './account-logins';
import {
  Button,
  confirmDialog,
  FormErrorBanner,
  PageHeader,
  PasswordField,
  toast,
  useFormError,
} from '../components/ui';
import { MfaSection } from './account-mfa';

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
      <MfaSection />
      <div class="card narrow">
        <h2>Change password</h2>
        <PasswordForm />
      </div>
      <ApiTokensSection />
      <div class="card narrow">
        <h2>Sign out everywhere</h2>
        <p class="muted">Ends every sign-in of yours: other browsers, other devices, scripts with a token.</p>
        <Button variant="danger" onClick={signOutEverywhere}>
          Sign out everywhere
        </Button>
      </div>
      <RecentLogins />
    </>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();

  const submit = async (e: Event) => {
    e.preventDefault();
    // Caught here, not sent: the server would count a blank current
    // password as a wrong one.
    const invalid = checkPasswords(current, next);
    setError(invalid);
    if (invalid) return;
    setBusy(true);
    try {
      await api.changePassword(current, next);
      setCurrent('');
      setNext('');
      toast('Password changed. Your other sign-ins have ended.');
    } catch (err) {
      // A wrong current password is a 403 about that field.
      if (err instanceof ApiError && err.status === 403) setError(new ApiError(403, err.message, 'current_password'));
      else fail(err);
    }
    setBusy(false);
  };

  return (
    <form onSubmit={submit} noValidate>
      <FormErrorBanner error={error} />
      <PasswordField
        label="Current password"
        id="account-current"
        value={current}
        onInput={setCurrent}
        error={fieldError('current_password')}
        autocomplete="current-password"
      />
      <PasswordField
        label="New password"
        id="account-new"
        value={next}
        onInput={setNext}
        error={fieldError('new_password')}
        hint="At least 8 characters."
        autocomplete="new-password"
      />
      <Button type="submit" variant="primary" busy={busy}>
        Change password
      </Button>
    </form>
  );
}

/** What the server would refuse in these fields, said the way it would. */
function checkPasswords(current: string, next: string): ApiError | null {
  if (!current) return new ApiError(400, 'current_password: enter your current password', 'current_password');
  if ([...next].length < 8) return new ApiError(400, 'new_password: must be at least 8 characters', 'new_password');
  return null;
}
