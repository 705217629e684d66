// Your API tokens, on the account page: create one for a script or the CLI
// (its secret is shown once, to copy), see when each was last used and when
// it expires, and revoke it.

import { useState } from 'preact/hooks';
import { type ApiToken, type CreatedApiToken, errorMessage, tokenApi } from '../api';
import {
  Button,
  confirmDialog,
  CopyButton,
  ErrorBanner,
  Field,
  FormErrorBanner,
  Loading,
  toast,
  useFormError,
} from '../components/ui';
import { absolute, ago, useNow } from '../format';
import { useResource } from '../hooks';

const LIFETIMES = [
  { value: '7d', label: '7 days' },
  { value: '30d', label: '30 days' },
  { value: '90d', label: '90 days' },
  { value: '366d', label: '1 year' },
];

export function ApiTokensSection() {
  const tokens = useResource(() => tokenApi.list());
  const [created, setCreated] = useState<CreatedApiToken | null>(null);
  const now = useNow();

  const revoke = async (token: ApiToken) => {
    const ok = await confirmDialog({
      title: `Revoke “${token.name}”?`,
      body: <p>Scripts and CLIs using it stop working at once.</p>,
      confirm: 'Revoke',
      danger: true,
    });
    if (!ok) return;
    try {
      await tokenApi.revoke(token.id);
      if (created?.id === token.id) setCreated(null);
      toast(`Token “${token.name}” revoked.`);
    } catch (err) {
      toast(`Could not revoke “${token.name}”: ${errorMessage(err)}`, 'error');
    }
    tokens.reload();
  };

  return (
    <div class="card" data-testid="api-tokens">
      <h2>API tokens</h2>
      <p class="muted">
        For scripts and the <code>streamspace</code> CLI (<code>streamspace login</code> makes one for you). A token
        acts as you until it expires or you revoke it.
      </p>
      {/* Above the form, where the eye is after "Create token". */}
      {created && <NewTokenSecret token={created} onDone={() => setCreated(null)} />}
      <NewTokenForm
        onCreated={(token) => {
          setCreated(token);
          tokens.reload();
        }}
      />
      <ErrorBanner error={tokens.error} onRetry={tokens.reload} />
      {tokens.data === null && !tokens.error && <Loading what="API tokens" />}
      {tokens.data?.length === 0 && <p class="muted">You have no API tokens.</p>}
      {tokens.data && tokens.data.length > 0 && (
        <div class="table-wrap">
          <table class="table responsive" aria-label="API tokens">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((t) => (
                <tr key={t.id} data-token={t.name}>
                  <td data-label="Name">
                    <strong>{t.name}</strong>
                  </td>
                  <td data-label="Created" title={absolute(t.created_at)}>
                    {ago(t.created_at, now)}
                  </td>
                  <td data-label="Last used" title={absolute(t.last_used_at)}>
                    {ago(t.last_used_at, now)}
                  </td>
                  <td data-label="Expires">{absolute(t.expires_at)}</td>
                  <td class="actions">
                    <Button small variant="danger" onClick={() => revoke(t)} aria-label={`Revoke ${t.name}`}>
                      Revoke
                    </Button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function NewTokenForm({ onCreated }: { onCreated: (token: CreatedApiToken) => void }) {
  const [name, setName] = useState('');
  const [lifetime, setLifetime] = useState('90d');
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onCreated(await tokenApi.create(name, lifetime));
      setName('');
    } catch (err) {
      fail(err);
    }
    setBusy(false);
  };

  return (
    <form onSubmit={submit} noValidate>
      <FormErrorBanner error={error} />
      <Field label="Token name" id="token-name" error={fieldError('name')} hint="What it is for, e.g. “CI deploys”.">
        <input
          id="token-name"
          value={name}
          maxLength={64}
          onInput={(e) => setName(e.currentTarget.value)}
          aria-invalid={!!fieldError('name')}
        />
      </Field>
      <Field label="Expires after" id="token-lifetime" error={fieldError('expires_in')}>
        <select id="token-lifetime" value={lifetime} onChange={(e) => setLifetime(e.currentTarget.value)}>
          {LIFETIMES.map((l) => (
            <option key={l.value} value={l.value}>
              {l.label}
            </option>
          ))}
        </select>
      </Field>
      <Button type="submit" variant="primary" busy={busy}>
        Create token
      </Button>
    </form>
  );
}

/** The new token's secret: shown this once, to copy. */
function NewTokenSecret({ token, onDone }: { token: CreatedApiToken; onDone: () => void }) {
  return (
    <div role="status" data-testid="new-token">
      <p>
        <strong>Copy the token “{token.name}” now:</strong> it is not shown again. It expires{' '}
        {absolute(token.expires_at)}.
      </p>
      <pre class="command" tabIndex={0} aria-label="The new API token" data-testid="new-token-secret">
        {token.token}
      </pre>
      <div class="btn-row">
        <CopyButton text={token.token} label="Copy token" />
        <Button onClick={onDone}>Done</Button>
      </div>
    </div>
  );
}
