// Admin: import templates from a catalog (docs/CATALOG.md). The catalog is pasted,
// read from a file, or fetched from a URL by the browser — never by the
// server, which must not be made to fetch addresses an admin types (SSRF).
// A dry run previews what is created, updated and left unchanged (or every
// problem, with its line and field); Apply imports the same text.

import { useState } from 'preact/hooks';
import type { components } from '../../api-schema';
import { ApiError, errorMessage } from '../../api';
import { Link } from '../../router';
import { Badge, Button, ErrorBanner, Field, PageHeader, toast } from '../../components/ui';

type Summary = components['schemas']['ImportSummary'];
type Problem = components['schemas']['CatalogProblem'];
type Format = 'yaml' | 'json';

/** The server's own limit on a catalog (CATALOG_BODY_LIMIT). */
const MAX_BYTES = 4 << 20;

/** An import the server refused: its message and every problem it found. */
class CatalogRefused extends ApiError {
  constructor(
    status: number,
    message: string,
    readonly problems: Problem[],
  ) {
    super(status, message);
  }
}

/** The format a file name or URL says, else the text's first character. */
function formatOf(name: string, text: string): Format {
  const bare = name.split(/[?#]/)[0].toLowerCase();
  if (bare.endsWith('.json')) return 'json';
  if (bare.endsWith('.yaml') || bare.endsWith('.yml')) return 'yaml';
  return text.trimStart().startsWith('{') ? 'json' : 'yaml';
}

async function importCatalog(text: string, format: Format, dryRun: boolean): Promise<Summary> {
  let response: Response;
  try {
    response = await fetch(`/api/v1/templates/import${dryRun ? '?dry_run=true' : ''}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': format === 'json' ? 'application/json' : 'application/yaml' },
      body: text,
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the StreamSpace server. Check your connection and try again.');
  }
  const data = await response.json().catch(() => undefined);
  if (!response.ok) {
    const message = data?.error ?? `The server answered ${response.status}`;
    throw new CatalogRefused(response.status, message, data?.problems ?? []);
  }
  return data as Summary;
}

/** Reads a catalog the browser fetches itself, within the server's limit. */
async function fetchCatalog(url: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(url, { credentials: 'omit' });
  } catch {
    throw new Error(
      `Cannot fetch ${url}: the address is unreachable, or its server does not allow other sites to read it (CORS). Download the file and upload it instead.`,
    );
  }
  if (!response.ok) throw new Error(`Cannot fetch ${url}: it answered ${response.status}.`);
  const text = await response.text();
  if (text.length > MAX_BYTES) throw new Error(`${url} is larger than 4 MiB, the most a catalog may be.`);
  return text;
}

const TONES = { create: 'green', update: 'amber', unchanged: 'grey' } as const;

export function ImportCatalogPage() {
  const [text, setText] = useState('');
  const [source, setSource] = useState('');
  const [url, setUrl] = useState('');
  const [preview, setPreview] = useState<Summary | null>(null);
  const [applied, setApplied] = useState<Summary | null>(null);
  const [problems, setProblems] = useState<Problem[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<'fetch' | 'preview' | 'apply' | null>(null);

  const load = (next: string, from: string) => {
    setText(next);
    setSource(from);
    setPreview(null);
    setApplied(null);
    setProblems([]);
    setError(null);
  };

  const run = async (dryRun: boolean) => {
    setBusy(dryRun ? 'preview' : 'apply');
    setError(null);
    setProblems([]);
    try {
      const summary = await importCatalog(text, formatOf(source, text), dryRun);
      if (dryRun) {
        setPreview(summary);
      } else {
        setApplied(summary);
        setPreview(null);
        toast(`Catalog imported: ${summary.created} created, ${summary.updated} updated.`);
      }
    } catch (err) {
      setPreview(null);
      setError(errorMessage(err));
      if (err instanceof CatalogRefused) setProblems(err.problems);
    } finally {
      setBusy(null);
    }
  };

  const fromUrl = async () => {
    setBusy('fetch');
    try {
      load(await fetchCatalog(url.trim()), url.trim());
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(null);
    }
  };

  const fromFile = async (file: File | undefined) => {
    if (!file) return;
    if (file.size > MAX_BYTES) {
      setError(`${file.name} is larger than 4 MiB, the most a catalog may be.`);
      return;
    }
    load(await file.text(), file.name);
  };

  const shown = applied ?? preview;
  return (
    <>
      <PageHeader
        title="Import templates"
        subtitle="Create and update templates from a catalog file (YAML or JSON, docs/CATALOG.md): preview first, then apply."
        actions={
          <Link href="/admin/templates" class="btn">
            Templates
          </Link>
        }
      />
      <div class="card">
        <Field label="Catalog file" id="catalog-file" hint="A .yaml, .yml or .json file of at most 4 MiB.">
          <input
            id="catalog-file"
            type="file"
            accept=".yaml,.yml,.json,application/json,application/yaml"
            onChange={(e) => fromFile(e.currentTarget.files?.[0])}
          />
        </Field>
        <Field
          label="Catalog URL"
          id="catalog-url"
          hint="Fetched by your browser, not by the server: the address must allow cross-origin reads (raw GitHub files do)."
        >
          <div class="btn-row" style={{ flexWrap: 'nowrap' }}>
            <input
              id="catalog-url"
              type="url"
              placeholder="https://…/catalog.yaml"
              value={url}
              onInput={(e) => setUrl(e.currentTarget.value)}
            />
            <Button busy={busy === 'fetch'} disabled={!url.trim()} onClick={fromUrl}>
              Fetch
            </Button>
          </div>
        </Field>
        <Field label="Catalog text" id="catalog-text" hint="Paste a catalog here, or edit what a file or URL gave.">
          <textarea
            id="catalog-text"
            rows={14}
            class="mono"
            spellcheck={false}
            value={text}
            onInput={(e) => load(e.currentTarget.value, source)}
          />
        </Field>
        <div class="btn-row">
          <Button variant="primary" busy={busy === 'preview'} disabled={!text.trim() || !!busy} onClick={() => run(true)}>
            Preview
          </Button>
          <Button busy={busy === 'apply'} disabled={!preview || !!busy} onClick={() => run(false)}>
            Apply
          </Button>
        </div>
      </div>
      <ErrorBanner error={error} />
      {problems.length > 0 && <ProblemTable problems={problems} />}
      {shown && <SummaryTable summary={shown} />}
    </>
  );
}

function ProblemTable({ problems }: { problems: Problem[] }) {
  return (
    <div class="table-wrap">
      <table class="table responsive" aria-label="Catalog problems">
        <thead>
          <tr>
            <th scope="col">Line</th>
            <th scope="col">Template</th>
            <th scope="col">Field</th>
            <th scope="col">Problem</th>
          </tr>
        </thead>
        <tbody>
          {problems.map((p, i) => (
            <tr key={i} data-problem-field={p.field ?? ''}>
              <td data-label="Line">{p.line ?? '–'}</td>
              <td data-label="Template">{p.name ?? (p.index != null ? `#${p.index}` : '–')}</td>
              <td data-label="Field" class="mono small">
                {p.field ?? '–'}
              </td>
              <td data-label="Problem">{p.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function SummaryTable({ summary }: { summary: Summary }) {
  const verb = summary.dry_run ? 'would be' : 'were';
  return (
    <>
      <p data-testid="import-summary">
        {summary.dry_run ? 'Preview: ' : 'Imported: '}
        {summary.created} {verb} created, {summary.updated} {verb} updated, {summary.unchanged} unchanged.
        {summary.dry_run && ' Nothing is written until you apply.'}
      </p>
      <div class="table-wrap">
        <table class="table responsive" aria-label="Import summary">
          <thead>
            <tr>
              <th scope="col">Template</th>
              <th scope="col">Action</th>
              <th scope="col">Changed fields</th>
            </tr>
          </thead>
          <tbody>
            {summary.templates.map((t) => (
              <tr key={t.index} data-import={t.name} data-action={t.action}>
                <td data-label="Template" class="mono">
                  {t.name}
                </td>
                <td data-label="Action">
                  <Badge tone={TONES[t.action]}>{t.action}</Badge>
                </td>
                <td data-label="Changed fields">{t.changed.join(', ') || '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
