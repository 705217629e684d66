-- Secrets sealed at rest (docs/SECURITY.md, src/store/secrets.rs): a
-- template's secret_env values and registry password, and the secret
-- environment and registry credentials copied into a session's spec and its
-- start commands, move out of the JSON in `spec` / `payload` into these
-- columns, sealed (ChaCha20-Poly1305) under the key outside the database and
-- bound to the row's id. NULL: nothing secret, or a row an older release
-- wrote, whose JSON still holds its values in clear (read as before; the
-- templates' are sealed at the next start). Expand only (docs/UPGRADING.md).
ALTER TABLE templates ADD COLUMN secrets TEXT;
ALTER TABLE sessions ADD COLUMN secrets TEXT;
ALTER TABLE commands ADD COLUMN secrets TEXT;
