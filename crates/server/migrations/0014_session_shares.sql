-- Session sharing (issue 15): an owner lets other users of the deployment
-- watch (or work in) one of their sessions. A share is one of:
--   an invite:    guest_id names the user; no token;
--   a link:       token_hash is the SHA-256 of the link's secret (the link
--                 itself is shown once, never stored); no guest; always
--                 expires;
--   a link's guest: a user who opened a link (guest_id and link_id), which
--                 lasts as long as the link and ends with it.
-- `control` is 0 (view only) or 1 (keyboard and mouse too). A share is
-- ended by setting `ended_at`, kept for the audit trail until its session
-- goes.
CREATE TABLE session_shares (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_by  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    guest_id    TEXT REFERENCES users(id) ON DELETE CASCADE,
    link_id     TEXT REFERENCES session_shares(id) ON DELETE CASCADE,
    token_hash  TEXT UNIQUE,
    control     INTEGER NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    ended_at    BIGINT
);
CREATE INDEX session_shares_session ON session_shares(session_id);
CREATE INDEX session_shares_guest ON session_shares(guest_id);
CREATE INDEX session_shares_link ON session_shares(link_id);

-- Guests' viewers open now, on any replica: written when one opens, deleted
-- when it closes, `seen_at` refreshed while it lasts, so a replica that
-- died leaves rows that age out of "who is watching".
CREATE TABLE share_watchers (
    id         TEXT PRIMARY KEY,
    share_id   TEXT NOT NULL REFERENCES session_shares(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at  BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL
);
CREATE INDEX share_watchers_share ON share_watchers(share_id);
