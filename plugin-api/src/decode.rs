//! Decoding what a client sent — a JSON body, a query string, path parameters — into the
//! handler's types, with errors that name the field at fault.

use serde::{
    de::{self, DeserializeOwned, IntoDeserializer, Visitor},
    forward_to_deserialize_any,
};

use crate::{Error, Result};

/// Decodes JSON; a mismatch is an `Invalid` error naming the field:
/// `{"error": "invalid request body: invalid type: string \"x\", expected f64", "field": "setpoint"}`.
pub(crate) fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    json_with(bytes, "invalid JSON body", "invalid request body")
}

/// [`json`] for an eventbus payload. The host counts a handler error that starts with
/// "message is not JSON" as a dropped non-JSON message in its metrics.
pub(crate) fn message_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    json_with(bytes, "message is not JSON", "invalid message")
}

/// Decodes JSON; `syntax` prefixes the message of input that is not JSON at all, `shape`
/// that of JSON of the wrong shape.
fn json_with<T: DeserializeOwned>(bytes: &[u8], syntax: &str, shape: &str) -> Result<T> {
    // The common case first, at full speed; only input that fails is decoded again, with
    // the path tracking that names the field (a quarter of the cost of a small message).
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => match de.end() {
            Ok(()) => return Ok(value),
            Err(err) => {
                return Err(Error::invalid(format!(
                    "{syntax}: {}",
                    strip_position(&err.to_string())
                )))
            }
        },
        Err(err) => err,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    let kind = if inner.is_syntax() || inner.is_eof() {
        syntax
    } else {
        shape
    };
    with_field(kind, &path, &strip_position(&inner.to_string()))
}

/// Decodes a query string (`a=1&b=x`); a missing or mistyped parameter is an `Invalid`
/// error naming it.
pub(crate) fn query<T: DeserializeOwned>(query: &str) -> Result<T> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
        let path = err.path().to_string();
        match with_field::<()>("invalid query", &path, &err.into_inner().to_string()) {
            Err(err) => err,
            Ok(()) => Error::invalid("invalid query"),
        }
    })
}

/// Decodes path parameters (name, value) in the order the route declares them: into a
/// struct or map by name, a tuple by position, or a single value when there is one.
pub(crate) fn path<T: DeserializeOwned>(params: &[(&str, &str)]) -> Result<T> {
    T::deserialize(PathParams { params }).map_err(|err| {
        let error = Error::invalid(format!("invalid path parameter: {}", err.message));
        match err.field {
            Some(field) => error.field(field),
            None => error,
        }
    })
}

/// An `Invalid` error with `message`, naming the field at `path` — or, when serde could not
/// name a position (the top level, a truncated input), the field a "missing field" message
/// names.
fn with_field<T>(kind: &str, path: &str, message: &str) -> Result<T> {
    let error = Error::invalid(format!("{kind}: {message}"));
    // serde_path_to_error writes `?` for a position it could not name (truncated input).
    let field = if path != "." && !path.is_empty() && !path.contains('?') {
        Some(path.to_owned())
    } else {
        missing_field(message)
    };
    Err(match field {
        Some(field) => error.field(field),
        None => error,
    })
}

/// serde_json appends " at line 1 column 17"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// serde reports a missing field at its parent's path, naming it only in the message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.split("missing field `").nth(1)?;
    Some(rest.split('`').next()?.to_owned())
}

/// Why path parameters did not decode, and which one.
#[derive(Debug)]
struct PathError {
    field: Option<String>,
    message: String,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PathError {}

impl de::Error for PathError {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        let message = message.to_string();
        PathError {
            field: missing_field(&message),
            message,
        }
    }
}

impl PathError {
    fn at(mut self, field: &str) -> Self {
        self.field.get_or_insert_with(|| field.to_owned());
        self
    }
}

/// All path parameters: a map, a sequence, or the one value.
struct PathParams<'a> {
    params: &'a [(&'a str, &'a str)],
}

/// Deserializes a scalar from the one parameter (with its name on errors).
macro_rules! forward_single {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
            match self.params {
                [(name, value)] => Part(value).$method(visitor).map_err(|err| err.at(name)),
                _ => Err(de::Error::custom(format!(
                    "expected one path parameter, the route has {}",
                    self.params.len()
                ))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for PathParams<'de> {
    type Error = PathError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        match self.params {
            [(name, value)] => Part(value)
                .deserialize_any(visitor)
                .map_err(|err| err.at(name)),
            _ => self.deserialize_map(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        visitor.visit_map(ParamMap {
            params: self.params.iter(),
            current: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        visitor.visit_seq(ParamSeq {
            params: self.params.iter(),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        visitor.visit_some(self)
    }

    /// A single value asked for by type (a number, a bool, an enum) is the one parameter.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        match self.params {
            [(param, value)] => Part(value)
                .deserialize_enum(name, variants, visitor)
                .map_err(|err| err.at(param)),
            _ => Err(de::Error::custom(format!(
                "expected one path parameter, the route has {}",
                self.params.len()
            ))),
        }
    }

    forward_single! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string
    }

    forward_to_deserialize_any! {
        bytes byte_buf unit unit_struct tuple_struct identifier ignored_any
    }
}

struct ParamMap<'a> {
    params: std::slice::Iter<'a, (&'a str, &'a str)>,
    current: Option<(&'a str, &'a str)>,
}

impl<'de> de::MapAccess<'de> for ParamMap<'de> {
    type Error = PathError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, PathError> {
        let Some(&(name, value)) = self.params.next() else {
            return Ok(None);
        };
        self.current = Some((name, value));
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, PathError> {
        let (name, value) = self
            .current
            .take()
            .ok_or_else(|| <PathError as de::Error>::custom("value without a key"))?;
        seed.deserialize(Part(value)).map_err(|err| err.at(name))
    }
}

struct ParamSeq<'a> {
    params: std::slice::Iter<'a, (&'a str, &'a str)>,
}

impl<'de> de::SeqAccess<'de> for ParamSeq<'de> {
    type Error = PathError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, PathError> {
        match self.params.next() {
            Some(&(name, value)) => seed
                .deserialize(Part(value))
                .map(Some)
                .map_err(|err| err.at(name)),
            None => Ok(None),
        }
    }
}

/// One parameter's text, parsed as whatever type asks for it.
struct Part<'a>(&'a str);

