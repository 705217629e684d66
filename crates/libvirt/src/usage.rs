//! Capacity, load and what each VM uses, from libvirt's node and domain
//! info: vCPU time as CPU (the growth of its cumulative nanoseconds since
//! the previous heartbeat), the domain's current memory as memory.

use crate::Shared;
use std::time::Instant;
use streamspace_agent::PlatformResult;
use streamspace_protocol::{Capacity, Cpu, Memory, NodeMetrics, SessionId, SessionUsage};
use virt_sys as sys;

/// One running VM's counters.
struct Measured {
    session_id: SessionId,
    domain: String,
    cpu_ns: u64,
    memory_bytes: u64,
}

impl Shared {
    async fn measure(&self) -> PlatformResult<Vec<Measured>> {
        let hypervisor = self.hypervisor.clone();
        let agent_id = self.agent_id.clone();
        self.hypervisor
            .call(move |conn| {
                let domains = conn
                    .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                    .map_err(|e| hypervisor.error("list running domains", &e))?;
                Ok(domains
                    .iter()
                    .filter_map(|domain| {
                        let metadata = crate::observe::metadata_of(domain).ok()??;
                        if metadata.agent() != Some(agent_id.as_str()) {
                            return None;
                        }
                        let info = domain.get_info().ok()?;
                        Some(Measured {
                            session_id: metadata.session_id()?,
                            domain: domain.get_name().ok()?,
                            cpu_ns: info.cpu_time,
                            memory_bytes: info.memory.saturating_mul(1024),
                        })
                    })
                    .collect())
            })
            .await
    }

    pub(crate) async fn usage(&self) -> PlatformResult<Vec<SessionUsage>> {
        let measured = self.measure().await?;
        let now = Instant::now();
        let usage = measured
            .iter()
            .map(|m| SessionUsage {
                session_id: m.session_id.clone(),
                cpu_millicores: self.cpu_samples.millicores(&m.domain, m.cpu_ns, now),
                memory_bytes: m.memory_bytes,
            })
            .collect();
        self.cpu_samples
            .keep_only(&measured.iter().map(|m| m.domain.clone()).collect());
        Ok(usage)
    }

    pub(crate) async fn capacity(&self) -> PlatformResult<Capacity> {
        let hypervisor = self.hypervisor.clone();
        let node = self
            .hypervisor
            .call(move |conn| {
                conn.get_node_info()
                    .map_err(|e| hypervisor.error("describe the host (node info)", &e))
            })
            .await?;
        let cores = u64::from(node.cpus);
        Ok(Capacity {
            max_sessions: self.options.max_sessions,
            cpu: (cores > 0).then(|| {
                Cpu(cores
                    .saturating_mul(1000)
                    .saturating_mul(u64::from(self.options.cpu_overcommit.max(1))))
            }),
            memory: (node.memory > 0).then(|| Memory(node.memory.saturating_mul(1024))),
            gpus: 0,
            gpu_model: None,
        })
    }

    /// The host's load as the VMs make it: their CPU over the host's
    /// cores, the host's memory in use.
    pub(crate) async fn metrics(&self) -> PlatformResult<NodeMetrics> {
        let measured = self.measure().await?;
        let hypervisor = self.hypervisor.clone();
        let (node, free) = self
            .hypervisor
            .call(move |conn| {
                let failed =
                    |e: &virt::error::Error| hypervisor.error("describe the host (node info)", e);
                let node = conn.get_node_info().map_err(|e| failed(&e))?;
                let free = conn.get_free_memory().map_err(|e| failed(&e))?;
                Ok((node, free))
            })
            .await?;
        let total_ns = measured.iter().map(|m| m.cpu_ns).sum();
        let millicores = self.host_cpu.millicores("all", total_ns, Instant::now());
        let cores = f64::from(node.cpus.max(1));
        let total = node.memory.saturating_mul(1024);
        Ok(NodeMetrics {
            sessions_running: u32::try_from(measured.len()).unwrap_or(u32::MAX),
            cpu_percent: (millicores as f64 / 10.0 / cores).min(100.0),
            memory_used_bytes: total.saturating_sub(free),
            memory_total_bytes: total,
        })
    }
}
