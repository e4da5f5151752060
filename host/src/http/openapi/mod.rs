//! The service's OpenAPI 3.0 document, served at `GET /{name}/api/doc/swagger.json` (the
//! original's path; it served Swagger 2.0 there).
//!
//! It lists every route the service has: the host's own (status, health, metrics, the
//! `_debug` endpoints, these docs), documented from the types their handlers use
//! (`builtin`), and every plugin route under its prefixed path, with what the plugin
//! declared through the SDK. A route that declares nothing still appears, with its method
//! and path. Plugin routes are tagged with the plugin's name unless they chose tags; path
//! parameters are listed from the path itself (`{*rest}` becomes `{rest}`); the routes'
//! named schemas are merged into `components/schemas` by the rule of [`schemas`]. Keys an
//! operation object may not have (set with `Route::openapi`) are dropped, so that a plugin
//! cannot make the document invalid that way; a route without responses gets a `default`
//! one, as OpenAPI requires. Rustdoc's link markup in descriptions is made plain text
//! ([`doc_links`]).
//!
//! The document is built once, at its first use after every plugin's startup (routes are
//! frozen by then): [`LazyDocument`]. Building it costs some 0.2 M instructions per plugin
//! route (mostly their schemas), which a start or a reload need not wait for.

mod builtin;
pub mod doc_links;
#[cfg(test)]
mod drift_tests;
mod operation;
pub mod schemas;

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::plugins::routes::RouteEntry;
use schemas::{Owner, SCHEMAS_KEY};

/// The OpenAPI version the document follows.
pub const OPENAPI_VERSION: &str = "3.0.3";

/// Tag of `/_service/*`.
pub const TAG_SERVICE: &str = "Service";
/// Tag of `/_debug/*` (the original's name for them).
pub const TAG_EVENTS: &str = "Events";
/// Tag of `/api/doc*`.
pub const TAG_DOCS: &str = "API documentation";

/// Methods a `*` (any method) plugin route is listed with.
const ANY_METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// Keys an OpenAPI 3.0 operation object may have (besides `x-…` extensions).
const OPERATION_KEYS: &[&str] = &[
    "tags",
    "summary",
    "description",
    "externalDocs",
    "operationId",
    "parameters",
    "requestBody",
    "responses",
    "callbacks",
    "deprecated",
    "security",
    "servers",
];

/// What the document says about the service besides its routes.
pub struct DocInfo<'a> {
    /// The service name (`--name`), also the path prefix.
    pub name: &'a str,
    /// Version shown in `info.version`.
    pub version: &'a str,
    /// Every loaded plugin, `(name, version)`, in load order.
    pub plugins: &'a [(String, String)],
}

/// One route of the document before it is laid out: who owns it, its OpenAPI methods, its
/// path relative to the prefix, its documentation (an operation object) and the named
/// schemas the documentation refers to.
struct DocRoute {
    owner: Owner,
    methods: Vec<&'static str>,
    path: String,
    docs: Map<String, Value>,
    schemas: Map<String, Value>,
}

impl DocRoute {
    fn of_plugin(entry: &RouteEntry) -> Self {
        let mut docs = match &entry.docs {
            Some(docs) => object(docs, &entry.path, &entry.plugin),
            None => Map::new(),
        };
        let schemas = match docs.remove(SCHEMAS_KEY) {
            Some(Value::Object(schemas)) => schemas,
            _ => Map::new(),
        };
        DocRoute {
            owner: Owner::Plugin(entry.plugin.clone()),
            methods: openapi_methods(&entry.method),
            path: entry.path.clone(),
            docs,
            schemas,
        }
    }

    fn builtin(operation: operation::Operation) -> Self {
        DocRoute {
            owner: Owner::Host,
            methods: operation.methods,
            path: operation.path,
            docs: operation.docs,
            schemas: operation.schemas,
        }
    }
}

/// The tag of a route that chose none: its plugin's name.
fn default_tag(owner: &Owner) -> &str {
    match owner {
        Owner::Host => "host",
        Owner::Plugin(plugin) => plugin,
    }
}

