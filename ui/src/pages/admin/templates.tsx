import { useEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage, type Prepull, type Template } from '../../api';
import { useResource } from '../../hooks';
import { Link } from '../../router';
import { confirmDialog, EmptyState, ErrorBanner, Loading, PageHeader, TemplateIcon, toast, Button } from '../../components/ui';

/** How often a pre-pull's progress is asked for, and for how long at most. */
const PREPULL_POLL_MS = 2_000;
const PREPULL_FOLLOW_MS = 30 * 60_000;

function prepullDone(p: Prepull): boolean {
  return p.agents.every((a) => a.state === 'done' || a.state === 'failed');
}

/** Each agent's pre-pull of a template's image, as one line each. */
function PrepullLines({ prepull }: { prepull: Prepull }) {
  return (
    <div role="status" aria-label="Pre-pull">
      {prepull.agents.map((a) => (
        <div key={a.agent_id} data-prepull-agent={a.name} class={`small ${a.state === 'failed' ? 'text-error' : 'muted'}`}>
          {a.name || a.agent_id}: {a.state}
          {a.message ? ` — ${a.message}` : ''}
        </div>
      ))}
    </div>
  );
}

export function TemplatesPage() {
  const { data: templates, error, reload: load, setData: setTemplates } = useResource(api.templates);
  const [prepulls, setPrepulls] = useState<Record<string, Prepull>>({});
  const mounted = useRef(true);
  useEffect(() => () => void (mounted.current = false), []);

  /** Asks for the pre-pull's progress until every agent is done or failed. */
  const follow = async (id: string) => {
    const until = Date.now() + PREPULL_FOLLOW_MS;
    while (mounted.current && Date.now() < until) {
      await new Promise((r) => setTimeout(r, PREPULL_POLL_MS));
      try {
        const status = await api.prepullStatus(id);
        if (!mounted.current) return;
        setPrepulls((all) => ({ ...all, [id]: status }));
        if (prepullDone(status)) return;
      } catch {
        return;
      }
    }
  };

  const prepull = async (t: Template) => {
    try {
      const asked = await api.prepull(t.id);
      setPrepulls((all) => ({ ...all, [t.id]: asked }));
      const n = asked.agents.length;
      toast(`Pulling ${t.image} on ${n} agent${n === 1 ? '' : 's'}.`);
      void follow(t.id);
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };

  const remove = async (t: Template) => {
    const ok = await confirmDialog({
      title: `Delete template ${t.display_name}?`,
      body: <p>It disappears from the catalog. Sessions already started from it keep running.</p>,
      confirm: 'Delete template',
      danger: true,
    });
    if (!ok) return;
    try {
      await api.deleteTemplate(t.id);
      setTemplates((list) => list?.filter((x) => x.id !== t.id) ?? null);
      toast(`Template ${t.display_name} deleted.`);
    } catch (err) {
      toast(errorMessage(err), 'error');
    }
  };

  const sorted = [...(templates ?? [])].sort((a, b) => a.display_name.localeCompare(b.display_name));
  return (
    <>
      <PageHeader
        title="Templates"
        subtitle="The apps of the catalog: image, ports, resources and policies."
        actions={
          <Link href="/admin/templates/new" class="btn btn-primary">
            New template
          </Link>
        }
      />
      <ErrorBanner error={error} onRetry={load} />
      {templates === null && !error && <Loading what="templates" />}
      {templates && templates.length === 0 && <EmptyState title="No templates yet" />}
      {templates && templates.length > 0 && (
        <div class="table-wrap">
          <table class="table responsive" aria-label="Templates">
            <thead>
              <tr>
                <th scope="col">Template</th>
                <th scope="col">Image</th>
                <th scope="col">Category</th>
                <th scope="col">Resources</th>
                <th scope="col">Platforms</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {sorted.map((t) => (
                <tr key={t.id} data-template={t.name}>
                  <td data-label="Template">
                    <div class="with-icon">
                      <TemplateIcon icon={t.icon} name={t.display_name} size={32} />
                      <div>
                        <strong>{t.display_name}</strong>
                        <div class="muted small mono">{t.name}</div>
                      </div>
                    </div>
                  </td>
                  <td data-label="Image" class="mono small">
                    {t.image}
                    {prepulls[t.id] && <PrepullLines prepull={prepulls[t.id]} />}
                  </td>
                  <td data-label="Category">{t.category}</td>
                  <td data-label="Resources">
                    {[t.resources.cpu && `${t.resources.cpu} CPU`, t.resources.memory].filter(Boolean).join(' · ') ||
                      'default'}
                  </td>
                  <td data-label="Platforms">
                    {t.platforms.length ? t.platforms.join(', ') : 'any container'}
                    {t.vm && (
                      <div class="muted small" data-testid="template-firmware">
                        VM · {t.vm.firmware === 'uefi' ? 'UEFI' : 'BIOS'}
                      </div>
                    )}
                  </td>
                  <td class="actions">
                    <div class="btn-row">
                      <Link
                        href={`/admin/templates/${t.id}`}
                        class="btn btn-small"
                        aria-label={`Edit ${t.display_name}`}
                      >
                        Edit
                      </Link>
                      {/* A VM's base disk is on its host: there is nothing to pull. */}
                      {!t.vm && (
                      <Button
                        small
                        onClick={() => prepull(t)}
                        aria-label={`Pre-pull ${t.display_name}`}
                        title="Pull the image on every agent that may run it, before anyone starts it"
                      >
                        Pre-pull
                      </Button>
                      )}
                      <Button small variant="danger" onClick={() => remove(t)} aria-label={`Delete ${t.display_name}`}>
                        Delete
                      </Button>
                    </div>
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
