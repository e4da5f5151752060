//! Access-log lines in aiohttp's format, written only with `--debug` (the original muted
//! `aiohttp.access` otherwise):
//! `127.0.0.1 [28/Nov/2026:03:02:56 +0000] "GET /x/_service/status HTTP/1.1" 200 16 "-" "curl/7.88.1"`.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request},
    http::header,
    response::Response,
};
use time::{macros::format_description, OffsetDateTime};

/// What the access line needs from the request, taken before the request is handed on.
pub struct Entry {
    peer: String,
    line: String,
    referer: String,
    agent: String,
}

impl Entry {
    pub fn of(request: &Request) -> Self {
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
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        Entry {
            peer,
            line,
            referer: header(header::REFERER),
            agent: header(header::USER_AGENT),
        }
    }

    /// Writes the line for the final `response`.
    pub fn log(self, response: &Response) {
        let size = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let stamp = OffsetDateTime::now_utc()
            .format(format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            ))
            .unwrap_or_default();
        let Entry {
            peer,
            line,
            referer,
            agent,
        } = self;
        tracing::info!(
            target: crate::logging::ACCESS_TARGET,
            "{peer} [{stamp}] \"{line}\" {} {size} \"{referer}\" \"{agent}\"",
            response.status().as_u16()
        );
    }
}
