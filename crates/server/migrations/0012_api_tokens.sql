-- Named API tokens (issue 14): the same table as logins, so every check a
-- login token gets (expiry, logout-all, a password change, user deletion,
-- stream revocation) applies to them too. Only the SHA-256 is stored.
--   kind          'login' (POST /auth/login) or 'api' (POST /users/me/tokens)
--   id, name      what a user lists and revokes an API token by; NULL for logins
--   last_used_at  written at most once a minute per token, not per request
ALTER TABLE api_tokens ADD COLUMN id TEXT;
ALTER TABLE api_tokens ADD COLUMN name TEXT;
ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'login';
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
CREATE UNIQUE INDEX api_tokens_id ON api_tokens(id);
-- Logins have no name (NULL), and NULLs never collide.
CREATE UNIQUE INDEX api_tokens_user_name ON api_tokens(user_id, name);
