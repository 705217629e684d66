import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, errorMessage, type Session, type Template } from '../api';
import { useEvents } from '../events';
import { useResource } from '../hooks';
import { Link, navigate } from '../router';
import { Button, EmptyState, ErrorBanner, Loading, PageHeader, TemplateIcon, toast } from '../components/ui';

export function CatalogPage() {
  // An error is hidden while the catalog tries again.
  const apps = useResource(api.templates, [], { clearErrorOnReload: true });
  const { data: templates, error } = apps;
  const [sessions, setSessions] = useState<Session[]>([]);
  const [query, setQuery] = useState('');
  const [category, setCategory] = useState('');
  const [launching, setLaunching] = useState<string | null>(null);

  const loadSessions = () => {
    api.sessions().then(setSessions, () => {});
  };
  useEffect(loadSessions, []);
  const load = () => {
    apps.reload();
    loadSessions();
  };
  useEvents({
    session: (s) =>
      setSessions((all) =>
        s.phase === 'Terminated' ? all.filter((x) => x.id !== s.id) : [...all.filter((x) => x.id !== s.id), s],
      ),
    resync: load,
  });

  const categories = useMemo(
    () => [...new Set((templates ?? []).map((t) => t.category).filter(Boolean))].sort(),
    [templates],
  );
  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    return (templates ?? [])
      .filter((t) => !category || t.category === category)
      .filter(
        (t) =>
          !q ||
          [t.display_name, t.name, t.description, t.category].some((f) => f.toLowerCase().includes(q)),
      )
      .sort((a, b) => a.display_name.localeCompare(b.display_name));
  }, [templates, query, category]);

  const launch = async (t: Template) => {
    setLaunching(t.id);
    try {
      const s = await api.launch(t.name);
      navigate(`/sessions/${s.id}`);
    } catch (err) {
      toast(`Could not launch ${t.display_name}: ${errorMessage(err)}`, 'error');
      setLaunching(null);
    }
  };

  return (
    <>
      <PageHeader title="Catalog" subtitle="Pick an app and launch it in your browser." />
      <div class="toolbar" role="search">
        <div class="search">
          <label for="catalog-search" class="sr-only">
            Search apps
          </label>
          <input
            id="catalog-search"
            type="search"
            placeholder="Search apps…"
            value={query}
            onInput={(e) => setQuery(e.currentTarget.value)}
          />
        </div>
        <div class="chips" role="group" aria-label="Filter by category">
          {['', ...categories].map((c) => (
            <button
              key={c || 'all'}
              type="button"
              class={`chip${category === c ? ' active' : ''}`}
              aria-pressed={category === c}
              onClick={() => setCategory(c)}
            >
              {c || 'All'}
            </button>
          ))}
        </div>
      </div>
      <ErrorBanner error={error} onRetry={load} />
      {templates === null && !error && <Loading what="apps" />}
      {templates && templates.length === 0 && (
        <EmptyState title="No apps yet">
          <p class="muted">An admin adds apps under Admin → Templates.</p>
        </EmptyState>
      )}
      {templates && templates.length > 0 && shown.length === 0 && (
        <EmptyState title="Nothing matches">
          <p class="muted">Try another search or category.</p>
        </EmptyState>
      )}
      <ul class="card-grid" aria-label="Apps">
        {shown.map((t) => {
          const mine = sessions.filter((s) => s.template === t.name && s.phase !== 'Terminated');
          return (
            <li key={t.id} class="card app-card" data-template={t.name}>
              <div class="app-card-head">
                <TemplateIcon icon={t.icon} name={t.display_name} />
                <div class="app-card-title">
                  <h2>{t.display_name}</h2>
                  <span class="category">{t.category}</span>
                </div>
              </div>
              <p class="app-desc">{t.description || 'No description.'}</p>
              <div class="app-card-foot">
                {mine.length > 0 ? (
                  <Link href={`/sessions/${mine[0].id}`} class="small-link">
                    {mine.length === 1 ? 'Open your session' : `${mine.length} sessions open`}
                  </Link>
                ) : (
                  <span class="muted small">
                    {[t.resources.cpu && `${t.resources.cpu} CPU`, t.resources.memory].filter(Boolean).join(' · ')}
                  </span>
                )}
                <Button
                  variant="primary"
                  busy={launching === t.id}
                  disabled={launching !== null}
                  onClick={() => launch(t)}
                  aria-label={`Launch ${t.display_name}`}
                >
                  Launch
                </Button>
              </div>
            </li>
          );
        })}
      </ul>
    </>
  );
}
