// Admin: move an agent to another pool. Only admins set an agent's pool
// (here, or by the enrollment token); the agent's own labels never do.
import { useState } from 'preact/hooks';
import { api, type Agent } from '../../api';
import { Button, Field, FormErrorBanner, Modal, useFormError } from '../../components/ui';

export function AgentPoolDialog({
  agent,
  onClose,
  onSaved,
}: {
  agent: Agent;
  onClose: () => void;
  onSaved: (a: Agent) => void;
}) {
  const [pool, setPool] = useState(agent.pool);
  const [busy, setBusy] = useState(false);
  const { error, setError, fail, fieldError } = useFormError();
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSaved(await api.setAgentPool(agent.id, pool.trim()));
    } catch (err) {
      fail(err);
      setBusy(false);
    }
  };
  return (
    <Modal title={`Pool of ${agent.name}`} onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <FormErrorBanner error={error} />
        <Field
          label="Agent pool"
          id="agent-pool"
          error={fieldError('pool')}
          hint="New sessions come only from members of groups with this pool; its sessions now stay."
        >
          <input
            id="agent-pool"
            value={pool}
            onInput={(e) => setPool(e.currentTarget.value)}
            aria-invalid={!!fieldError('pool')}
            aria-describedby={fieldError('pool') ? 'agent-pool-error' : undefined}
            autofocus
          />
        </Field>
        <div class="modal-actions">
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" variant="primary" busy={busy}>
            Move agent
          </Button>
        </div>
      </form>
    </Modal>
  );
}
