//! What each running session uses: memory now, and CPU as the growth of the
//! container's cumulative CPU time since the previous heartbeat. One-shot
//! stats answer at once (Docker's own CPU figure needs a second sample taken
//! a second apart), so measuring many sessions stays cheap.

use crate::Shared;
use crate::container::label_of;
use bollard::query_parameters::StatsOptionsBuilder;
use futures::StreamExt;
use std::time::Instant;
use streamspace_agent::PlatformResult;
use streamspace_protocol::{SessionId, SessionUsage, labels};

/// Stats calls in flight at once: the engine answers each slowly once many
/// containers run, but handles a few in parallel well.
const CONCURRENT_STATS: usize = 8;

impl Shared {
    pub(crate) async fn usage(&self) -> PlatformResult<Vec<SessionUsage>> {
        let running = self.list_own(false).await?;
        let targets = running.into_iter().filter_map(|container| {
            let session_id =
                SessionId::from(label_of(container.labels.as_ref(), labels::SESSION_ID)?);
            Some((container.id?, session_id))
        });
        let measured: Vec<(String, SessionUsage)> = futures::stream::iter(targets)
            .map(|(id, session_id)| self.measure(id, session_id))
            .buffer_unordered(CONCURRENT_STATS)
            .filter_map(|measured| async move { measured })
            .collect()
            .await;
        let seen = measured.iter().map(|(id, _)| id.clone()).collect();
        self.cpu_samples.keep_only(&seen);
        Ok(measured.into_iter().map(|(_, usage)| usage).collect())
    }

    /// One container's usage, or `None` when it stopped meanwhile.
    async fn measure(&self, id: String, session_id: SessionId) -> Option<(String, SessionUsage)> {
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = self.docker.stats(&id, Some(options)).next().await?.ok()?;
        let total_ns = stats
            .cpu_stats
            .and_then(|c| c.cpu_usage)
            .and_then(|u| u.total_usage)
            .unwrap_or(0);
        let usage = SessionUsage {
            session_id,
            cpu_millicores: self.cpu_samples.millicores(&id, total_ns, Instant::now()),
            memory_bytes: stats.memory_stats.and_then(|m| m.usage).unwrap_or(0),
        };
        Some((id, usage))
    }
}
