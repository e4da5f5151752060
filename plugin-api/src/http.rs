//! HTTP types for plugin routes: requests in, responses out, without any FFI types.

use std::{fmt, future::Future};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{
    abi::{FfiPair, FfiRequest, FfiResponse, FfiSpan},
    Error, Result,
};

/// An HTTP method a route answers to.
///
/// ```
/// assert_eq!(plugin_api::Method::Put.as_str(), "PUT");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    /// `HEAD` routes are implied by `GET`; register one only to answer differently.
    Head,
    /// Every method.
    Any,
}

impl Method {
    /// The method as the host's router names it (`*` for [`Method::Any`]).
    ///
    /// ```
    /// assert_eq!(plugin_api::Method::Any.as_str(), "*");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Any => "*",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to a plugin route.
///
/// ```no_run
/// use plugin_api::{Request, Response, Result};
///
/// async fn show(req: Request) -> Result<Response> {
///     let id = req.param("id").unwrap_or("none");
///     let verbose = req.query_param("verbose").is_some();
///     Ok(Response::json(&serde_json::json!({"id": id, "verbose": verbose})))
/// }
/// ```
#[derive(Debug)]
pub struct Request {
    inner: FfiRequest,
}

impl Request {
    pub(crate) fn from_ffi(inner: FfiRequest) -> Self {
        Request { inner }
    }

    /// Upper-case method name.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/svc/x").build();
    /// assert_eq!(req.method(), "GET");
    /// ```
    pub fn method(&self) -> &str {
        self.inner.method.str(&self.inner.text)
    }

    /// The full path, service prefix included.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/svc/x").build();
    /// assert_eq!(req.path(), "/svc/x");
    /// ```
    pub fn path(&self) -> &str {
        self.inner.path.str(&self.inner.text)
    }

    /// The raw query string, without `?`.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/svc/x").query("a=1").build();
    /// assert_eq!(req.query(), "a=1");
    /// ```
    pub fn query(&self) -> &str {
        self.inner.query.str(&self.inner.text)
    }

    /// A decoded query parameter (the first, if repeated).
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/x").query("name=a%20b").build();
    /// assert_eq!(req.query_param("name").as_deref(), Some("a b"));
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(self.query())
            .ok()?
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The query string decoded into `T`; a mismatch is a 400 error.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Page { limit: usize }
    /// # let req = plugin_api::Request::builder("GET", "/x").query("limit=5").build();
    /// let page: Page = req.query_as().unwrap();
    /// assert_eq!(page.limit, 5);
    /// ```
    pub fn query_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_urlencoded::from_str(self.query())
            .map_err(|err| Error::bad_request(format!("invalid query: {err}")))
    }

