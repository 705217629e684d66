// Create or edit a template. The API validates; its field errors
// (`resources.memory`, `ports[0].port`, `env.KEY`, …) are shown next to the
// control they are about.

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, errorMessage, type PortSpec, type Template, type TemplateDraftInput } from '../../api';
import { Link, navigate } from '../../router';
import { IconClose } from '../../components/icons';
import { Button, ErrorBanner, Field, Loading, PageHeader, TemplateIcon, toast } from '../../components/ui';
import { DESKTOP_DEFAULTS, DesktopSection, desktopDraft, desktopInput, type DesktopDraft } from './template-desktop';
import {
  CONTAINER_PLATFORMS,
  KindChoice,
  LIBVIRT,
  VM_DEFAULTS,
  VM_PORTS,
  VmSection,
  forVm,
  isVm,
  vmDraft,
  type VmDraft,
} from './template-vm';

type Draft = {
  name: string;
  display_name: string;
  description: string;
  category: string;
  icon: string;
  image: string;
  ports: { name: string; port: string; protocol: PortSpec['protocol']; path: string }[];
  env: { key: string; value: string; secret: boolean }[];
  cpu: string;
  memory: string;
  max_cpu: string;
  max_memory: string;
  user_env: string;
  user_idle_timeout: boolean;
  persistent_home: boolean;
  home_path: string;
  idle_timeout: string;
  platforms: string[];
  pids_limit: string;
  warm_pool: string;
  capabilities: string;
  /** Registry credentials; the password is write-only (empty keeps the stored one). */
  registry_username: string;
  registry_password: string;
  gpu: string;
  max_gpu: string;
  shm_size: string;
  user: string;
  read_only_root_filesystem: boolean;
  volumes: { source: string; path: string; read_only: boolean }[];
  /** Group names, comma-separated (names may hold spaces); empty: everyone. */
  allowed_groups: string;
  desktop: DesktopDraft;
  vm: VmDraft;
};

const EMPTY: Draft = {
  name: '',
  display_name: '',
  description: '',
  category: '',
  icon: '',
  image: '',
  ports: [{ name: 'vnc', port: '5901', protocol: 'vnc', path: '' }],
  env: [],
  cpu: '1',
  memory: '1Gi',
  max_cpu: '',
  max_memory: '',
  user_env: '',
  user_idle_timeout: false,
  persistent_home: false,
  home_path: '/home/user',
  idle_timeout: '30m',
  platforms: [],
  pids_limit: '2048',
  warm_pool: '0',
  capabilities: '',
  registry_username: '',
  registry_password: '',
  gpu: '',
  max_gpu: '',
  shm_size: '',
  user: '',
  read_only_root_filesystem: false,
  volumes: [],
  allowed_groups: '',
  desktop: DESKTOP_DEFAULTS,
  vm: VM_DEFAULTS,
};

/** "A, B c" → ["A", "B", "c"]: lists typed as text. */
function words(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean);
}

function fromTemplate(t: Template): Draft {
  return {
    name: t.name,
    display_name: t.display_name,
    description: t.description,
    category: t.category,
    icon: t.icon,
    image: t.image,
    ports: t.ports.map((p) => ({ name: p.name, port: String(p.port), protocol: p.protocol, path: p.path ?? '' })),
    env: [
      ...Object.entries(t.env).map(([key, value]) => ({ key, value, secret: false })),
      ...Object.entries(t.secret_env ?? {}).map(([key, value]) => ({ key, value, secret: true })),
    ],
    cpu: t.resources.cpu ?? '',
    memory: t.resources.memory ?? '',
    max_cpu: t.max_resources?.cpu ?? '',
    max_memory: t.max_resources?.memory ?? '',
    user_env: (t.user_env ?? []).join(', '),
    user_idle_timeout: t.user_idle_timeout ?? false,
    persistent_home: t.persistent_home,
    home_path: t.home_path,
    idle_timeout: t.idle_timeout ?? '',
    platforms: t.platforms,
    pids_limit: String(t.pids_limit ?? 2048),
    warm_pool: String(t.warm_pool ?? 0),
    capabilities: (t.capabilities ?? []).join(', '),
    gpu: t.resources.gpu ? String(t.resources.gpu) : '',
    max_gpu: t.max_resources?.gpu ? String(t.max_resources.gpu) : '',
    shm_size: t.shm_size ?? '',
    user: t.user ?? '',
    read_only_root_filesystem: t.read_only_root_filesystem ?? false,
    volumes: (t.volumes ?? []).map((v) => ({ source: v.source, path: v.path, read_only: v.read_only ?? true })),
    registry_username: t.registry_auth?.username ?? '',
    registry_password: '',
    allowed_groups: (t.allowed_groups ?? []).join(', '),
    desktop: desktopDraft(t.desktop),
    vm: vmDraft(t.vm),
  };
}

