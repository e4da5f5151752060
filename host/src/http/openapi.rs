//! The service's OpenAPI 3.0 document, served at `GET /{name}/api/doc/swagger.json` (the
//! original's path; it served Swagger 2.0 there).
//!
//! It lists every route the service has: the host's own (status, health, the `_debug`
//! endpoints, these docs) and every plugin route under its prefixed path, with what the
//! plugin declared through the SDK (`Route::summary`, `request_body`, `response`, `query`,
//! …). A route that declares nothing still appears, with its method and path. Plugin routes
//! are tagged with the plugin's name unless they chose tags; path parameters are listed
//! from the path itself (`{*rest}` becomes `{rest}`); the plugins' named schemas are merged
//! into `components/schemas`, a name clash between different schemas renaming the newcomer
//! (`<plugin>.<Name>`) rather than overwriting. Keys an operation object may not have
//! (set with `Route::openapi`) are dropped, so that a plugin cannot make the document invalid
//! that way; a route without responses gets a `default` one, as OpenAPI requires.
//!
//! The document is built once, after every plugin's startup (routes are frozen by then).

use plugin_api::{
    openapi::{merge_schemas, SCHEMAS_KEY},
    JsonSchema, Route,
};
use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::plugins::routes::RouteEntry;

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

/// `GET /_service/status`.
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[allow(dead_code)] // only its schema is used
struct ServiceStatus {
    /// Always `ok` while the service answers.
    status: String,
}

/// The overall state in `GET /_service/health`.
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum HealthStatus {
    Ok,
    Unhealthy,
}

/// One plugin in `GET /_service/health`.
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[allow(dead_code)]
struct PluginHealth {
    name: String,
    /// The plugin crate's version.
    version: String,
    /// The library's GNU build id in hex, or `sha256:<hex>` (its mapped bytes) when it was
    /// linked without one: which build of the version runs.
    build: Option<String>,
    /// `loaded`, `running`, `failed`, `stopping` or `stopped`.
    state: String,
    /// Why the plugin failed, if it did.
    error: Option<String>,
    /// Names of its running background tasks.
    tasks: Vec<String>,
}

/// One shared feature in `GET /_service/health`.
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[allow(dead_code)]
struct FeatureOwner {
    name: String,
    /// The plugin that provides it.
    plugin: String,
}

/// `GET /_service/health`: the state of every part of the service.
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[allow(dead_code)]
struct HealthReport {
    status: HealthStatus,
    /// The service name.
    service: String,
    /// Why the service is unhealthy; empty when it is not.
    problems: Vec<String>,
    plugins: Vec<PluginHealth>,
    features: Vec<FeatureOwner>,
    /// Connection state, reconnects, last error, listener, publisher and subscriptions.
    eventbus: Map<String, Value>,
}

/// The body of `POST /_debug/publish`.
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[allow(dead_code)]
struct PublishRequest {
    /// Exchange to publish to (declared as a topic exchange).
    exchange: String,
    /// Routing key.
    routing: String,
    /// Any JSON value: the message body.
    message: Value,
}

/// The body of `POST /_debug/subscribe`.
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[allow(dead_code)]
struct SubscribeRequest {
    /// Exchange to subscribe to (declared as a topic exchange); not empty.
    exchange: String,
    /// Routing pattern (topic wildcards `*` and `#`).
    routing: String,
}

/// An OpenAPI 3.0 response object with no body.
fn plain(description: &str) -> Value {
    json!({ "description": description })
}

/// A text response (the host's `"<code>: <reason>"` error bodies).
fn text(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "text/plain": { "schema": { "type": "string" } } },
    })
}

/// One route of the document before it is laid out: who owns it, its OpenAPI methods, its
/// path relative to the prefix and its documentation (an operation object, plus the named
/// schemas it refers to under [`SCHEMAS_KEY`]).
struct DocRoute {
    owner: String,
    methods: Vec<&'static str>,
    path: String,
    docs: Map<String, Value>,
}

impl DocRoute {
    fn of_plugin(entry: &RouteEntry) -> Self {
        let docs = match &entry.docs {
            Some(docs) => object(docs.clone(), &entry.path, &entry.plugin),
            None => Map::new(),
        };
        DocRoute {
            owner: entry.plugin.clone(),
            methods: openapi_methods(&entry.method),
            path: entry.path.clone(),
            docs,
        }
    }
}

