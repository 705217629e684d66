import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type User } from '../api';
import { Logo } from '../components/layout';
import { Button, ErrorBanner } from '../components/ui';

type Providers = Awaited<ReturnType<typeof api.providers>>;

/** A refused single sign-on comes back as `/?login_error=…` (api/oidc.rs). */
function ssoError(): string | null {
  return new URLSearchParams(location.search).get('login_error');
}

export function LoginPage({ onLogin }: { onLogin: (u: User) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(ssoError);
  // Until the server says otherwise, the password form is there.
  const [providers, setProviders] = useState<Providers>({ password: true });
  const [passwordAnyway, setPasswordAnyway] = useState(false);

  useEffect(() => {
    document.title = 'Sign in · StreamSpace';
    api.providers().then(setProviders, () => undefined);
  }, []);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await api.login(username.trim(), password);
      onLogin(answer.user);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  const sso = providers.oidc;
  // With password login off, only the break-glass admin needs the form.
  const showForm = providers.password || passwordAnyway;

  return (
    <main class="login-page">
      <div class="card login-card" aria-labelledby="login-title">
        <div class="login-logo">
          <Logo />
        </div>
        <h1 id="login-title">Sign in</h1>
        <p class="muted">Stream desktop apps to your browser.</p>
        <ErrorBanner error={error} />
        {sso && (
          <a class="btn btn-primary btn-block" href={sso.login_url}>
            Sign in with {sso.name}
          </a>
        )}
        {sso && showForm && <div class="login-divider">or</div>}
        {showForm ? (
          <form onSubmit={submit}>
            <div class="field">
              <label for="login-username">Username</label>
              <input
                id="login-username"
                name="username"
                autocomplete="username"
                autocapitalize="none"
                spellcheck={false}
                required
                autofocus={!sso}
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
            <Button type="submit" variant={sso ? 'default' : 'primary'} busy={busy} class="btn-block">
              Sign in{sso ? ' with a password' : ''}
            </Button>
          </form>
        ) : (
          <Button variant="ghost" class="btn-block" onClick={() => setPasswordAnyway(true)}>
            Administrator sign-in with a password
          </Button>
        )}
      </div>
    </main>
  );
}
