// Session sharing (docs/SHARING.md): the owner's Share dialog (invite a
// user with a mode, make a link with an expiry and copy it, see the shares
// and who is watching now, end any of them), the guest's side (the sessions
// shared with you, opening a link) and the badge a guest's viewer shows.
// View-only is enforced by the control plane, not here: this only says so.
//
// No noVNC here, so the sessions page and the join route can import it
// without loading the viewer.

import { useEffect, useState } from 'preact/hooks';
import {
  ApiError,
  type CreatedShare,
  errorMessage,
  type Session,
  type SessionShares,
  type Share,
  shareApi,
  type ShareMode,
  type SharedSession,
} from '../../api';
import {
  Button,
  CopyButton,
  ErrorBanner,
  Field,
  FormErrorBanner,
  Loading,
  Modal,
  PhaseBadge,
  toast,
  useFormError,
} from '../../components/ui';
import { absolute, ago, useNow } from '../../format';
import { useResource } from '../../hooks';
import { Link, navigate } from '../../router';

/** "Who is watching" is polled this often while the dialog is open. */
const LIVE_POLL_MS = 1_500;
/** Where a link's secret waits while its opener signs in (the login drops the URL's fragment). */
const JOIN_KEY = 'streamspace.join';

const MODES: { value: ShareMode; label: string }[] = [
  { value: 'view', label: 'View only' },
  { value: 'control', label: 'Can control' },
];
const LINK_LIFETIMES = [
  { value: '15m', label: '15 minutes' },
  { value: '1h', label: '1 hour' },
  { value: '8h', label: '8 hours' },
  { value: '1d', label: '1 day' },
  { value: '7d', label: '7 days' },
];
const INVITE_LIFETIMES = [{ value: '', label: 'Until I end it' }, ...LINK_LIFETIMES];

function modeLabel(mode: ShareMode): string {
  return mode === 'control' ? 'Can control' : 'View only';
}

/** The owner's dialog: share, see who watches, end shares. */
export function ShareDialog({ session, onClose }: { session: Session; onClose: () => void }) {
  const shares = useResource(() => shareApi.list(session.id), [session.id]);
  const [link, setLink] = useState<CreatedShare | null>(null);
  useEffect(() => {
    const timer = setInterval(shares.reload, LIVE_POLL_MS);
    return () => clearInterval(timer);
  }, [session.id]);

  const end = async (share: Share) => {
    try {
      await shareApi.end(session.id, share.id);
      if (link?.id === share.id) setLink(null);
      toast(share.guest ? `${share.guest} can no longer see this session.` : 'The link no longer works.');
    } catch (err) {
      toast(`Could not end the share: ${errorMessage(err)}`, 'error');
    }
    shares.reload();
  };

  return (
    <Modal title={`Share ${session.template}`} onClose={onClose} wide>
      <div class="modal-body share-dialog" data-testid="share-dialog">
        {shares.data && !shares.data.sharing_allowed ? (
          <p class="muted" data-testid="sharing-forbidden">
            This session's template does not allow sharing.
          </p>
        ) : (
          <>
            <InviteForm session={session} onDone={shares.reload} />
            <LinkForm
              session={session}
              onCreated={(created) => {
                setLink(created);
                shares.reload();
              }}
            />
            {link?.url && <NewLink link={link} />}
          </>
        )}
        <ErrorBanner error={shares.error} onRetry={shares.reload} />
        {shares.data === null && !shares.error && <Loading what="shares" />}
        {shares.data && <SharesList data={shares.data} onEnd={end} />}
      </div>
    </Modal>
  );
}

