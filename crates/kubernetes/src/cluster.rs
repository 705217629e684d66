//! Capacity, load and health of the cluster: allocatable CPU, memory and
//! NVIDIA GPUs (`nvidia.com/gpu`, offered by NVIDIA's device plugin) of its
//! schedulable nodes, usage from metrics.k8s.io when a metrics server is
//! installed. Both need cluster-wide read access (the optional ClusterRole
//! in deploy/kubernetes/agent/); without it the agent reports session counts
//! only. Healthy means the apiserver answers (`GET /version`, which needs no
//! permission; the runtime bounds it with its deadline).

use crate::Shared;
use crate::names::agent_selector;
use crate::objects::GPU_RESOURCE;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use streamspace_agent::PlatformResult;
use streamspace_protocol::{
    Capacity, Cpu, Memory, NodeMetrics, PlatformHealth, SessionId, SessionUsage, labels,
};

impl Shared {
    pub(crate) async fn health(&self) -> PlatformHealth {
        match self.client.apiserver_version().await {
            Ok(_) => PlatformHealth::healthy(),
            Err(err) => {
                PlatformHealth::degraded(format!("the Kubernetes apiserver does not answer: {err}"))
            }
        }
    }
}

/// Node lists are large on big clusters and allocatable changes slowly.
const NODE_CACHE: Duration = Duration::from_secs(60);
const METRICS_PATH: &str = "/apis/metrics.k8s.io/v1beta1/nodes";

/// Allocatable CPU (millicores), memory (bytes) and GPUs of schedulable
/// nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NodeTotals {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
    /// The first GPU node's model (`nvidia.com/gpu.product`).
    pub gpu_model: Option<String>,
}

/// The label NVIDIA's GPU feature discovery puts the GPU model in.
const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

#[derive(Debug, Default)]
pub(crate) struct ClusterCache {
    nodes: Mutex<Option<(Instant, Option<NodeTotals>)>>,
}

#[derive(Deserialize)]
struct NodeMetricsList {
    #[serde(default)]
    items: Vec<NodeUsage>,
}

#[derive(Deserialize)]
struct NodeUsage {
    #[serde(default)]
    usage: BTreeMap<String, String>,
}

impl Shared {
    pub(crate) async fn capacity(&self) -> Capacity {
        let totals = self.node_totals().await;
        Capacity {
            max_sessions: self.options.max_sessions,
            cpu: totals
                .as_ref()
                .map(|t| Cpu(t.cpu_millis))
                .filter(|c| c.0 > 0),
            memory: (totals.as_ref())
                .map(|t| Memory(t.memory_bytes))
                .filter(|m| m.0 > 0),
            gpus: totals.as_ref().map_or(0, |t| t.gpus),
            gpu_model: totals.and_then(|t| t.gpu_model),
        }
    }

    pub(crate) async fn metrics(&self) -> PlatformResult<NodeMetrics> {
        let running = self.running_sessions().await?;
        let totals = self.node_totals().await.unwrap_or_default();
        let usage = self.node_usage().await;
        let cpu_percent = match usage {
            Some(ref used) if totals.cpu_millis > 0 => {
                used.cpu_millis as f64 * 100.0 / totals.cpu_millis as f64
            }
            _ => 0.0,
        };
        Ok(NodeMetrics {
            sessions_running: running,
            cpu_percent,
            memory_used_bytes: usage.map_or(0, |u| u.memory_bytes),
            memory_total_bytes: totals.memory_bytes,
        })
    }

    /// Sessions with a ready pod.
    async fn running_sessions(&self) -> PlatformResult<u32> {
        let params = ListParams::default().labels(&agent_selector(&self.agent_id));
        let list = self
            .deployments
            .list(&params)
            .await
            .map_err(|e| self.error("list deployments", e))?;
        let running = list
            .items
            .iter()
            .filter(|d| {
                let ready = d.status.as_ref().and_then(|s| s.ready_replicas);
                ready.unwrap_or(0) > 0
            })
            .count();
        Ok(u32::try_from(running).unwrap_or(u32::MAX))
    }

    /// Cached node totals; `None` when nodes cannot be listed (no
    /// ClusterRole), which is remembered as long as a success would be.
    async fn node_totals(&self) -> Option<NodeTotals> {
        {
            let cached = self
                .cluster
                .nodes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((at, totals)) = cached.as_ref()
                && at.elapsed() < NODE_CACHE
            {
                return totals.clone();
            }
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let totals = match nodes.list(&ListParams::default()).await {
            Ok(list) => Some(sum_allocatable(&list.items)),
            Err(e) => {
                tracing::info!(error = %e, "cannot list nodes; capacity reports session counts only");
                None
            }
        };
        *self
            .cluster
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), totals.clone()));
        totals
    }

    /// Summed node usage from metrics.k8s.io, `None` without a metrics
    /// server (404) or the right to read it.
    async fn node_usage(&self) -> Option<NodeTotals> {
        let request = http::Request::get(METRICS_PATH).body(Vec::new()).ok()?;
        match self.client.request::<NodeMetricsList>(request).await {
            Ok(list) => Some(sum_usage(&list.items)),
            Err(e) => {
                tracing::debug!(error = %e, "no node metrics (is metrics-server installed?)");
                None
            }
        }
    }
}

