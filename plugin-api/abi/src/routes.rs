//! The rules every host applies to a route a plugin registers, written once so that the real
//! host and the SDK's test host refuse the same routes with the same words, and match a
//! request to a route the same way: [`check`] for one route, [`RouteTable`] for the set.
//!
//! Paths are matched by `matchit`, the matcher the host's router (axum) uses, so a path that
//! the table accepts is one the router accepts, and the test host finds the route the real
//! host would.

use std::collections::HashMap;

use crate::{error_code, FfiError};

/// Paths the host serves itself; plugins may not use them or anything below them.
pub const RESERVED_PREFIXES: &[&str] = &["/_service", "/_debug", "/api/doc", "/api/asyncapi.json"];

/// The statuses a route's response may have: a final status (1xx are the server's to send,
/// and 101 would switch the connection to a protocol nobody speaks) of a class HTTP defines
/// (600 and above mean nothing to a client). Any other is answered 500 with the JSON error
/// body `{"error": "plugin returned an invalid response: status …"}`.
pub const RESPONSE_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;

/// The answer's words for a response status outside [`RESPONSE_STATUSES`].
pub fn invalid_status(status: u16) -> String {
    format!("plugin returned an invalid response: status {status} (a plugin answers 200 to 599)")
}

/// The answer's words for a response whose content-type code this version does not know
/// (see [`content_type`](crate::content_type)).
pub fn invalid_content_type(code: u8) -> String {
    format!("plugin returned an invalid response: content type code {code}")
}

/// The methods a route may have (`*`: every method).
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "*"];

/// Checks a route's method and path before anything else about it; returns the method in
/// upper case. The path's segments and clashes are each host's own business.
///
/// ```
/// use plugin_abi::routes::check;
/// assert_eq!(check("get", "/hello").unwrap(), "GET");
/// assert!(check("GET", "hello").is_err());
/// assert!(check("GET", "/_service/x").is_err());
/// assert!(check("TRACE", "/x").is_err());
/// ```
pub fn check(method: &str, path: &str) -> Result<String, FfiError> {
    let invalid = |message: String| FfiError::new(error_code::INVALID, message);
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
    Ok(method)
}

/// One registered route: the plugin that registered it, its upper-case method (or `*`), its
/// path, and what the host keeps with it.
pub struct RouteEntry<T> {
    pub plugin: String,
    pub method: String,
    pub path: String,
    pub value: T,
}

/// The routes of a set of plugins, open for registration until [`RouteTable::freeze`].
pub struct RouteTable<T> {
    entries: Vec<RouteEntry<T>>,
    /// Every distinct path, mapped to its index in `paths`.
    router: matchit::Router<usize>,
    paths: Vec<String>,
    /// path → indices into `entries` of the routes on it.
    on_path: HashMap<String, Vec<usize>>,
    frozen: bool,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            entries: Vec::new(),
            router: matchit::Router::new(),
            paths: Vec::new(),
            on_path: HashMap::new(),
            frozen: false,
        }
    }
}

/// A path that matched: its routes and the captured parameters, still percent-encoded.
pub struct Found<'t, T> {
    pub routes: Vec<&'t RouteEntry<T>>,
    pub params: Vec<(String, String)>,
}

impl<T> RouteTable<T> {
    /// Registers a route for `plugin`: refused in the wrong phase, by [`check`], when the
    /// same method (or `*`) is on the same path already, or when the router cannot hold the
    /// path (bad braces, or a path of the same shape with other parameter names).
    ///
    /// ```
    /// use plugin_abi::routes::RouteTable;
    /// let mut table = RouteTable::default();
    /// table.add("a", "GET", "/x/{id}", ()).unwrap();
    /// let clash = table.add("b", "GET", "/x/{id}", ()).unwrap_err();
    /// assert_eq!(clash.message.as_str(), "route GET /x/{id} is already registered by plugin a");
    /// assert!(table.add("b", "GET", "/x/{name}", ()).is_err());
    /// table.add("b", "POST", "/x/{id}", ()).unwrap();
    /// ```
    pub fn add(
        &mut self,
        plugin: &str,
        method: &str,
        path: &str,
        value: T,
    ) -> Result<(), FfiError> {
        if self.frozen {
            return Err(FfiError::new(
                error_code::WRONG_PHASE,
                format!(
                    "cannot add route {method} {path}: routes must be registered during startup"
                ),
            ));
        }
        let method = check(method, path)?;
        match self.on_path.get(path) {
            Some(existing) => {
                let overlapping = existing
                    .iter()
                    .map(|&i| &self.entries[i])
                    .find(|e| e.method == method || e.method == "*" || method == "*");
                if let Some(owner) = overlapping {
                    return Err(FfiError::new(
                        error_code::CONFLICT,
                        format!(
                            "route {method} {path} is already registered by plugin {}",
                            owner.plugin
                        ),
                    ));
                }
            }
            None => {
                self.router.insert(path, self.paths.len()).map_err(|err| {
                    FfiError::new(
                        error_code::INVALID,
                        format!("route path \"{path}\" is not usable: {err}"),
                    )
                })?;
                self.paths.push(path.to_owned());
            }
        }
        let index = self.entries.len();
        self.on_path.entry(path.to_owned()).or_default().push(index);
        self.entries.push(RouteEntry {
            plugin: plugin.to_owned(),
            method,
            path: path.to_owned(),
            value,
        });
        Ok(())
    }

    /// Ends registration: every later [`add`](Self::add) is refused.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Every route, in registration order.
    pub fn entries(&self) -> &[RouteEntry<T>] {
        &self.entries
    }

    /// Ends registration and hands over the routes, in registration order.
    pub fn take(&mut self) -> Vec<RouteEntry<T>> {
        self.freeze();
        self.on_path.clear();
        self.router = matchit::Router::new();
        self.paths.clear();
        std::mem::take(&mut self.entries)
    }

    /// The routes on the path `path` matches (as the router ranks paths: static segments
    /// before parameters before a catch-all), with the parameters it captures.
    ///
    /// ```
    /// use plugin_abi::routes::RouteTable;
    /// let mut table = RouteTable::default();
    /// table.add("a", "GET", "/x/{id}", 1).unwrap();
    /// table.add("a", "GET", "/x/me", 2).unwrap();
    /// assert_eq!(table.find("/x/me").unwrap().routes[0].value, 2);
    /// let found = table.find("/x/7").unwrap();
    /// assert_eq!(found.params, [("id".to_owned(), "7".to_owned())]);
    /// assert!(table.find("/x/").is_none());
    /// ```
    pub fn find(&self, path: &str) -> Option<Found<'_, T>> {
        let matched = self.router.at(path).ok()?;
        let on_path = self.on_path.get(&self.paths[*matched.value])?;
        Some(Found {
            routes: on_path.iter().map(|&i| &self.entries[i]).collect(),
            params: matched
                .params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }
}
