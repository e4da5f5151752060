//! Error responses in the original's format: `text/plain`, body `"<code>: <reason>"`.

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;

/// `"<code>: <reason>"` with the reason folded onto one line (quirk 3 in
/// `docs/brewblox-service-0.20.0.md`: a newline in
/// the original's reason phrase broke the response).
pub fn text(status: StatusCode, reason: &str) -> Response {
    let reason = plugin_abi::panics::fold_lines(reason);
    let mut response = format!("{}: {reason}", status.as_u16()).into_response();
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The canonical reason, e.g. `Not Found`.
pub fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// Marks responses written by plugins, whose bodies are theirs to choose.
#[derive(Clone, Copy)]
pub struct FromPlugin;

/// Whether [`fill_error_body`] would change `response`: an error that is not a plugin's and
/// has no content type. A response with a content type has its body already ([`text`], a
/// handler's JSON).
pub fn needs_error_body(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<FromPlugin>().is_none()
        && !response.headers().contains_key(header::CONTENT_TYPE)
}

/// Gives the router's and the layers' bare error responses (404, 405, 413, …) the
/// original's text body, keeping their headers (`Allow` on 405).
pub async fn fill_error_body(response: Response) -> Response {
    if !needs_error_body(&response) {
        return response;
    }
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    // Bodies here are empty or a short text from a layer; bounded by construction.
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !bytes.is_empty() {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let filled = text(status, reason(status));
    parts.headers.remove(header::CONTENT_LENGTH);
    let (filled_parts, filled_body) = filled.into_parts();
    parts.headers.extend(filled_parts.headers);
    Response::from_parts(parts, filled_body)
}
