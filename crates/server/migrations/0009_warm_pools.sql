-- Warm pools (issue 13): sessions started before anyone asks for them, owned
-- by this row until a launch assigns one to its user. Not a person: its
-- password hash is no hash (no password matches it), its username is one no
-- account may have (usernames are lowercase letters, digits and '-'), and
-- the store leaves it out of every list, lookup and login.
INSERT INTO users (id, username, password_hash, role, created_at, legacy_home)
VALUES ('00000000-0000-7000-8000-000000000001', '_pool', '!', 'user', 0, 0);
