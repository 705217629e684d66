//! A load balancer in miniature for the tests with several replicas: each
//! connection goes to the first backend that accepts it, as HAProxy's
//! `balance first` with `option redispatch` does. A draining replica closes
//! its listener, so the next connection (an agent's reconnect, a viewer's)
//! goes to the next replica: what an operator's load balancer does, without
//! its health-check intervals in the way of the test's 2 s.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// Listens on a loopback port until dropped; returns its URL.
pub struct Front {
    pub url: Url,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Front {
    /// In front of `backends`, tried in order for every connection.
    pub async fn start(backends: &[&Url]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
        let backends = backends
            .iter()
            .map(|url| addr(url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, backends.clone()));
            }
        });
        Ok(Self { url, task })
    }
}

fn addr(url: &Url) -> anyhow::Result<SocketAddr> {
    url.socket_addrs(|| None)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{url} has no address"))
}

async fn forward(mut client: TcpStream, backends: Vec<SocketAddr>) {
    for backend in backends {
        if let Ok(mut server) = TcpStream::connect(backend).await {
            let _ = server.set_nodelay(true);
            let _ = client.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            return;
        }
    }
}
