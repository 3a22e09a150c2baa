//! `--metrics-listen`: Prometheus' text format at `GET /metrics` over plain
//! HTTP/1.1, on its own listener, so a scrape never competes with the gRPC
//! port's limits and the port can be firewalled apart. Anything else is 404
//! (405 for another method on `/metrics`).

use std::sync::Arc;

use tokio::net::TcpListener;

use super::http1::{self, reply, text, Reply};
use crate::app::App;

/// The content type of the text format prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, app: App) {
    let app = Arc::new(app);
    http1::serve("metrics", listener, None, move |request| {
        let app = Arc::clone(&app);
        async move { answer(&app, &request) }
    })
    .await;
}

fn answer<B>(app: &App, request: &http::Request<B>) -> Reply {
    if request.uri().path() != "/metrics" {
        return text(
            http::StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics",
        );
    }
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return text(http::StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics");
    }
    reply(
        http::StatusCode::OK,
        CONTENT_TYPE,
        app.scrape().into_bytes(),
    )
}
