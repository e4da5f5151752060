//! JSON request bodies of the built-in routes, read into their types, and the 400 answer
//! that names what is wrong: `{"error": "...", "field": "..."}`.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};

// The same schema (name, fields and words) as the SDK's error body (plugin-api's route.rs),
// so that the service's document has one `Error` schema; the openapi tests check it.
/// An error answer: what went wrong and, when there is one, the input field at fault.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename = "Error")]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The input field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A 400 answer.
#[derive(Debug)]
pub struct BadRequest(pub ErrorBody);

impl BadRequest {
    pub fn new(error: impl Into<String>, field: Option<&str>) -> Self {
        BadRequest(ErrorBody {
            error: error.into(),
            field: field.map(str::to_owned),
        })
    }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(self.0)).into_response()
    }
}

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => {
            let kind = match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            };
            Err(BadRequest::new(
                format!("body must be a JSON object, not {kind}"),
                None,
            ))
        }
        Err(err) => Err(BadRequest::new(format!("invalid JSON body: {err}"), None)),
    }
}

/// `object` read into `T`; an error names the field (serde names a missing field only in
/// its message).
pub fn read<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, BadRequest> {
    serde_path_to_error::deserialize::<_, T>(Value::Object(object)).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        if path != "." && !path.is_empty() && !path.contains('?') {
            let field = path.split('.').next().unwrap_or(&path);
            BadRequest::new(format!("field `{path}`: {message}"), Some(field))
        } else {
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned);
            BadRequest::new(message, missing.as_deref())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: Option<u32>,
    }

    fn field(result: Result<Body, BadRequest>) -> Option<String> {
        result.unwrap_err().0.field
    }

    #[test]
    fn errors_name_the_field() {
        let read_json = |value: Value| read::<Body>(value.as_object().unwrap().clone());
        assert!(read_json(json!({"name": "a"})).is_ok());
        assert_eq!(field(read_json(json!({}))).as_deref(), Some("name"));
        assert_eq!(
            field(read_json(json!({"name": 1}))).as_deref(),
            Some("name")
        );
        assert_eq!(
            field(read_json(json!({"name": "a", "count": "x"}))).as_deref(),
            Some("count")
        );
        assert!(object(b"[1]").unwrap_err().0.error.contains("an array"));
        assert!(object(b"{nope")
            .unwrap_err()
            .0
            .error
            .starts_with("invalid JSON body"));
    }
}
