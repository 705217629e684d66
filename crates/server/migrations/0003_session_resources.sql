-- What each session's spec asks for, as columns, so that quota usage and
-- agent loads are SQL aggregates instead of parsing every session's spec on
-- every create (which made POST /sessions slower with each session). NULL
-- only in rows from before this migration; the store fills them on start.
ALTER TABLE sessions ADD COLUMN cpu_millis BIGINT;
ALTER TABLE sessions ADD COLUMN memory_bytes BIGINT;
