//! The admin listener (`[admin] listen = "127.0.0.1:9464"`, off unless configured): what a
//! monitoring system asks a host.
//!
//! - `GET /metrics`: every counter of [`crate::metrics`], Prometheus text format;
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness);
//! - `GET /readyz`: 200 when connected to the broker and every queue has a live consumer; 503
//!   otherwise, the body naming each queue without one (readiness, see [`crate::health`]).
//!
//! HTTP/1.1 by hyper (the HTTP implementation under most of Rust's servers); a connection must
//! send its request head within a few seconds and at most [`MAX_CONNECTIONS`] are served at once,
//! so a stuck or hostile scraper cannot pile up tasks.

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Admin connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a connection may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open at all.
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// Binds the admin address: failing to is a configuration error, reported at start.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("[admin] listen: cannot listen on {listen}"))
}

/// Serves the admin endpoints on `listener` until the process ends.
pub fn spawn(listener: TcpListener) {
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    tracing::info!("admin listener on http://{address} (/metrics, /healthz, /readyz)");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("admin listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .keep_alive(true);
                let conn = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
                match tokio::time::timeout(CONNECTION_LIMIT, conn).await {
                    Ok(Ok(())) | Err(_) => {}
                    Ok(Err(e)) => tracing::debug!("admin connection: {e}"),
                }
                drop(permit);
            });
        }
    });
}

async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = route(request.method(), request.uri().path());
    let response = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)));
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What each path answers: a plain function of the request line and the host's state.
pub fn route(method: &Method, path: &str) -> (StatusCode, &'static str, String) {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET is served\n".into(),
        );
    }
    match path {
        "/metrics" => (StatusCode::OK, PROMETHEUS, crate::metrics::get().encode()),
        "/healthz" => (StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => match crate::health::get().ready() {
            Ok(queues) => (
                StatusCode::OK,
                TEXT,
                format!("ready: {queues} queues consumed\n"),
            ),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready:\n{why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}
