//! The plugin's routes under the kit: registered with the host's checks, matched as the
//! host's router matches them, and called through the plugin's own `RouteHandler` objects.

use std::{fmt, sync::Arc};

use abi_stable::std_types::RResult;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    abi::{error_code, FfiError, FfiPair, FfiRequest, FfiResponse, FfiSpan, RouteHandlerBox},
    http::decode_json,
    Error, Plugin, Result,
};

use super::TestHost;

/// Paths the host serves itself.
const RESERVED_PREFIXES: &[&str] = &["/_service", "/_debug", "/api/doc"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "*"];

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(String),
    /// `{name}`: one non-empty segment.
    Param(String),
    /// `{*name}`: the non-empty rest of the path.
    Rest(String),
}

impl Segment {
    /// How specific a match on it is: static before a parameter before the rest, as the
    /// host's router ranks them.
    fn rank(&self) -> u8 {
        match self {
            Segment::Static(_) => 2,
            Segment::Param(_) => 1,
            Segment::Rest(_) => 0,
        }
    }

    /// The segment with its parameter name left out: two paths of one shape clash.
    fn shape(&self) -> &str {
        match self {
            Segment::Static(text) => text,
            Segment::Param(_) => "{}",
            Segment::Rest(_) => "{*}",
        }
    }
}

struct Entry {
    method: String,
    path: String,
    segments: Vec<Segment>,
    handler: Arc<RouteHandlerBox>,
}

/// The routes of the plugin, open for registration until its startup returns.
#[derive(Default)]
pub(super) struct RouteTable {
    entries: Vec<Entry>,
    frozen: bool,
}

fn invalid(message: String) -> FfiError {
    FfiError::new(error_code::INVALID, message)
}

/// Splits a route path into segments; `None` for braces the kit cannot read.
fn parse(path: &str) -> Option<Vec<Segment>> {
    let parts: Vec<&str> = path[1..].split('/').collect();
    let last = parts.len() - 1;
    let mut names: Vec<&str> = Vec::new();
    let mut segments = Vec::with_capacity(parts.len());
    for (index, part) in parts.into_iter().enumerate() {
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => {
                let (rest, name) = match inner.strip_prefix('*') {
                    Some(name) => (true, name),
                    None => (false, inner),
                };
                let bad = name.is_empty() || name.contains(['{', '}', '*']);
                if bad || (rest && index != last) || names.contains(&name) {
                    return None;
                }
                names.push(name);
                match rest {
                    true => Segment::Rest(name.to_owned()),
                    false => Segment::Param(name.to_owned()),
                }
            }
            None if part.contains(['{', '}']) => return None,
            None => Segment::Static(part.to_owned()),
        };
        segments.push(segment);
    }
    Some(segments)
}

impl RouteTable {
    /// Registers a route as the host does, refusing what the host refuses with its words.
    pub fn add(
        &mut self,
        plugin: &str,
        method: &str,
        path: &str,
        handler: RouteHandlerBox,
    ) -> Result<(), FfiError> {
        if self.frozen {
            return Err(FfiError::new(
                error_code::WRONG_PHASE,
                format!(
                    "cannot add route {method} {path}: routes must be registered during startup"
                ),
            ));
        }
        let method = method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(invalid(format!(
                "unsupported method \"{method}\" for route {path}"
            )));
        }
        if !path.starts_with('/') {
            return Err(invalid(format!(
                "route path \"{path}\" must start with '/'"
            )));
        }
        if let Some(reserved) = RESERVED_PREFIXES
            .iter()
            .find(|prefix| path == **prefix || path.starts_with(&format!("{prefix}/")))
        {
            return Err(invalid(format!(
                "route path \"{path}\" is reserved for the host ({reserved})"
            )));
        }
        let segments =
            parse(path).ok_or_else(|| invalid(format!("route path \"{path}\" is not usable")))?;
        self.check_clash(plugin, &method, path, &segments)?;
        self.entries.push(Entry {
            method,
            path: path.to_owned(),
            segments,
            handler: Arc::new(handler),
        });
        Ok(())
    }

    /// The same method on the same path, or another path of the same shape.
    fn check_clash(
        &self,
        plugin: &str,
        method: &str,
        path: &str,
        segments: &[Segment],
    ) -> Result<(), FfiError> {
        for entry in &self.entries {
            let overlaps = entry.method == method || entry.method == "*" || method == "*";
            if entry.path == path && overlaps {
                return Err(FfiError::new(
                    error_code::CONFLICT,
                    format!("route {method} {path} is already registered by plugin {plugin}"),
                ));
            }
            let same_shape = entry.segments.len() == segments.len()
                && entry
                    .segments
                    .iter()
                    .zip(segments)
                    .all(|(a, b)| a.shape() == b.shape());
            if entry.path != path && same_shape {
                return Err(invalid(format!(
                    "route path \"{path}\" is not usable: it conflicts with \"{}\"",
                    entry.path
                )));
            }
        }
        Ok(())
    }

    /// Ends registration, as the host does once every plugin has started.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// (method, path) of every route, in registration order.
    pub fn list(&self) -> Vec<(String, String)> {
        let pairs = self.entries.iter();
        pairs.map(|e| (e.method.clone(), e.path.clone())).collect()
    }

    /// The route for a request, with its raw parameters, or the response the router gives.
    fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(Arc<RouteHandlerBox>, Params), TestResponse> {
        let best = self
            .entries
            .iter()
            .filter_map(|entry| Some((entry, capture(&entry.segments, path)?)))
            .max_by_key(|(entry, _)| entry.segments.iter().map(Segment::rank).collect::<Vec<_>>());
        let Some((matched, params)) = best else {
            return Err(TestResponse::error(404, "Not Found"));
        };
        let on_path: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.path == matched.path)
            .collect();
        let pick = |wanted: &str| on_path.iter().find(|e| e.method == wanted);
        let chosen = pick(method)
            .or_else(|| (method == "HEAD").then(|| pick("GET")).flatten())
            .or_else(|| pick("*"));
        match chosen {
            Some(entry) => Ok((Arc::clone(&entry.handler), params)),
            None => {
                let mut allowed: Vec<&str> = Vec::new();
                for entry in &on_path {
                    allowed.push(&entry.method);
                    if entry.method == "GET" && pick("HEAD").is_none() {
                        allowed.push("HEAD");
                    }
                }
                Err(TestResponse::error(405, "Method Not Allowed")
                    .with_header("allow", &allowed.join(",")))
            }
        }
    }
}

