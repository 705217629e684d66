-- One schema for SQLite and PostgreSQL (through sqlx's Any driver), so only
-- portable types: TEXT ids (UUIDs), BIGINT unix milliseconds, BIGINT 0/1
-- flags, and JSON documents stored as TEXT.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Bearer tokens, stored only as SHA-256 of the random token.
CREATE TABLE api_tokens (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE templates (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    spec       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE enrollment_tokens (
    token_hash TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    agent_id   TEXT
);

CREATE TABLE agents (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    platform       TEXT NOT NULL,
    region         TEXT,
    labels         TEXT NOT NULL,
    capacity       TEXT NOT NULL,
    capabilities   TEXT NOT NULL,
    secret_hash    TEXT NOT NULL UNIQUE,
    version        TEXT,
    connected      BIGINT NOT NULL DEFAULT 0,
    draining       BIGINT NOT NULL DEFAULT 0,
    last_heartbeat BIGINT,
    metrics        TEXT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    template_id   TEXT NOT NULL,
    template_name TEXT NOT NULL,
    agent_id      TEXT,
    platform      TEXT NOT NULL,
    spec          TEXT NOT NULL,
    state         TEXT NOT NULL,
    phase         TEXT NOT NULL,
    message       TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_activity BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_agent ON sessions(agent_id);

-- Commands are written here before they are sent and re-sent until the agent
-- reports a result. Ids are UUIDv7, so ordering by id is issue order.
CREATE TABLE commands (
    id         TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    action     TEXT NOT NULL,
    payload    TEXT NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX commands_agent_status ON commands(agent_id, status);
CREATE INDEX commands_session ON commands(session_id);