/** A GPU count as typed: a whole number, or nothing (none). */
function gpus(text: string): number | undefined {
  return /^\s*\d+\s*$/.test(text) ? Number(text) : undefined;
}

/** No username: no credentials. No password: the stored one stays (the API never shows it). */
function registryAuthOf(d: Draft): TemplateDraftInput['registry_auth'] {
  const username = d.registry_username.trim();
  if (!username) return null;
  return d.registry_password ? { username, password: d.registry_password } : { username };
}

function amounts(cpu: string, memory: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (cpu.trim()) out.cpu = cpu.trim();
  if (memory.trim()) out.memory = memory.trim();
  return out;
}

function envOf(d: Draft, secret: boolean): Record<string, string> {
  const rows = d.env.filter((e) => (e.key || e.value) && e.secret === secret);
  return Object.fromEntries(rows.map((e) => [e.key.trim(), e.value]));
}

function toInput(d: Draft): TemplateDraftInput {
  const pids = d.pids_limit.trim();
  const pool = d.warm_pool.trim();
  const input: TemplateDraftInput = {
    name: d.name.trim(),
    display_name: d.display_name.trim() || undefined,
    description: d.description,
    category: d.category.trim() || undefined,
    icon: d.icon.trim(),
    image: d.image.trim(),
    // A non-number is sent as written so the API's message quotes it.
    ports: d.ports.map((p) => ({
      name: p.name.trim(),
      port: /^\s*-?\d+\s*$/.test(p.port) ? Number(p.port) : p.port,
      protocol: p.protocol,
      path: (p.protocol === 'http' || p.protocol === 'https') && p.path.trim() ? p.path.trim() : undefined,
    })),
    env: envOf(d, false),
    secret_env: envOf(d, true),
    resources: { ...amounts(d.cpu, d.memory), gpu: gpus(d.gpu) },
    max_resources: { ...amounts(d.max_cpu, d.max_memory), gpu: gpus(d.max_gpu) },
    user_env: words(d.user_env),
    user_idle_timeout: d.user_idle_timeout,
    persistent_home: d.persistent_home,
    home_path: d.home_path.trim() || undefined,
    idle_timeout: d.idle_timeout.trim() || null,
    platforms: d.platforms,
    // A non-number is sent as written so the API's message quotes it.
    pids_limit: pids === '' ? undefined : /^\d+$/.test(pids) ? Number(pids) : pids,
    capabilities: words(d.capabilities),
    warm_pool: pool === '' ? undefined : /^\d+$/.test(pool) ? Number(pool) : pool,
    registry_auth: registryAuthOf(d),
    shm_size: d.shm_size.trim() || undefined,
    user: d.user.trim() || undefined,
    read_only_root_filesystem: d.read_only_root_filesystem,
    volumes: d.volumes
      .filter((v) => v.source.trim() || v.path.trim())
      .map((v) => ({ source: v.source.trim(), path: v.path.trim(), read_only: v.read_only })),
    allowed_groups: d.allowed_groups
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean),
    desktop: desktopInput(d.desktop),
  };
  return isVm(d.platforms) ? forVm(input, d.vm, d.persistent_home) : input;
}

/** A variable's value; a secret one is masked as it is typed. */
function EnvValue(p: { id: string; secret: boolean; value: string; onValue: (v: string) => void }) {
  const onInput = (e: { currentTarget: HTMLInputElement }) => p.onValue(e.currentTarget.value);
  return p.secret ? (
    <input id={p.id} type="password" autocomplete="off" value={p.value} onInput={onInput} />
  ) : (
    <input id={p.id} value={p.value} onInput={onInput} />
  );
}

