import { api, errorMessage, type Template } from '../../api';
import { useResource } from '../../hooks';
import { Link } from '../../router';
import { confirmDialog, EmptyState, ErrorBanner, Loading, PageHeader, TemplateIcon, toast, Button } from '../../components/ui';

export function TemplatesPage() {
  const { data: templates, error, reload: load, setData: setTemplates } = useResource(api.templates);

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
                  </td>
                  <td data-label="Category">{t.category}</td>
                  <td data-label="Resources">
                    {[t.resources.cpu && `${t.resources.cpu} CPU`, t.resources.memory].filter(Boolean).join(' · ') ||
                      'default'}
                  </td>
                  <td data-label="Platforms">{t.platforms.length ? t.platforms.join(', ') : 'any'}</td>
                  <td class="actions">
                    <div class="btn-row">
                      <Link
                        href={`/admin/templates/${t.id}`}
                        class="btn btn-small"
                        aria-label={`Edit ${t.display_name}`}
                      >
                        Edit
                      </Link>
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
