//! A platform for the runtime's own tests: sessions "run" at once, the VNC
//! server answers only once `vnc_up` is set (or, with `web_status` set, a
//! web app answers every request with that status), usage and the health check can be
//! made to hang like a slow engine, a pull can be scripted (`pull_steps`, `pull_fails`), and it remembers which sessions exist and the order of
//! the calls that changed them.

use crate::platform::{Platform, PlatformError, PlatformResult, SessionStream};
use crate::pulls::{PullProgress, Pulled};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use streamspace_protocol::{
    Capabilities, Capacity, NodeMetrics, Phase, PlatformHealth, RegistryAuth, SessionId,
    SessionReport, SessionSpec, SessionUsage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
pub(crate) struct FakePlatform {
    pub vnc_up: AtomicBool,
    /// Non-zero: the session's ports are a web app answering this status.
    pub web_status: AtomicU16,
    pub usage_hangs: AtomicBool,
    /// The health check never answers, like a frozen engine.
    pub health_hangs: AtomicBool,
    /// `start` panics, like a platform with a bug.
    pub start_panics: AtomicBool,
    /// Sessions started and not terminated since.
    pub existing: Mutex<HashSet<SessionId>>,
    /// `(session, operation)` in the order the platform was asked.
    pub calls: Mutex<Vec<(SessionId, &'static str)>>,
    /// A pull reports these steps (none: the image is present)...
    pub pull_steps: Mutex<Vec<PullProgress>>,
    /// ... then fails with this, if set.
    pub pull_fails: Mutex<Option<String>>,
    /// A pull never ends, like one from a registry that trickles.
    pub pull_hangs: AtomicBool,
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
    async fn pull(
        &self,
        _image: &str,
        _auth: Option<&RegistryAuth>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> PlatformResult<Pulled> {
        if self.pull_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let steps = self
            .pull_steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for step in &steps {
            progress(*step);
        }
        let fails = self
            .pull_fails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match fails {
            Some(message) => Err(PlatformError::Invalid(message)),
            None if steps.is_empty() => Ok(Pulled::Present),
            None => Ok(Pulled::Pulled),
        }
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
        let (mut server, client) = tokio::io::duplex(1024);
        let status = self.web_status.load(Ordering::SeqCst);
        if status == 0 {
            let _ = server.write_all(b"RFB 003.008\n").await;
            tokio::spawn(async move { server });
        } else {
            tokio::spawn(async move {
                let mut request = [0u8; 512];
                let _ = server.read(&mut request).await;
                let answer = format!("HTTP/1.1 {status} Fake\r\nContent-Length: 0\r\n\r\n");
                let _ = server.write_all(answer.as_bytes()).await;
            });
        }
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
    async fn health(&self) -> PlatformHealth {
        if self.health_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        PlatformHealth::healthy()
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