/** The element id of the control an API field path is about. */
export function controlId(field: string): string {
  const port = /^ports\[(\d+)\](?:\.(\w+))?$/.exec(field);
  if (port) return `tpl-port-${port[1]}-${port[2] ?? 'port'}`;
  if (field === 'ports') return 'tpl-port-0-protocol';
  if (field === 'env' || field.startsWith('env.') || field.startsWith('secret_env')) return 'tpl-env';
  if (field.startsWith('capabilities')) return 'tpl-capabilities';
  if (field.startsWith('allowed_groups')) return 'tpl-allowed_groups';
  const volume = /^volumes\[(\d+)\]\.(source|path)$/.exec(field);
  if (volume) return `tpl-volume-${volume[1]}-${volume[2]}`;
  if (field === 'volumes') return 'tpl-volumes';
  return `tpl-${field.replace(/\./g, '-')}`;
}

export function TemplateEditPage({ id }: { id?: string }) {
  const [draft, setDraft] = useState<Draft | null>(id ? null : EMPTY);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!id) return;
    api.template(id).then(
      (t) => setDraft(fromTemplate(t)),
      (err) => setLoadError(errorMessage(err)),
    );
  }, [id]);

  useEffect(() => {
    if (!error) return;
    const el = error.field ? document.getElementById(controlId(error.field)) : null;
    if (el) {
      el.focus({ preventScroll: true });
      el.scrollIntoView({ block: 'center' });
    } else {
      window.scrollTo({ top: 0 });
    }
  }, [error]);

  if (loadError) return <ErrorBanner error={loadError} />;
  if (!draft) return <Loading what="template" />;

  const set = <K extends keyof Draft>(k: K, v: Draft[K]) => setDraft({ ...draft, [k]: v });
  const vm = isVm(draft.platforms);
  // A VM runs on libvirt alone and shows its own VNC display.
  const setVm = (on: boolean) =>
    setDraft({ ...draft, platforms: on ? [LIBVIRT] : [], ports: on ? VM_PORTS : EMPTY.ports });
  const errFor = (ctl: string) => (error?.field && controlId(error.field) === ctl ? error.detail : null);
  // `ctl` is the control's id, the one `controlId` gives the API's field name.
  const input = (k: keyof Draft & string, extra: Record<string, unknown> = {}, ctl = `tpl-${k}`) => {
    return (
      <input
        id={ctl}
        value={draft[k] as string}
        onInput={(e) => set(k, e.currentTarget.value as never)}
        aria-invalid={!!errFor(ctl)}
        aria-describedby={errFor(ctl) ? `${ctl}-error` : undefined}
        {...extra}
      />
    );
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = toInput(draft);
      const saved = id ? await api.updateTemplate(id, body) : await api.createTemplate(body);
      toast(`Template ${saved.display_name} saved.`);
      navigate('/admin/templates');
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, errorMessage(err)));
      setBusy(false);
    }
  };

  const fieldShown = error?.field && document.getElementById(controlId(error.field));
  return (
    <form class="template-form" onSubmit={submit} noValidate aria-label={id ? 'Edit template' : 'New template'}>
      <PageHeader
        title={id ? `Edit ${draft.display_name || draft.name}` : 'New template'}
        subtitle="Templates are what users launch from the catalog."
      />
      {error && (
        <ErrorBanner error={error.field && fieldShown ? `Please fix the field marked below: ${error.message}` : error.message} />
      )}

      <section class="card form-section" aria-labelledby="sec-catalog">
        <h2 id="sec-catalog">In the catalog</h2>
        <div class="form-grid">
          <Field label="Name" id="tpl-name" error={errFor('tpl-name')} hint="Unique id: lowercase letters, digits, '-'.">
            {input('name', { readOnly: !!id, autocapitalize: 'none', spellcheck: false, required: true })}
          </Field>
          <Field label="Display name" id="tpl-display_name" error={errFor('tpl-display_name')}>
            {input('display_name', { placeholder: draft.name || 'Firefox' })}
          </Field>
          <Field label="Category" id="tpl-category" error={errFor('tpl-category')} hint="Used by the catalog filter.">
            {input('category', { placeholder: 'Other', list: 'tpl-categories' })}
          </Field>
          <Field label="Icon" id="tpl-icon" error={errFor('tpl-icon')} hint="An image URL, an emoji, or empty for initials.">
            <div class="with-icon">
              <TemplateIcon icon={draft.icon} name={draft.display_name || draft.name || '?'} size={36} />
              {input('icon', { placeholder: 'https://…/icon.svg' })}
            </div>
          </Field>
          <Field label="Description" id="tpl-description" error={errFor('tpl-description')} class="span-2">
            <textarea
              id="tpl-description"
              rows={3}
              value={draft.description}
              onInput={(e) => set('description', e.currentTarget.value)}
              aria-invalid={!!errFor('tpl-description')}
            />
          </Field>
        </div>
        <datalist id="tpl-categories">
          {['Browsers', 'Development', 'Design', 'Office', 'Other'].map((c) => (
            <option key={c} value={c} />
          ))}
        </datalist>
      </section>

      <section class="card form-section" aria-labelledby="sec-runtime">
        <h2 id="sec-runtime">Runtime</h2>
        <div class="form-grid">
          <KindChoice vm={vm} onVm={setVm} />
          <Field
            label={vm ? 'Base disk (qcow2 path or pool/volume)' : 'Image'}
            id="tpl-image"
            error={errFor('tpl-image')}
            hint={
              vm
                ? 'On the agent’s host: e.g. /var/lib/streamspace/vm/demo.qcow2, or default/demo.qcow2 (a libvirt volume).'
                : 'e.g. streamspace/desktop:local'
            }
            class="span-2"
          >
            {input('image', { autocapitalize: 'none', spellcheck: false, required: true, class: 'mono' })}
          </Field>
          <Field label="CPU" id="tpl-resources-cpu" error={errFor('tpl-resources-cpu')} hint='Cores ("2", "0.5") or millicores ("1500m").'>
            {input('cpu', {}, 'tpl-resources-cpu')}
          </Field>
          <Field label="Memory" id="tpl-resources-memory" error={errFor('tpl-resources-memory')} hint='e.g. "512Mi", "2Gi".'>
            {input('memory', {}, 'tpl-resources-memory')}
          </Field>
          {!vm && (
            <Field label="GPUs" id="tpl-resources-gpu" error={errFor('tpl-resources-gpu')} hint="Whole NVIDIA GPUs, 0 to 16; empty for none.">
              {input('gpu', { type: 'number', min: 0, max: 16, inputMode: 'numeric' }, 'tpl-resources-gpu')}
            </Field>
          )}
          <Field label="Idle timeout" id="tpl-idle_timeout" error={errFor('tpl-idle_timeout')} hint='Hibernate after no input for e.g. "30m"; empty for never.'>
            {input('idle_timeout')}
          </Field>
          <fieldset class={`field${errFor('tpl-platforms') ? ' has-error' : ''}`} hidden={vm}>
            <legend>Platforms</legend>
            <div class="checks" id="tpl-platforms" tabIndex={-1}>
              {CONTAINER_PLATFORMS.map((p) => (
                <label key={p} class="check">
                  <input
                    type="checkbox"
                    checked={draft.platforms.includes(p)}
                    onChange={(e) =>
                      set(
                        'platforms',
                        e.currentTarget.checked ? [...draft.platforms, p] : draft.platforms.filter((x) => x !== p),
                      )
                    }
                  />
                  {p}
                </label>
              ))}
            </div>
            {errFor('tpl-platforms') ? (
              <small class="field-error" role="alert">{errFor('tpl-platforms')}</small>
            ) : (
              <small class="hint">None checked means any container platform.</small>
            )}
          </fieldset>
          <fieldset class="field">
            <legend>Home folder</legend>
            <label class="check">
              <input
                type="checkbox"
                id="tpl-persistent_home"
                checked={draft.persistent_home}
                onChange={(e) => set('persistent_home', e.currentTarget.checked)}
              />
              Keep each user’s home folder between sessions
            </label>
          </fieldset>
          {/* The guest mounts its home disk where it chooses; a VM has no process limit. */}
          {!vm && (
            <>
          <Field label="Home path" id="tpl-home_path" error={errFor('tpl-home_path')}>
            {input('home_path', { class: 'mono' })}
          </Field>
          <Field label="Process limit" id="tpl-pids_limit" error={errFor('tpl-pids_limit')} hint="Processes and threads per session.">
            {input('pids_limit', { inputMode: 'numeric' })}
          </Field>
            </>
          )}
          <Field
            label="Warm pool"
            id="tpl-warm_pool"
            error={errFor('tpl-warm_pool')}
            hint="Sessions kept running per agent so a launch opens at once (0 to 20; not with a persistent home)."
          >
            {input('warm_pool', { inputMode: 'numeric' })}
          </Field>
          <Field
            label="Allowed groups"
            id="tpl-allowed_groups"
            error={errFor('tpl-allowed_groups')}
            hint="Comma-separated group names: only their members see and launch it (admins always do). Empty: everyone."
          >
            {input('allowed_groups', { placeholder: 'everyone' })}
          </Field>
          {!vm && (
            <>
          <Field
            label="Capabilities"
            id="tpl-capabilities"
            error={errFor('tpl-capabilities')}
            hint="Given back after dropping all, e.g. CHOWN, SETUID, SETGID (see docs/IMAGES.md)."
          >
            {input('capabilities', { class: 'mono', placeholder: 'none' })}
          </Field>
          <Field
            label="Registry username"
            id="tpl-registry_auth-username"
            error={errFor('tpl-registry_auth-username')}
            hint="For an image in a private registry (docs/REGISTRIES.md); empty for none."
          >
            {input('registry_username', { autoComplete: 'off', placeholder: 'none' }, 'tpl-registry_auth-username')}
          </Field>
          <Field
            label="Registry password or token"
            id="tpl-registry_auth-password"
            error={errFor('tpl-registry_auth-password')}
            hint="Never shown again. Leave empty to keep the stored one."
          >
            {input(
              'registry_password',
              { type: 'password', autoComplete: 'new-password', placeholder: id ? 'unchanged' : '' },
              'tpl-registry_auth-password',
            )}
          </Field>
            </>
          )}
        </div>
      </section>

      {vm ? (
        <VmSection
          vm={draft.vm}
          persistentHome={draft.persistent_home}
          onChange={(v) => set('vm', v)}
          errFor={errFor}
        />
      ) : (
        <ContainerSection draft={draft} set={set} input={input} errFor={errFor} error={error} />
      )}

      <DesktopSection desktop={draft.desktop} onChange={(d) => set('desktop', d)} errFor={errFor} vm={vm} />

      {/* A VM has one port, its VNC display (set when "Virtual machine" is chosen). */}
      {!vm && (
        <>
      <section class="card form-section" aria-labelledby="sec-ports">
        <h2 id="sec-ports">Ports</h2>
        <p class="muted small">
          The first port is what the viewer opens: a VNC desktop or an HTTP web app. An audio port carries the session’s
          sound, a microphone port takes the viewer’s microphone (docs/AUDIO.md).
        </p>
        {errFor('tpl-port-0-protocol') && error?.field === 'ports' && (
          <small class="field-error" role="alert">{error.detail}</small>
        )}
        <div class="rows">
          {draft.ports.map((p, i) => {
            const upd = (patch: Partial<Draft['ports'][number]>) =>
              set('ports', draft.ports.map((x, j) => (j === i ? { ...x, ...patch } : x)));
            const rowErr = error?.field === `ports[${i}]` ? error.detail : null;
            return (
              <div class="row" key={i}>
                <Field label="Name" id={`tpl-port-${i}-name`} error={errFor(`tpl-port-${i}-name`)}>
                  <input id={`tpl-port-${i}-name`} value={p.name} onInput={(e) => upd({ name: e.currentTarget.value })} />
                </Field>
                <Field label="Port" id={`tpl-port-${i}-port`} error={errFor(`tpl-port-${i}-port`) ?? rowErr}>
                  <input
                    id={`tpl-port-${i}-port`}
                    inputMode="numeric"
                    value={p.port}
                    onInput={(e) => upd({ port: e.currentTarget.value })}
                    aria-invalid={!!errFor(`tpl-port-${i}-port`)}
                  />
                </Field>
                <Field label="Protocol" id={`tpl-port-${i}-protocol`} error={null}>
                  <select
                    id={`tpl-port-${i}-protocol`}
                    value={p.protocol}
                    onChange={(e) => upd({ protocol: e.currentTarget.value as PortSpec['protocol'] })}
                  >
                    <option value="vnc">vnc</option>
                    <option value="http">http</option>
                    <option value="https">https</option>
                    <option value="audio">audio</option>
                    <option value="microphone">microphone</option>
                  </select>
                </Field>
                {(p.protocol === 'http' || p.protocol === 'https') && (
                  <Field label="Ready path" id={`tpl-port-${i}-path`} error={errFor(`tpl-port-${i}-path`)}>
                    <input
                      id={`tpl-port-${i}-path`}
                      placeholder="/"
                      value={p.path}
                      onInput={(e) => upd({ path: e.currentTarget.value })}
                    />
                  </Field>
                )}
                <button
                  type="button"
                  class="icon-btn row-remove"
                  aria-label={`Remove port ${p.name || i + 1}`}
                  onClick={() => set('ports', draft.ports.filter((_, j) => j !== i))}
                >
                  <IconClose size={16} />
                </button>
              </div>
            );
          })}
        </div>
        <Button small onClick={() => set('ports', [...draft.ports, { name: '', port: '', protocol: 'http', path: '' }])}>
          Add port
        </Button>
      </section>

      <section class="card form-section" aria-labelledby="sec-env">
        <h2 id="sec-env">Environment</h2>
        <div class={`rows${errFor('tpl-env') ? ' has-error' : ''}`} id="tpl-env" tabIndex={-1}>
          {draft.env.length === 0 && <p class="muted small">No variables.</p>}
          {draft.env.map((v, i) => {
            const upd = (patch: Partial<Draft['env'][number]>) =>
              set('env', draft.env.map((x, j) => (j === i ? { ...x, ...patch } : x)));
            return (
              <div class="row" key={i}>
                <div class="field">
                  <label for={`tpl-env-${i}-key`}>Name</label>
                  <input
                    id={`tpl-env-${i}-key`}
                    class="mono"
                    value={v.key}
                    onInput={(e) => upd({ key: e.currentTarget.value })}
                  />
                </div>
                <div class="field grow">
                  <label for={`tpl-env-${i}-value`}>Value</label>
                  <EnvValue id={`tpl-env-${i}-value`} secret={v.secret} value={v.value} onValue={(value) => upd({ value })} />
                </div>
                <label class="check env-secret">
                  <input
                    type="checkbox"
                    id={`tpl-env-${i}-secret`}
                    checked={v.secret}
                    onChange={(e) => upd({ secret: e.currentTarget.checked })}
                  />
                  Secret
                </label>
                <button
                  type="button"
                  class="icon-btn row-remove"
                  aria-label={`Remove variable ${v.key || i + 1}`}
                  onClick={() => set('env', draft.env.filter((_, j) => j !== i))}
                >
                  <IconClose size={16} />
                </button>
              </div>
            );
          })}
          {errFor('tpl-env') && (
            <small class="field-error" role="alert" data-field-error="tpl-env">
              {error?.detail}
            </small>
          )}
        </div>
        <p class="muted small">Secret values are shown to admins only and never logged.</p>
        <Button small onClick={() => set('env', [...draft.env, { key: '', value: '', secret: false }])}>
          Add variable
        </Button>
      </section>
        </>
      )}

      <section class="card form-section" aria-labelledby="sec-users">
        <h2 id="sec-users">What users may choose</h2>
        <p class="muted small">When they start a session. Unless allowed here, they get the template as it is.</p>
        <div class="form-grid">
          <Field label="Most CPU" id="tpl-max_resources-cpu" error={errFor('tpl-max_resources-cpu')} hint="Empty: the template’s CPU.">
            {input('max_cpu', {}, 'tpl-max_resources-cpu')}
          </Field>
          <Field label="Most memory" id="tpl-max_resources-memory" error={errFor('tpl-max_resources-memory')} hint="Empty: the template’s memory.">
            {input('max_memory', {}, 'tpl-max_resources-memory')}
          </Field>
          {!vm && (
            <>
          <Field label="Most GPUs" id="tpl-max_resources-gpu" error={errFor('tpl-max_resources-gpu')} hint="Empty: the template’s GPUs.">
            {input('max_gpu', { type: 'number', min: 0, max: 16, inputMode: 'numeric' }, 'tpl-max_resources-gpu')}
          </Field>
          <Field label="Variables users may set" id="tpl-user_env" error={errFor('tpl-user_env')} hint="Names, separated by commas." class="span-2">
            {input('user_env', { class: 'mono', placeholder: 'TZ, LANG' })}
          </Field>
            </>
          )}
          <fieldset class="field">
            <legend>Idle timeout</legend>
            <label class="check">
              <input
                type="checkbox"
                id="tpl-user_idle_timeout"
                checked={draft.user_idle_timeout}
                onChange={(e) => set('user_idle_timeout', e.currentTarget.checked)}
              />
              Users may choose their own (or none)
            </label>
          </fieldset>
        </div>
      </section>

      <div class="form-actions">
        <Link href="/admin/templates" class="btn">
          Cancel
        </Link>
        <Button type="submit" variant="primary" busy={busy}>
          {id ? 'Save changes' : 'Create template'}
        </Button>
      </div>
    </form>
  );
}