impl Shared {
    /// Each session pod's CPU and memory from metrics.k8s.io; empty without
    /// a metrics server (the agent's Role may read pod metrics in its own
    /// namespace).
    pub(crate) async fn session_usage(&self) -> PlatformResult<Vec<SessionUsage>> {
        let resource = ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.options.namespace, &resource);
        let params = ListParams::default().labels(&agent_selector(&self.agent_id));
        match api.list(&params).await {
            Ok(list) => Ok(list.items.iter().filter_map(pod_usage).collect()),
            Err(e) => {
                tracing::debug!(error = %e, "no pod metrics (is metrics-server installed?)");
                Ok(Vec::new())
            }
        }
    }
}

/// A session pod's usage: the sum over its containers.
fn pod_usage(pod: &DynamicObject) -> Option<SessionUsage> {
    let session_id = pod
        .metadata
        .labels
        .as_ref()?
        .get(labels::SESSION_ID)
        .map(SessionId::from)?;
    let containers = pod.data.get("containers")?.as_array()?;
    let amount = |key: &str| -> f64 {
        containers
            .iter()
            .filter_map(|c| parse_quantity(c.get("usage")?.get(key)?.as_str()?))
            .sum()
    };
    Some(SessionUsage {
        session_id,
        cpu_millicores: (amount("cpu") * 1000.0).round() as u64,
        memory_bytes: amount("memory").round() as u64,
    })
}

/// Allocatable resources of nodes that take new pods: Ready and not
/// cordoned.
fn sum_allocatable(nodes: &[Node]) -> NodeTotals {
    let mut totals = NodeTotals::default();
    for node in nodes {
        let cordoned = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if cordoned || !ready {
            continue;
        }
        let Some(allocatable) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else {
            continue;
        };
        let amount = |key: &str| allocatable.get(key).and_then(|q| parse_quantity(&q.0));
        totals.cpu_millis += amount("cpu").map_or(0, |cores| (cores * 1000.0).round() as u64);
        totals.memory_bytes += amount("memory").map_or(0, |bytes| bytes.round() as u64);
        let gpus = amount(GPU_RESOURCE).map_or(0, |n| n.max(0.0).round() as u32);
        totals.gpus = totals.gpus.saturating_add(gpus);
        if gpus > 0 && totals.gpu_model.is_none() {
            totals.gpu_model = gpu_product(node);
        }
    }
    totals
}

/// The GPU model NVIDIA's GPU feature discovery labels a node with.
fn gpu_product(node: &Node) -> Option<String> {
    let labels = node.metadata.labels.as_ref()?;
    labels.get(GPU_PRODUCT_LABEL).cloned()
}

fn sum_usage(items: &[NodeUsage]) -> NodeTotals {
    let mut totals = NodeTotals::default();
    for item in items {
        let amount = |key: &str| item.usage.get(key).and_then(|q| parse_quantity(q));
        totals.cpu_millis += amount("cpu").map_or(0, |cores| (cores * 1000.0).round() as u64);
        totals.memory_bytes += amount("memory").map_or(0, |bytes| bytes.round() as u64);
    }
    totals
}

/// A Kubernetes quantity (`"3920m"`, `"16318312Ki"`, `"250001n"`, `"1e3"`)
/// as a number of base units (cores, bytes).
pub(crate) fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            10f64.powi(exponent[1..].parse::<i32>().ok()?)
        }
        _ => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_every_notation() {
        assert_eq!(parse_quantity("4"), Some(4.0));
        assert_eq!(parse_quantity("3920m"), Some(3.92));
        assert_eq!(parse_quantity("250000000n"), Some(0.25));
        assert_eq!(
            parse_quantity("16Gi"),
            Some(16.0 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(parse_quantity("1024Ki"), Some(1024.0 * 1024.0));
        assert_eq!(parse_quantity("2G"), Some(2e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("12 cores"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn only_ready_uncordoned_nodes_count() {
        let node = |ready: &str, cordoned: bool| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n"},
                "spec": {"unschedulable": cordoned},
                "status": {
                    "allocatable": {"cpu": "3920m", "memory": "16318312Ki", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": ready}]
                }
            }))
            .expect("node")
        };
        let nodes = [
            node("True", false),
            node("True", false),
            node("False", false),
            node("True", true),
        ];
        assert_eq!(
            sum_allocatable(&nodes),
            NodeTotals {
                cpu_millis: 7840,
                memory_bytes: 2 * 16318312 * 1024,
                ..NodeTotals::default()
            }
        );
    }

    #[test]
    fn gpus_are_the_nvidia_device_plugins_allocatable() {
        let node = |gpus: Option<&str>, product: Option<&str>| -> Node {
            let mut allocatable = serde_json::json!({"cpu": "4", "memory": "1Gi"});
            if let Some(gpus) = gpus {
                allocatable["nvidia.com/gpu"] = gpus.into();
            }
            let labels = product.map(|p| serde_json::json!({"nvidia.com/gpu.product": p}));
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n", "labels": labels},
                "status": {
                    "allocatable": allocatable,
                    "conditions": [{"type": "Ready", "status": "True"}]
                }
            }))
            .expect("node")
        };
        let none = sum_allocatable(&[node(None, None), node(Some("0"), Some("unused"))]);
        assert_eq!((none.gpus, none.gpu_model), (0, None));
        let some = sum_allocatable(&[
            node(None, None),
            node(Some("4"), Some("NVIDIA-A10")),
            node(Some("2"), Some("Tesla-T4")),
        ]);
        assert_eq!(some.gpus, 6);
        assert_eq!(some.gpu_model.as_deref(), Some("NVIDIA-A10"));
    }
}
