//! The `/metrics` endpoint: a small HTTP server over a finished registry.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What the handler needs.
#[derive(Clone)]
struct Endpoint {
    registry: Arc<Registry>,
}

/// The content type of the OpenMetrics text format, which Prometheus
/// scrapes (and which is the Prometheus text format plus `# EOF`).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bind `addr` (host:port) and serve `registry` at `GET /metrics` until
/// `stop`; prints one startup line. Returns the server's task, which ends when `stop` is cancelled.
pub async fn serve(
    addr: &str,
    registry: Registry,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}"))?;
    eprintln!(
        "storefs: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    let state = Endpoint {
        registry: Arc::new(registry),
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("metrics server")
    }))
}

async fn scrape(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &endpoint.registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding the metrics failed: {e}\n"),
        ),
    }
}
