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
use plugin_abi::{content_type, routes, FfiPair, FfiRequest, FfiResponse, FfiSpan};

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

/// The route's parameters are the request's [`PathParams`]; one that is not UTF-8 once
/// decoded (`%FF`) is answered with the same JSON 400 as the SDK's extractors give.
pub async fn serve(route: Arc<PluginRoute>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let params = parts.extensions.remove::<PathParams>().unwrap_or_default();
    let params = match params.pairs() {
        Ok(pairs) => pairs,
        Err(bad) => return bad.into_response(),
    };
    let body = match super::body::read(body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let request = ffi_request(&parts, params, body);
    let outcome = plugin_abi::panics::catch_future(route.entry.handler.handle(request)).await;
    let mut response = match outcome {
        Ok(RResult::ROk(response)) => into_response(&route.plugin, response),
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

/// Bytes reserved per request header (name and value) in a request's `text` buffer.
const HEADER_BYTES_GUESS: usize = 48;

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
    // Room for typical headers, guessed rather than summed: a second walk over the header
    // map costs more than the rare regrowth.
    let headers_guess = HEADER_BYTES_GUESS * parts.headers.len();
    // Built as Vecs (memcpy per string), handed over as RVecs without a copy.
    let mut text =
        Vec::with_capacity(method.len() + path.len() + query.len() + params_len + headers_guess);
    let method = FfiSpan::push(&mut text, method.as_bytes());
    let path = FfiSpan::push(&mut text, path.as_bytes());
    let query = FfiSpan::push(&mut text, query.as_bytes());
    let mut pairs = Vec::with_capacity(params.len() + parts.headers.len());
    let named = params
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    for (name, value) in named.chain(headers) {
        pairs.push(FfiPair {
            name: FfiSpan::push(&mut text, name),
            value: FfiSpan::push(&mut text, value),
        });
    }
    FfiRequest {
        text: text.into(),
        method,
        path,
        query,
        pairs: pairs.into(),
        params: u32::try_from(params.len()).unwrap_or(u32::MAX),
        body: RVec::from(Vec::from(body)),
    }
}

/// The plugin's response as the host sends it; `plugin` names it in the log.
fn into_response(plugin: &str, ffi: FfiResponse) -> Response {
    let invalid = |error: String| {
        tracing::error!("plugin {plugin}: {error}");
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
            plugin,
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
    let content_type = match own_content_type(ffi.content_type) {
        Ok(value) => value,
        Err(code) => return invalid(routes::invalid_content_type(code)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(value) = content_type {
        headers.insert(axum::http::header::CONTENT_TYPE, value);
    }
    for pair in ffi.headers.iter() {
        let (name, value) = (pair.name.get(&ffi.text), pair.value.get(&ffi.text));
        let Ok(name) = HeaderName::from_bytes(name) else {
            return invalid(format!(
                "plugin returned an invalid response: header name {:?}",
                String::from_utf8_lossy(name)
            ));
        };
        let Ok(value) = HeaderValue::from_bytes(value) else {
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

/// The header value of a response's own content type (`content_type`'s code), made at
/// compile time; `Err` with a code this version does not know.
fn own_content_type(code: u8) -> Result<Option<HeaderValue>, u8> {
    const fn header(code: u8) -> HeaderValue {
        match content_type::value(code) {
            Ok(Some(value)) => HeaderValue::from_static(value),
            _ => panic!("not a content type"),
        }
    }
    const JSON: HeaderValue = header(content_type::JSON);
    const TEXT: HeaderValue = header(content_type::TEXT);
    match code {
        content_type::NONE => Ok(None),
        content_type::JSON => Ok(Some(JSON)),
        content_type::TEXT => Ok(Some(TEXT)),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    /// A response as a plugin hands it over: its `headers` as (name, value) pairs.
    fn ffi(status: u16, content_type: u8, headers: &[(&str, &str)], body: &str) -> FfiResponse {
        let mut text = Vec::new();
        let headers: Vec<FfiPair> = headers
            .iter()
            .map(|(name, value)| FfiPair {
                name: FfiSpan::push(&mut text, name.as_bytes()),
                value: FfiSpan::push(&mut text, value.as_bytes()),
            })
            .collect();
        FfiResponse {
            status,
            content_type,
            text: text.into(),
            headers: headers.into(),
            body: body.as_bytes().to_vec().into(),
        }
    }

    async fn body(response: Response) -> String {
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_content_type_code_becomes_the_header_before_the_others() {
        let given = ffi(201, content_type::JSON, &[("x-id", "7")], "{}");
        let response = into_response("p", given);
        assert_eq!(response.status(), StatusCode::CREATED);
        let headers: Vec<_> = response.headers().iter().collect();
        assert_eq!(
            headers,
            [
                (
                    &axum::http::header::CONTENT_TYPE,
                    &HeaderValue::from_static("application/json")
                ),
                (
                    &HeaderName::from_static("x-id"),
                    &HeaderValue::from_static("7")
                ),
            ]
        );
        assert_eq!(body(response).await, "{}");
        let text = into_response("p", ffi(200, content_type::TEXT, &[], "hi"));
        assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
    }

    #[tokio::test]
    async fn without_a_code_the_headers_name_the_content_type() {
        let given = ffi(
            200,
            content_type::NONE,
            &[("content-type", "image/png")],
            "x",
        );
        let response = into_response("p", given);
        let types: Vec<_> = response.headers().get_all("content-type").iter().collect();
        assert_eq!(types, [&HeaderValue::from_static("image/png")]);
    }

    #[tokio::test]
    async fn an_unknown_content_type_code_is_a_500_with_the_json_error_body() {
        let response = into_response("p", ffi(200, 9, &[], "{}"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_str(&body(response).await).unwrap();
        assert_eq!(
            body["error"],
            "plugin returned an invalid response: content type code 9"
        );
    }
}
