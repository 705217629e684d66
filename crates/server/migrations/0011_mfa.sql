-- MFA for local accounts (issue 14): TOTP (RFC 6238) with one-time
-- recovery codes, and the short-lived challenges of the two-step login.
--
-- The TOTP secret cannot be hashed (the server must compute codes from it),
-- so it is stored sealed (ChaCha20-Poly1305 under a key kept in a file
-- beside the database, not in it: see auth/mfa/vault.rs and docs/SECURITY.md).
-- `last_step` is the last 30-second time step whose code was accepted: a
-- code for it or an earlier step is refused, so a seen code cannot be reused.
-- `enabled` is 0 while an enrolment waits for its first code.
CREATE TABLE user_totp (
    user_id    TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret     TEXT NOT NULL,
    enabled    BIGINT NOT NULL DEFAULT 0,
    last_step  BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    enabled_at BIGINT
);

-- Recovery codes carry 80 random bits, so (like tokens) only their SHA-256
-- is kept; each is deleted when used.
CREATE TABLE mfa_recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- A password that was right for a user with TOTP opens a challenge: the
-- second step must name it (by its secret, stored as SHA-256) with a code
-- before it expires. It holds the password hash that was checked, so a
-- password change in between voids it, and counts the wrong codes sent
-- to it. A few per user at most (older ones are dropped).
CREATE TABLE mfa_challenges (
    challenge_hash TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    password_hash  TEXT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX mfa_challenges_user ON mfa_challenges(user_id);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges(expires_at);
