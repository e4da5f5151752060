//! `GET|HEAD /{name}/_service/status`.

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};

/// The exact bytes of the original (Python's `json.dumps` spacing); clients compare them.
pub const STATUS_BODY: &str = r#"{"status": "ok"}"#;

pub async fn status() -> Response {
    let mut response = STATUS_BODY.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