    /// A path parameter captured by a `{name}` segment of the route.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/x/7").param("id", "7").build();
    /// assert_eq!(req.param("id"), Some("7"));
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        let text = &self.inner.text;
        self.inner
            .params
            .iter()
            .find(|pair| pair.name.get(text) == name.as_bytes())
            .map(|pair| pair.value.str(text))
    }

    /// A header value as text (names are case-insensitive); `None` if absent or not UTF-8.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/x").header("X-Id", "1").build();
    /// assert_eq!(req.header("x-id"), Some("1"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        let text = &self.inner.text;
        self.inner
            .headers
            .iter()
            .find(|pair| pair.name.get(text).eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|pair| std::str::from_utf8(pair.value.get(text)).ok())
    }

    /// Every header as (lower-case name, raw value).
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/x").header("a", "1").build();
    /// assert_eq!(req.headers().count(), 1);
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let text = &self.inner.text;
        self.inner
            .headers
            .iter()
            .map(move |pair| (pair.name.str(text), pair.value.get(text)))
    }

    /// The raw body.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("POST", "/x").body("hi").build();
    /// assert_eq!(req.body(), b"hi");
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// The body as UTF-8 text; anything else is a 400 error.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("POST", "/x").body("hi").build();
    /// assert_eq!(req.text().unwrap(), "hi");
    /// ```
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.body())
            .map_err(|err| Error::bad_request(format!("body is not UTF-8: {err}")))
    }

    /// The body parsed as JSON into `T`.
    ///
    /// Malformed JSON, a missing field or a wrong type is a 400 error whose JSON body names
    /// the field: `{"error": "invalid type: string \"x\", expected f64", "field": "setpoint"}`.
    ///
    /// ```
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Setpoint { setpoint: f64 }
    ///
    /// # let req = plugin_api::Request::builder("PUT", "/x").body(r#"{"setpoint":"x"}"#).build();
    /// let err = req.json::<Setpoint>().unwrap_err();
    /// assert_eq!(err.status(), 400);
    /// assert_eq!(err.field_name(), Some("setpoint"));
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        decode_json(self.body())
    }

    /// Builds a request by hand, for testing handlers without a host.
    ///
    /// ```
    /// let req = plugin_api::Request::builder("GET", "/svc/hello").build();
    /// ```
    pub fn builder(method: &str, path: &str) -> RequestBuilder {
        let mut text = Vec::new();
        let method = FfiSpan::push(&mut text, method.as_bytes());
        let path = FfiSpan::push(&mut text, path.as_bytes());
        RequestBuilder {
            text,
            method,
            path,
            query: FfiSpan::default(),
            params: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// Decodes JSON with the path of the offending field, for 400 errors that say what to fix.
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => match de.end() {
            Ok(()) => return Ok(value),
            Err(err) => {
                return Err(Error::bad_request(format!(
                    "invalid JSON body: {}",
                    strip_position(&err.to_string())
                )))
            }
        },
        Err(err) => err,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = strip_position(&inner.to_string());
    let kind = if inner.is_syntax() || inner.is_eof() {
        "invalid JSON body"
    } else {
        "invalid request body"
    };
    let err = Error::bad_request(format!("{kind}: {message}"));
    // serde_path_to_error writes `?` for a position it could not name (truncated input).
    let field = if path != "." && !path.is_empty() && !path.contains('?') {
        Some(path)
    } else {
        missing_field(&message)
    };
    Err(match field {
        Some(field) => err.field(field),
        None => err,
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
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// Builds a [`Request`] for unit tests of handlers.
///
/// ```
/// let req = plugin_api::Request::builder("PUT", "/svc/device/setpoint")
///     .header("content-type", "application/json")
///     .body(r#"{"setpoint": 20}"#)
///     .build();
/// assert_eq!(req.json::<serde_json::Value>().unwrap()["setpoint"], 20);
/// ```
pub struct RequestBuilder {
    text: Vec<u8>,
    method: FfiSpan,
    path: FfiSpan,
    query: FfiSpan,
    params: Vec<FfiPair>,
    headers: Vec<FfiPair>,
    body: Vec<u8>,
}

impl RequestBuilder {
    /// Sets the raw query string.
    ///
    /// ```
    /// let req = plugin_api::Request::builder("GET", "/x").query("limit=5").build();
    /// assert_eq!(req.query_param("limit").as_deref(), Some("5"));
    /// ```
    pub fn query(mut self, query: &str) -> Self {
        self.query = FfiSpan::push(&mut self.text, query.as_bytes());
        self
    }

    /// Adds a path parameter.
    ///
    /// ```
    /// let req = plugin_api::Request::builder("GET", "/x/7").param("id", "7").build();
    /// assert_eq!(req.param("id"), Some("7"));
    /// ```
    pub fn param(mut self, name: &str, value: &str) -> Self {
        let text = &mut self.text;
        let pair = FfiPair {
            name: FfiSpan::push(text, name.as_bytes()),
            value: FfiSpan::push(text, value.as_bytes()),
        };
        self.params.push(pair);
        self
    }

    /// Adds a header.
    ///
    /// ```
    /// let req = plugin_api::Request::builder("GET", "/x").header("X-Id", "1").build();
    /// assert_eq!(req.header("x-id"), Some("1"));
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let text = &mut self.text;
        let pair = FfiPair {
            name: FfiSpan::push(text, name.to_ascii_lowercase().as_bytes()),
            value: FfiSpan::push(text, value.as_bytes()),
        };
        self.headers.push(pair);
        self
    }

    /// Sets the body.
    ///
    /// ```
    /// let req = plugin_api::Request::builder("POST", "/x").body("hi").build();
    /// assert_eq!(req.body(), b"hi");
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The finished request.
    ///
    /// ```
    /// let req = plugin_api::Request::builder("GET", "/svc/hello").build();
    /// assert_eq!(req.method(), "GET");
    /// ```
    pub fn build(self) -> Request {
        Request {
            inner: FfiRequest {
                text: self.text.into(),
                method: self.method,
                path: self.path,
                query: self.query,
                params: self.params.into(),
                headers: self.headers.into(),
                body: self.body.into(),
            },
        }
    }
}

/// A response from a plugin route.
///
/// ```
/// use plugin_api::Response;
///
/// let created = Response::json(&serde_json::json!({"id": 7}))
///     .with_status(201)
///     .header("location", "/svc/items/7");
/// assert_eq!(created.status(), 201);
/// ```
#[derive(Debug)]
pub struct Response {
    status: u16,
    /// Header names and values back to back, indexed by `headers` (see `FfiSpan`).
    text: Vec<u8>,
    headers: Vec<FfiPair>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    ///
    /// ```
    /// let no_content = plugin_api::Response::new(204);
    /// ```
    pub fn new(status: u16) -> Self {
        Response {
            status,
            text: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// 200 with `value` as JSON (`application/json`).
    ///
    /// ```
    /// let res = plugin_api::Response::json(&serde_json::json!({"hello": "world"}));
    /// assert_eq!(res.body_bytes(), br#"{"hello":"world"}"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(200)
                .header("content-type", "application/json")
                .body(body),
            Err(err) => Response::new(500)
                .header("content-type", "text/plain; charset=utf-8")
                .body(format!("500: cannot serialize response: {err}")),
        }
    }

    /// 200 with `text` as `text/plain; charset=utf-8`.
    ///
    /// ```
    /// let res = plugin_api::Response::text("hi");
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Response::new(200)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.into())
    }

    /// Replaces the status.
    ///
    /// ```
    /// let res = plugin_api::Response::text("made").with_status(201);
    /// ```
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header (repeatable).
    ///
    /// ```
    /// let res = plugin_api::Response::new(200).header("cache-control", "no-store");
    /// ```
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        if self.text.capacity() == 0 {
            // Room for a few headers at once: most responses have one or two.
            self.text.reserve(64.max(name.len() + value.len()));
            self.headers.reserve(4);
        }
        let pair = FfiPair {
            name: FfiSpan::push(&mut self.text, name.as_bytes()),
            value: FfiSpan::push(&mut self.text, value),
        };
        self.headers.push(pair);
        self
    }

    /// Replaces the body.
    ///
    /// ```
    /// let res = plugin_api::Response::new(200).body(vec![1, 2, 3]);
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    ///
    /// ```
    /// assert_eq!(plugin_api::Response::new(418).status(), 418);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body bytes.
    ///
    /// ```
    /// assert!(plugin_api::Response::new(204).body_bytes().is_empty());
    /// ```
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_ffi(self) -> FfiResponse {
        // Each `Vec` becomes an `RVec` without a copy.
        FfiResponse {
            status: self.status,
            text: self.text.into(),
            headers: self.headers.into(),
            body: self.body.into(),
        }
    }

    /// The JSON error response for a non-500 [`Error`].
    pub(crate) fn from_error(err: &Error) -> Self {
        Response::json(&err.json_body()).with_status(err.status())
    }
}

