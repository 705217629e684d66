-- Idle hibernation, quotas, the audit trail, and what the reconciler needs.

-- Per-session idle timeout (from the template or the create request); NULL
-- means never. state_changed_at: when the desired state last changed, so the
-- reconciler can count attempts since then.
ALTER TABLE sessions ADD COLUMN idle_timeout_ms BIGINT;
ALTER TABLE sessions ADD COLUMN state_changed_at BIGINT NOT NULL DEFAULT 0;

-- Per-user overrides of the server-wide quota; NULL means the default.
CREATE TABLE user_quotas (
    user_id      TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    max_sessions BIGINT,
    cpu_millis   BIGINT,
    memory_bytes BIGINT
);

-- Who or what asked for each lifecycle transition, and when.
CREATE TABLE session_events (
    id         TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    state      TEXT,
    phase      TEXT,
    message    TEXT
);
CREATE INDEX session_events_session ON session_events(session_id, id);
