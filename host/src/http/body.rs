//! Request bodies under `--max-body-size`.
//!
//! The limit is put on the body by [`super::front`]; reading here turns its error into the
//! original's 413, whoever reads (a plugin route, the `_debug` routes). axum's own 2 MiB
//! default limit of the `Bytes` extractor is not used: it would cap the option.

use axum::{
    body::{Body, Bytes, HttpBody as _},
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use http_body_util::Limited;

use super::errors;

/// Reads the whole body; a 413 past the limit, a 400 for a broken upload.
pub async fn read(body: Body) -> Result<Bytes, Response> {
    // Most requests (GET) have no body: skip collecting it.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    axum::body::to_bytes(body, usize::MAX).await.map_err(|err| {
        if error_chain(&err).any(|e| e.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            errors::text(
                StatusCode::BAD_REQUEST,
                &format!("cannot read request body: {err}"),
            )
        }
    })
}

/// Puts the limit on `request`'s body: a declared length over it is refused at once (the
/// original's 413, without reading); a body without one is cut off at the limit while read.
pub(super) fn limit(request: Request, max: usize) -> Result<Request, Box<Response>> {
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let declared = declared_length(request.headers().get(header::CONTENT_LENGTH));
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Box::new(too_large()));
    }
    Ok(request.map(|body| Body::new(Limited::new(body, max))))
}

fn declared_length(value: Option<&HeaderValue>) -> Option<u64> {
    value?.to_str().ok()?.trim().parse().ok()
}

/// The original's 413.
fn too_large() -> Response {
    errors::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        errors::reason(StatusCode::PAYLOAD_TOO_LARGE),
    )
}

fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}
