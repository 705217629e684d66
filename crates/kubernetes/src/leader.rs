//! Leader election on a coordination.k8s.io Lease, so two agent replicas can
//! run with one active: the standby waits until the leader's lease expires.
//!
//! The rules follow client-go's: a candidate judges expiry by *its own*
//! clock, from when it last saw the lease record change (never by comparing
//! the holder's timestamps with its clock, so clock skew does not matter);
//! every write carries the resourceVersion it read, so two candidates
//! cannot both win. The leader renews every `retry_period` and gives up
//! (cancels [`Leadership::lost`]) if it could not renew for `renew_deadline`,
//! which is shorter than `lease_duration`: it stops acting before anyone
//! else may start.

use crate::KubernetesError;
use crate::error::is_conflict;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout_at};
use tokio_util::sync::CancellationToken;

/// How long a lease lasts, how long the leader keeps trying to renew, and
/// how often anyone tries (client-go's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate for a Lease.
#[derive(Clone)]
pub struct LeaderElector {
    leases: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timing: LeaseTiming,
}

/// The last lease record seen, and when (by our clock) it last changed.
struct Seen {
    record: Option<(Option<String>, Option<MicroTime>)>,
    at: Instant,
}

/// Held leadership; renewed in the background until released or lost.
pub struct Leadership {
    lost: CancellationToken,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Cancelled when the lease could not be renewed or someone else holds
    /// it: the holder must stop acting at once.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and frees the lease, so a standby takes over without
    /// waiting for it to expire.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElector {
            leases: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing: LeaseTiming::default(),
        }
    }

    pub fn with_timing(mut self, timing: LeaseTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Waits until this candidate holds the lease (`None` if `shutdown`
    /// comes first). A refusal by RBAC is returned: waiting cannot fix it.
    pub async fn acquire(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Leadership>, KubernetesError> {
        let mut seen = Seen {
            record: None,
            at: Instant::now(),
        };
        let mut waiting_logged = false;
        loop {
            match self.try_acquire_or_renew(&mut seen).await {
                Ok(true) => break,
                Ok(false) if !waiting_logged => {
                    tracing::info!(lease = %self.name, "another agent replica leads; standing by");
                    waiting_logged = true;
                }
                Ok(false) => {}
                Err(e) if crate::error::status_of(&e) == Some(403) => {
                    return Err(KubernetesError::new(
                        &self.namespace,
                        format!("take lease {}", self.name),
                        e,
                    ));
                }
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "cannot read the lease"),
            }
            tokio::select! {
                _ = sleep(self.timing.retry_period) => {}
                _ = shutdown.cancelled() => return Ok(None),
            }
        }
        tracing::info!(lease = %self.name, identity = %self.identity, "leading");
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.clone().keep(seen, lost.clone(), stop.clone()));
        Ok(Some(Leadership { lost, stop, task }))
    }

    /// Renews until stopped (then releases) or until renewal fails for
    /// longer than the renew deadline (then reports the loss).
    async fn keep(self, mut seen: Seen, lost: CancellationToken, stop: CancellationToken) {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = sleep(self.timing.retry_period) => {}
                _ = stop.cancelled() => {
                    self.release().await;
                    return;
                }
            }
            // A hung request must not keep us leading past the deadline.
            let deadline = renewed + self.timing.renew_deadline;
            match timeout_at(deadline, self.try_acquire_or_renew(&mut seen)).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!(lease = %self.name, "another replica took the lease");
                    lost.cancel();
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "cannot renew the lease")
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= self.timing.renew_deadline {
                tracing::error!(lease = %self.name, "could not renew the lease in time");
                lost.cancel();
                return;
            }
        }
    }

    /// Takes a free, expired or own lease; `false` while someone else holds
    /// it or won a race for it.
    async fn try_acquire_or_renew(&self, seen: &mut Seen) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = Some((holder.clone(), spec.renew_time.clone()));
        if seen.record != record {
            seen.record = record;
            seen.at = Instant::now();
        }
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timing.lease_duration, Duration::from_secs);
        if holder.is_some() && !ours && seen.at.elapsed() < duration {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(if ours {
            self.spec(spec.acquire_time.unwrap_or(now.clone()), now, transitions)
        } else {
            self.spec(now.clone(), now, transitions.saturating_add(1))
        });
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Frees the lease if we still hold it (best effort: if this fails the
    /// standby waits for expiry instead).
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the lease"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "cannot release the lease"),
        }
    }
}
