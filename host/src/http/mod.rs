//! The HTTP app: every route under `/{name}`, plugin routes among them, behind the
//! [`front`] layer (CORS and error bodies as the original, the body limit, the access log).

pub mod access_log;
pub mod asyncapi;
pub mod body;
pub mod body_timeout;
pub mod conn_timeout;
pub mod cors;
pub mod debug;
pub mod errors;
pub mod front;
pub mod health;
pub mod json_body;
pub mod metrics;
pub mod openapi;
pub mod plugin_route;
pub mod server;
pub mod shared_wait;
pub mod status;
pub mod swagger_ui;
pub mod ui;

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    extract::{rejection::RawPathParamsRejection, RawPathParams, Request},
    http::StatusCode,
    routing::{get, MethodFilter, MethodRouter},
    Router,
};
use tower::Layer;

use crate::{metrics::http::RouteMatcher, plugins::routes::RouteEntry};
use front::{Front, FrontLayer};
use plugin_route::PluginRoute;

/// The service's HTTP app, as [`app`] builds it.
pub type App = Front<Router>;

/// What the router is built from.
pub struct AppSpec {
    pub name: String,
    pub max_body_size: usize,
    /// `--http-body-timeout` and `--http-body-idle-timeout`.
    pub body_timeouts: body_timeout::BodyTimeouts,
    pub debug: bool,
    pub plugin_routes: Vec<RouteEntry>,
    /// Built-in routes added by other parts of the host (eventbus, docs), relative paths.
    pub extra: Vec<(String, MethodRouter)>,
    /// The service's metrics: what the app records, and what its metrics routes serve.
    pub metrics: Arc<crate::metrics::Metrics>,
}

fn method_filter(method: &str) -> Option<MethodFilter> {
    Some(match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        "HEAD" => MethodFilter::HEAD,
        _ => return None,
    })
}

/// Builds the service's HTTP app: the router behind the [`front`] layer.
///
/// Every route is registered under its full path (`/{name}/…`) rather than nested under the
/// prefix: nesting rewrites each request's URI to strip the prefix, an allocation per request
/// that no handler needs (plugins see the full path anyway).
pub fn app(spec: AppSpec) -> App {
    let prefix = format!("/{}", spec.name);
    let full = |path: &str| format!("{prefix}{path}");
    // Every registered path and its plugin (`None`: the host), for the metrics' labels.
    let mut paths: Vec<(String, Option<String>)> = vec![
        (full("/_service/status"), None),
        (full(metrics::PREFIXED), None),
        (metrics::UNPREFIXED.to_owned(), None),
    ];
    let serve_metrics = get(metrics::metrics).with_state(Arc::clone(&spec.metrics));
    let mut app = Router::new()
        .route(&full("/_service/status"), get(status::status))
        .route(&full(metrics::PREFIXED), serve_metrics.clone())
        .route(metrics::UNPREFIXED, serve_metrics);
    #[cfg(feature = "bench-native")]
    {
        // The bench plugin's `/bench/plugin` handler, compiled in (bench/ compares the two).
        paths.push((full("/_bench/native"), None));
        app = app.route(
            &full("/_bench/native"),
            get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
        );
    }
    for (path, method_router) in spec.extra {
        paths.push((full(&path), None));
        app = app.route(&full(&path), method_router);
    }

    let mut by_path: BTreeMap<String, MethodRouter> = BTreeMap::new();
    let mut plugin_of: BTreeMap<String, String> = BTreeMap::new();
    for entry in spec.plugin_routes {
        let path = entry.path.clone();
        plugin_of.insert(path.clone(), entry.plugin.clone());
        let filter = method_filter(&entry.method);
        let route = Arc::new(PluginRoute {
            plugin: entry.plugin.clone(),
            entry,
        });
        let handler = move |params: Result<RawPathParams, RawPathParamsRejection>,
                            request: Request| {
            plugin_route::serve(Arc::clone(&route), params, request)
        };
        let current = by_path.remove(&path).unwrap_or_default();
        let updated = match filter {
            Some(filter) => current.on(filter, handler),
            None => current.fallback(handler),
        };
        by_path.insert(path, updated);
    }
    for (path, method_router) in by_path {
        if let Some(plugin) = plugin_of.remove(&path) {
            paths.push((full(&path), Some(plugin)));
        }
        app = app.route(&full(&path), method_router);
    }

    // `with_state` turns every handler into its route once, here; a router left without it
    // converts (clones and boxes) the matched handler on every request.
    let router = app
        .fallback(|| async { errors::text(StatusCode::NOT_FOUND, "Not Found") })
        .with_state(());
    let routes = RouteMatcher::new(
        &spec.metrics.http,
        paths
            .iter()
            .map(|(p, plugin)| (p.as_str(), plugin.as_deref())),
    );
    FrontLayer {
        max_body_size: spec.max_body_size,
        body_timeouts: spec.body_timeouts,
        access_log: spec.debug,
        routes: Arc::new(routes),
    }
    .layer(router)
}
