//! The response a route handler returns, and the types that turn into one.

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::{
    abi::{content_type, FfiPair, FfiResponse, FfiSpan},
    Error, Json, Result, Route,
};

/// A response from a plugin route.
///
/// ```
/// use plugin_api::{http::StatusCode, Response};
///
/// let created = Response::json(&serde_json::json!({"id": 7}))
///     .with_status(StatusCode::CREATED)
///     .header("location", "/svc/items/7");
/// assert_eq!(created.status(), StatusCode::CREATED);
/// ```
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    /// An internal error (a 500 the handler did not choose): the host logs it with the
    /// plugin's name and answers `500: <message>`, as for any failed handler.
    pub(crate) internal_error: Option<crate::abi::FfiError>,
    /// The content type of [`Response::json`] and [`Response::text`], as a code
    /// ([`content_type`]): it crosses to the host without a header to copy or parse.
    content_type: u8,
    /// Header names and values back to back, indexed by `headers` (see `FfiSpan`).
    text: Vec<u8>,
    headers: Vec<FfiPair>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    ///
    /// ```
    /// let no_content = plugin_api::Response::new(plugin_api::http::StatusCode::NO_CONTENT);
    /// ```
    pub fn new(status: StatusCode) -> Self {
        Response {
            status,
            internal_error: None,
            content_type: content_type::NONE,
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
            Ok(body) => Response::new(StatusCode::OK)
                .with_content_type(content_type::JSON)
                .body(body),
            Err(err) => Response::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with_content_type(content_type::TEXT)
                .body(format!("500: cannot serialize response: {err}")),
        }
    }

    /// 200 with `text` as `text/plain; charset=utf-8`.
    ///
    /// ```
    /// let res = plugin_api::Response::text("hi");
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Response::new(StatusCode::OK)
            .with_content_type(content_type::TEXT)
            .body(text.into())
    }

    fn with_content_type(mut self, code: u8) -> Self {
        self.content_type = code;
        self
    }

    /// Replaces the status.
    ///
    /// ```
    /// let res = plugin_api::Response::text("made").with_status(plugin_api::http::StatusCode::CREATED);
    /// ```
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header (repeatable). A `Content-Type` replaces the one [`Response::json`] or
    /// [`Response::text`] chose.
    ///
    /// ```
    /// let res = plugin_api::Response::new(plugin_api::http::StatusCode::OK).header("cache-control", "no-store");
    /// let problem = plugin_api::Response::json(&serde_json::json!({"title": "gone"}))
    ///     .header("Content-Type", "application/problem+json");
    /// assert_eq!(problem.header_value("content-type"), Some(&b"application/problem+json"[..]));
    /// ```
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        if name.eq_ignore_ascii_case("content-type") {
            self.content_type = content_type::NONE;
        }
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
    /// let res = plugin_api::Response::new(plugin_api::http::StatusCode::OK).body(vec![1, 2, 3]);
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    ///
    /// ```
    /// use plugin_api::{http::StatusCode, Response};
    /// assert_eq!(Response::new(StatusCode::IM_A_TEAPOT).status(), StatusCode::IM_A_TEAPOT);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body bytes.
    ///
    /// ```
    /// assert!(plugin_api::Response::new(plugin_api::http::StatusCode::NO_CONTENT).body_bytes().is_empty());
    /// ```
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_ffi(self) -> FfiResponse {
        // Each `Vec` becomes an `RVec` without a copy.
        FfiResponse {
            status: self.status.as_u16(),
            content_type: self.content_type,
            text: self.text.into(),
            headers: self.headers.into(),
            body: self.body.into(),
        }
    }

    /// A header's value (the first, if repeated); names are case-insensitive.
    ///
    /// ```
    /// let res = plugin_api::Response::text("hi");
    /// assert_eq!(res.header_value("Content-Type"), Some(&b"text/plain; charset=utf-8"[..]));
    /// ```
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        if name.eq_ignore_ascii_case("content-type") {
            if let Ok(Some(value)) = content_type::value(self.content_type) {
                return Some(value.as_bytes());
            }
        }
        self.headers
            .iter()
            .find(|pair| {
                pair.name
                    .get(&self.text)
                    .eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|pair| pair.value.get(&self.text))
    }

    /// The body parsed as JSON, for tests.
    ///
    /// ```
    /// let res = plugin_api::Response::json(&serde_json::json!({"a": 1}));
    /// assert_eq!(res.json_body::<serde_json::Value>().unwrap()["a"], 1);
    /// ```
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        crate::decode::json(&self.body)
    }
}

