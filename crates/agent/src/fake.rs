//! A platform for the runtime's own tests: sessions "run" at once, the VNC
//! server answers only once `vnc_up` is set, usage can be made to hang like
//! a slow engine, and it remembers which sessions exist and the order of
//! the calls that changed them.

use crate::platform::{Platform, PlatformError, PlatformResult, SessionStream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use streamspace_protocol::{
    Capabilities, Capacity, NodeMetrics, Phase, SessionId, SessionReport, SessionSpec, SessionUsage,
};
use tokio::io::AsyncWriteExt;

#[derive(Default)]
pub(crate) struct FakePlatform {
    pub vnc_up: AtomicBool,
    pub usage_hangs: AtomicBool,
    /// `start` panics, like a platform with a bug.
    pub start_panics: AtomicBool,
    /// Sessions started and not terminated since.
    pub existing: Mutex<HashSet<SessionId>>,
    /// `(session, operation)` in the order the platform was asked.
    pub calls: Mutex<Vec<(SessionId, &'static str)>>,
}

impl FakePlatform {
    fn record(&self, id: &SessionId, operation: &'static str) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.push((id.clone(), operation));
        let mut existing = self.existing.lock().unwrap_or_else(|p| p.into_inner());
        match operation {
            "start" => existing.insert(id.clone()),
            "terminate" => existing.remove(id),
            _ => false,
        };
    }
}

#[async_trait]
impl Platform for FakePlatform {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn capacity(&self) -> PlatformResult<Capacity> {
        Ok(Capacity::default())
    }
    async fn start(&self, spec: &SessionSpec) -> PlatformResult<SessionReport> {
        if self.start_panics.load(Ordering::SeqCst) {
            panic!("the fake platform's start has a bug");
        }
        self.record(&spec.session_id, "start");
        Ok(SessionReport::new(&spec.session_id, Phase::Running))
    }
    async fn hibernate(&self, id: &SessionId) -> PlatformResult<SessionReport> {
        self.record(id, "hibernate");
        Ok(SessionReport::new(id, Phase::Hibernated))
    }
    async fn wake(&self, id: &SessionId) -> PlatformResult<SessionReport> {
        self.record(id, "wake");
        Ok(SessionReport::new(id, Phase::Running))
    }
    async fn terminate(&self, id: &SessionId) -> PlatformResult<SessionReport> {
        self.record(id, "terminate");
        Ok(SessionReport::new(id, Phase::Terminated))
    }
    async fn status(&self, id: &SessionId) -> PlatformResult<SessionReport> {
        Ok(SessionReport::new(id, Phase::Running))
    }
    async fn inventory(&self) -> PlatformResult<Vec<SessionReport>> {
        Ok(Vec::new())
    }
    async fn connect(&self, _: &SessionId, _: u16) -> PlatformResult<Box<dyn SessionStream>> {
        if !self.vnc_up.load(Ordering::SeqCst) {
            return Err(PlatformError::Unavailable("connection refused".into()));
        }
        let (mut server, client) = tokio::io::duplex(64);
        let _ = server.write_all(b"RFB 003.008\n").await;
        tokio::spawn(async move { server });
        Ok(Box::new(client))
    }
    async fn logs(
        &self,
        _: &SessionId,
        _: Option<u32>,
        _: bool,
    ) -> PlatformResult<BoxStream<'static, PlatformResult<Bytes>>> {
        Ok(Box::pin(futures::stream::empty()))
    }
    async fn metrics(&self) -> PlatformResult<NodeMetrics> {
        Ok(NodeMetrics::default())
    }
    async fn usage(&self) -> PlatformResult<Vec<SessionUsage>> {
        if self.usage_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(Vec::new())
    }
    fn watch(&self) -> BoxStream<'static, SessionReport> {
        Box::pin(futures::stream::empty())
    }
}
