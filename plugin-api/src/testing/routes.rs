//! The plugin's routes under the kit: registered with the host's checks, matched as the
//! host's router matches them, and called through the plugin's own `RouteHandler` objects.

use std::sync::Arc;

use crate::abi::{error_code, FfiError, RouteHandlerBox};

use super::http::TestResponse;

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
        let method = crate::abi::routes::check(method, path)?;
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
    pub(super) fn find(
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
pub(super) type Params = Vec<(String, String)>;

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
