-- Control-plane replicas on one PostgreSQL find each other here
-- (docs/ARCHITECTURE.md#replicas). Expand only: nothing an older binary
-- reads changes (docs/UPGRADING.md).
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    -- Where the other replicas reach this one (`--internal-url`).
    internal_url TEXT NOT NULL,
    -- SHA-256 of the secret this replica proves itself with to the others.
    secret_hash TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    -- 1 while it shuts down: it takes no new work.
    draining BIGINT NOT NULL DEFAULT 0
);

-- Which replica holds the agent's control channel now (NULL: none).
ALTER TABLE agents ADD COLUMN replica_id TEXT;