/// `docs` (JSON text, checked when the route was added) as a JSON object; anything else is
/// logged and replaced by an empty one, so the route is still listed.
fn object(docs: &str, path: &str, owner: &str) -> Map<String, Value> {
    let parsed = match serde_json::from_str::<Value>(docs) {
        Ok(parsed) => parsed,
        Err(err) => {
            tracing::warn!(
                "Route {path} of {owner}: documentation is not JSON ({err}); listed without it"
            );
            return Map::new();
        }
    };
    match parsed {
        Value::Object(docs) => docs,
        other => {
            tracing::warn!(
                "Route {path} of {owner}: documentation is not a JSON object ({other}); listed \
                 without it"
            );
            Map::new()
        }
    }
}

/// The OpenAPI methods of a plugin route's method (`*` → all of [`ANY_METHODS`]).
fn openapi_methods(method: &str) -> Vec<&'static str> {
    match method {
        "GET" => vec!["get"],
        "POST" => vec!["post"],
        "PUT" => vec!["put"],
        "PATCH" => vec!["patch"],
        "DELETE" => vec!["delete"],
        "HEAD" => vec!["head"],
        _ => ANY_METHODS.to_vec(),
    }
}

/// The path as OpenAPI writes it (`{*rest}` → `{rest}`) and its parameters, in order, with
/// whether each is a catch-all.
fn openapi_path(path: &str) -> (String, Vec<(String, bool)>) {
    let mut params = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            match segment
                .strip_prefix('{')
                .and_then(|inner| inner.strip_suffix('}'))
            {
                Some(inner) => {
                    let (name, rest) = match inner.strip_prefix('*') {
                        Some(name) => (name, true),
                        None => (inner, false),
                    };
                    params.push((name.to_owned(), rest));
                    format!("{{{name}}}")
                }
                None => segment.to_owned(),
            }
        })
        .collect();
    (segments.join("/"), params)
}

/// The operation object for one route: the declared docs cleaned up, tags, every path
/// parameter, and a response even when none was declared.
fn operation(
    mut docs: Map<String, Value>,
    owner: &str,
    path_params: &[(String, bool)],
) -> Map<String, Value> {
    docs.retain(|key, _| OPERATION_KEYS.contains(&key.as_str()) || key.starts_with("x-"));
    if !docs.get("tags").is_some_and(|tags| {
        tags.as_array()
            .is_some_and(|tags| !tags.is_empty() && tags.iter().all(Value::is_string))
    }) {
        docs.insert("tags".into(), json!([owner]));
    }

    let declared: Vec<Value> = match docs.remove("parameters") {
        Some(Value::Array(parameters)) => parameters,
        _ => Vec::new(),
    };
    let mut parameters = Vec::new();
    for (name, rest) in path_params {
        let mine = declared
            .iter()
            .find(|p| p["in"] == "path" && p["name"] == name.as_str());
        let mut parameter = match mine {
            Some(parameter) => parameter.clone(),
            None => json!({
                "name": name,
                "in": "path",
                "schema": { "type": "string" },
            }),
        };
        parameter["required"] = Value::Bool(true);
        if *rest && parameter.get("description").is_none() {
            parameter["description"] = json!("The rest of the path; may contain '/'");
        }
        parameters.push(parameter);
    }
    // Other parameters (query, header, cookie); a path parameter the path lacks is dropped.
    parameters.extend(
        declared
            .into_iter()
            .filter(|p| p.is_object() && p["in"] != "path"),
    );
    if !parameters.is_empty() {
        docs.insert("parameters".into(), Value::Array(parameters));
    }

    let has_responses = docs
        .get("responses")
        .and_then(Value::as_object)
        .is_some_and(|responses| !responses.is_empty());
    if !has_responses {
        docs.insert(
            "responses".into(),
            json!({ "default": { "description": "Not documented by the plugin" } }),
        );
    }
    docs
}

/// The `paths` object, in the order paths are first seen.
#[derive(Default)]
struct Paths {
    items: Vec<(String, Map<String, Value>)>,
    index: HashMap<String, usize>,
}

