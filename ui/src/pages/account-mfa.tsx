// Two-step verification on the account page: add an authenticator app (QR
// code or the secret typed by hand, then a first code), see and renew the
// one-time recovery codes, turn it off (password and a code). When the
// administrator requires MFA and it is off, says so first: until then the
// server refuses every other page. docs/MFA.md describes the whole.

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, errorMessage, type MfaStatus, type TotpEnrolment } from '../api';
import {
  Button,
  CopyButton,
  ErrorBanner,
  Field,
  FormErrorBanner,
  PasswordField,
  toast,
  useFormError,
} from '../components/ui';
import { navigate } from '../router';

export function MfaSection() {
  const [status, setStatus] = useState<MfaStatus | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  // Shown once, right after they are made.
  const [codes, setCodes] = useState<string[] | null>(null);

  const load = () => {
    setLoadError(null);
    api.myMfa().then(setStatus, (err) => setLoadError(errorMessage(err)));
  };
  useEffect(load, []);
  const showCodes = (fresh: string[]) => {
    setCodes(fresh);
    load();
  };

  let body;
  if (loadError) body = <ErrorBanner error={loadError} onRetry={load} />;
  else if (!status) body = <p class="muted">Loading…</p>;
  else if (codes) body = <RecoveryCodes codes={codes} onDone={() => setCodes(null)} />;
  else if (status.totp) body = <MfaOn status={status} onCodes={showCodes} onOff={load} />;
  else body = <Enrol onCodes={showCodes} />;

  return (
    <div class="card narrow" data-testid="mfa">
      <h2>Two-step verification</h2>
      {status?.required && !status.totp && (
        <div class="alert alert-error" role="alert" data-testid="mfa-required">
          <span>
            Your administrator requires two-step verification for your account. Add an authenticator app below to
            use StreamSpace.
          </span>
        </div>
      )}
      {body}
    </div>
  );
}

function Enrol({ onCodes }: { onCodes: (codes: string[]) => void }) {
  const [enrolment, setEnrolment] = useState<TotpEnrolment | null>(null);
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();

  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      setEnrolment(await api.startTotp());
    } catch (err) {
      fail(err);
    }
    setBusy(false);
  };

  const confirm = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const answer = await api.confirmTotp(code.trim());
      toast('Two-step verification is on.');
      onCodes(answer.recovery_codes);
    } catch (err) {
      // A wrong code is a 403 about that field.
      if (err instanceof ApiError && err.status === 403) setError(new ApiError(403, err.message, 'code'));
      else fail(err);
      setBusy(false);
    }
  };

  if (!enrolment) {
    return (
      <>
        <p class="muted">
          Off. Sign-ins ask for your password only. Add an authenticator app (such as Google Authenticator, Aegis
          or 1Password) so that they also ask for a code from your phone.
        </p>
        <FormErrorBanner error={error} />
        <Button variant="primary" busy={busy} onClick={start}>
          Set up an authenticator app
        </Button>
      </>
    );
  }
  const qr = `data:image/svg+xml;utf8,${encodeURIComponent(enrolment.qr_svg)}`;
  return (
    <form onSubmit={confirm} noValidate>
      <p>Scan this QR code with your authenticator app:</p>
      <img src={qr} alt="QR code of your authenticator secret" width={200} height={200} data-testid="totp-qr" />
      <p class="muted">
        Or type this secret into the app: <code class="mono" data-testid="totp-secret">{enrolment.secret}</code>
      </p>
      <FormErrorBanner error={error} />
      <Field label="Code from the app" id="mfa-code" error={fieldError('code')} hint="The 6 digits it shows now.">
        <input
          id="mfa-code"
          autocomplete="one-time-code"
          inputMode="numeric"
          maxLength={8}
          required
          value={code}
          onInput={(e) => setCode(e.currentTarget.value)}
        />
      </Field>
      <Button type="submit" variant="primary" busy={busy}>
        Turn on
      </Button>
    </form>
  );
}

function RecoveryCodes({ codes, onDone }: { codes: string[]; onDone: () => void }) {
  return (
    <div data-testid="recovery-codes">
      <p>
        Your recovery codes. Each signs you in once if you lose your phone. <strong>They are shown only now</strong>:
        keep them somewhere safe.
      </p>
      <pre class="command" tabIndex={0} aria-label="Recovery codes">
        {codes.join('\n')}
      </pre>
      <p>
        <CopyButton text={codes.join('\n')} label="Copy codes" />{' '}
        <Button variant="primary" onClick={onDone}>
          I have saved them
        </Button>
      </p>
    </div>
  );
}

function MfaOn({ status, onCodes, onOff }: { status: MfaStatus; onCodes: (c: string[]) => void; onOff: () => void }) {
  const [action, setAction] = useState<'renew' | 'off' | null>(null);
  const left = status.recovery_codes_left;
  return (
    <>
      <p data-testid="mfa-on">
        On. Sign-ins ask for a code from your authenticator app. {left} recovery code{left === 1 ? '' : 's'} left.
      </p>
      {action === null && (
        <p>
          <Button onClick={() => setAction('renew')}>New recovery codes</Button>{' '}
          <Button variant="danger" onClick={() => setAction('off')}>
            Turn off
          </Button>
        </p>
      )}
      {action && (
        <CodeForm
          withPassword={action === 'off'}
          submitLabel={action === 'off' ? 'Turn off' : 'Make new codes'}
          onCancel={() => setAction(null)}
          onSubmit={async (password, code) => {
            if (action === 'off') {
              await api.disableMfa(password, code);
              toast('Two-step verification is off.');
              onOff();
            } else {
              onCodes((await api.newRecoveryCodes(code)).recovery_codes);
            }
          }}
        />
      )}
    </>
  );
}

type CodeFormProps = {
  withPassword: boolean;
  submitLabel: string;
  onCancel: () => void;
  onSubmit: (password: string, code: string) => Promise<void>;
};

/** A current code (and the password, to turn MFA off), as the server checks them. */
function CodeForm({ withPassword, submitLabel, onCancel, onSubmit }: CodeFormProps) {
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const { error, fail, fieldError } = useFormError();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      await onSubmit(password, code.trim());
    } catch (err) {
      fail(err);
      setBusy(false);
    }
  };

  return (
    <form onSubmit={submit} noValidate>
      <FormErrorBanner error={error} />
      {withPassword && (
        <PasswordField
          label="Password"
          id="mfa-password"
          value={password}
          onInput={setPassword}
          error={fieldError('password')}
          autocomplete="current-password"
        />
      )}
      <Field
        label="Code"
        id="mfa-current-code"
        error={fieldError('code')}
        hint="From your authenticator app, or a recovery code."
      >
        <input
          id="mfa-current-code"
          autocomplete="one-time-code"
          maxLength={64}
          required
          value={code}
          onInput={(e) => setCode(e.currentTarget.value)}
        />
      </Field>
      <Button type="submit" variant={withPassword ? 'danger' : 'primary'} busy={busy}>
        {submitLabel}
      </Button>{' '}
      <Button variant="ghost" onClick={onCancel}>
        Cancel
      </Button>
    </form>
  );
}

/**
 * Sends a signed-in user who must enrol (the administrator requires MFA and
 * theirs is off) to the account page, the only one the server still serves
 * them, instead of pages that would all answer 403.
 */
export function useMfaGate(signedIn: boolean, path: string) {
  useEffect(() => {
    if (!signedIn || path === '/account') return;
    api.myMfa().then(
      (status) => {
        if (status.required && !status.totp) navigate('/account', { replace: true });
      },
      () => {},
    );
  }, [signedIn, path]);
}