/// Anything a route handler may return.
///
/// ```
/// use plugin_api::{IntoResponse, Json};
///
/// let res = Json(serde_json::json!({"ok": true})).into_response();
/// assert_eq!(res.status(), 200);
/// let res = (201, "created").into_response();
/// assert_eq!(res.status(), 201);
/// ```
pub trait IntoResponse {
    /// Converts into a response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for Value {
    fn into_response(self) -> Response {
        Response::json(&self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(204)
    }
}

impl<T: IntoResponse> IntoResponse for (u16, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

/// Serializes its content as a JSON response.
///
/// ```
/// use plugin_api::{IntoResponse, Json};
///
/// #[derive(serde::Serialize)]
/// struct State { setpoint: f64 }
///
/// let res = Json(State { setpoint: 20.0 }).into_response();
/// assert_eq!(res.body_bytes(), br#"{"setpoint":20.0}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }
}

/// An async function that answers requests; implemented for every
/// `Fn(Request) -> impl Future<Output = Result<impl IntoResponse>>`.
///
/// ```
/// use plugin_api::{Request, Result};
///
/// async fn hello(_req: Request) -> Result<&'static str> {
///     Ok("hello")
/// }
/// fn assert_handler<H: plugin_api::Handler>(_: H) {}
/// assert_handler(hello);
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, req: Request) -> impl Future<Output = Result<Response>> + Send + 'static;
}

impl<F, Fut, R> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
    R: IntoResponse,
{
    fn call(&self, req: Request) -> impl Future<Output = Result<Response>> + Send + 'static {
        let fut = self(req);
        async move { fut.await.map(IntoResponse::into_response) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        setpoint: f64,
    }

    fn req(body: &str) -> Request {
        Request::builder("PUT", "/x").body(body).build()
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = req("{}").json::<Body>().unwrap_err();
        assert_eq!(err.field_name(), Some("setpoint"));
        assert!(err.message().contains("missing field"), "{err}");

        let err = req(r#"{"setpoint": "hot"}"#).json::<Body>().unwrap_err();
        assert_eq!(err.field_name(), Some("setpoint"));
        assert!(!err.message().contains("line 1"), "{err}");

        let err = req("{not json").json::<Body>().unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message().starts_with("invalid JSON body"), "{err}");

        let err = req(r#"{"setpoint": 1} trailing"#)
            .json::<Body>()
            .unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