function InviteForm({ session, onDone }: { session: Session; onDone: () => void }) {
  const [username, setUsername] = useState('');
  const [mode, setMode] = useState<ShareMode>('view');
  const [lifetime, setLifetime] = useState('');
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const input = { username: username.trim(), mode, ...(lifetime ? { expires_in: lifetime } : {}) };
      await shareApi.create(session.id, input);
      toast(`${username.trim()} can now ${mode === 'control' ? 'use' : 'watch'} this session.`);
      setUsername('');
      onDone();
    } catch (err) {
      fail(err);
    }
    setBusy(false);
  };

  return (
    <form onSubmit={submit} noValidate class="share-form" aria-label="Invite a user">
      <h3>Invite a user</h3>
      <FormErrorBanner error={error} />
      <div class="share-row">
        <Field label="Username" id="share-username" error={fieldError('username')}>
          <input
            id="share-username"
            value={username}
            maxLength={256}
            autocomplete="off"
            onInput={(e) => setUsername(e.currentTarget.value)}
            aria-invalid={!!fieldError('username')}
          />
        </Field>
        <ModeField id="share-mode" mode={mode} onMode={setMode} />
        <Field label="For" id="share-lifetime" error={fieldError('expires_in')}>
          <select id="share-lifetime" value={lifetime} onChange={(e) => setLifetime(e.currentTarget.value)}>
            {INVITE_LIFETIMES.map((l) => (
              <option key={l.value} value={l.value}>
                {l.label}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <Button type="submit" variant="primary" busy={busy} disabled={!username.trim()}>
        Invite
      </Button>
    </form>
  );
}

function LinkForm({ session, onCreated }: { session: Session; onCreated: (link: CreatedShare) => void }) {
  const [mode, setMode] = useState<ShareMode>('view');
  const [lifetime, setLifetime] = useState('1h');
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onCreated(await shareApi.create(session.id, { link: true, mode, expires_in: lifetime }));
    } catch (err) {
      fail(err);
    }
    setBusy(false);
  };

  return (
    <form onSubmit={submit} noValidate class="share-form" aria-label="Share link">
      <h3>Share link</h3>
      <p class="muted">Anyone signed in to this StreamSpace who has the link can open it until it expires.</p>
      <FormErrorBanner error={error} />
      <div class="share-row">
        <ModeField id="link-mode" mode={mode} onMode={setMode} />
        <Field label="Expires after" id="link-lifetime" error={fieldError('expires_in')}>
          <select id="link-lifetime" value={lifetime} onChange={(e) => setLifetime(e.currentTarget.value)}>
            {LINK_LIFETIMES.map((l) => (
              <option key={l.value} value={l.value}>
                {l.label}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <Button type="submit" busy={busy}>
        Create link
      </Button>
    </form>
  );
}

function ModeField({ id, mode, onMode }: { id: string; mode: ShareMode; onMode: (m: ShareMode) => void }) {
  return (
    <Field label="Access" id={id}>
      <select id={id} value={mode} onChange={(e) => onMode(e.currentTarget.value as ShareMode)}>
        {MODES.map((m) => (
          <option key={m.value} value={m.value}>
            {m.label}
          </option>
        ))}
      </select>
    </Field>
  );
}

/** A new link, shown once: only its hash is kept. */
function NewLink({ link }: { link: CreatedShare }) {
  return (
    <div class="share-link" data-testid="share-link" role="status">
      <p>
        Copy the link now: it is not shown again. {modeLabel(link.mode)}, until {absolute(link.expires_at)}.
      </p>
      <pre class="command" tabIndex={0} aria-label="The share link" data-testid="share-link-url">
        {link.url}
      </pre>
      <div class="btn-row">
        <CopyButton text={link.url ?? ''} label="Copy link" />
      </div>
    </div>
  );
}

function SharesList({ data, onEnd }: { data: SessionShares; onEnd: (share: Share) => void }) {
  const now = useNow(5_000);
  const byId = new Map(data.shares.map((s) => [s.id, s]));
  return (
    <>
      <h3>Watching now</h3>
      {data.watchers.length === 0 ? (
        <p class="muted" data-testid="no-watchers">
          Nobody else is watching.
        </p>
      ) : (
        <ul class="watchers" data-testid="watchers" aria-label="Watching now">
          {data.watchers.map((w) => {
            const share = byId.get(w.share_id);
            return (
              <li key={`${w.share_id}-${w.username}-${w.since}`} data-watcher={w.username}>
                <strong>{w.username}</strong>{' '}
                <span class="muted">
                  {share ? modeLabel(share.mode) : ''} · since {ago(w.since, now)}
                </span>
                {share && (
                  <Button small variant="danger" onClick={() => onEnd(share)} aria-label={`End ${w.username}'s access`}>
                    End
                  </Button>
                )}
              </li>
            );
          })}
        </ul>
      )}
      <h3>Shared with</h3>
      {data.shares.length === 0 ? (
        <p class="muted">Not shared.</p>
      ) : (
        <div class="table-wrap">
          <table class="table responsive" aria-label="Shares" data-testid="shares">
            <thead>
              <tr>
                <th scope="col">Who</th>
                <th scope="col">Access</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.shares.map((s) => (
                <tr key={s.id} data-share={s.guest ?? 'link'}>
                  <td data-label="Who">{s.kind === 'link' ? 'Anyone with the link' : s.guest}</td>
                  <td data-label="Access">{modeLabel(s.mode)}</td>
                  <td data-label="Expires">{s.expires_at ? absolute(s.expires_at) : 'When ended'}</td>
                  <td class="actions">
                    <Button small variant="danger" onClick={() => onEnd(s)} aria-label={`End share ${s.guest ?? 'link'}`}>
                      End
                    </Button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

/** The guest's mode in a session that is not theirs (`null` while unknown or for the owner). */
export function useGuestMode(session: Session | null, userId: string, admin: boolean): ShareMode | null {
  const [mode, setMode] = useState<ShareMode | null>(null);
  const guest = !!session && session.user_id !== userId && !admin;
  useEffect(() => {
    if (!guest || !session) return;
    shareApi.sharedWithMe().then(
      (all) => setMode(all.find((s) => s.session.id === session.id)?.mode ?? 'view'),
      () => setMode('view'),
    );
  }, [guest, session?.id]);
  return guest ? (mode ?? 'view') : null;
}

/** What a guest's viewer shows in its bar instead of the owner's tools. */
export function GuestBadge({ owner, mode }: { owner: string; mode: ShareMode }) {
  return (
    <span class="badge badge-violet guest-badge" data-testid="guest-badge" data-mode={mode}>
      {modeLabel(mode)} · shared by {owner}
    </span>
  );
}

/** Sessions others shared with you, on the sessions page. */
export function SharedWithMe() {
  const shared = useResource(() => shareApi.sharedWithMe());
  if (shared.data !== null && shared.data.length === 0 && !shared.error) return null;
  return (
    <section class="card" data-testid="shared-with-me" aria-label="Shared with me">
      <h2>Shared with me</h2>
      <ErrorBanner error={shared.error} onRetry={shared.reload} />
      {shared.data === null && !shared.error && <Loading what="shared sessions" />}
      {shared.data && (
        <ul class="shared-list">
          {shared.data.map((s) => (
            <SharedRow key={s.share_id} shared={s} />
          ))}
        </ul>
      )}
    </section>
  );
}

function SharedRow({ shared }: { shared: SharedSession }) {
  const { session } = shared;
  return (
    <li data-shared={session.id}>
      <Link href={`/sessions/${encodeURIComponent(session.id)}`}>
        <strong>{session.template}</strong>
      </Link>{' '}
      <span class="muted">
        by {session.user} · {modeLabel(shared.mode)}
        {shared.expires_at ? ` · until ${absolute(shared.expires_at)}` : ''}
      </span>{' '}
      <PhaseBadge phase={session.phase} />
    </li>
  );
}

/**
 * Keeps a link's secret (the URL's fragment) across the sign-in, which keeps
 * only the path: call before the app decides whether to show the login.
 */
export function stashJoinToken() {
  if (location.pathname !== '/join' || location.hash.length < 2) return;
  sessionStorage.setItem(JOIN_KEY, location.hash.slice(1));
  history.replaceState(null, '', '/join');
}

/** `/join#<secret>`: opens a share link, then the viewer. */
export function JoinPage() {
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const token = sessionStorage.getItem(JOIN_KEY);
    sessionStorage.removeItem(JOIN_KEY);
    if (!token) {
      setError('This address has no share link in it: open the whole link you were sent.');
      return;
    }
    shareApi.join(token).then(
      (joined) => navigate(`/sessions/${encodeURIComponent(joined.session_id)}`, { replace: true }),
      (err) => setError(err instanceof ApiError ? err.message : errorMessage(err)),
    );
  }, []);
  return (
    <main class="center-page">
      {error ? (
        <div class="card narrow" role="alert" data-testid="join-error">
          <h1>Cannot open this link</h1>
          <p class="muted">{error}</p>
          <Link href="/sessions" class="btn">
            My sessions
          </Link>
        </div>
      ) : (
        <Loading what="shared session" />
      )}
    </main>
  );
}
