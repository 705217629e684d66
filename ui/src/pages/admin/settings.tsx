// Run-time settings (admins): who must use MFA, whether local accounts may
// sign in with a password (and the break-glass admin who always may), and
// how long the audit log keeps events. Saved whole; every change is itself
// in the audit log (settings.update, with before and after).

import { useEffect, useState } from 'preact/hooks';
import { ApiError } from '../../api';
import { settingsApi, type Settings } from '../../api-audit';
import { Button, ErrorBanner, Field, FormErrorBanner, Loading, PageHeader, toast, useFormError } from '../../components/ui';
import { useResource } from '../../hooks';

const MFA_CHOICES: { value: Settings['mfa_required']; label: string }[] = [
  { value: 'off', label: 'No one (each user may still turn it on)' },
  { value: 'admins', label: 'Admins' },
  { value: 'everyone', label: 'Everyone' },
];

export function SettingsPage() {
  const { data, error, reload, setData } = useResource(settingsApi.get);
  const [draft, setDraft] = useState<Settings | null>(null);
  const [busy, setBusy] = useState(false);
  const form = useFormError();
  useEffect(() => setDraft(data), [data]);

  const set = <K extends keyof Settings>(key: K, value: Settings[K]) => draft && setDraft({ ...draft, [key]: value });
  const save = async (e: Event) => {
    e.preventDefault();
    if (!draft) return;
    const days = Number(draft.audit_retention_days);
    if (!Number.isInteger(days) || days < 1) {
      form.setError(new ApiError(400, 'audit_retention_days: a whole number of days, 1 or more', 'audit_retention_days'));
      return;
    }
    setBusy(true);
    form.setError(null);
    try {
      const saved = await settingsApi.put({ ...draft, audit_retention_days: days });
      setData(saved);
      toast('Settings saved.');
    } catch (err) {
      form.fail(err);
    }
    setBusy(false);
  };

  return (
    <>
      <PageHeader title="Settings" subtitle="How people sign in, and how long the audit log keeps events." />
      <ErrorBanner error={error} onRetry={reload} />
      {draft === null && !error && <Loading what="settings" />}
      {draft && (
        <form class="card narrow" onSubmit={save} noValidate aria-label="Settings">
          <FormErrorBanner error={form.error} />
          <Field label="Who must use two-factor sign-in (TOTP)" id="settings-mfa" error={form.fieldError('mfa_required')}>
            <select
              id="settings-mfa"
              value={draft.mfa_required}
              onChange={(e) => set('mfa_required', e.currentTarget.value as Settings['mfa_required'])}
            >
              {MFA_CHOICES.map((c) => (
                <option key={c.value} value={c.value}>
                  {c.label}
                </option>
              ))}
            </select>
          </Field>
          <label class="check">
            <input
              type="checkbox"
              id="settings-password-login"
              checked={draft.password_login}
              onChange={(e) => set('password_login', e.currentTarget.checked)}
            />
            Local accounts may sign in with a password
          </label>
          <Field
            label="Break-glass admin"
            id="settings-break-glass"
            error={form.fieldError('break_glass_admin')}
            hint="An admin who may always sign in with a password, even when password sign-in is off. Empty: none."
          >
            <input
              type="text"
              id="settings-break-glass"
              value={draft.break_glass_admin ?? ''}
              maxLength={63}
              onInput={(e) => set('break_glass_admin', e.currentTarget.value.trim() || null)}
            />
          </Field>
          <Field
            label="Keep audit events for (days)"
            id="settings-retention"
            error={form.fieldError('audit_retention_days')}
            hint="Older events are deleted every hour."
          >
            <input
              type="number"
              id="settings-retention"
              min={1}
              value={draft.audit_retention_days}
              onInput={(e) => set('audit_retention_days', e.currentTarget.valueAsNumber)}
            />
          </Field>
          <label class="check">
            <input
              type="checkbox"
              id="settings-record-all"
              checked={draft.record_all_sessions}
              onChange={(e) => set('record_all_sessions', e.currentTarget.checked)}
            />
            Record every session (viewers see a notice; see Recordings)
          </label>
          <Field
            label="Keep recordings for (days)"
            id="settings-recording-days"
            error={form.fieldError('recording_retention_days')}
          >
            <input
              type="number"
              id="settings-recording-days"
              min={1}
              value={draft.recording_retention_days}
              onInput={(e) => set('recording_retention_days', e.currentTarget.valueAsNumber)}
            />
          </Field>
          <Field
            label="Keep at most this much of recordings (MiB)"
            id="settings-recording-mib"
            error={form.fieldError('recording_retention_mib')}
            hint="The oldest recordings are deleted beyond it, every hour."
          >
            <input
              type="number"
              id="settings-recording-mib"
              min={1}
              value={draft.recording_retention_mib}
              onInput={(e) => set('recording_retention_mib', e.currentTarget.valueAsNumber)}
            />
          </Field>
          <Button type="submit" variant="primary" busy={busy}>
            Save settings
          </Button>
        </form>
      )}
    </>
  );
}
