//! The app's routes, matched once per request.
//!
//! The [`front`](super::front) layer matches the request's path here, which gives the route's
//! metrics series and the route itself, and calls that route's method router directly. An
//! axum `Router` behind the front would match the path a second time and record its match in
//! the request's extensions (the matched path, the original URI, the parameters: an
//! extensions map and three boxed values per request), none of which the host's handlers
//! read. What the router did beyond matching stays axum's: each route is a `MethodRouter`,
//! which answers `405` with `Allow`, serves `HEAD` with the `GET` handler, and sets
//! `Content-Length` — or, for the status route, a `GET` answered at once with the same
//! answers to `HEAD` and other methods ([`Methods::Get`]). The parameters a route captures, percent-decoded as axum decodes them,
//! are put in the request's extensions as [`PathParams`], only when there are any.

use std::sync::{Arc, Mutex, PoisonError};

use axum::{
    body::Body,
    extract::{FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, future::RouteFuture, MethodRouter},
};
use tower::Service;

use super::{errors, json_body::BadRequest};
use crate::metrics::http::{HttpMetrics, InFlight, RouteSeries, HOST, UNMATCHED};

/// What serves a route.
pub enum Methods {
    /// axum's method router: the route's handlers by method, `405` with `Allow` for the
    /// other methods, `HEAD` served by the `GET` handler, `Content-Length` set.
    Router(Box<MethodRouter>),
    /// A `GET` answered at once, without a future or a boxed handler (the status route,
    /// which monitors call in a loop). As axum's method router answers it: `HEAD` gets the
    /// same response (hyper sends its `Content-Length`, not its body), any other method
    /// `405` with `Allow: GET,HEAD`.
    Get(fn() -> Response),
}

impl From<MethodRouter> for Methods {
    fn from(router: MethodRouter) -> Self {
        Methods::Router(Box::new(router))
    }
}

/// A [`Methods`] as the table keeps it.
enum Endpoint {
    /// `MethodRouter` is called through `&mut self` although a call only reads it (the
    /// handler is cloned into the returned future); the lock is held while that future is
    /// built, never while it runs. Cloning the whole method router instead would allocate
    /// every endpoint of it per request.
    Router(Box<Mutex<MethodRouter>>),
    Get(fn() -> Response),
}

/// One route: what serves it and its metrics series.
struct Route {
    series: Arc<RouteSeries>,
    endpoint: Endpoint,
}

/// A route's answer: at once, or a future.
pub enum Called {
    Ready(Response),
    Pending(RouteFuture<std::convert::Infallible>),
}

impl Endpoint {
    fn of(methods: Methods) -> Endpoint {
        match methods {
            // Turns each handler into its route once, here; left as a handler, it would be
            // cloned and boxed into a route on every request.
            Methods::Router(router) => {
                Endpoint::Router(Box::new(Mutex::new(router.with_state(()))))
            }
            Methods::Get(answer) => Endpoint::Get(answer),
        }
    }
}

impl Route {
    fn call(&self, request: Request) -> Called {
        match &self.endpoint {
            Endpoint::Router(methods) => {
                // A panic while the future is built leaves nothing half-changed: the router
                // is only read.
                let mut methods = methods.lock().unwrap_or_else(PoisonError::into_inner);
                Called::Pending(methods.call(request))
            }
            Endpoint::Get(answer) => match *request.method() {
                Method::GET | Method::HEAD => Called::Ready(answer()),
                _ => Called::Ready(get_only()),
            },
        }
    }
}

/// `405` to a method other than `GET` and `HEAD`, with the `Allow` header axum's method
/// router gives (the body is filled in by the front, as for axum's).
fn get_only() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    response
}

/// The routes of one app: registered paths (`/{name}/…`, as given to [`RouteTable::build`]),
/// each with its method router and metrics series, and the answer to a path none matches.
pub struct RouteTable {
    router: matchit::Router<usize>,
    routes: Vec<Route>,
    /// `404 Not Found` in the original's words, labelled `unmatched`.
    unmatched: Route,
    metrics: HttpMetrics,
}

/// A request's route, found by [`RouteTable::find`].
pub struct Found<'t> {
    route: &'t Route,
    params: Option<PathParams>,
}

