//! The routes plugins register during startup, checked as they come in so that a bad path
//! or a clash is an error the plugin sees, not a panic in the router later. The rules are
//! plugin-abi's [`RouteTable`](plugin_abi::routes::RouteTable), which the SDK's test host
//! applies too; this adds what only the real host keeps: the route's documentation.

use std::sync::Arc;

use plugin_abi::{error_code, routes, FfiError, RouteHandlerBox};
use serde_json::Value;

/// One plugin route.
#[derive(Clone)]
pub struct RouteEntry {
    pub plugin: String,
    /// Upper-case method or `*` for any.
    pub method: String,
    /// Relative to the service prefix.
    pub path: String,
    /// OpenAPI operation fragment the plugin declared.
    pub docs: Option<Value>,
    pub handler: Arc<RouteHandlerBox>,
}

/// What the host keeps with a route beside its plugin, method and path.
struct Route {
    docs: Option<Value>,
    handler: RouteHandlerBox,
}

#[derive(Default)]
pub struct RouteTable {
    table: routes::RouteTable<Route>,
}

impl RouteTable {
    pub fn add(
        &mut self,
        plugin: &str,
        method: &str,
        path: &str,
        docs_json: &str,
        handler: RouteHandlerBox,
    ) -> Result<(), FfiError> {
        let docs = match docs_json.trim() {
            "" => None,
            text => Some(serde_json::from_str(text).map_err(|err| {
                FfiError::new(
                    error_code::INVALID,
                    format!("route {path}: invalid docs: {err}"),
                )
            })?),
        };
        self.table
            .add(plugin, method, path, Route { docs, handler })
    }

    /// Ends registration and hands the routes to the router.
    pub fn freeze(&mut self) -> Vec<RouteEntry> {
        self.table
            .take()
            .into_iter()
            .map(|entry| RouteEntry {
                plugin: entry.plugin,
                method: entry.method,
                path: entry.path,
                docs: entry.value.docs,
                handler: Arc::new(entry.value.handler),
            })
            .collect()
    }
}
