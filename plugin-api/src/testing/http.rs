//! Requests and responses of the kit: built by the test, handed to the plugin's routes as
//! the host hands them over, answered with the host's conventions.

use std::fmt;

use abi_stable::std_types::RResult;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    abi::{FfiPair, FfiRequest, FfiResponse, FfiSpan},
    Error, Plugin, Result,
};

use super::{routes::percent_decode, TestHost};

/// A request for [`TestHost::request`]. The path is relative to the service prefix, as a
/// route's path is (`/hello` reaches `Route::get("/hello")`); the handler sees the full path
/// (`/test/hello`), as under the host. A `?query` in the path is split off.
///
/// ```
/// use plugin_api::testing::TestRequest;
///
/// let request = TestRequest::put("/device/setpoint?verbose=1")
///     .header("X-Client", "ui")
///     .json(&serde_json::json!({ "setpoint": 20.5 }));
/// ```
#[derive(Debug, Clone)]
pub struct TestRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl TestRequest {
    /// A request with any method (upper-cased).
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::new("options", "/hello");
    /// ```
    pub fn new(method: &str, path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        TestRequest {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET`.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::get("/items?limit=5");
    /// ```
    pub fn get(path: &str) -> Self {
        TestRequest::new("GET", path)
    }

    /// `POST`.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::post("/items").body("raw");
    /// ```
    pub fn post(path: &str) -> Self {
        TestRequest::new("POST", path)
    }

    /// `PUT`.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::put("/items/1").json(&1);
    /// ```
    pub fn put(path: &str) -> Self {
        TestRequest::new("PUT", path)
    }

    /// `PATCH`.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::patch("/items/1").json(&1);
    /// ```
    pub fn patch(path: &str) -> Self {
        TestRequest::new("PATCH", path)
    }

    /// `DELETE`.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::delete("/items/1");
    /// ```
    pub fn delete(path: &str) -> Self {
        TestRequest::new("DELETE", path)
    }

    /// Sets the raw query string (without `?`).
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::get("/items").query("limit=5&page=2");
    /// ```
    pub fn query(mut self, query: &str) -> Self {
        self.query = query.to_owned();
        self
    }

    /// Adds a header; the name is lower-cased, as the host hands headers over.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::get("/x").header("Accept", "text/plain");
    /// ```
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref().to_vec();
        self.headers.push((name.to_ascii_lowercase(), value));
        self
    }

    /// Sets the raw body.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::post("/x").body(vec![1, 2, 3]);
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets `value` as a JSON body, with `content-type: application/json`.
    ///
    /// # Panics
    ///
    /// When `value` cannot be JSON (a map with non-text keys): a mistake in the test.
    ///
    /// ```
    /// let request = plugin_api::testing::TestRequest::post("/x").json(&[1, 2]);
    /// ```
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value)
            .unwrap_or_else(|err| panic!("TestRequest::json: the body cannot be JSON: {err}"));
        self.header("content-type", "application/json").body(body)
    }

    /// The request as the host hands it to a handler: full path, decoded parameters.
    fn into_ffi(self, service: &str, params: &[(String, String)]) -> FfiRequest {
        let mut text = Vec::new();
        let method = FfiSpan::push(&mut text, self.method.as_bytes());
        let full = format!("/{service}{}", self.path);
        let path = FfiSpan::push(&mut text, full.as_bytes());
        let query = FfiSpan::push(&mut text, self.query.as_bytes());
        let mut pair = |name: &[u8], value: &[u8]| FfiPair {
            name: FfiSpan::push(&mut text, name),
            value: FfiSpan::push(&mut text, value),
        };
        let params_pairs = params
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
        let header_pairs = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_slice()));
        let pairs: Vec<FfiPair> = params_pairs
            .chain(header_pairs)
            .map(|(name, value)| pair(name, value))
            .collect();
        FfiRequest {
            text: text.into(),
            method,
            path,
            query,
            pairs: pairs.into(),
            params: u32::try_from(params.len()).unwrap_or(u32::MAX),
            body: self.body.into(),
        }
    }
}

