-- Single sign-on (issue 14): accounts made at their first OpenID Connect
-- login. `auth_source` says how an account signs in ('local': a password;
-- 'oidc': the identity provider). `oidc_subject` is the provider's `sub`,
-- the account's lasting key there (usernames may change; subjects do not).
-- Single sign-on accounts get a password hash that no password matches.
ALTER TABLE users ADD COLUMN auth_source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_subject ON users(oidc_subject);
