//! Serves a plugin route: the axum request is copied into the ABI's request (its strings in
//! one buffer), the plugin's future is awaited with panics contained, and its response is
//! checked and handed back (the body without a copy).

use std::sync::Arc;

use abi_stable::std_types::{RResult, RVec};
use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use plugin_abi::{routes, FfiPair, FfiRequest, FfiResponse, FfiSpan};

use super::{
    errors::{self, FromPlugin},
    route_table::PathParams,
};
use crate::plugins::routes::RouteEntry;

/// What the router needs to call one plugin route.
pub struct PluginRoute {
    pub plugin: String,
    pub entry: RouteEntry,
}

/// `params`: the route's parameters (a path segment that is not UTF-8 once decoded, `%FF`,
/// was answered by the extractor with the same JSON 400 as the SDK's extractors give).
pub async fn serve(route: Arc<PluginRoute>, params: PathParams, request: Request) -> Response {
    let params = params.pairs().unwrap_or_default();
    let (parts, body) = request.into_parts();
    let body = match super::body::read(body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let request = ffi_request(&parts, params, body);
    let outcome = plugin_abi::panics::catch_future(route.entry.handler.handle(request)).await;
    let mut response = match outcome {
        Ok(RResult::ROk(response)) => into_response(&route, response),
        Ok(RResult::RErr(failure)) => {
            let reason = failure.error.message.as_str();
            tracing::error!(
                "plugin {}: {} {} failed: {reason}",
                route.plugin,
                parts.method,
                parts.uri.path()
            );
            let mut response = errors::text(StatusCode::INTERNAL_SERVER_ERROR, reason);
            // Counted as a panic in the metrics, rather than as the handler's error.
            if failure.is_panic() {
                response.extensions_mut().insert(super::front::Panicked);
            }
            response
        }
        Err(report) => {
            tracing::error!(
                "plugin {}: {} {} {report}",
                route.plugin,
                parts.method,
                parts.uri.path()
            );
            let mut response =
                errors::text(StatusCode::INTERNAL_SERVER_ERROR, "plugin handler panicked");
            response.extensions_mut().insert(super::front::Panicked);
            response
        }
    };
    // Only error responses are looked at by `fill_error_bodies`; marking just those spares
    // every other response an extensions map.
    if response.status().is_client_error() || response.status().is_server_error() {
        response.extensions_mut().insert(FromPlugin);
    }
    response
}

/// The request as the plugin sees it: all strings in one buffer (see `FfiSpan`).
fn ffi_request(
    parts: &axum::http::request::Parts,
    params: &[(String, String)],
    body: axum::body::Bytes,
) -> FfiRequest {
    let (method, path, query) = (
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
    );
    let params_len: usize = params.iter().map(|(n, v)| n.len() + v.len()).sum();
    let headers_len: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    // Built as Vecs (memcpy per string), handed over as RVecs without a copy.
    let mut text =
        Vec::with_capacity(method.len() + path.len() + query.len() + params_len + headers_len);
    let method = FfiSpan::push(&mut text, method.as_bytes());
    let path = FfiSpan::push(&mut text, path.as_bytes());
    let query = FfiSpan::push(&mut text, query.as_bytes());
    let params: Vec<FfiPair> = params
        .iter()
        .map(|(name, value)| FfiPair {
            name: FfiSpan::push(&mut text, name.as_bytes()),
            value: FfiSpan::push(&mut text, value.as_bytes()),
        })
        .collect();
    let headers: Vec<FfiPair> = parts
        .headers
        .iter()
        .map(|(name, value)| FfiPair {
            name: FfiSpan::push(&mut text, name.as_str().as_bytes()),
            value: FfiSpan::push(&mut text, value.as_bytes()),
        })
        .collect();
    FfiRequest {
        text: text.into(),
        method,
        path,
        query,
        params: params.into(),
        headers: headers.into(),
        body: RVec::from(Vec::from(body)),
    }
}

fn into_response(route: &PluginRoute, ffi: FfiResponse) -> Response {
    let invalid = |error: String| {
        tracing::error!("plugin {}: {error}", route.plugin);
        let body = super::json_body::ErrorBody { error, field: None };
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
    };
    let status = match StatusCode::from_u16(ffi.status) {
        Ok(status) if routes::RESPONSE_STATUSES.contains(&ffi.status) => status,
        _ => return invalid(routes::invalid_status(ffi.status)),
    };
    // 204 and 304 have no body (RFC 9110): whatever the plugin gave is dropped, and no
    // Content-Length it set goes out.
    let bodiless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    if bodiless && !ffi.body.is_empty() {
        tracing::warn!(
            "plugin {}: a {status} response carries no body; its {} byte(s) dropped",
            route.plugin,
            ffi.body.len()
        );
    }
    // The plugin's buffer becomes the body as it is (`into_vec` would copy it: the RVec was
    // allocated by another library).
    let body = if bodiless {
        Body::empty()
    } else {
        Body::from(Bytes::from_owner(ffi.body))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for pair in ffi.headers.iter() {
        let (name, value) = (pair.name.get(&ffi.text), pair.value.get(&ffi.text));
        let Ok(name) = header_name(name) else {
            return invalid(format!(
                "plugin returned an invalid response: header name {:?}",
                String::from_utf8_lossy(name)
            ));
        };
        let Ok(value) = header_value(value) else {
            return invalid(format!(
                "plugin returned an invalid response: value of header {name}"
            ));
        };
        if bodiless && name == axum::http::header::CONTENT_LENGTH {
            continue;
        }
        headers.append(name, value);
    }
    response
}

/// A header name; the one the SDK sets on every response it builds without parsing it.
fn header_name(name: &[u8]) -> Result<HeaderName, axum::http::header::InvalidHeaderName> {
    match name {
        b"content-type" => Ok(axum::http::header::CONTENT_TYPE),
        _ => HeaderName::from_bytes(name),
    }
}

/// A header value; the SDK's own content types without a copy.
fn header_value(value: &[u8]) -> Result<HeaderValue, axum::http::header::InvalidHeaderValue> {
    const STATIC: [&str; 2] = ["application/json", "text/plain; charset=utf-8"];
    match STATIC.iter().find(|known| known.as_bytes() == value) {
        Some(known) => Ok(HeaderValue::from_static(known)),
        None => HeaderValue::from_bytes(value),
    }
}
