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
pub mod route_table;
pub mod server;
pub mod shared_wait;
pub mod status;
pub mod swagger_ui;
pub mod ui;

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    extract::Request,
    routing::{get, MethodFilter, MethodRouter},
};

use crate::plugins::routes::RouteEntry;
use front::Front;
use plugin_route::PluginRoute;
use route_table::{Methods, RouteTable};

/// The service's HTTP app, as [`app`] builds it.
pub type App = Front;

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

/// Builds the service's HTTP app: the route table behind the [`front`].
///
/// Every route is registered under its full path (`/{name}/…`) rather than nested under the
/// prefix: nesting rewrites each request's URI to strip the prefix, an allocation per request
/// that no handler needs (plugins see the full path anyway).
pub fn app(spec: AppSpec) -> App {
    let prefix = format!("/{}", spec.name);
    let full = |path: &str| format!("{prefix}{path}");
    // Every route: its full path, its plugin (`None`: the host), its method router.
    let serve_metrics = get(metrics::metrics).with_state(Arc::clone(&spec.metrics));
    let mut routes: Vec<(String, Option<String>, Methods)> = vec![
        (full("/_service/status"), None, Methods::Get(status::status)),
        (full(metrics::PREFIXED), None, serve_metrics.clone().into()),
        (metrics::UNPREFIXED.to_owned(), None, serve_metrics.into()),
    ];
    #[cfg(feature = "bench-native")]
    {
        // The bench plugin's `/bench/plugin` handler, compiled in (bench/ compares the two).
        routes.push((
            full("/_bench/native"),
            None,
            get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }).into(),
        ));
    }
    for (path, method_router) in spec.extra {
        routes.push((full(&path), None, method_router.into()));
    }
    for (path, (plugin, method_router)) in plugin_method_routers(spec.plugin_routes) {
        routes.push((full(&path), Some(plugin), method_router.into()));
    }
    Front {
        routes: Arc::new(RouteTable::build(&spec.metrics.http, routes)),
        max_body_size: spec.max_body_size,
        body_timeouts: spec.body_timeouts,
        access_log: spec.debug,
    }
}

/// The plugin routes as one method router per path (with the plugin serving the path).
fn plugin_method_routers(entries: Vec<RouteEntry>) -> BTreeMap<String, (String, MethodRouter)> {
    let mut by_path: BTreeMap<String, (String, MethodRouter)> = BTreeMap::new();
    for entry in entries {
        let path = entry.path.clone();
        let plugin = entry.plugin.clone();
        let filter = method_filter(&entry.method);
        let route = Arc::new(PluginRoute {
            plugin: entry.plugin.clone(),
            entry,
        });
        let handler = move |request: Request| plugin_route::serve(Arc::clone(&route), request);
        let (_, current) = by_path.remove(&path).unwrap_or_default();
        let updated = match filter {
            Some(filter) => current.on(filter, handler),
            None => current.fallback(handler),
        };
        by_path.insert(path, (plugin, updated));
    }
    by_path
}
