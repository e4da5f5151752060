//! `GET /{name}/_service/metrics` and `GET /metrics`: the process's metrics in the
//! Prometheus text format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for
//! `application/openmetrics-text`.

use axum::{
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};

use crate::metrics::{self, Format};

/// The path of the unprefixed route, where scrapers look by default.
pub const UNPREFIXED: &str = "/metrics";
/// The path of the prefixed route, under `/{name}`.
pub const PREFIXED: &str = "/_service/metrics";

pub async fn metrics(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    let body = metrics::global().encode(format);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}
