//! Serves a plugin route: the axum request is copied into the ABI's request, the plugin's
//! future is awaited with panics contained, and its response is checked and copied back.

use std::sync::Arc;

use abi_stable::std_types::{RResult, RString, RVec, Tuple2};
use axum::{
    body::Body,
    extract::{OriginalUri, RawPathParams, Request},
    http::{HeaderName, HeaderValue, StatusCode},
    response::Response,
};
use futures::FutureExt;
use plugin_api::abi::{FfiRequest, FfiResponse};

use super::errors::{self, FromPlugin};
use crate::plugins::routes::RouteEntry;

/// What the router needs to call one plugin route.
pub struct PluginRoute {
    pub plugin: String,
    pub entry: RouteEntry,
}

pub async fn serve(route: Arc<PluginRoute>, params: RawPathParams, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    // Nesting under the service prefix strips it from the URI; plugins see the full path.
    if let Some(OriginalUri(uri)) = parts.extensions.remove::<OriginalUri>() {
        parts.uri = uri;
    }
    // The body-limit layer makes this fail past --max-body-size.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let too_large = error_chain(&err).any(|e| e.is::<http_body_util::LengthLimitError>());
            return if too_large {
                errors::text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    errors::reason(StatusCode::PAYLOAD_TOO_LARGE),
                )
            } else {
                errors::text(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read request body: {err}"),
                )
            };
        }
    };
    let request = FfiRequest {
        method: parts.method.as_str().into(),
        path: parts.uri.path().into(),
        query: parts.uri.query().unwrap_or("").into(),
        params: params
            .iter()
            .map(|(name, value)| Tuple2(RString::from(name), RString::from(value)))
            .collect(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| Tuple2(RString::from(name.as_str()), RVec::from(value.as_bytes())))
            .collect(),
        body: RVec::from(body.as_ref()),
    };
    let outcome = std::panic::AssertUnwindSafe(route.entry.handler.handle(request))
        .catch_unwind()
        .await;
    let mut response = match outcome {
        Ok(RResult::ROk(response)) => into_response(&route, response),
        Ok(RResult::RErr(reason)) => {
            tracing::error!(
                "plugin {}: {} {} failed: {reason}",
                route.plugin,
                parts.method,
                parts.uri.path()
            );
            errors::text(StatusCode::INTERNAL_SERVER_ERROR, &reason)
        }
        Err(_) => {
            tracing::error!(
                "plugin {}: {} {} panicked",
                route.plugin,
                parts.method,
                parts.uri.path()
            );
            errors::text(StatusCode::INTERNAL_SERVER_ERROR, "plugin handler panicked")
        }
    };
    response.extensions_mut().insert(FromPlugin);
    response
}

fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

fn into_response(route: &PluginRoute, ffi: FfiResponse) -> Response {
    let invalid = |what: String| {
        tracing::error!("plugin {}: invalid response: {what}", route.plugin);
        errors::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("plugin returned an invalid response: {what}"),
        )
    };
    let Ok(status) = StatusCode::from_u16(ffi.status) else {
        return invalid(format!("status {}", ffi.status));
    };
    let mut response = Response::new(Body::from(ffi.body.into_vec()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for Tuple2(name, value) in ffi.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return invalid(format!("header name {name:?}"));
        };
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            return invalid(format!("value of header {name}"));
        };
        headers.append(name, value);
    }
    response
}
