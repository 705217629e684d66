-- GPUs each session asks for, as a column beside cpu_millis and
-- memory_bytes, so that an agent's free GPUs are a SUM in the database.
-- Sessions from before GPUs asked for none.
ALTER TABLE sessions ADD COLUMN gpus BIGINT NOT NULL DEFAULT 0;

-- Agent loads sum GPUs too: the partial covering index of 0004 must cover
-- the new column, or each placement would read the table again.
DROP INDEX sessions_live_agent;
CREATE INDEX sessions_live_agent
    ON sessions(agent_id, phase, cpu_millis, memory_bytes, gpus)
    WHERE phase <> 'Terminated';