impl Paths {
    /// Lists `op` at `path` under each of `methods` that the path does not have yet. A
    /// route listed under several methods gets one `operationId` per method.
    fn add(&mut self, path: String, methods: &[&str], op: &Map<String, Value>) {
        let index = *self.index.entry(path.clone()).or_insert_with(|| {
            self.items.push((path, Map::new()));
            self.items.len() - 1
        });
        let item = &mut self.items[index].1;
        for &method in methods {
            if item.contains_key(method) {
                continue;
            }
            let mut op = op.clone();
            if methods.len() > 1 {
                if let Some(Value::String(id)) = op.get_mut("operationId") {
                    id.push('_');
                    id.push_str(method);
                }
            }
            item.insert(method.to_owned(), Value::Object(op));
        }
    }

    fn into_value(self) -> Value {
        Value::Object(
            self.items
                .into_iter()
                .map(|(path, item)| (path, Value::Object(item)))
                .collect(),
        )
    }
}

/// The tags of an operation made by [`operation`] (always strings).
fn tags(op: &Map<String, Value>) -> impl Iterator<Item = &str> {
    op.get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The `tags` list: every tag used, in order of first use, described where we know what it
/// stands for.
fn tag_objects(used: &[String], plugins: &[(String, String)]) -> Vec<Value> {
    used.iter()
        .map(|tag| {
            let description = match tag.as_str() {
                TAG_SERVICE => Some("The service itself: status and health".to_owned()),
                TAG_EVENTS => Some("The eventbus, for debugging".to_owned()),
                TAG_DOCS => Some("This documentation".to_owned()),
                other => plugins
                    .iter()
                    .find(|(name, _)| name == other)
                    .map(|(name, version)| format!("Plugin {name} {version}")),
            };
            match description {
                Some(description) => json!({ "name": tag, "description": description }),
                None => json!({ "name": tag }),
            }
        })
        .collect()
}

/// The `info` object: the service, the host's version and the plugins.
fn info_object(info: &DocInfo<'_>) -> Value {
    let plugin_list = if info.plugins.is_empty() {
        "no plugins".to_owned()
    } else {
        info.plugins
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    json!({
        "title": format!("Brewblox Service \"{}\"", info.name),
        "version": info.version,
        "description": format!(
            "Every route of the service \"{}\" (brewblox-host {}, {plugin_list}). \
             Built-in routes are tagged Service, Events and API documentation; plugin \
             routes with the plugin's name.",
            info.name, info.version
        ),
    })
}

/// The document of one generation, built at its first use (the API page, the operator
/// page), then kept.
pub struct LazyDocument {
    name: String,
    plugins: Vec<(String, String)>,
    routes: Vec<RouteEntry>,
    built: std::sync::OnceLock<Value>,
}

impl LazyDocument {
    /// `plugins`: every loaded plugin, `(name, version)`, in load order; `routes`: the plugin
    /// routes, frozen.
    pub fn new(name: &str, plugins: Vec<(String, String)>, routes: Vec<RouteEntry>) -> Self {
        LazyDocument {
            name: name.to_owned(),
            plugins,
            routes,
            built: std::sync::OnceLock::new(),
        }
    }

    /// The plugin routes it documents.
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The document, built now if it was not yet.
    pub fn get(&self) -> &Value {
        self.built.get_or_init(|| {
            let info = DocInfo {
                name: &self.name,
                version: env!("CARGO_PKG_VERSION"),
                plugins: &self.plugins,
            };
            document(&info, &self.routes)
        })
    }
}

/// Builds the document from the plugin routes (frozen) and the host's own.
pub fn document(info: &DocInfo<'_>, plugin_routes: &[RouteEntry]) -> Value {
    let mut routes: Vec<DocRoute> = builtin::routes()
        .into_iter()
        .map(DocRoute::builtin)
        .collect();
    routes.extend(plugin_routes.iter().map(DocRoute::of_plugin));

    let owned: Vec<(Owner, Map<String, Value>)> = routes
        .iter_mut()
        .map(|route| (route.owner.clone(), std::mem::take(&mut route.schemas)))
        .collect();
    let named = schemas::name_schemas(&owned);

    let mut paths = Paths::default();
    let mut used_tags: Vec<String> = Vec::new();
    for (index, route) in routes.into_iter().enumerate() {
        let DocRoute {
            owner,
            methods,
            path,
            docs,
            ..
        } = route;
        let mut docs = Value::Object(docs);
        schemas::rewrite_refs(&mut docs, &|reference| named.new_ref(index, reference));
        let docs = match docs {
            Value::Object(docs) => docs,
            _ => Map::new(),
        };
        let (path, path_params) = openapi_path(&path);
        let op = operation(docs, default_tag(&owner), &path_params);
        for tag in tags(&op) {
            if !used_tags.iter().any(|used| used == tag) {
                used_tags.push(tag.to_owned());
            }
        }
        paths.add(format!("/{}{path}", info.name), &methods, &op);
    }

    let mut doc = json!({
        "openapi": OPENAPI_VERSION,
        "info": info_object(info),
        "tags": tag_objects(&used_tags, info.plugins),
        "paths": paths.into_value(),
        "components": { "schemas": named.components },
    });
    plain_schema_names(&mut doc);
    doc_links::strip_descriptions(&mut doc);
    doc
}

/// Drops the form suffix of a schema whose other form the document does not show
/// (`Reading-Output` alone becomes `Reading`; see `plugin_abi::openapi::plain_names`).
fn plain_schema_names(doc: &mut Value) {
    let Some(Value::Object(components)) = doc.pointer_mut("/components/schemas") else {
        return;
    };
    let renames = plugin_abi::openapi::plain_names(components.keys().map(String::as_str));
    if renames.is_empty() {
        return;
    }
    let old = std::mem::take(components);
    *components = old
        .into_iter()
        .map(|(name, schema)| (renames.get(&name).cloned().unwrap_or(name), schema))
        .collect();
    let refs = plugin_abi::openapi::ref_map(&renames);
    plugin_abi::openapi::rewrite_refs(doc, &refs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_docs_are_read_from_its_text() {
        let docs = object(r#"{"summary": "One", "tags": ["t"]}"#, "/a", "p");
        assert_eq!(
            Value::Object(docs),
            json!({"summary": "One", "tags": ["t"]})
        );
        // Not an object, or (from a table other than the host's) not JSON: listed without.
        assert!(object("[1, 2]", "/a", "p").is_empty());
        assert!(object("{", "/a", "p").is_empty());
    }

    #[test]
    fn paths_and_parameters() {
        assert_eq!(
            openapi_path("/a/{id}/b/{*rest}"),
            (
                "/a/{id}/b/{rest}".to_owned(),
                vec![("id".to_owned(), false), ("rest".to_owned(), true)]
            )
        );
        let op = operation(
            serde_json::from_value(json!({
                "parameters": [
                    {"name": "q", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "id", "in": "path", "required": true, "description": "Id",
                     "schema": {"type": "string"}},
                    {"name": "gone", "in": "path", "required": true, "schema": {}},
                ],
                "bogus": 1,
                "x-fine": 2,
            }))
            .unwrap(),
            "p",
            &[("id".into(), false), ("rest".into(), true)],
        );
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "rest", "q"]);
        assert_eq!(op["parameters"][0]["description"], "Id");
        assert_eq!(op["tags"], json!(["p"]));
        assert!(op.get("bogus").is_none());
        assert_eq!(op["x-fine"], 2);
        assert!(op["responses"]["default"].is_object());
    }

    #[test]
    fn builtin_routes_are_listed() {
        let info = DocInfo {
            name: "svc",
            version: "1.2.3",
            plugins: &[],
        };
        let doc = document(&info, &[]);
        assert_eq!(doc["info"]["title"], "Brewblox Service \"svc\"");
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/svc/_service/status",
            "/svc/_service/health",
            "/svc/_service/metrics",
            "/svc/_debug/publish",
            "/svc/_debug/subscribe",
            "/svc/api/doc",
            "/svc/api/doc/swagger.json",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
        assert!(paths["/svc/_service/status"]["head"].is_object());
        let body = &paths["/svc/_debug/publish"]["post"]["requestBody"];
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/PublishBody"
        );
        assert!(
            doc["components"]["schemas"]["PublishRequest"]["properties"]["message"].is_object()
        );
    }
}
