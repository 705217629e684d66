// Small building blocks shared by every page.

import type { ButtonHTMLAttributes, ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, errorMessage, type Phase } from '../api';
import { phaseTone, isTransitional, type Tone } from '../format';
import { IconClose } from './icons';

export function Badge({ tone, children, pulse }: { tone: Tone; children: ComponentChildren; pulse?: boolean }) {
  return (
    <span class={`badge badge-${tone}`}>
      <span class={`dot${pulse ? ' pulse' : ''}`} aria-hidden="true" />
      {children}
    </span>
  );
}

export function PhaseBadge({ phase }: { phase: Phase }) {
  return (
    <span data-testid="phase" data-phase={phase}>
      <Badge tone={phaseTone(phase)} pulse={isTransitional(phase)}>
        {phase}
      </Badge>
    </span>
  );
}

export function Spinner({ size = 18, label }: { size?: number; label?: string }) {
  return (
    <span
      class="spinner"
      style={{ width: `${size}px`, height: `${size}px` }}
      role={label ? 'status' : undefined}
      aria-label={label}
    />
  );
}

export function ErrorBanner({ error, onRetry }: { error: string | null; onRetry?: () => void }) {
  if (!error) return null;
  return (
    <div class="alert alert-error" role="alert">
      <span>{error}</span>
      {onRetry && (
        <button class="btn btn-small" type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function PageHeader({
  title,
  subtitle,
  actions,
}: {
  title: string;
  subtitle?: ComponentChildren;
  actions?: ComponentChildren;
}) {
  useEffect(() => {
    document.title = `${title} · StreamSpace`;
  }, [title]);
  return (
    <header class="page-header">
      <div>
        <h1>{title}</h1>
        {subtitle && <p class="muted">{subtitle}</p>}
      </div>
      {actions && <div class="page-actions">{actions}</div>}
    </header>
  );
}

export function EmptyState({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <h2>{title}</h2>
      {children}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <div class="loading">
      <Spinner label={`Loading ${what}`} /> <span>Loading {what}…</span>
    </div>
  );
}

const PALETTE = ['#4f46e5', '#0891b2', '#059669', '#d97706', '#db2777', '#7c3aed', '#2563eb', '#dc2626'];

function looksLikeImage(icon: string): boolean {
  return /^(https?:\/\/|\/|data:image\/)/i.test(icon.trim());
}

/** A template's icon: its image if `icon` is a URL, else a coloured tile with initials (or the emoji given). */
export function TemplateIcon({ icon, name, size = 48 }: { icon: string; name: string; size?: number }) {
  const [broken, setBroken] = useState(false);
  const style = { width: `${size}px`, height: `${size}px` };
  if (icon && looksLikeImage(icon) && !broken) {
    return <img class="tile-icon" src={icon} alt="" style={style} onError={() => setBroken(true)} />;
  }
  let hash = 0;
  for (const c of name) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  const short = icon && !looksLikeImage(icon) && [...icon].length <= 2 ? icon : null;
  const initials =
    short ??
    name
      .split(/[\s\-_]+/)
      .filter(Boolean)
      .slice(0, 2)
      .map((w) => w[0]!.toUpperCase())
      .join('');
  return (
    <span
      class="tile-icon generated"
      aria-hidden="true"
      style={{ ...style, background: PALETTE[hash % PALETTE.length], fontSize: `${Math.round(size * 0.4)}px` }}
    >
      {initials || '?'}
    </span>
  );
}

type FieldProps = {
  label: string;
  id: string;
  error?: string | null;
  hint?: ComponentChildren;
  children: ComponentChildren;
  class?: string;
};

/** A labelled form control with its hint and the API's error for it. */
export function Field({ label, id, error, hint, children, class: cls }: FieldProps) {
  return (
    <div class={`field${error ? ' has-error' : ''}${cls ? ` ${cls}` : ''}`}>
      <label for={id}>{label}</label>
      {children}
      {hint && !error && <small class="hint">{hint}</small>}
      {error && (
        <small class="field-error" id={`${id}-error`} role="alert" data-field-error={id}>
          {error}
        </small>
      )}
    </div>
  );
}

type PasswordFieldProps = {
  label: string;
  id: string;
  value: string;
  onInput: (value: string) => void;
  error?: string | null;
  hint?: ComponentChildren;
  autocomplete: 'current-password' | 'new-password';
  autofocus?: boolean;
};

/** A password input in its Field, its error announced with it. */
export function PasswordField({ label, id, value, onInput, error, hint, autocomplete, autofocus }: PasswordFieldProps) {
  return (
    <Field label={label} id={id} error={error} hint={hint}>
      <input
        id={id}
        type="password"
        autocomplete={autocomplete}
        required
        value={value}
        onInput={(e) => onInput(e.currentTarget.value)}
        aria-invalid={!!error}
        aria-describedby={error ? `${id}-error` : undefined}
        autofocus={autofocus}
      />
    </Field>
  );
}

/**
 * A form's error: the API's (with the field it names, if any), or any other
 * failure as one without a field. `fieldError(f)` is what to show at field f.
 */
export function useFormError() {
  const [error, setError] = useState<ApiError | null>(null);
  return {
    error,
    setError,
    fail: (err: unknown) => setError(err instanceof ApiError ? err : new ApiError(0, errorMessage(err))),
    fieldError: (field: string) => (error?.field === field ? error.detail : null),
  };
}

/** The banner for a form error that names no field (those show at the field). */
export function FormErrorBanner({ error }: { error: ApiError | null }) {
  return error && !error.field ? <ErrorBanner error={error.message} /> : null;
}

// ---- Confirm dialog -------------------------------------------------------

type ConfirmRequest = {
  title: string;
  body: ComponentChildren;
  confirm: string;
  danger?: boolean;
  resolve: (ok: boolean) => void;
};

let showConfirm: ((r: ConfirmRequest) => void) | null = null;

/** Asks the user to confirm, in a modal dialog; resolves to their answer. */
export function confirmDialog(opts: Omit<ConfirmRequest, 'resolve'>): Promise<boolean> {
  return new Promise((resolve) => {
    if (!showConfirm) return resolve(window.confirm(opts.title));
    showConfirm({ ...opts, resolve });
  });
}

export function ConfirmHost() {
  const [req, setReq] = useState<ConfirmRequest | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    showConfirm = setReq;
    return () => {
      showConfirm = null;
    };
  }, []);
  useEffect(() => {
    if (req && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [req]);
  const close = (ok: boolean) => {
    dialog.current?.close();
    req?.resolve(ok);
    setReq(null);
  };
  return (
    <dialog
      ref={dialog}
      class="modal"
      aria-labelledby="confirm-title"
      onCancel={(e) => {
        e.preventDefault();
        close(false);
      }}
    >
      {req && (
        <form method="dialog" onSubmit={(e) => (e.preventDefault(), close(true))}>
          <h2 id="confirm-title">{req.title}</h2>
          <div class="modal-body">{req.body}</div>
          <div class="modal-actions">
            <button type="button" class="btn" onClick={() => close(false)}>
              Cancel
            </button>
            <button type="submit" class={`btn ${req.danger ? 'btn-danger' : 'btn-primary'}`} autofocus>
              {req.confirm}
            </button>
          </div>
        </form>
      )}
    </dialog>
  );
}

/** A modal dialog for content (forms, the enrollment command). */
export function Modal({
  title,
  onClose,
  children,
  wide,
}: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog
      ref={dialog}
      class={`modal${wide ? ' modal-wide' : ''}`}
      aria-labelledby="modal-title"
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <div class="modal-head">
        <h2 id="modal-title">{title}</h2>
        <button type="button" class="icon-btn" aria-label="Close" onClick={onClose}>
          <IconClose />
        </button>
      </div>
      {children}
    </dialog>
  );
}

// ---- Toasts ---------------------------------------------------------------

type Toast = { id: number; text: string; kind: 'error' | 'info' };
let pushToast: ((t: Toast) => void) | null = null;
let nextToast = 1;

export function toast(text: string, kind: Toast['kind'] = 'info') {
  pushToast?.({ id: nextToast++, text, kind });
}

export function ToastHost() {
  const [toasts, setToasts] = useState<Toast[]>([]);
  useEffect(() => {
    pushToast = (t) => {
      setToasts((all) => [...all.slice(-3), t]);
      setTimeout(() => setToasts((all) => all.filter((x) => x.id !== t.id)), t.kind === 'error' ? 8000 : 4000);
    };
    return () => {
      pushToast = null;
    };
  }, []);
  return (
    <div class="toasts" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} class={`toast toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
          <span>{t.text}</span>
          <button
            type="button"
            class="icon-btn"
            aria-label="Dismiss"
            onClick={() => setToasts((all) => all.filter((x) => x.id !== t.id))}
          >
            <IconClose size={16} />
          </button>
        </div>
      ))}
    </div>
  );
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone(true);
      setTimeout(() => setDone(false), 1500);
    } catch {
      toast('Your browser did not allow copying: select the text and copy it by hand.', 'error');
    }
  };
  return (
    <button type="button" class="btn btn-small" onClick={copy}>
      {done ? 'Copied ✓' : label}
    </button>
  );
}

export type ButtonProps = Omit<ButtonHTMLAttributes<HTMLButtonElement>, 'type'> & {
  busy?: boolean;
  variant?: 'primary' | 'danger' | 'ghost' | 'default';
  small?: boolean;
  type?: 'button' | 'submit';
  disabled?: boolean;
};

export function Button({ busy, variant = 'default', small, class: cls, children, disabled, type, ...rest }: ButtonProps) {
  const classes = ['btn', variant !== 'default' && `btn-${variant}`, small && 'btn-small', cls]
    .filter(Boolean)
    .join(' ');
  return (
    <button type={type ?? 'button'} class={classes} disabled={disabled || busy} aria-busy={busy} {...rest}>
      {busy && <Spinner size={14} />}
      {children}
    </button>
  );
}
