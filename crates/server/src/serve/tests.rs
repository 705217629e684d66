//! One hyper connection under the limits, on an in-memory pipe whose small
//! buffer makes a client that does not read visible at once.

use super::*;
use crate::config::HttpLimits;
use crate::metrics::{HttpMetrics, ReasonLabel};
use axum::body::Body;
use axum::routing::{get, post};
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::DuplexStream;

const BODY: usize = 1 << 20;
/// Far longer than any limit here.
const GENEROUS: Duration = Duration::from_secs(20);

/// A connection serving a 1 MiB response at `/`, and the client's end.
fn connection(idle_timeout: Duration) -> (Connection, DuplexStream, DuplexStream) {
    let router = Router::new().route("/", get(|| async { vec![7u8; BODY] }));
    connection_to(router, idle_timeout, Duration::from_secs(30))
}

fn connection_to(
    router: Router,
    idle_timeout: Duration,
    body_read_timeout: Duration,
) -> (Connection, DuplexStream, DuplexStream) {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(30),
        body_read_timeout,
        idle_timeout,
        max_connections: 4,
    };
    let connections = Connections::new(limits, HttpMetrics::default());
    let slot = connections.admit().expect("room");
    let connection = Connection {
        http: Arc::new(http1()),
        slot,
        connections,
        router,
        shutdown: CancellationToken::new(),
        peer: ([127, 0, 0, 1], 1).into(),
    };
    let (client, server) = tokio::io::duplex(4096);
    (connection, client, server)
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";

/// Sends `request` and serves the connection until it ends, which must be
/// within the bound.
async fn serve_one(
    connection: Connection,
    client: &mut DuplexStream,
    server: DuplexStream,
    request: &[u8],
) -> Result<(), Stop> {
    client.write_all(request).await.expect("request");
    tokio::time::timeout(GENEROUS, connection.http(server, false))
        .await
        .expect("closed within the bound")
}

#[tokio::test]
async fn a_client_that_leaves_a_response_unread_is_closed() {
    let (connection, mut client, server) = connection(Duration::from_millis(300));
    let ended = serve_one(connection, &mut client, server, REQUEST).await;
    assert_eq!(ended, Err(Stop::WriteStall));
}

#[tokio::test]
async fn a_slow_reader_that_keeps_reading_gets_everything() {
    let (connection, mut client, server) = connection(Duration::from_secs(1));
    client.write_all(REQUEST).await.expect("request");
    let reader = tokio::spawn(async move {
        let mut got = 0;
        let mut buf = [0u8; 8192];
        // Each pause is shorter than the idle timeout, all of them together
        // far longer; the end comes when the server closes.
        loop {
            let n = client.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got += n;
            if got % (32 * 1024) < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        got
    });
    let ended = tokio::time::timeout(GENEROUS, connection.http(server, false))
        .await
        .expect("closed within the bound");
    // Then idle, which the idle timeout ends.
    assert_eq!(ended, Err(Stop::IdleTimeout));
    let received = reader.await.expect("reader");
    assert!(received > BODY, "headers and the whole body: {received}");
}

/// A request that announces `length` bytes of body and sends one.
fn stalled_post(length: usize) -> String {
    format!("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: {length}\r\n\r\nx")
}

/// Sends `router` a request whose body stops after one byte, with a body-read
/// timeout of 300 ms: how the connection ended, the client's end, the
/// counters.
async fn stall_a_body(router: Router) -> (Result<(), Stop>, DuplexStream, HttpMetrics) {
    let (connection, mut client, server) =
        connection_to(router, Duration::from_secs(30), Duration::from_millis(300));
    let metrics = connection.connections.metrics.clone();
    let request = stalled_post(100);
    let ended = serve_one(connection, &mut client, server, request.as_bytes()).await;
    (ended, client, metrics)
}

/// Everything the client end receives until the server closes it.
async fn read_to_end(mut client: DuplexStream) -> String {
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    // What `ApiJson` does with a body that runs out of time.
    let router = Router::new().route(
        "/",
        post(|body: Body| async move {
            match body.collect().await {
                Ok(_) => StatusCode::OK,
                Err(err) => {
                    let timed_out = std::error::Error::source(&err)
                        .is_some_and(|e| e.downcast_ref::<BodyTimedOut>().is_some());
                    assert!(timed_out, "{err:?}");
                    StatusCode::REQUEST_TIMEOUT
                }
            }
        }),
    );
    let (ended, client, metrics) = stall_a_body(router).await;
    assert_eq!(ended, Ok(()));
    let answer = read_to_end(client).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let late = metrics.dropped.get_or_create(&ReasonLabel {
        reason: "body_timeout",
    });
    assert_eq!(late.get(), 1);
}

#[tokio::test]
async fn a_body_nobody_reads_still_runs_out() {
    // A handler that holds the body without reading it, waiting forever.
    let router = Router::new().route(
        "/",
        post(|body: Body| async move {
            std::future::pending::<()>().await;
            drop(body);
        }),
    );
    let (ended, _, _) = stall_a_body(router).await;
    assert_eq!(ended, Err(Stop::BodyTimeout));
}

/// A web app's upload may take longer than the body-read timeout in all,
/// as long as no gap between its pieces does; one that stops still ends.
#[tokio::test]
async fn an_app_upload_is_timed_by_its_gaps() {
    let router = Router::new().route(
        "/apps/{*rest}",
        post(|body: Body| async move {
            match body.collect().await {
                Ok(all) => (StatusCode::OK, all.to_bytes().len().to_string()),
                Err(_) => (StatusCode::REQUEST_TIMEOUT, String::new()),
            }
        }),
    );
    let limit = Duration::from_millis(300);
    let (connection, mut client, server) = connection_to(router.clone(), GENEROUS, limit);
    let pieces = 8;
    let head =
        format!("POST /apps/s/80/up HTTP/1.1\r\nhost: test\r\ncontent-length: {pieces}\r\n\r\n");
    let serving = tokio::spawn(async move { connection.http(server, false).await });
    client.write_all(head.as_bytes()).await.expect("head");
    // 8 pieces 100 ms apart: 800 ms in all, more than twice the limit.
    for _ in 0..pieces {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"x").await.expect("piece");
    }
    let mut answer = [0u8; 12];
    client.read_exact(&mut answer).await.expect("answer");
    assert_eq!(
        &answer,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&answer)
    );
    serving.abort();

    let (connection, mut client, server) = connection_to(router, GENEROUS, limit);
    let stalled = "POST /apps/s/80/up HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\nx";
    let ended = serve_one(connection, &mut client, server, stalled.as_bytes()).await;
    assert_eq!(ended, Ok(()));
    assert!(read_to_end(client).await.starts_with("HTTP/1.1 408"));
}

#[tokio::test]
async fn a_request_head_over_the_buffer_is_refused() {
    let (connection, mut client, server) = connection(Duration::from_secs(30));
    let answer = tokio::spawn(async move {
        // Headers of 70 KB: under hyper's default buffer, over ours. The
        // server may stop reading once it has seen enough.
        let big = format!(
            "GET / HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n",
            "a".repeat(70_000)
        );
        let _ = client.write_all(big.as_bytes()).await;
        read_to_end(client).await
    });
    let ended = tokio::time::timeout(GENEROUS, connection.http(server, false))
        .await
        .expect("closed within the bound");
    assert_eq!(ended, Ok(()));
    let answer = answer.await.expect("client");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
}
