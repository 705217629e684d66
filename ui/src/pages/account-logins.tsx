// Your recent sign-ins on the account page: when, from where, how, and
// whether they worked. A sign-in you do not recognise is a reason to change
// your password and sign out everywhere.

import { auditApi } from '../api-audit';
import { Badge, ErrorBanner, Loading } from '../components/ui';
import { absolute, ago, useNow } from '../format';
import { useResource } from '../hooks';

export function RecentLogins() {
  const { data, error, reload } = useResource(auditApi.myLogins);
  const now = useNow();
  return (
    <div class="card narrow" data-testid="recent-logins">
      <h2>Recent sign-ins</h2>
      <p class="muted">Your last 20 sign-ins, failed ones too. Not you? Change your password and sign out everywhere.</p>
      <ErrorBanner error={error} onRetry={reload} />
      {data === null && !error && <Loading what="your sign-ins" />}
      {data && data.logins.length === 0 && <p class="muted">No sign-ins recorded yet.</p>}
      {data && data.logins.length > 0 && (
        <ul class="plain-list">
          {data.logins.map((l) => {
            const method = (l.detail as { method?: string } | null)?.method ?? 'password';
            return (
              <li key={l.id} data-testid="login" data-outcome={l.outcome}>
                <Badge tone={l.outcome === 'success' ? 'green' : 'red'}>
                  {l.outcome === 'success' ? 'Signed in' : 'Failed'}
                </Badge>{' '}
                <span title={absolute(l.at)}>{ago(l.at, now)}</span> from <strong>{l.client ?? 'an unknown address'}</strong>{' '}
                <span class="muted small">({method})</span>
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}
