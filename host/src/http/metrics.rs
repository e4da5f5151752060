//! `GET /{name}/_service/metrics` and `GET /metrics`: the process's metrics in the
//! Prometheus text format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for
//! `application/openmetrics-text`.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};

use crate::metrics::{Format, Metrics};

/// The path of the unprefixed route, where scrapers look by default.
pub const UNPREFIXED: &str = "/metrics";
/// The path of the prefixed route, under `/{name}`.
pub const PREFIXED: &str = "/_service/metrics";

/// The handler, serving the service's registry.
pub async fn metrics(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    let body = metrics.encode(format);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}
