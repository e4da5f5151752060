//! The routes plugins register during startup, checked as they come in so that a bad path
//! or a clash is an error the plugin sees, not a panic in the router later. The rules are
//! plugin-abi's [`RouteTable`](plugin_abi::routes::RouteTable), which the SDK's test host
//! applies too; this adds what only the real host keeps: the route's documentation.

use std::sync::Arc;

use plugin_abi::{error_code, routes, FfiError, RouteHandlerBox};

/// One plugin route.
#[derive(Clone)]
pub struct RouteEntry {
    pub plugin: String,
    /// Upper-case method or `*` for any.
    pub method: String,
    /// Relative to the service prefix.
    pub path: String,
    /// The OpenAPI operation fragment the plugin declared, as the JSON text it gave (parsed
    /// once when the route was added, so that invalid JSON refuses the route). Kept as text:
    /// only the API document, built at its first use, reads it, and a parsed tree would
    /// hold several times its size on the heap for the process's life.
    pub docs: Option<Arc<str>>,
    pub handler: Arc<RouteHandlerBox>,
}

/// What the host keeps with a route beside its plugin, method and path.
struct Route {
    docs: Option<Arc<str>>,
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
            text => {
                // Parsed as the API document will parse it (its depth, numbers and escapes
                // checked), then dropped: only the text is kept.
                serde_json::from_str::<serde_json::Value>(text).map_err(|err| {
                    FfiError::new(
                        error_code::INVALID,
                        format!("route {path}: invalid docs: {err}"),
                    )
                })?;
                Some(Arc::from(text))
            }
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

#[cfg(test)]
mod tests {
    use abi_stable::{sabi_trait::TD_Opaque, std_types::RResult};
    use plugin_abi::FfiFuture;
    use plugin_abi::{FfiFailure, FfiRequest, FfiResponse, RouteHandler, RouteHandler_TO};

    use super::*;

    /// A handler that is never called: these tests only register routes.
    struct Never;

    impl RouteHandler for Never {
        fn handle(&self, _request: FfiRequest) -> FfiFuture<RResult<FfiResponse, FfiFailure>> {
            FfiFuture::new(async { unreachable!("the route is never called") })
        }
    }

    fn handler() -> RouteHandlerBox {
        RouteHandler_TO::from_value(Never, TD_Opaque)
    }

    #[test]
    fn docs_that_are_not_json_refuse_the_route() {
        let mut table = RouteTable::default();
        let err = table
            .add("p", "GET", "/a", "{\"summary\": ", handler())
            .expect_err("half a JSON object");
        assert_eq!(err.code, error_code::INVALID);
        assert!(
            err.message.as_str().starts_with("route /a: invalid docs: "),
            "{}",
            err.message
        );
        assert!(table.freeze().is_empty(), "the refused route is not kept");
    }

    /// What the document's own parse refuses is refused here, not dropped later: a number
    /// out of range, a lone surrogate, nesting past serde_json's limit.
    #[test]
    fn docs_the_document_could_not_read_refuse_the_route() {
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        for docs in [r#"{"x": 1e400}"#, r#"{"x": "\ud800"}"#, deep.as_str()] {
            let mut table = RouteTable::default();
            let err = table
                .add("p", "GET", "/a", docs, handler())
                .expect_err(docs);
            assert_eq!(err.code, error_code::INVALID, "{docs}");
        }
    }

    #[test]
    fn docs_are_kept_as_the_text_the_plugin_gave() {
        let mut table = RouteTable::default();
        let docs = " {\"summary\": \"One\", \"tags\": [\"t\"]}\n";
        table.add("p", "GET", "/a", docs, handler()).unwrap();
        table.add("p", "GET", "/b", "  ", handler()).unwrap();
        let routes = table.freeze();
        let by_path = |path: &str| routes.iter().find(|r| r.path == path).unwrap();
        assert_eq!(by_path("/a").docs.as_deref(), Some(docs.trim()));
        assert_eq!(by_path("/b").docs, None, "blank docs are no docs");
    }
}
