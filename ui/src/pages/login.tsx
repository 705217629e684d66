import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type User } from '../api';
import { Logo } from '../components/layout';
import { Button, ErrorBanner } from '../components/ui';
import { MfaStep } from './login-mfa';

export function LoginPage({ onLogin }: { onLogin: (u: User) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // Set when the password was right and MFA is on: the second step's challenge.
  const [challenge, setChallenge] = useState<string | null>(null);

  useEffect(() => {
    document.title = 'Sign in · StreamSpace';
  }, []);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await api.login(username.trim(), password);
      if ('mfa_required' in answer) {
        setChallenge(answer.challenge);
        setBusy(false);
        return;
      }
      onLogin(answer.user);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  if (challenge) {
    const restart = () => {
      setChallenge(null);
      setPassword('');
    };
    return (
      <main class="login-page">
        <MfaStep challenge={challenge} onLogin={onLogin} onRestart={restart} />
      </main>
    );
  }

  return (
    <main class="login-page">
      <form class="card login-card" onSubmit={submit} aria-labelledby="login-title">
        <div class="login-logo">
          <Logo />
        </div>
        <h1 id="login-title">Sign in</h1>
        <p class="muted">Stream desktop apps to your browser.</p>
        <ErrorBanner error={error} />
        <div class="field">
          <label for="login-username">Username</label>
          <input
            id="login-username"
            name="username"
            autocomplete="username"
            autocapitalize="none"
            spellcheck={false}
            required
            autofocus
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="login-password">Password</label>
          <input
            id="login-password"
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </div>
        <Button type="submit" variant="primary" busy={busy} class="btn-block">
          Sign in
        </Button>
      </form>
    </main>
  );
}
