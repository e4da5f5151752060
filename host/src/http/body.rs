//! Request bodies under `--max-body-size`.
//!
//! The limit is put on the body by [`super::front`]; reading here turns its error into the
//! original's 413, whoever reads (a plugin route, the `_debug` routes). axum's own 2 MiB
//! default limit of the `Bytes` extractor is not used: it would cap the option.

use std::{
    future::{ready, Future},
    time::Duration,
};

use axum::{
    body::{Body, Bytes, HttpBody as _},
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use futures::future::Either;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::{
    body_timeout::{BodyTimeout, BodyTimeouts, TimedBody},
    errors,
};

/// Reads the whole body; a 413 past the limit, a 400 for a broken upload.
///
/// Most requests (GET) have no body: for them the answer is ready at once, without the
/// collecting future (its state and a poll of it are a visible part of a plugin route's
/// cost).
pub fn read(body: Body) -> impl Future<Output = Result<Bytes, Response>> + Send {
    if body.is_end_stream() {
        Either::Left(ready(Ok(Bytes::new())))
    } else {
        Either::Right(collect(body))
    }
}

async fn collect(mut body: Body) -> Result<Bytes, Response> {
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    chunks.push(data);
                }
            }
            Err(err) if error_chain(&err).any(|e| e.is::<LengthLimitError>()) => {
                drain(body);
                return Err(too_large());
            }
            Err(err) if error_chain(&err).any(|e| e.is::<BodyTimeout>()) => {
                return Err(too_slow(&err));
            }
            Err(err) => {
                return Err(errors::text(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read request body: {err}"),
                ))
            }
        }
    }
    // One chunk (the usual case for a small body) is handed on without a copy.
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    })
}

/// Puts the limits on `request`'s body: a declared length over `max` is refused at once (the
/// original's 413, without reading); a body without one is cut off at `max` while read; the
/// time to receive it is bounded by `timeouts`.
pub(super) fn limit(
    request: Request,
    max: usize,
    timeouts: BodyTimeouts,
) -> Result<Request, Box<Response>> {
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let declared = declared_length(request.headers().get(header::CONTENT_LENGTH));
    if let Some(declared) = declared.filter(|&n| n > max as u64) {
        if declared <= DRAIN_DECLARED {
            drain(request.into_body());
        }
        return Err(Box::new(too_large()));
    }
    Ok(request.map(|body| Body::new(Limited::new(TimedBody::new(body, timeouts), max))))
}

/// How much of a refused body is read and thrown away, so that the client, still sending,
/// gets to read the 413: a server that closes a socket with unread data in it makes the
/// kernel reset the connection, and the client can lose the response with it. Bounded, so an
/// endless upload still ends with the connection closed: a declared length is drained only up
/// to `DRAIN_DECLARED` (hyper stops at that length), any body for at most `DRAIN_FRAMES`
/// frames (past the limit `Limited` errs on each one, without its size) and `DRAIN_TIME`.
const DRAIN_DECLARED: u64 = 1 << 20;
const DRAIN_FRAMES: usize = 256;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Reads the rest of a refused body in the background (hyper goes on feeding it after the
/// response is sent); when it ends within the bounds the connection stays usable.
fn drain(mut body: Body) {
    tokio::spawn(async move {
        let discard = async {
            for _ in 0..DRAIN_FRAMES {
                if body.frame().await.is_none() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
    });
}

fn declared_length(value: Option<&HeaderValue>) -> Option<u64> {
    value?.to_str().ok()?.trim().parse().ok()
}

/// A 408 for a body that did not arrive in time, closing the connection: what is left of the
/// body may still come, and nothing would tell it from the next request.
fn too_slow(err: &axum::Error) -> Response {
    let reason = error_chain(err)
        .find(|e| e.is::<BodyTimeout>())
        .map_or_else(|| err.to_string(), |e| e.to_string());
    let mut response = errors::text(StatusCode::REQUEST_TIMEOUT, &reason);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
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
