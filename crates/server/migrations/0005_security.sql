-- Safe for many users (issue 11).

-- Homes are now keyed by user and template ids. Users who exist now may have
-- a home under the old name (streamspace-home-{username}-{template}); users
-- created from here on never do, so a re-created username cannot inherit
-- one. Rows present at this migration get 1, later inserts the default 0.
ALTER TABLE users ADD COLUMN legacy_home BIGINT NOT NULL DEFAULT 0;
UPDATE users SET legacy_home = 1;

-- Control-plane-wide values every replica shares, such as the key that
-- seals sessions so agents cannot invent them.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Sessions an agent reports that the control plane cannot account for and
-- did not adopt (no valid seal, placed elsewhere), as JSON, for admins.
ALTER TABLE agents ADD COLUMN unverified TEXT;
