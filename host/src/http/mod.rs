//! The HTTP app: every route under `/{name}`, CORS and error bodies as the original,
//! a body limit, and plugin routes.

pub mod access_log;
pub mod cors;
pub mod debug;
pub mod errors;
pub mod health;
pub mod openapi;
pub mod plugin_route;
pub mod status;
pub mod swagger_ui;

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    extract::{RawPathParams, Request},
    http::StatusCode,
    middleware,
    routing::{get, MethodFilter, MethodRouter},
    Router,
};
use tower_http::{catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer};

use crate::plugins::routes::RouteEntry;
use plugin_route::PluginRoute;

/// What the router is built from.
pub struct AppSpec {
    pub name: String,
    pub max_body_size: usize,
    pub debug: bool,
    pub plugin_routes: Vec<RouteEntry>,
    /// Built-in routes added by other parts of the host (eventbus, docs), relative paths.
    pub extra: Vec<(String, MethodRouter)>,
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

/// Builds the service's router.
pub fn router(spec: AppSpec) -> Router {
    let prefix = format!("/{}", spec.name);
    let mut inner = Router::new().route("/_service/status", get(status::status));
    #[cfg(feature = "bench-native")]
    {
        // The bench plugin's `/bench/plugin` handler, compiled in (bench/ compares the two).
        inner = inner.route(
            "/_bench/native",
            get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
        );
    }
    for (path, method_router) in spec.extra {
        inner = inner.route(&path, method_router);
    }

    let mut by_path: BTreeMap<String, MethodRouter> = BTreeMap::new();
    for entry in spec.plugin_routes {
        let path = entry.path.clone();
        let filter = method_filter(&entry.method);
        let route = Arc::new(PluginRoute {
            plugin: entry.plugin.clone(),
            entry,
        });
        let handler = move |params: RawPathParams, request: Request| {
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
        inner = inner.route(&path, method_router);
    }

    let mut app = Router::new()
        .nest(&prefix, inner)
        .fallback(|| async { errors::text(StatusCode::NOT_FOUND, "Not Found") })
        .layer(RequestBodyLimitLayer::new(spec.max_body_size))
        .layer(middleware::from_fn(errors::fill_error_bodies))
        .layer(CatchPanicLayer::custom(|_| {
            errors::text(StatusCode::INTERNAL_SERVER_ERROR, "host handler panicked")
        }))
        .layer(middleware::from_fn(cors::cors));
    if spec.debug {
        app = app.layer(middleware::from_fn(access_log::access_log));
    }
    app
}
