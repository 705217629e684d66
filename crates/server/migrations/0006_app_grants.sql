-- Web apps (issue 13): a browser reaches a session's web app with a cookie
-- of its own, never the control plane's login. The cookie is minted on the
-- app's origin in exchange for a one-time ticket that the control plane
-- issued to a logged-in user. Both are stored only as SHA-256. A grant dies
-- with the login it came from (logout ends every app opened with it), its
-- user and its session.
CREATE TABLE app_grants (
    id                TEXT PRIMARY KEY,
    ticket_hash       TEXT UNIQUE,
    cookie_hash       TEXT UNIQUE,
    token_hash        TEXT NOT NULL REFERENCES api_tokens(token_hash) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id        TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    port              BIGINT NOT NULL,
    ticket_expires_at BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX app_grants_token ON app_grants(token_hash);
CREATE INDEX app_grants_expiry ON app_grants(expires_at);