/// Anything a route handler may return: a [`Response`], [`Json`], text, a status, a
/// `(StatusCode, impl IntoResponse)` pair, an [`http::Response`], or a `Result` of those
/// with an [`Error`] (or any other `IntoResponse`) as the error.
///
/// Besides converting, a type documents itself: [`Json<T>`](Json) puts `T`'s schema in the
/// route's OpenAPI entry, under the route's success status (see
/// [`Route::status`](crate::Route::status)).
///
/// ```
/// use plugin_api::{http::StatusCode, IntoResponse, Json};
///
/// let res = Json(serde_json::json!({"ok": true})).into_response();
/// assert_eq!(res.status(), StatusCode::OK);
/// let res = (StatusCode::CREATED, "created").into_response();
/// assert_eq!(res.status(), StatusCode::CREATED);
/// ```
pub trait IntoResponse {
    /// Converts into a response.
    fn into_response(self) -> Response;

    /// Adds what this type answers to the route's documentation (nothing by default).
    fn document(route: &mut Route)
    where
        Self: Sized,
    {
        let _ = route;
    }
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

/// Text: documented as `text/plain` under the route's success status.
impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }

    fn document(route: &mut Route) {
        route.document_media_response("text/plain", serde_json::json!({"type": "string"}));
    }
}

/// Text: documented as `text/plain` under the route's success status.
impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }

    fn document(route: &mut Route) {
        String::document(route);
    }
}

impl IntoResponse for Vec<u8> {
    /// 200 with the bytes as `application/octet-stream` (so documented).
    fn into_response(self) -> Response {
        Response::new(StatusCode::OK)
            .header("content-type", "application/octet-stream")
            .body(self)
    }

    fn document(route: &mut Route) {
        route.document_media_response(
            "application/octet-stream",
            serde_json::json!({"type": "string", "format": "binary"}),
        );
    }
}

impl IntoResponse for Value {
    fn into_response(self) -> Response {
        Response::json(&self)
    }

    fn document(route: &mut Route) {
        Json::<Value>::document(route);
    }
}

impl IntoResponse for () {
    /// 204 No Content (so documented, whatever the route's declared status).
    fn into_response(self) -> Response {
        Response::new(StatusCode::NO_CONTENT)
    }

    fn document(route: &mut Route) {
        route.document_empty_response(StatusCode::NO_CONTENT);
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }

    fn document(route: &mut Route) {
        T::document(route);
    }
}

impl<T: Serialize + schemars::JsonSchema> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }

    fn document(route: &mut Route) {
        route.document_response::<T>();
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }

    fn document(route: &mut Route) {
        T::document(route);
        E::document(route);
    }
}

impl IntoResponse for Error {
    /// The error's status with a JSON body `{"error": message, "field"?: field}`; an
    /// internal error (kind `Other`, no status chosen) is left to the host, which logs it
    /// with the plugin's name and answers 500.
    fn into_response(self) -> Response {
        let mut response = Response::json(&self.json_body()).with_status(self.status());
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR && !self.has_chosen_status() {
            response.internal_error = Some(crate::abi::FfiError::new(
                crate::abi::error_code::OTHER,
                self.to_string(),
            ));
        }
        response
    }
}

impl<B: Into<Vec<u8>>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        let (parts, body) = self.into_parts();
        let mut response = Response::new(parts.status).body(body);
        for (name, value) in &parts.headers {
            response = response.header(name.as_str(), value.as_bytes());
        }
        response
    }
}

/// The response as an [`http::Response`] (a test that compares with an axum service, say).
/// A header the `http` crate cannot represent is left out.
///
/// ```
/// use plugin_api::{http, Json, IntoResponse};
/// let res: http::Response<Vec<u8>> = Json(1).into_response().into();
/// assert_eq!(res.headers()["content-type"], "application/json");
/// assert_eq!(res.body(), b"1");
/// ```
impl From<Response> for http::Response<Vec<u8>> {
    fn from(response: Response) -> Self {
        let mut out = http::Response::new(Vec::new());
        *out.status_mut() = response.status;
        if let Ok(Some(value)) = content_type::value(response.content_type) {
            let value = http::HeaderValue::from_static(value);
            out.headers_mut().append(http::header::CONTENT_TYPE, value);
        }
        for pair in &response.headers {
            let name = http::HeaderName::from_bytes(pair.name.get(&response.text));
            let value = http::HeaderValue::from_bytes(pair.value.get(&response.text));
            if let (Ok(name), Ok(value)) = (name, value) {
                out.headers_mut().append(name, value);
            }
        }
        *out.body_mut() = response.body;
        out
    }
}