type SectionProps = {
  draft: Draft;
  set: <K extends keyof Draft>(k: K, v: Draft[K]) => void;
  input: (k: keyof Draft & string, extra?: Record<string, unknown>, ctl?: string) => preact.JSX.Element;
  errFor: (ctl: string) => string | null | undefined;
  error: ApiError | null;
};

/** What real images need beyond an image: shared memory, a user, a
 * read-only root, and shared volumes (docs/IMAGES.md). */
function ContainerSection({ draft, set, input, errFor, error }: SectionProps) {
  const setVolume = (i: number, patch: Partial<Draft['volumes'][number]>) =>
    set('volumes', draft.volumes.map((x, j) => (j === i ? { ...x, ...patch } : x)));
  return (
    <section class="card form-section" aria-labelledby="sec-container">
      <h2 id="sec-container">Container</h2>
      <div class="form-grid">
        <Field label="Shared memory" id="tpl-shm_size" error={errFor('tpl-shm_size')} hint='/dev/shm, e.g. "1Gi" for browsers; empty for the platform’s 64Mi.'>
          {input('shm_size', { class: 'mono', placeholder: '64Mi' })}
        </Field>
        <Field label="Run as user" id="tpl-user" error={errFor('tpl-user')} hint='"1000" or "1000:1000"; a name only on Docker; empty for the image’s.'>
          {input('user', { class: 'mono', autocapitalize: 'none', spellcheck: false })}
        </Field>
        <fieldset class="field span-2">
          <legend>Root filesystem</legend>
          <label class="check">
            <input
              type="checkbox"
              id="tpl-read_only_root_filesystem"
              checked={draft.read_only_root_filesystem}
              onChange={(e) => set('read_only_root_filesystem', e.currentTarget.checked)}
            />
            Read-only (/tmp, /run and the home stay writable)
          </label>
        </fieldset>
      </div>
      <h3 class="small">Shared volumes</h3>
      <p class="muted small">
        Existing Docker volumes or Kubernetes claims an admin made; mounted read-only unless unchecked. A missing one fails
        the session.
      </p>
      {errFor('tpl-volumes') && error?.field === 'volumes' && (
        <small class="field-error" role="alert" id="tpl-volumes" tabIndex={-1}>
          {error.detail}
        </small>
      )}
      <div class="rows">
        {draft.volumes.map((v, i) => (
          <div class="row" key={i}>
            <Field label="Volume" id={`tpl-volume-${i}-source`} error={errFor(`tpl-volume-${i}-source`)}>
              <input
                id={`tpl-volume-${i}-source`}
                class="mono"
                value={v.source}
                placeholder="datasets"
                onInput={(e) => setVolume(i, { source: e.currentTarget.value })}
                aria-invalid={!!errFor(`tpl-volume-${i}-source`)}
              />
            </Field>
            <Field label="Path" id={`tpl-volume-${i}-path`} error={errFor(`tpl-volume-${i}-path`)}>
              <input
                id={`tpl-volume-${i}-path`}
                class="mono"
                value={v.path}
                placeholder="/data"
                onInput={(e) => setVolume(i, { path: e.currentTarget.value })}
                aria-invalid={!!errFor(`tpl-volume-${i}-path`)}
              />
            </Field>
            <label class="check env-secret">
              <input
                type="checkbox"
                id={`tpl-volume-${i}-read_only`}
                checked={v.read_only}
                onChange={(e) => setVolume(i, { read_only: e.currentTarget.checked })}
              />
              Read-only
            </label>
            <button
              type="button"
              class="icon-btn row-remove"
              aria-label={`Remove volume ${v.source || i + 1}`}
              onClick={() => set('volumes', draft.volumes.filter((_, j) => j !== i))}
            >
              <IconClose size={16} />
            </button>
          </div>
        ))}
      </div>
      <Button small onClick={() => set('volumes', [...draft.volumes, { source: '', path: '', read_only: true }])}>
        Add volume
      </Button>
    </section>
  );
}
