-- Quota usage (per user) and agent loads (per agent) sum only sessions that
-- are not terminated, which become the minority as history accumulates.
-- These indexes are partial and covering, so each sum reads just the index
-- entries of the live sessions it needs, never the table. The queries repeat
-- `phase <> 'Terminated'` word for word: SQLite uses a partial index only
-- when the query's WHERE contains its condition.
CREATE INDEX sessions_live_user
    ON sessions(user_id, state, phase, cpu_millis, memory_bytes)
    WHERE phase <> 'Terminated';
CREATE INDEX sessions_live_agent
    ON sessions(agent_id, phase, cpu_millis, memory_bytes)
    WHERE phase <> 'Terminated';
