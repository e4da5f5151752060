//! The plugin's routes under the kit: registered and matched by the host's own table
//! (`plugin_abi::routes`), and called through the plugin's own `RouteHandler` objects.

use std::sync::Arc;

use crate::abi::{routes, FfiError, RouteHandlerBox};

use super::http::TestResponse;

/// The routes of the plugin, open for registration until its startup returns.
#[derive(Default)]
pub(super) struct RouteTable {
    table: routes::RouteTable<Arc<RouteHandlerBox>>,
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
        self.table.add(plugin, method, path, Arc::new(handler))
    }

    /// Ends registration, as the host does once every plugin has started.
    pub fn freeze(&mut self) {
        self.table.freeze();
    }

    /// (method, path) of every route, in registration order.
    pub fn list(&self) -> Vec<(String, String)> {
        let entries = self.table.entries().iter();
        entries
            .map(|e| (e.method.clone(), e.path.clone()))
            .collect()
    }

    /// The route for a request, with its raw parameters, or the response the router gives:
    /// a method on the path, else HEAD served by GET, else `*`; 405 with `allow` when the
    /// path has routes but none for the method.
    pub(super) fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(Arc<RouteHandlerBox>, Params), TestResponse> {
        let Some(found) = self.table.find(path) else {
            return Err(TestResponse::error(404, "Not Found"));
        };
        let on_path = &found.routes;
        let pick = |wanted: &str| on_path.iter().find(|e| e.method == wanted);
        let chosen = pick(method)
            .or_else(|| (method == "HEAD").then(|| pick("GET")).flatten())
            .or_else(|| pick("*"));
        match chosen {
            Some(entry) => Ok((Arc::clone(&entry.value), found.params)),
            None => {
                let mut allowed: Vec<&str> = Vec::new();
                for entry in on_path {
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
pub(super) type Params = Vec<(String, String)>;

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_as_the_router_matches_them() {
        let mut table = RouteTable::default();
        let handler = || {
            struct Nothing;
            impl crate::abi::RouteHandler for Nothing {
                fn handle(
                    &self,
                    _: crate::abi::FfiRequest,
                ) -> crate::abi::FfiFuture<
                    abi_stable::std_types::RResult<crate::abi::FfiResponse, crate::abi::FfiFailure>,
                > {
                    unreachable!("never called")
                }
            }
            crate::abi::RouteHandler_TO::from_value(Nothing, abi_stable::sabi_trait::TD_Opaque)
        };
        table.add("p", "GET", "/a/{id}", handler()).unwrap();
        table.add("p", "GET", "/files/{*path}", handler()).unwrap();
        let params = |path| table.find("GET", path).map(|(_, params)| params);
        assert_eq!(params("/a/7").ok(), Some(vec![("id".into(), "7".into())]));
        assert!(params("/a/").is_err());
        assert!(params("/a/7/x").is_err());
        assert_eq!(
            params("/files/a/b").ok(),
            Some(vec![("path".into(), "a/b".into())])
        );
        assert!(params("/files/").is_err());
        let err = table.find("POST", "/a/7").err().unwrap();
        assert_eq!(err.status(), 405);
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
