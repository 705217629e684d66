-- Identity and access (issue 14): groups, agent pools and the system audit log.

-- Groups are created by admins ('local') or by the OIDC groups claim ('oidc').
-- A NULL limit means the group sets none (the user's own limit applies).
CREATE TABLE groups (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    source       TEXT NOT NULL,
    max_sessions BIGINT,
    cpu_millis   BIGINT,
    memory_bytes BIGINT,
    created_at   BIGINT NOT NULL
);

-- 'local' memberships are an admin's; 'oidc' ones are replaced on each login
-- from the identity provider's claim.
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source   TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

-- The agent pools a group's members may place sessions on.
CREATE TABLE group_pools (
    group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    pool     TEXT NOT NULL,
    PRIMARY KEY (group_id, pool)
);

-- An agent's pool is an admin's decision (at enrollment or later), never the
-- agent's own: a compromised host must not move itself into another tenant's pool.
ALTER TABLE agents ADD COLUMN pool TEXT NOT NULL DEFAULT 'default';
ALTER TABLE enrollment_tokens ADD COLUMN pool TEXT NOT NULL DEFAULT 'default';

-- Who did what, when, from where. Ids are UUIDv7: ordering by id is time
-- order, and an id is a paging cursor that new events do not shift.
CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    target  TEXT,
    outcome TEXT NOT NULL,
    client  TEXT,
    detail  TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_actor ON audit_log(actor, id);
CREATE INDEX audit_log_kind ON audit_log(kind, id);
CREATE INDEX audit_log_target ON audit_log(target, id);
