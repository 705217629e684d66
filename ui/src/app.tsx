import type { FunctionComponent } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, errorMessage, onUnauthorized, type User } from './api';
import { AuthContext } from './auth';
import { startEvents, stopEvents } from './events';
import { match, navigate, usePath } from './router';
import { ConfirmHost, ErrorBanner, Loading, toast, ToastHost } from './components/ui';
import { Layout } from './components/layout';
import { LoginPage } from './pages/login';
import { CatalogPage } from './pages/catalog';
import { MySessionsPage } from './pages/sessions';
import { AccountPage } from './pages/account';
import { useMfaGate } from './pages/account-mfa';
import { AgentsPage } from './pages/admin/agents';
import { AllSessionsPage } from './pages/admin/all-sessions';
import { UsersPage } from './pages/admin/users';
import { GroupsPage } from './pages/admin/groups';
import { TemplatesPage } from './pages/admin/templates';
import { TemplateEditPage } from './pages/admin/template-form';
import { ImportCatalogPage } from './pages/admin/import-catalog';
import { AuditPage } from './pages/admin/audit';
import { RecordingsPage } from './pages/admin/recordings';
import { SettingsPage } from './pages/admin/settings';
import { ForbiddenPage, NotFoundPage } from './pages/errors';
import { JoinPage, stashJoinToken } from './pages/viewer/share';

// A share link's secret rides in the URL's fragment, which the sign-in drops.
stashJoinToken();

export function App() {
  // undefined: still asking the server who we are.
  const [user, setUser] = useState<User | null | undefined>(undefined);
  const [bootError, setBootError] = useState<string | null>(null);
  const path = usePath();

  const loadMe = () => {
    setBootError(null);
    api
      .me()
      .then(setUser)
      .catch((err) => {
        if (err instanceof ApiError && err.status === 401) setUser(null);
        else setBootError(errorMessage(err));
      });
  };

  useEffect(loadMe, []);
  useMfaGate(!!user, path);
  useEffect(() => onUnauthorized(() => setUser(null)), []);
  useEffect(() => {
    if (user) startEvents();
    else stopEvents();
  }, [user]);

  const logout = async ({ everywhere = false }: { everywhere?: boolean } = {}) => {
    try {
      await (everywhere ? api.logoutAll() : api.logout());
    } catch (err) {
      const alreadyEnded = err instanceof ApiError && err.status === 401;
      if (!alreadyEnded) {
        // Nothing ended (the HttpOnly cookie still works): say so, stay.
        const what = everywhere ? 'Could not sign out everywhere' : 'Could not sign out';
        toast(`${what}: ${errorMessage(err)}`, 'error');
        return;
      }
      // This sign-in had ended already, so it could not end the others.
      if (everywhere) toast('This sign-in had already ended, so your other sign-ins were not: sign in and try again.', 'error');
    }
    setUser(null);
    navigate('/login', { replace: true });
  };

  let page;
  if (bootError) {
    page = (
      <main class="center-page">
        <div class="card narrow">
          <h1>StreamSpace is unreachable</h1>
          <ErrorBanner error={bootError} onRetry={loadMe} />
        </div>
      </main>
    );
  } else if (user === undefined) {
    page = (
      <main class="center-page">
        <Loading what="StreamSpace" />
      </main>
    );
  } else if (user === null) {
    page = (
      <LoginPage
        onLogin={(u) => {
          setUser(u);
          const next = new URLSearchParams(location.search).get('next');
          navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/', { replace: true });
        }}
      />
    );
  } else {
    page = (
      <AuthContext.Provider value={{ user, logout }}>
        <Routes path={path} user={user} />
      </AuthContext.Provider>
    );
  }

  // Logged out on some other page: keep the address so login returns there.
  useEffect(() => {
    if (user === null && path !== '/login') {
      const next = path === '/' ? '' : `?next=${encodeURIComponent(path + location.search)}`;
      navigate(`/login${next}`, { replace: true });
    }
  }, [user, path]);

  return (
    <>
      {page}
      <ConfirmHost />
      <ToastHost />
    </>
  );
}

/** The viewer with noVNC is most of the code: load it only when a session is opened. */
function LazyViewer({ id }: { id: string }) {
  const [Viewer, setViewer] = useState<FunctionComponent<{ id: string }> | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => {
    setError(null);
    import('./pages/viewer').then(
      (m) => setViewer(() => m.ViewerPage),
      (err) => setError(`Cannot load the viewer: ${errorMessage(err)}`),
    );
  };
  useEffect(load, []);
  if (Viewer) return <Viewer id={id} />;
  return (
    <main class="center-page">
      {error ? (
        <div class="card narrow">
          <ErrorBanner error={error} onRetry={load} />
        </div>
      ) : (
        <Loading what="viewer" />
      )}
    </main>
  );
}

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

function Routes({ path, user }: { path: string; user: User }) {
  let m: Record<string, string> | null;
  if (path === '/login') return <Redirect to="/" />;
  if ((m = match('/sessions/:id', path))) return <LazyViewer key={m.id} id={m.id} />;
  if (path === '/join') return <JoinPage />;

  const admin = user.role === 'admin';
  const adminOnly = (el: preact.JSX.Element) => (admin ? el : <ForbiddenPage />);
  let content: preact.JSX.Element;
  if (path === '/' || path === '/catalog') content = <CatalogPage />;
  else if (path === '/sessions') content = <MySessionsPage />;
  else if (path === '/account') content = <AccountPage />;
  else if (path === '/admin' || path === '/admin/agents') content = adminOnly(<AgentsPage />);
  else if (path === '/admin/sessions') content = adminOnly(<AllSessionsPage />);
  else if (path === '/admin/users') content = adminOnly(<UsersPage />);
  else if (path === '/admin/groups') content = adminOnly(<GroupsPage />);
  else if (path === '/admin/templates') content = adminOnly(<TemplatesPage />);
  else if (path === '/admin/templates/new') content = adminOnly(<TemplateEditPage />);
  else if (path === '/admin/catalog') content = adminOnly(<ImportCatalogPage />);
  else if (path === '/admin/audit') content = adminOnly(<AuditPage />);
  else if (path === '/admin/recordings') content = adminOnly(<RecordingsPage />);
  else if (path === '/admin/settings') content = adminOnly(<SettingsPage />);
  else if ((m = match('/admin/templates/:id', path)))
    content = adminOnly(<TemplateEditPage key={m.id} id={m.id} />);
  else content = <NotFoundPage />;
  return <Layout path={path}>{content}</Layout>;
}
