-- What the agent's last health check said (docs/ARCHITECTURE.md, "Platform
-- health"): PlatformHealth as JSON, NULL for an agent that does not report
-- it (older than this column) or has not yet. Expand only: older binaries
-- never read it (docs/UPGRADING.md).
ALTER TABLE agents ADD COLUMN health TEXT;
