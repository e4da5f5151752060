//! `GET|HEAD /{name}/_service/status`.

use std::sync::LazyLock;

use axum::{
    body::{Body, Bytes},
    http::{header, HeaderValue},
    response::Response,
};
use schemars::JsonSchema;
use serde::Serialize;

/// `GET /_service/status`: the service answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceStatus {
    pub status: Running,
}

/// Always `ok` while the service answers.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Running {
    Ok,
}

/// The body, serialized once with the original's spacing (Python's `json.dumps`:
/// `{"status": "ok"}`): clients compare the bytes.
static BODY: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(python_json(&ServiceStatus {
        status: Running::Ok,
    }))
});

/// Answered at once (a [`Methods::Get`](super::route_table::Methods::Get) route).
pub fn status() -> Response {
    // Built directly: `Bytes::into_response` would set a content type only to have it
    // replaced.
    let mut response = Response::new(Body::from(BODY.clone()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// `value` as JSON with Python's default separators (`", "` and `": "`).
fn python_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serializing plain data into a Vec cannot fail.
    if value.serialize(&mut serializer).is_err() {
        out.clear();
    }
    out
}

/// serde_json's compact output with a space after `,` and `:`.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_originals_bytes() {
        assert_eq!(&BODY[..], br#"{"status": "ok"}"#);
        assert_eq!(
            python_json(&serde_json::json!({"a": [1, 2], "b": {"c": null}})),
            br#"{"a": [1, 2], "b": {"c": null}}"#
        );
    }
}