/// Captured parameters, still percent-encoded.
type Params = Vec<(String, String)>;

/// The parameters `path` gives `segments`, if it matches them.
fn capture(segments: &[Segment], path: &str) -> Option<Params> {
    let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let mut params = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Rest(name) => {
                let rest = parts.get(index..)?.join("/");
                if rest.is_empty() {
                    return None;
                }
                params.push((name.clone(), rest));
                return Some(params);
            }
            Segment::Param(name) => {
                let part = parts.get(index).filter(|part| !part.is_empty())?;
                params.push((name.clone(), (*part).to_owned()));
            }
            Segment::Static(text) => {
                if parts.get(index) != Some(&text.as_str()) {
                    return None;
                }
            }
        }
    }
    (parts.len() == segments.len()).then_some(params)
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

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
        let params: Vec<FfiPair> = params
            .iter()
            .map(|(name, value)| pair(name.as_bytes(), value.as_bytes()))
            .collect();
        let headers: Vec<FfiPair> = self
            .headers
            .iter()
            .map(|(name, value)| pair(name.as_bytes(), value))
            .collect();
        FfiRequest {
            text: text.into(),
            method,
            path,
            query,
            params: params.into(),
            headers: headers.into(),
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
/// # impl Plugin for Quiet { async fn startup(&self, _: &Context) -> Result<()> { Ok(()) } }
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
    fn error(status: u16, reason: &str) -> Self {
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

    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    fn from_ffi(ffi: FfiResponse) -> Self {
        if !(100..=999).contains(&ffi.status) {
            let what = format!("plugin returned an invalid response: status {}", ffi.status);
            return TestResponse::error(500, &what);
        }
        let headers = ffi.headers.iter().map(|pair| {
            let name = pair.name.str(&ffi.text).to_ascii_lowercase();
            (name, pair.value.get(&ffi.text).to_vec())
        });
        TestResponse {
            status: ffi.status,
            headers: headers.collect(),
            body: ffi.body.into_vec(),
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
    /// # impl Plugin for Quiet { async fn startup(&self, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// # let host = TestHost::start(Quiet).await?;
    /// let err = host.get("/nowhere").await.json::<serde_json::Value>().unwrap_err();
    /// assert!(err.message().contains("404: Not Found"));
    /// # Ok(()) }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        decode_json(&self.body).map_err(|err| Error::msg(format!("{err} in the response {self:?}")))
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
    /// # use plugin_api::{testing::{TestHost, TestRequest}, Context, Plugin, Request, Result, Route};
    /// #[derive(Default)]
    /// struct Items;
    /// impl Plugin for Items {
    ///     async fn startup(&self, ctx: &Context) -> Result<()> {
    ///         ctx.route(Route::put("/items/{id}"), |req: Request| async move {
    ///             let id = req.param("id").unwrap_or_default().to_owned();
    ///             let body: serde_json::Value = req.json()?;
    ///             Ok(plugin_api::Json(serde_json::json!({ "id": id, "path": req.path(), "body": body })))
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
            RResult::RErr(reason) => TestResponse::error(500, &reason),
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
    /// # impl Plugin for Quiet { async fn startup(&self, _: &Context) -> Result<()> { Ok(()) } }
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
    ///     async fn startup(&self, ctx: &Context) -> Result<()> {
    ///         ctx.route(Route::get("/hello"), |_req: Request| async { Ok("hi") })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_the_router_reads_them() {
        let segments = parse("/a/{id}/{*rest}").unwrap();
        assert_eq!(
            segments,
            [
                Segment::Static("a".into()),
                Segment::Param("id".into()),
                Segment::Rest("rest".into())
            ]
        );
        for bad in ["/{*rest}/x", "/{}", "/{a}/{a}", "/x{a}", "/{a"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn captures_need_non_empty_segments() {
        let route = parse("/a/{id}").unwrap();
        assert_eq!(
            capture(&route, "/a/7"),
            Some(vec![("id".into(), "7".into())])
        );
        assert_eq!(capture(&route, "/a/"), None);
        assert_eq!(capture(&route, "/a/7/x"), None);
        let rest = parse("/files/{*path}").unwrap();
        assert_eq!(
            capture(&rest, "/files/a/b"),
            Some(vec![("path".into(), "a/b".into())])
        );
        assert_eq!(capture(&rest, "/files/"), None);
        assert_eq!(capture(&parse("/").unwrap(), "/"), Some(vec![]));
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