macro_rules! parse_part {
    ($($method:ident => $visit:ident,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
            match self.0.parse() {
                Ok(value) => visitor.$visit(value),
                Err(err) => Err(de::Error::custom(format!("{:?}: {err}", self.0))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Part<'de> {
    type Error = PathError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    parse_part! {
        deserialize_bool => visit_bool,
        deserialize_i8 => visit_i8,
        deserialize_i16 => visit_i16,
        deserialize_i32 => visit_i32,
        deserialize_i64 => visit_i64,
        deserialize_i128 => visit_i128,
        deserialize_u8 => visit_u8,
        deserialize_u16 => visit_u16,
        deserialize_u32 => visit_u32,
        deserialize_u64 => visit_u64,
        deserialize_u128 => visit_u128,
        deserialize_f32 => visit_f32,
        deserialize_f64 => visit_f64,
        deserialize_char => visit_char,
    }

    forward_to_deserialize_any! {
        str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        setpoint: f64,
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = json::<Body>(b"{}").unwrap_err();
        assert_eq!(err.field_name(), Some("setpoint"));
        assert!(err.message().contains("missing field"), "{err}");

        let err = json::<Body>(br#"{"setpoint": "hot"}"#).unwrap_err();
        assert_eq!(err.field_name(), Some("setpoint"));
        assert!(!err.message().contains("line 1"), "{err}");

        let err = json::<Body>(b"{not json").unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert!(err.message().starts_with("invalid JSON body"), "{err}");

        let err = json::<Body>(br#"{"setpoint": 1} trailing"#).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
    }

    #[test]
    fn json_nested_128_levels_deep_is_a_400() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(json::<serde_json::Value>(nested(127).as_bytes()).is_ok());
        let err = json::<serde_json::Value>(nested(128).as_bytes()).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert!(err.message().contains("recursion limit"), "{err}");
    }

    #[test]
    fn a_payload_that_is_not_json_says_so_as_the_host_counts_it() {
        let err = message_json::<serde_json::Value>(b"{not json").unwrap_err();
        assert!(err.message().starts_with("message is not JSON"), "{err}");
        let err = message_json::<Body>(br#"{"setpoint": "x"}"#).unwrap_err();
        assert!(err.message().starts_with("invalid message"), "{err}");
        assert_eq!(err.field_name(), Some("setpoint"));
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Paging {
        limit: Option<u32>,
        key: String,
    }

    #[test]
    fn query_errors_name_the_field() {
        let ok: Paging = query("key=a%20b&limit=5").unwrap();
        assert_eq!(
            ok,
            Paging {
                limit: Some(5),
                key: "a b".into()
            }
        );
        let err = query::<Paging>("key=x&limit=abc").unwrap_err();
        assert_eq!(err.field_name(), Some("limit"), "{err}");
        assert_eq!(err.status().as_u16(), 400);
        let err = query::<Paging>("limit=1").unwrap_err();
        assert_eq!(err.field_name(), Some("key"), "{err}");
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Item {
        group: String,
        id: u32,
    }

    #[test]
    fn path_parameters_decode_by_name_position_or_alone() {
        let params = [("group", "a"), ("id", "7")];
        assert_eq!(
            path::<Item>(&params).unwrap(),
            Item {
                group: "a".into(),
                id: 7
            }
        );
        assert_eq!(path::<(String, u32)>(&params).unwrap(), ("a".into(), 7));
        assert_eq!(path::<u32>(&[("id", "7")]).unwrap(), 7);
        assert_eq!(path::<String>(&[("id", "x y")]).unwrap(), "x y");

        let err = path::<Item>(&[("group", "a"), ("id", "seven")]).unwrap_err();
        assert_eq!(err.field_name(), Some("id"), "{err}");
        assert_eq!(err.status().as_u16(), 400);
        let err = path::<u32>(&[("id", "-1")]).unwrap_err();
        assert_eq!(err.field_name(), Some("id"), "{err}");
    }
}
