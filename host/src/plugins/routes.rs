//! The routes plugins register during startup, checked as they come in so that a bad path
//! or a clash is an error the plugin sees, not a panic in the router later.

use std::{collections::HashMap, sync::Arc};

use plugin_abi::{error_code, FfiError, RouteHandlerBox};
use serde_json::Value;

/// One plugin route.
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

#[derive(Default)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
    validator: matchit::Router<()>,
    /// path → (method, plugin) registered on it
    methods: HashMap<String, Vec<(String, String)>>,
    frozen: bool,
}

fn invalid(message: String) -> FfiError {
    FfiError::new(error_code::INVALID, message)
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
        if self.frozen {
            return Err(FfiError::new(
                error_code::WRONG_PHASE,
                format!(
                    "cannot add route {method} {path}: routes must be registered during startup"
                ),
            ));
        }
        let method = plugin_abi::routes::check(method, path)?;
        let docs = match docs_json.trim() {
            "" => None,
            text => Some(
                serde_json::from_str(text)
                    .map_err(|err| invalid(format!("route {path}: invalid docs: {err}")))?,
            ),
        };
        match self.methods.get(path) {
            Some(existing) => {
                if let Some((_, owner)) = existing
                    .iter()
                    .find(|(m, _)| *m == method || *m == "*" || method == "*")
                {
                    return Err(FfiError::new(
                        error_code::CONFLICT,
                        format!("route {method} {path} is already registered by plugin {owner}"),
                    ));
                }
            }
            None => {
                self.validator.insert(path, ()).map_err(|err| {
                    invalid(format!("route path \"{path}\" is not usable: {err}"))
                })?;
            }
        }
        self.methods
            .entry(path.to_owned())
            .or_default()
            .push((method.clone(), plugin.to_owned()));
        self.entries.push(RouteEntry {
            plugin: plugin.to_owned(),
            method,
            path: path.to_owned(),
            docs,
            handler: Arc::new(handler),
        });
        Ok(())
    }

    /// Ends registration and hands the routes to the router.
    pub fn freeze(&mut self) -> Vec<RouteEntry> {
        self.frozen = true;
        std::mem::take(&mut self.entries)
    }
}
