// The template form's "Desktop" section: what viewers may do beyond pixels
// and keys (clipboard, files, recording, sharing). Fixed per session when it
// starts, so editing a template never changes a running session.

import type { Template, TemplateDraftInput } from '../../api';
import { Field } from '../../components/ui';

type Policy = NonNullable<Template['desktop']>;

/** The section as typed: selects and text, sent as `desktop`. */
export type DesktopDraft = {
  clipboard: Policy['clipboard'];
  file_transfer: Policy['file_transfer'];
  files_folder: string;
  max_upload: string;
  recording: Policy['recording'];
  sharing: boolean;
  microphone: boolean;
};

export const DESKTOP_DEFAULTS: DesktopDraft = {
  clipboard: 'both',
  file_transfer: 'both',
  files_folder: 'Downloads',
  max_upload: '512Mi',
  recording: 'off',
  sharing: true,
  microphone: true,
};

export function desktopDraft(policy: Template['desktop'] | undefined): DesktopDraft {
  return policy ? { ...policy, max_upload: String(policy.max_upload) } : DESKTOP_DEFAULTS;
}

export function desktopInput(d: DesktopDraft): TemplateDraftInput['desktop'] {
  return {
    clipboard: d.clipboard,
    file_transfer: d.file_transfer,
    files_folder: d.files_folder.trim() || undefined,
    max_upload: d.max_upload.trim() || undefined,
    recording: d.recording,
    sharing: d.sharing,
    microphone: d.microphone,
  };
}

const CLIPBOARD: [Policy['clipboard'], string][] = [
  ['both', 'Both ways'],
  ['to_session', 'Into the session only'],
  ['from_session', 'Out of the session only'],
  ['off', 'Off'],
];

const FILES: [Policy['file_transfer'], string][] = [
  ['both', 'Upload and download'],
  ['upload', 'Upload only'],
  ['download', 'Download only'],
  ['none', 'Off'],
];

type Props = {
  desktop: DesktopDraft;
  onChange: (d: DesktopDraft) => void;
  errFor: (ctl: string) => string | null | undefined;
  /** A virtual machine: no files (the agent cannot reach into its disk) and no microphone port. */
  vm?: boolean;
};

export function DesktopSection({ desktop, onChange, errFor, vm = false }: Props) {
  const set = <K extends keyof DesktopDraft>(k: K, v: DesktopDraft[K]) => onChange({ ...desktop, [k]: v });
  const select = <K extends 'clipboard' | 'file_transfer'>(k: K, options: [DesktopDraft[K], string][]) => (
    <select id={`tpl-desktop-${k}`} value={desktop[k]} onChange={(e) => set(k, e.currentTarget.value as DesktopDraft[K])}>
      {options.map(([value, label]) => (
        <option key={value} value={value}>
          {label}
        </option>
      ))}
    </select>
  );
  const text = (k: 'files_folder' | 'max_upload', placeholder: string) => (
    <input
      id={`tpl-desktop-${k}`}
      class="mono"
      value={desktop[k]}
      placeholder={placeholder}
      onInput={(e) => set(k, e.currentTarget.value)}
      aria-invalid={!!errFor(`tpl-desktop-${k}`)}
    />
  );
  return (
    <section class="card form-section" aria-labelledby="sec-desktop">
      <h2 id="sec-desktop">Desktop</h2>
      <p class="muted small">What viewers may do beyond seeing and typing. A running session keeps what it started with.</p>
      <div class="form-grid">
        <Field label="Clipboard" id="tpl-desktop-clipboard" error={errFor('tpl-desktop-clipboard')}>
          {select('clipboard', CLIPBOARD)}
        </Field>
        {!vm && (
          <>
            <Field label="File transfer" id="tpl-desktop-file_transfer" error={errFor('tpl-desktop-file_transfer')}>
              {select('file_transfer', FILES)}
            </Field>
            <Field
              label="Files folder"
              id="tpl-desktop-files_folder"
              error={errFor('tpl-desktop-files_folder')}
              hint="Relative to the home; nothing outside it can be reached."
            >
              {text('files_folder', 'Downloads')}
            </Field>
            <Field label="Largest upload" id="tpl-desktop-max_upload" error={errFor('tpl-desktop-max_upload')} hint='Per file, e.g. "512Mi", "2Gi".'>
              {text('max_upload', '512Mi')}
            </Field>
          </>
        )}
        <fieldset class="field">
          <legend>Recording</legend>
          <label class="check">
            <input
              type="checkbox"
              id="tpl-desktop-recording"
              checked={desktop.recording === 'required'}
              onChange={(e) => set('recording', e.currentTarget.checked ? 'required' : 'off')}
            />
            Record every viewer connection (viewers are told)
          </label>
        </fieldset>
        <fieldset class="field">
          <legend>Sharing</legend>
          <label class="check">
            <input
              type="checkbox"
              id="tpl-desktop-sharing"
              checked={desktop.sharing}
              onChange={(e) => set('sharing', e.currentTarget.checked)}
            />
            Owners may share their sessions with other users
          </label>
        </fieldset>
        <fieldset class="field" hidden={vm}>
          <legend>Microphone</legend>
          <label class="check">
            <input
              type="checkbox"
              id="tpl-desktop-microphone"
              checked={desktop.microphone}
              onChange={(e) => set('microphone', e.currentTarget.checked)}
            />
            Viewers may send their microphone into the session (its “microphone” port; the browser asks them too)
          </label>
        </fieldset>
      </div>
    </section>
  );
}
