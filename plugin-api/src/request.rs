//! The request a route handler receives, and a builder for tests.

use serde::de::DeserializeOwned;

use crate::{
    abi::{FfiPair, FfiRequest, FfiSpan},
    decode, Error, Result,
};

/// A request to a plugin route.
///
/// Handlers usually take the parts they need with extractors ([`Json`](crate::Json),
/// [`Path`](crate::Path), [`Query`](crate::Query), …); taking the whole `Request` (as the
/// last argument) gives the raw form.
///
/// ```no_run
/// use plugin_api::{Request, Response};
///
/// async fn show(req: Request) -> Response {
///     let id = req.param("id").unwrap_or("none");
///     let verbose = req.query_param("verbose").is_some();
///     Response::json(&serde_json::json!({"id": id, "verbose": verbose}))
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

    /// The query string decoded into `T`; a mismatch is an [`Invalid`](crate::ErrorKind::Invalid)
    /// error naming the field (what the [`Query`](crate::Query) extractor does).
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Page { limit: usize }
    /// # let req = plugin_api::Request::builder("GET", "/x").query("limit=5").build();
    /// let page: Page = req.query_as().unwrap();
    /// assert_eq!(page.limit, 5);
    /// ```
    pub fn query_as<T: DeserializeOwned>(&self) -> Result<T> {
        decode::query(self.query())
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
            .params()
            .iter()
            .find(|pair| pair.name.get(text) == name.as_bytes())
            .map(|pair| pair.value.str(text))
    }

    /// Every path parameter as (name, value), in the route's order.
    ///
    /// ```
    /// # let req = plugin_api::Request::builder("GET", "/x/7").param("id", "7").build();
    /// assert_eq!(req.params().collect::<Vec<_>>(), [("id", "7")]);
    /// ```
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = &self.inner.text;
        self.inner
            .params()
            .iter()
            .map(move |pair| (pair.name.str(text), pair.value.str(text)))
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
            .headers()
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
            .headers()
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
        decode::json(self.body())
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
    pub fn header(self, name: &str, value: &str) -> Self {
        self.header_bytes(name, value.as_bytes())
    }

    fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        let text = &mut self.text;
        let pair = FfiPair {
            name: FfiSpan::push(text, name.to_ascii_lowercase().as_bytes()),
            value: FfiSpan::push(text, value),
        };
        self.headers.push(pair);
        self
    }

    /// Sets the body to `value` as JSON, with `content-type: application/json`.
    ///
    /// ```
    /// let req = plugin_api::Request::builder("PUT", "/x")
    ///     .json(&serde_json::json!({"setpoint": 20}))
    ///     .build();
    /// assert_eq!(req.header("content-type"), Some("application/json"));
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        // A value that cannot be JSON (a map with non-string keys) is a bug in the test.
        let body = serde_json::to_vec(value).unwrap_or_else(|err| panic!("not JSON: {err}"));
        self.header("content-type", "application/json").body(body)
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
                params: u32::try_from(self.params.len()).unwrap_or(u32::MAX),
                pairs: self
                    .params
                    .into_iter()
                    .chain(self.headers)
                    .collect::<Vec<_>>()
                    .into(),
                body: self.body.into(),
            },
        }
    }
}

/// An [`http::Request`] as a plugin request (a test, a proxy): method, path, query,
/// headers and body. Path parameters are set by the route that matches, so there are none.
///
/// ```
/// let req = plugin_api::http::Request::put("/svc/x?a=1").body("hi").unwrap();
/// let req = plugin_api::Request::from(req);
/// assert_eq!((req.path(), req.query(), req.body()), ("/svc/x", "a=1", &b"hi"[..]));
/// ```
impl<B: Into<Vec<u8>>> From<http::Request<B>> for Request {
    fn from(req: http::Request<B>) -> Self {
        let (parts, body) = req.into_parts();
        let mut builder = Request::builder(parts.method.as_str(), parts.uri.path())
            .query(parts.uri.query().unwrap_or(""))
            .body(body);
        for (name, value) in &parts.headers {
            builder = builder.header_bytes(name.as_str(), value.as_bytes());
        }
        builder.build()
    }
}