/// `docs` as a JSON object; anything else is logged and replaced by an empty one, so the
/// route is still listed.
fn object(docs: Value, path: &str, owner: &str) -> Map<String, Value> {
    match docs {
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

/// The host's own routes, documented with the same builder plugins use.
fn builtin_routes() -> Vec<DocRoute> {
    // `extra` adds responses the builder has no method for (text and empty bodies).
    let builtin = |methods: Vec<&'static str>, route: Route, extra: Vec<(&str, Value)>| {
        let mut docs = object(route.docs(), route.path(), "host");
        if !extra.is_empty() {
            if let Value::Object(responses) = docs.entry("responses").or_insert_with(|| json!({})) {
                for (status, response) in extra {
                    responses.insert(status.to_owned(), response);
                }
                responses.sort_keys();
            }
        }
        DocRoute {
            owner: "host".into(),
            methods,
            path: route.path().to_owned(),
            docs,
        }
    };
    let empty_ok = "Done; an empty body (`application/octet-stream`), as the original";
    vec![
        builtin(
            vec!["get", "head"],
            Route::get("/_service/status")
                .tag(TAG_SERVICE)
                .summary("Service status")
                .description(
                    "Answers `{\"status\": \"ok\"}` (exactly these bytes) while the service \
                     runs.",
                )
                .response::<ServiceStatus>(200, "The service runs"),
            vec![],
        ),
        builtin(
            vec!["get"],
            Route::get("/_service/health")
                .tag(TAG_SERVICE)
                .summary("Service health")
                .description(
                    "The state of every plugin, shared feature and the eventbus. 503 while a \
                     plugin has failed, the eventbus is in use but not connected, or a \
                     subscription was refused.",
                )
                .response::<HealthReport>(200, "Healthy")
                .response::<HealthReport>(503, "Unhealthy: see `problems`"),
            vec![],
        ),
        builtin(
            vec!["get"],
            Route::get(super::metrics::PREFIXED)
                .tag(TAG_SERVICE)
                .summary("Prometheus metrics")
                .description(
                    "Every metric of the process (HTTP, eventbus, plugins, process) in the \
                     Prometheus text format 0.0.4, or in OpenMetrics 1.0 when `Accept` names \
                     `application/openmetrics-text`. Also served unprefixed at `/metrics`.",
                ),
            vec![(
                "200",
                text("The metrics, as `text/plain; version=0.0.4` or OpenMetrics"),
            )],
        ),
        builtin(
            vec!["post"],
            Route::post("/_debug/publish")
                .tag(TAG_EVENTS)
                .summary("Publish a message on the eventbus")
                .description(
                    "Publishes `message` (JSON) to the topic exchange `exchange` with routing \
                     key `routing`, declaring the exchange.",
                )
                .request_body::<PublishRequest>()
                .error_response(400, "The body is not an object with these fields"),
            vec![
                ("200", plain(empty_ok)),
                (
                    "409",
                    text("The broker refused it, e.g. the exchange exists with another type (`409: <reason>`)"),
                ),
                ("413", text("The message is over `--eventbus-max-message-size`")),
                ("503", text("The eventbus is unreachable (`503: <reason>`)")),
            ],
        ),
        builtin(
            vec!["post"],
            Route::post("/_debug/subscribe")
                .tag(TAG_EVENTS)
                .summary("Subscribe to the eventbus")
                .description(
                    "Subscribes to the topic exchange `exchange` with pattern `routing`; what \
                     arrives is logged at INFO (`Unhandled event: …`), as the original's \
                     default handler did.",
                )
                .request_body::<SubscribeRequest>()
                .error_response(400, "The body is not an object with these fields"),
            vec![
                ("200", plain(empty_ok)),
                (
                    "409",
                    text("The broker refused the subscription, or 100 already exist (`409: <reason>`)"),
                ),
                ("503", text("The eventbus is unreachable (`503: <reason>`)")),
            ],
        ),
        builtin(
            vec!["get"],
            Route::get("/api/doc")
                .tag(TAG_DOCS)
                .summary("API documentation (UI)")
                .description(
                    "This interactive page (Swagger UI), served from the binary with no \
                     network access; also at `/api/doc/`.",
                ),
            vec![(
                "200",
                json!({
                    "description": "The page",
                    "content": { "text/html": { "schema": { "type": "string" } } },
                }),
            )],
        ),
        builtin(
            vec!["get"],
            Route::get("/api/doc/swagger.json")
                .tag(TAG_DOCS)
                .summary("API documentation (OpenAPI document)")
                .description("This document: OpenAPI 3.0, every route of the service."),
            vec![(
                "200",
                json!({
                    "description": "The OpenAPI document",
                    "content": { "application/json": { "schema": { "type": "object" } } },
                }),
            )],
        ),
        builtin(
            vec!["get"],
            Route::get("/api/doc/swagger_static/{file}")
                .tag(TAG_DOCS)
                .summary("API documentation (UI assets)")
                .description("The script, style sheet, icon and licence files of the UI.")
                .path_param("file", "File name, e.g. `swagger-ui-bundle.js`"),
            vec![("200", plain("The file")), ("404", text("No such file"))],
        ),
    ]
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

/// Moves the route's named schemas into `components` (a clash renamed, see
/// [`merge_schemas`]) and points the operation's references at their names there.
fn take_schemas(docs: &mut Map<String, Value>, components: &mut Map<String, Value>, owner: &str) {
    let schemas = match docs.remove(SCHEMAS_KEY) {
        Some(Value::Object(schemas)) => schemas,
        _ => return,
    };
    let mut fragments: Vec<&mut Value> = docs.values_mut().collect();
    merge_schemas(components, schemas, &mut fragments, owner);
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

/// Builds the document from the plugin routes (frozen) and the host's own.
pub fn document(info: &DocInfo<'_>, plugin_routes: &[RouteEntry]) -> Value {
    let mut routes = builtin_routes();
    routes.extend(plugin_routes.iter().map(DocRoute::of_plugin));

    let mut paths = Paths::default();
    let mut components = Map::new();
    let mut used_tags: Vec<String> = Vec::new();
    for mut route in routes {
        take_schemas(&mut route.docs, &mut components, &route.owner);
        let (path, path_params) = openapi_path(&route.path);
        let op = operation(route.docs, &route.owner, &path_params);
        for tag in tags(&op) {
            if !used_tags.iter().any(|used| used == tag) {
                used_tags.push(tag.to_owned());
            }
        }
        paths.add(format!("/{}{path}", info.name), &route.methods, &op);
    }

    json!({
        "openapi": OPENAPI_VERSION,
        "info": info_object(info),
        "tags": tag_objects(&used_tags, info.plugins),
        "paths": paths.into_value(),
        "components": { "schemas": components },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "#/components/schemas/PublishRequest"
        );
        assert!(
            doc["components"]["schemas"]["PublishRequest"]["properties"]["message"].is_object()
        );
    }
}
