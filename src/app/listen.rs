//! `--listen ADDR`: a tiny HTTP/1.1 server on tokio for `/healthz` and Prometheus `/metrics`.
//!
//! Two read-only endpoints do not need an HTTP framework: each connection sends one request
//! (headers capped at 8 KiB, read within 5 s), gets one response with a `Content-Length`, and
//! is closed. Anything else is 404 (unknown path) or 405 (a method other than GET or HEAD).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::verify::metrics::Metrics;

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics the server shows, shared with the loop that updates them.
pub type Shared = Arc<Mutex<Metrics>>;

/// Bind `addr` (port 0 picks a free port; the bound address is returned).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serve until the task is dropped; each connection on its own task.
pub async fn serve(listener: TcpListener, metrics: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &metrics).await {
                        tracing::debug!("a /metrics client went away: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, usually: wait instead of spinning.
                tracing::warn!("--listen: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Read one request head and answer it.
async fn answer(mut stream: TcpStream, metrics: &Shared) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return respond(&mut stream, 408, "text/plain", "request timeout\n", false).await,
    };
    let Some(head) = head else {
        return respond(&mut stream, 400, "text/plain", "bad request\n", false).await;
    };
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, 405, "text/plain", "only GET and HEAD\n", with_body).await;
    }
    let (status, kind, body) = route(path, metrics);
    respond(&mut stream, status, kind, &body, with_body).await
}

/// What a path answers.
fn route(path: &str, metrics: &Shared) -> (u16, &'static str, String) {
    let metrics = metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match path {
        "/healthz" => match metrics.health(jiff::Timestamp::now()) {
            Ok(()) => (200, "text/plain", "ok\n".into()),
            Err(why) => (503, "text/plain", format!("{why}\n")),
        },
        "/metrics" => (200, METRICS_TYPE, metrics.render()),
        _ => (404, "text/plain", "not found: try /healthz or /metrics\n".into()),
    }
}

/// The request head up to the blank line; `None` when it is too long or not text.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8(head).ok())
}

async fn respond(stream: &mut TcpStream, status: u16, kind: &str, body: &str, with_body: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
