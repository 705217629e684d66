import { useEffect, useState } from 'preact/hooks';
import { api } from '../../api';
import { SessionTable, useSessionList } from '../../components/session-table';
import { PageHeader } from '../../components/ui';

export function AllSessionsPage() {
  const [includeTerminated, setIncludeTerminated] = useState(false);
  const list = useSessionList({ all: true, includeTerminated });
  const [agentNames, setAgentNames] = useState<Record<string, string>>({});
  useEffect(() => {
    api.agents().then(
      (agents) => setAgentNames(Object.fromEntries(agents.map((a) => [a.id, a.name]))),
      () => {},
    );
  }, []);
  const count = list.sessions?.filter((s) => s.phase !== 'Terminated').length;
  return (
    <>
      <PageHeader
        title="All sessions"
        subtitle={count === undefined ? 'Every user’s sessions.' : `${count} active across all users.`}
        actions={
          <label class="check">
            <input
              type="checkbox"
              checked={includeTerminated}
              onChange={(e) => setIncludeTerminated(e.currentTarget.checked)}
            />
            Show terminated
          </label>
        }
      />
      <SessionTable {...list} update={list.upsert} showUser agentNames={agentNames} empty={<p class="muted">No user has a session.</p>} />
    </>
  );
}