impl Found<'_> {
    /// The route's metrics series (`unmatched` when no route matched).
    pub fn series(&self) -> &Arc<RouteSeries> {
        &self.route.series
    }

    /// Calls the route with `request`, its parameters added.
    pub fn call(self, mut request: Request) -> Called {
        if let Some(params) = self.params {
            request.extensions_mut().insert(params);
        }
        self.route.call(request)
    }
}

impl RouteTable {
    /// `routes`: each full path, the plugin serving it (`None`: the host) and its method
    /// router. Routes of one path are merged into one method router, as `Router::route`
    /// merges them (a method given twice panics, as there). A path the matcher refuses is
    /// logged and left out: the host's paths are fixed and plugin paths were checked with
    /// the same matcher when registered (`plugin_abi::routes`).
    pub fn build(
        metrics: &HttpMetrics,
        routes: impl IntoIterator<Item = (String, Option<String>, Methods)>,
    ) -> RouteTable {
        let mut router = matchit::Router::new();
        let mut paths: Vec<String> = Vec::new();
        let mut merged: Vec<(Option<String>, Methods)> = Vec::new();
        for (path, plugin, methods) in routes {
            if let Some(index) = paths.iter().position(|p| *p == path) {
                let existing = &mut merged[index].1;
                let placeholder = Methods::Get(get_only);
                match (std::mem::replace(existing, placeholder), methods) {
                    (Methods::Router(a), Methods::Router(b)) => {
                        *existing = Methods::Router(Box::new(a.merge(*b)));
                    }
                    (kept, _) => {
                        *existing = kept;
                        tracing::error!("a second route at {path} left out: one is GET-only");
                    }
                }
                continue;
            }
            if let Err(err) = router.insert(path.as_str(), merged.len()) {
                tracing::error!("route {path} left out: {err}");
                continue;
            }
            paths.push(path);
            merged.push((plugin, methods));
        }
        let routes = paths
            .iter()
            .zip(merged)
            .map(|(path, (plugin, methods))| Route {
                series: metrics.route(path, plugin.as_deref().unwrap_or(HOST)),
                endpoint: Endpoint::of(methods),
            })
            .collect();
        RouteTable {
            router,
            routes,
            unmatched: Route {
                series: metrics.route(UNMATCHED, HOST),
                endpoint: Endpoint::of(any(not_found).into()),
            },
            metrics: metrics.clone(),
        }
    }

    /// The route of `path`, or the `unmatched` answer.
    pub fn find(&self, path: &str) -> Found<'_> {
        match self.router.at(path) {
            Ok(matched) => Found {
                route: &self.routes[*matched.value],
                params: PathParams::decoded(&matched.params),
            },
            Err(_) => Found {
                route: &self.unmatched,
                params: None,
            },
        }
    }

    /// Counts a request in flight until the guard is dropped (in the registry the series
    /// belong to, so that the app records into one registry only).
    pub fn in_flight(&self) -> InFlight {
        self.metrics.in_flight()
    }
}

async fn not_found() -> Response {
    errors::text(StatusCode::NOT_FOUND, "Not Found")
}

/// The parameters a route captured (`{id}`, `{*rest}`), in the route's order,
/// percent-decoded; `Err` names the first one that is not UTF-8 once decoded (`%FF`).
///
/// Also the extractor of the host's handlers: refused with the JSON 400 the SDK's
/// extractors give for a bad path.
#[derive(Debug, Clone)]
pub struct PathParams(Result<Vec<(String, String)>, String>);

impl Default for PathParams {
    /// A route without parameters.
    fn default() -> Self {
        PathParams(Ok(Vec::new()))
    }
}

impl PathParams {
    fn decoded(params: &matchit::Params<'_, '_>) -> Option<PathParams> {
        if params.is_empty() {
            return None;
        }
        let mut decoded = Vec::with_capacity(params.len());
        for (name, value) in params.iter() {
            match percent_encoding::percent_decode_str(value).decode_utf8() {
                Ok(value) => decoded.push((name.to_owned(), value.into_owned())),
                Err(_) => return Some(PathParams(Err(name.to_owned()))),
            }
        }
        Some(PathParams(Ok(decoded)))
    }

