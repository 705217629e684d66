// The second step of signing in, for an account with MFA on: the code from
// the authenticator app (or a recovery code) for the challenge the password
// step answered. docs/MFA.md describes the flow.

import { useState } from 'preact/hooks';
import { api, ApiError, errorMessage, type User } from '../api';
import { Logo } from '../components/layout';
import { Button, ErrorBanner } from '../components/ui';

type Props = {
  challenge: string;
  onLogin: (u: User) => void;
  /** Back to the password: the challenge expired, was used, or the user wants out. */
  onRestart: () => void;
};

export function MfaStep({ challenge, onLogin, onRestart }: Props) {
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [expired, setExpired] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await api.loginMfa(challenge, code.trim());
      onLogin(answer.user);
    } catch (err) {
      setError(errorMessage(err));
      // A challenge that is gone cannot take another code.
      setExpired(err instanceof ApiError && err.status === 401 && err.message.includes('log in again'));
      setCode('');
      setBusy(false);
    }
  };

  return (
    <form class="card login-card" onSubmit={submit} aria-labelledby="login-title">
      <div class="login-logo">
        <Logo />
      </div>
      <h1 id="login-title">Two-step verification</h1>
      <p class="muted">Enter the 6-digit code your authenticator app shows, or one of your recovery codes.</p>
      <ErrorBanner error={error} />
      <div class="field">
        <label for="login-code">Code</label>
        <input
          id="login-code"
          name="code"
          autocomplete="one-time-code"
          autocapitalize="none"
          spellcheck={false}
          maxLength={64}
          required
          autofocus
          disabled={expired}
          value={code}
          onInput={(e) => setCode(e.currentTarget.value)}
        />
      </div>
      {expired ? (
        <Button type="button" variant="primary" class="btn-block" onClick={onRestart}>
          Sign in again
        </Button>
      ) : (
        <Button type="submit" variant="primary" busy={busy} class="btn-block">
          Verify
        </Button>
      )}
      <p class="muted">
        <a
          href="/login"
          onClick={(e) => {
            e.preventDefault();
            onRestart();
          }}
        >
          Use another account
        </a>
      </p>
    </form>
  );
}
