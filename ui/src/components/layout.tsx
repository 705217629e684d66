import { Component, type ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { useAuth } from '../auth';
import { POLL_MS, useEventsStatus, type EventsStatus } from '../events';
import { Link } from '../router';
import { IconMenu } from './icons';

export function Logo() {
  return (
    <span class="logo">
      <svg viewBox="0 0 32 32" width="28" height="28" aria-hidden="true">
        <rect width="32" height="32" rx="8" fill="var(--accent)" />
        <path d="M9 11h14v9H9z" fill="none" stroke="#fff" stroke-width="2.2" stroke-linejoin="round" />
        <path d="M13 24h6" stroke="#fff" stroke-width="2.2" stroke-linecap="round" />
      </svg>
      <span>StreamSpace</span>
    </span>
  );
}

const USER_LINKS = [
  { href: '/', label: 'Catalog' },
  { href: '/sessions', label: 'My sessions' },
];
const ADMIN_LINKS = [
  { href: '/admin/agents', label: 'Agents' },
  { href: '/admin/sessions', label: 'All sessions' },
  { href: '/admin/users', label: 'Users' },
  { href: '/admin/groups', label: 'Groups' },
  { href: '/admin/templates', label: 'Templates' },
  { href: '/admin/catalog', label: 'Import' },
  { href: '/admin/audit', label: 'Audit' },
  { href: '/admin/recordings', label: 'Recordings' },
  { href: '/admin/settings', label: 'Settings' },
];

const LIVE_TITLES: Record<EventsStatus, string> = {
  connecting: 'Live updates connecting…',
  live: 'Live updates connected',
  polling: `Live updates unavailable (a proxy may be holding them back): refreshing every ${POLL_MS / 1000} s`,
};

function isCurrent(href: string, path: string): boolean {
  if (href === '/') return path === '/' || path === '/catalog';
  return path === href || path.startsWith(`${href}/`);
}

export function Layout({ path, children }: { path: string; children: ComponentChildren }) {
  const { user, logout } = useAuth();
  const live = useEventsStatus();
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => setMenuOpen(false), [path]);
  const link = (l: { href: string; label: string }) => (
    <Link
      key={l.href}
      href={l.href}
      class={`nav-link${isCurrent(l.href, path) ? ' active' : ''}`}
      aria-current={isCurrent(l.href, path) ? 'page' : undefined}
    >
      {l.label}
    </Link>
  );
  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <Link href="/" class="brand" aria-label="StreamSpace home">
          <Logo />
        </Link>
        <button
          type="button"
          class="icon-btn menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="main-nav"
          aria-label="Menu"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          <IconMenu />
        </button>
        <nav id="main-nav" class={`nav${menuOpen ? ' open' : ''}`} aria-label="Main">
          {USER_LINKS.map(link)}
          {user.role === 'admin' && (
            <>
              <span class="nav-sep" aria-hidden="true" />
              <span class="nav-group">Admin</span>
              {ADMIN_LINKS.map(link)}
            </>
          )}
          <span class="nav-user">
            Signed in as <strong>{user.username}</strong>
            {user.role === 'admin' && ' (admin)'}
          </span>
        </nav>
        <div class="userbox">
          <span
            class={`live ${live}`}
            data-testid="live"
            data-state={live}
            title={LIVE_TITLES[live]}
            aria-label={LIVE_TITLES[live]}
            role="img"
          />
          <Link href="/account" class="whoami" data-testid="whoami" title="Your account">
            {user.username}
            {user.role === 'admin' && <span class="role-chip">admin</span>}
          </Link>
          <button type="button" class="btn btn-small btn-ghost" onClick={() => logout()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" class="content" tabIndex={-1}>
        <ErrorBoundary key={path}>{children}</ErrorBoundary>
      </main>
    </div>
  );
}

/** A page that throws shows what went wrong instead of a blank screen. */
export class ErrorBoundary extends Component<{ children: ComponentChildren }, { error: Error | null }> {
  state = { error: null as Error | null };

  componentDidCatch(error: Error) {
    console.error(error);
    this.setState({ error });
  }

  render() {
    if (this.state.error) {
      return (
        <div class="card narrow">
          <h1>Something went wrong on this page</h1>
          <p class="muted">{this.state.error.message}</p>
          <button type="button" class="btn btn-primary" onClick={() => location.reload()}>
            Reload
          </button>
        </div>
      );
    }
    return this.props.children;
  }
}