/// What a route answered (or the host's router, for 404 and 405), with the host's
/// conventions: a handler's internal error is `500` with the text body `500: <reason>`.
///
/// ```
/// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
/// # #[derive(Default)] struct Quiet;
/// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// # let host = TestHost::start(Quiet).await?;
/// let response = host.get("/nowhere").await;
/// assert_eq!(response.status(), 404);
/// assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
/// assert_eq!(response.text(), "404: Not Found");
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TestResponse {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl TestResponse {
    /// A text error as the host writes it: `<code>: <reason>`, newlines folded.
    pub(super) fn error(status: u16, reason: &str) -> Self {
        let reason: Vec<&str> = reason
            .split(['\n', '\r'])
            .filter(|p| !p.is_empty())
            .collect();
        TestResponse {
            status,
            headers: vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())],
            body: format!("{status}: {}", reason.join(" ")).into_bytes(),
        }
    }

    pub(super) fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    fn from_ffi(ffi: FfiResponse) -> Self {
        use crate::abi::{content_type, routes};
        // As the host answers them: the JSON error body.
        let invalid = |error: String| TestResponse {
            status: 500,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: serde_json::json!({ "error": error })
                .to_string()
                .into_bytes(),
        };
        if !routes::RESPONSE_STATUSES.contains(&ffi.status) {
            return invalid(routes::invalid_status(ffi.status));
        }
        let own_type = match content_type::value(ffi.content_type) {
            Ok(own) => own.map(|value| ("content-type".to_owned(), value.as_bytes().to_vec())),
            Err(code) => return invalid(routes::invalid_content_type(code)),
        };
        // As the host sends them: 204 and 304 without a body or a Content-Length.
        let bodiless = matches!(ffi.status, 204 | 304);
        let headers = ffi.headers.iter().filter_map(|pair| {
            let name = pair.name.str(&ffi.text).to_ascii_lowercase();
            let dropped = bodiless && name == "content-length";
            (!dropped).then(|| (name, pair.value.get(&ffi.text).to_vec()))
        });
        TestResponse {
            status: ffi.status,
            headers: own_type.into_iter().chain(headers).collect(),
            body: if bodiless {
                Vec::new()
            } else {
                ffi.body.into_vec()
            },
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a header (names are case-insensitive), if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Every header as (lower-case name, raw value), in the order given.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text, invalid UTF-8 replaced (handy in assertions).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as JSON into `T`; the error quotes the response.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// # let host = TestHost::start(Quiet).await?;
    /// let err = host.get("/nowhere").await.json::<serde_json::Value>().unwrap_err();
    /// assert!(err.message().contains("404: Not Found"));
    /// # Ok(()) }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        crate::decode::json(&self.body)
            .map_err(|err| Error::msg(format!("{err} in the response {self:?}")))
    }
}

impl fmt::Debug for TestResponse {
    /// Status and body as text: what a failed assertion should show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.status, self.text())
    }
}

impl<P: Plugin> TestHost<P> {
    /// Sends a request to the plugin's routes, as the host's router would route it: `404`
    /// when no path matches, `405` (with `allow`) when the path has no route for the method,
    /// `HEAD` answered by the `GET` route without a body.
    ///
    /// ```
    /// # use plugin_api::{testing::{TestHost, TestRequest}, Context, Json, Path, Plugin, Request, Result, Route};
    /// #[derive(Default)]
    /// struct Items;
    /// impl Plugin for Items {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.route(Route::put("/items/{id}"), |Path(id): Path<String>, req: Request| async move {
    ///             let body: serde_json::Value = req.json()?;
    ///             Ok::<_, plugin_api::Error>(Json(serde_json::json!({ "id": id, "path": req.path(), "body": body })))
    ///         })
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Items).await?;
    /// let response = host.request(TestRequest::put("/items/7").json(&"new")).await;
    /// let answer: serde_json::Value = response.json()?;
    /// assert_eq!(answer, serde_json::json!({ "id": "7", "path": "/test/items/7", "body": "new" }));
    /// assert_eq!(host.get("/items/7").await.status(), 405);
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, request: TestRequest) -> TestResponse {
        let found = self.state.routes().find(&request.method, &request.path);
        let (handler, raw) = match found {
            Ok(found) => found,
            Err(response) => return response,
        };
        let mut params = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            match percent_decode(&value) {
                Some(value) => params.push((name, value)),
                None => {
                    return TestResponse::error(400, "Invalid URL: a path parameter is not UTF-8")
                }
            }
        }
        let head = request.method == "HEAD";
        let ffi = request.into_ffi(&self.state.service, &params);
        let mut response = match handler.handle(ffi).await {
            RResult::ROk(response) => TestResponse::from_ffi(response),
            RResult::RErr(failure) => TestResponse::error(500, &failure.error.message),
        };
        if head {
            response.body.clear();
        }
        response
    }

    /// `GET path`.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// # let host = TestHost::start(Quiet).await?;
    /// assert_eq!(host.get("/missing?x=1").await.status(), 404);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(TestRequest::get(path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> TestResponse {
        self.request(TestRequest::post(path).json(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> TestResponse {
        self.request(TestRequest::put(path).json(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> TestResponse {
        self.request(TestRequest::delete(path)).await
    }

    /// The plugin's routes as (method, path relative to the service prefix), in the order
    /// it registered them; `*` is the method of a route for any method.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Request, Result, Route};
    /// #[derive(Default)]
    /// struct Hello;
    /// impl Plugin for Hello {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.route(Route::get("/hello"), || async { "hi" })
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Hello).await?;
    /// assert_eq!(host.routes(), [("GET".to_owned(), "/hello".to_owned())]);
    /// # Ok(()) }
    /// ```
    pub fn routes(&self) -> Vec<(String, String)> {
        self.state.routes().list()
    }
}