    /// Every parameter as (name, value), or the 400 answer when one is not UTF-8.
    pub fn pairs(&self) -> Result<&[(String, String)], BadRequest> {
        self.0.as_deref().map_err(|name| {
            BadRequest::new(
                format!("path: parameter `{name}` is not valid UTF-8 once decoded"),
                None,
            )
        })
    }

    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Result<Option<&str>, BadRequest> {
        let pairs = self.pairs()?;
        Ok(pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str()))
    }
}

impl<S: Sync> FromRequestParts<S> for PathParams {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        // Taken, not cloned: nothing after the handler's extractors reads them.
        let params = parts.extensions.remove::<PathParams>().unwrap_or_default();
        match params.pairs() {
            Ok(_) => Ok(params),
            Err(bad) => Err(bad.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    fn table() -> RouteTable {
        let metrics = crate::metrics::Metrics::new();
        let route = |path: &str, methods: MethodRouter| (path.to_owned(), None, methods.into());
        RouteTable::build(
            &metrics.http,
            [
                route("/a/{id}", get(|| async { "get" })),
                route("/a/{id}", axum::routing::post(|| async { "post" })),
                route("/a/me", get(|| async { "me" })),
                route("/files/{*path}", get(|| async { "file" })),
                (
                    "/s".to_owned(),
                    None,
                    Methods::Get(|| Response::new(Body::from("s"))),
                ),
            ],
        )
    }

    fn params(table: &RouteTable, path: &str) -> Option<PathParams> {
        table.find(path).params
    }

    #[test]
    fn paths_match_as_the_router_ranks_them_and_parameters_are_decoded() {
        let table = table();
        let pairs = |path| params(&table, path).map(|p| p.pairs().unwrap().to_vec());
        assert_eq!(pairs("/a/me"), None);
        assert_eq!(pairs("/a/x%20y"), Some(vec![("id".into(), "x y".into())]));
        assert_eq!(pairs("/a/100%"), Some(vec![("id".into(), "100%".into())]));
        assert_eq!(
            pairs("/files/a/b%2Fc"),
            Some(vec![("path".into(), "a/b/c".into())])
        );
        assert!(std::ptr::eq(
            table.find("/a/").series().as_ref(),
            table.unmatched.series.as_ref()
        ));
        let bad = params(&table, "/a/%FF").unwrap();
        let refused = bad.pairs().unwrap_err().0.error;
        assert_eq!(
            refused,
            "path: parameter `id` is not valid UTF-8 once decoded"
        );
    }

    /// Status, `Allow` and body of `method path`, served by the route the table finds.
    async fn answer(table: &RouteTable, method: &str, path: &str) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = match table.find(path).call(request) {
            Called::Ready(response) => response,
            Called::Pending(future) => future.await.unwrap(),
        };
        let status = response.status();
        let allow = response
            .headers()
            .get("allow")
            .map_or("", |v| v.to_str().unwrap());
        let allow = allow.to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1000).await;
        let body = String::from_utf8(body.unwrap().to_vec()).unwrap();
        (status, allow, body)
    }

    #[tokio::test]
    async fn merged_methods_answer_and_others_are_405_with_allow() {
        let table = table();
        let ok = |body: &str| (StatusCode::OK, String::new(), body.to_owned());
        assert_eq!(answer(&table, "GET", "/a/1").await, ok("get"));
        assert_eq!(answer(&table, "POST", "/a/1").await, ok("post"));
        assert_eq!(answer(&table, "GET", "/a/me").await, ok("me"));
        // HEAD by the GET handler, without the body.
        assert_eq!(answer(&table, "HEAD", "/a/1").await, ok(""));
        let (status, allow, _) = answer(&table, "DELETE", "/a/1").await;
        assert_eq!(
            (status, allow.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "GET,HEAD,POST")
        );
        assert_eq!(answer(&table, "GET", "/s").await, ok("s"));
        let (status, allow, _) = answer(&table, "PUT", "/s").await;
        assert_eq!(
            (status, allow.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "GET,HEAD")
        );
        let (status, _, body) = answer(&table, "GET", "/b").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "404: Not Found")
        );
    }
}
