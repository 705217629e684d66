// The audit log (admins): who did what, when, from where. Filters by actor,
// kind, target and time; pages newest first with the API's cursor ("Show
// older" appends the next page, which stays right while new events arrive);
// the export link downloads the same filters as JSON lines.

import { useState } from 'preact/hooks';
import { errorMessage } from '../../api';
import { auditApi, NO_FILTERS, type AuditEvent, type AuditFilters } from '../../api-audit';
import { Badge, Button, EmptyState, ErrorBanner, Field, Loading, PageHeader } from '../../components/ui';
import { absolute, type Tone } from '../../format';
import { useResource } from '../../hooks';

/** Kinds offered in the kind field; any kind or prefix ending in "." may be typed. */
const KINDS = [
  'auth.',
  'auth.login',
  'auth.logout',
  'auth.logout_all',
  'user.',
  'template.',
  'agent.',
  'settings.update',
  'session.',
  'viewer.',
  'audit.export',
];

const OUTCOME_TONES: Record<string, Tone> = { success: 'green', failure: 'red', denied: 'amber' };

type Loaded = { events: AuditEvent[]; next: string | null };

export function AuditPage() {
  // What the form shows, and what the list was loaded with (on Apply).
  const [draft, setDraft] = useState<AuditFilters>(NO_FILTERS);
  const [filters, setFilters] = useState<AuditFilters>(NO_FILTERS);
  const [older, setOlder] = useState<{ busy: boolean; error: string | null }>({ busy: false, error: null });
  const { data, error, reload, setData } = useResource<Loaded>(
    () => auditApi.page(filters).then((p) => ({ events: p.events, next: p.next_cursor ?? null })),
    [filters],
  );

  const apply = (e: Event) => {
    e.preventDefault();
    setFilters({ ...draft });
  };
  const clear = () => {
    setDraft(NO_FILTERS);
    setFilters(NO_FILTERS);
  };
  const showOlder = async () => {
    if (!data?.next) return;
    setOlder({ busy: true, error: null });
    try {
      const page = await auditApi.page(filters, data.next);
      setData((d) => d && { events: [...d.events, ...page.events], next: page.next_cursor ?? null });
      setOlder({ busy: false, error: null });
    } catch (err) {
      setOlder({ busy: false, error: errorMessage(err) });
    }
  };
  const field = (key: keyof AuditFilters) => ({
    id: `audit-${key}`,
    value: draft[key],
    onInput: (e: Event) => setDraft({ ...draft, [key]: (e.currentTarget as HTMLInputElement).value }),
  });

  return (
    <>
      <PageHeader
        title="Audit log"
        subtitle="Sign-ins, changes by admins, sessions and viewer connections: who, what, when and from where."
        actions={
          <a class="btn" href={auditApi.exportUrl(filters)} download data-testid="audit-export">
            Export (JSON lines)
          </a>
        }
      />
      <form class="card audit-filters" onSubmit={apply} aria-label="Filter the audit log">
        <div class="row">
          <Field label="Actor" id="audit-actor" hint="user:alice, anonymous, system:idle">
            <input type="text" {...field('actor')} maxLength={256} />
          </Field>
          <Field label="Kind" id="audit-kind" hint="A kind, or a prefix ending in a dot">
            <input type="text" list="audit-kinds" {...field('kind')} maxLength={256} />
          </Field>
          <Field label="Target" id="audit-target" hint="user:alice, session:ID, template:NAME">
            <input type="text" {...field('target')} maxLength={256} />
          </Field>
        </div>
        <div class="row">
          <Field label="From" id="audit-since">
            <input type="datetime-local" {...field('since')} />
          </Field>
          <Field label="Until" id="audit-until">
            <input type="datetime-local" {...field('until')} />
          </Field>
        </div>
        <datalist id="audit-kinds">
          {KINDS.map((k) => (
            <option key={k} value={k} />
          ))}
        </datalist>
        <div class="btn-row">
          <Button type="submit" variant="primary">
            Apply
          </Button>
          <Button onClick={clear}>Clear</Button>
          <Button onClick={reload}>Refresh</Button>
        </div>
      </form>
      <ErrorBanner error={error} onRetry={reload} />
      {data === null && !error && <Loading what="the audit log" />}
      {data && data.events.length === 0 && (
        <EmptyState title="No events">
          <p class="muted">Nothing recorded matches these filters.</p>
        </EmptyState>
      )}
      {data && data.events.length > 0 && <EventTable events={data.events} />}
      <ErrorBanner error={older.error} onRetry={showOlder} />
      {data?.next && (
        <div class="btn-row">
          <Button onClick={showOlder} busy={older.busy}>
            Show older
          </Button>
        </div>
      )}
    </>
  );
}

function EventTable({ events }: { events: AuditEvent[] }) {
  return (
    <div class="table-wrap">
      <table class="table responsive" aria-label="Audit events">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Actor</th>
            <th scope="col">Kind</th>
            <th scope="col">Target</th>
            <th scope="col">Outcome</th>
            <th scope="col">From</th>
            <th scope="col">Detail</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.id} data-event={e.kind} data-testid="audit-event">
              <td data-label="When" title={e.at}>
                {absolute(e.at)}
              </td>
              <td data-label="Actor">{e.actor}</td>
              <td data-label="Kind" class="mono">
                {e.kind}
              </td>
              <td data-label="Target">{e.target ?? '—'}</td>
              <td data-label="Outcome">
                <Badge tone={OUTCOME_TONES[e.outcome] ?? 'grey'}>{e.outcome}</Badge>
              </td>
              <td data-label="From">{e.client ?? '—'}</td>
              <td data-label="Detail" class="mono small">
                {e.detail ? JSON.stringify(e.detail) : ''}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
