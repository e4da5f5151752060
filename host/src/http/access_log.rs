//! Access-log lines in aiohttp's format, written only with `--debug` (the original muted
//! `aiohttp.access` otherwise):
//! `127.0.0.1 [28/Nov/2026:03:02:56 +0000] "GET /x/_service/status HTTP/1.1" 200 16 "-" "curl/7.88.1"`.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request},
    http::header,
    middleware::Next,
    response::Response,
};
use time::{macros::format_description, OffsetDateTime};

pub async fn access_log(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |info| info.0.ip().to_string());
    let line = format!(
        "{} {} {:?}",
        request.method(),
        request.uri(),
        request.version()
    );
    let (referer, agent) = {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        (header(header::REFERER), header(header::USER_AGENT))
    };
    let response = next.run(request).await;
    let size = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let stamp = OffsetDateTime::now_utc()
        .format(format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        ))
        .unwrap_or_default();
    tracing::info!(
        target: crate::logging::ACCESS_TARGET,
        "{peer} [{stamp}] \"{line}\" {} {size} \"{referer}\" \"{agent}\"",
        response.status().as_u16()
    );
    response
}
