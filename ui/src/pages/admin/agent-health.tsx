// Admin: an agent's platform health. An agent whose last health check
// found a problem (its engine or apiserver did not answer in time, its
// disk is full) is `degraded` and gets no new sessions until a check
// passes again; the reason is the agent's own words.
import type { Agent } from '../../api';
import type { Tone } from '../../format';

export function agentTone(status: Agent['status']): Tone {
  switch (status) {
    case 'online':
      return 'green';
    case 'draining':
      return 'amber';
    case 'degraded':
      return 'red';
    default:
      return 'grey';
  }
}

export function AgentHealth({ agent }: { agent: Agent }) {
  if (!agent.status_reason) return null;
  return (
    <div class="alert alert-error" role="status" data-testid="agent-health">
      <span>
        <strong>Platform problem:</strong> {agent.status_reason}. No new sessions go here until its platform answers
        again; sessions waiting on it say so.
      </span>
    </div>
  );
}
