//! The API documentation: the OpenAPI document at
//! `/{name}/api/doc/swagger.json` and the Swagger UI at `/{name}/api/doc`, with the real
//! host and the real device, history and testkit plugins.
//!
//! - the document lists every built-in and plugin route, with tags, parameters and schemas;
//! - it is valid against the official OpenAPI 3.0 JSON Schema (vendored in
//!   `tests/fixtures/openapi/`, nothing fetched);
//! - the routes' real answers match the schemas the document gives them;
//! - the UI is served from the binary, and headless Chromium renders it (device routes
//!   listed) without the page requesting anything but this service.

use std::{collections::BTreeSet, time::Duration};

use integration_tests::{
    amqp,
    browser::{chromium, render},
    wait_until, workspace_root, Host, PluginDir,
};
use serde_json::{json, Value};

const NAME: &str = "test_svc";

fn docs_host() -> (Host, PluginDir) {
    let dir = PluginDir::with(&["device-plugin", "history-plugin", "testkit-plugin"]);
    let host = Host::builder(dir.path())
        .name(NAME)
        .args(&["--update-interval", "0"])
        .start();
    (host, dir)
}

fn fetch_document(host: &Host) -> Value {
    let response = host.get("/api/doc/swagger.json");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{headers:?}"
    );
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(headers.contains_key("etag"));
    response.json().expect("the document is JSON")
}

/// The operation for `method` at the prefixed `path`.
fn op<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let full = format!("/{NAME}{path}");
    let item = doc["paths"]
        .get(&full)
        .unwrap_or_else(|| panic!("{full} is not in the document"));
    item.get(method)
        .unwrap_or_else(|| panic!("{method} {full} is not in the document: {item}"))
}

/// What a `$ref` points to.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            doc["components"]["schemas"]
                .get(name)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"))
        }
        None => schema,
    }
}

fn json_schema(parent: &Value) -> &Value {
    &parent["content"]["application/json"]["schema"]
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            for (key, item) in object {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => {
                        out.insert(target.clone());
                    }
                    _ => refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

fn param<'a>(operation: &'a Value, name: &str, location: &str) -> &'a Value {
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name && p["in"] == location)
        .unwrap_or_else(|| panic!("no {location} parameter {name} in {operation}"))
}

#[test]
fn document_lists_every_route() {
    let (host, _dir) = docs_host();
    let doc = fetch_document(&host);

    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
    assert_eq!(doc["info"]["title"], format!("Brewblox Service \"{NAME}\""));
    assert!(doc["info"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));

    // Built-in routes.
    for method in ["get", "head"] {
        let status = op(&doc, method, "/_service/status");
        assert_eq!(status["tags"], json!(["Service"]));
    }
    let status_schema = resolve(
        &doc,
        json_schema(&op(&doc, "get", "/_service/status")["responses"]["200"]),
    );
    assert_eq!(status_schema["properties"]["status"]["type"], "string");
    assert_eq!(status_schema["properties"]["status"]["enum"], json!(["ok"]));
    assert_eq!(
        op(&doc, "get", "/_service/health")["tags"],
        json!(["Service"])
    );
    // The AMQP and the MQTT form of each `_debug` body.
    for (path, forms) in [
        (
            "/_debug/publish",
            [
                &["exchange", "routing", "message"][..],
                &["topic", "message"][..],
            ],
        ),
        (
            "/_debug/subscribe",
            [&["exchange", "routing"][..], &["topic"][..]],
        ),
    ] {
        let operation = op(&doc, "post", path);
        assert_eq!(operation["tags"], json!(["Events"]));
        let body = resolve(&doc, json_schema(&operation["requestBody"]));
        let documented = body["anyOf"].as_array().expect("two forms");
        assert_eq!(documented.len(), forms.len(), "{path}: {body}");
        for (form, fields) in documented.iter().zip(forms) {
            let form = resolve(&doc, form);
            for field in fields {
                assert!(form["properties"].get(*field).is_some(), "{path}: {form}");
            }
            assert_eq!(form["required"], json!(fields), "{path}");
        }
        assert!(operation["responses"]["200"].is_object());
    }
    op(&doc, "get", "/api/doc");
    op(&doc, "get", "/api/doc/swagger.json");

    // Device plugin: documented with schemas derived from its types.
    let state = op(&doc, "get", "/device/state");
    assert_eq!(state["tags"], json!(["device-plugin"]));
    assert_eq!(state["summary"], "Current device state");
    let state_schema = resolve(&doc, json_schema(&state["responses"]["200"]));
    let documented: BTreeSet<&str> = state_schema["properties"]
        .as_object()
        .expect("State has properties")
        .keys()
        .map(String::as_str)
        .collect();
    let real: Value = host.get("/device/state").json().unwrap();
    let answered: BTreeSet<&str> = real
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        documented, answered,
        "the State schema lists the real fields"
    );

    let setpoint = op(&doc, "put", "/device/setpoint");
    assert_eq!(setpoint["tags"], json!(["device-plugin"]));
    assert_eq!(setpoint["summary"], "Change the setpoint");
    assert_eq!(setpoint["requestBody"]["required"], true);
    let request = resolve(&doc, json_schema(&setpoint["requestBody"]));
    assert_eq!(request["type"], "object");
    assert_eq!(request["required"], json!(["setpoint"]));
    assert_eq!(request["properties"]["setpoint"]["type"], "number");
    assert_eq!(request["properties"]["setpoint"]["minimum"], -20.0);
    assert_eq!(request["properties"]["setpoint"]["maximum"], 120.0);
    assert!(request["properties"]["setpoint"]["description"].is_string());
    let answer = resolve(&doc, json_schema(&setpoint["responses"]["200"]));
    assert_eq!(answer, state_schema, "PUT answers the same State");
    let error = resolve(&doc, json_schema(&setpoint["responses"]["400"]));
    assert_eq!(error["required"], json!(["error"]));
    assert!(error["properties"]["field"].is_object());

    // History plugin: every route, with its path and query parameters.
    for (method, path) in [
        ("get", "/history/last"),
        ("get", "/history/keys"),
        ("get", "/history/recent/{key}"),
        ("post", "/history/subscribe"),
        ("get", "/history/subscriptions"),
    ] {
        let operation = op(&doc, method, path);
        assert_eq!(operation["tags"], json!(["history-plugin"]), "{path}");
        assert!(operation["summary"].is_string(), "{path}");
        assert!(
            operation["responses"]["200"]["content"]["application/json"]["schema"].is_object(),
            "{path} documents its answer"
        );
    }
    let recent = op(&doc, "get", "/history/recent/{key}");
    let key = param(recent, "key", "path");
    assert_eq!(key["required"], true);
    assert!(key["description"].is_string());
    let limit = param(recent, "limit", "query");
    assert_eq!(limit["required"], false);
    assert_eq!(limit["schema"]["type"], "integer");
    assert_eq!(limit["schema"]["minimum"], 1);
    let entry = resolve(&doc, &json_schema(&recent["responses"]["200"])["items"]);
    assert!(entry["properties"]["received"].is_object());
    assert!(entry["properties"]["message"].is_object());
    assert!(recent["responses"]["404"].is_object());
    let subscribe = op(&doc, "post", "/history/subscribe");
    let body = resolve(&doc, json_schema(&subscribe["requestBody"]));
    // AMQP (exchange and routing) or MQTT (filter): the plugin checks which form it is.
    for field in ["exchange", "routing", "filter", "group", "durable"] {
        assert!(body["properties"][field].is_object(), "{field}: {body}");
    }

    // The history's SubscribeRequest and the host's have the same name but differ: the
    // host's keeps the name, the plugin's is qualified with the plugin's name (`docs/writing-plugins.md`, "API
    // documentation"). Read as a request and written in a list, it is one schema.
    let host_subscribe = resolve(
        &doc,
        json_schema(&op(&doc, "post", "/_debug/subscribe")["requestBody"]),
    )["anyOf"][0]["$ref"]
        .as_str()
        .unwrap();
    assert_eq!(host_subscribe, "#/components/schemas/SubscribeRequest");
    let plugin_subscribe = json_schema(&subscribe["requestBody"])["$ref"]
        .as_str()
        .unwrap();
    assert_eq!(
        plugin_subscribe,
        "#/components/schemas/history-plugin.SubscribeRequest"
    );
    let listed = json_schema(&op(&doc, "get", "/history/subscriptions")["responses"]["200"]);
    assert_eq!(listed["items"]["$ref"], plugin_subscribe);

    // The host's error body (its own copy, it does not link the SDK) and the history's, from
    // the SDK, are the same schema: shared, not renamed.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("Error"));
    let renamed: Vec<&String> = schemas.keys().filter(|k| k.ends_with(".Error")).collect();
    assert!(renamed.is_empty(), "{renamed:?}");
    assert_eq!(
        json_schema(&op(&doc, "post", "/_debug/publish")["responses"]["400"])["$ref"],
        json_schema(&recent["responses"]["404"])["$ref"]
    );

    // Testkit routes declare no prose: listed with method, path, path parameters, the
    // plugin's tag and the responses their handlers' types document.
    for (method, path) in [
        ("get", "/kit/config"),
        ("post", "/kit/json"),
        ("get", "/kit/status/{code}"),
        ("get", "/kit/feature/{name}"),
        ("get", "/kit/bus/received"),
        ("post", "/kit/bus/{index}/swap"),
        ("post", "/kit/bus/{index}/cancel"),
    ] {
        let operation = op(&doc, method, path);
        assert_eq!(operation["tags"], json!(["testkit-plugin"]), "{path}");
        assert!(operation.get("summary").is_none(), "{path}");
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            !responses.is_empty() && !responses.contains_key("default"),
            "{path}"
        );
    }
    assert_eq!(
        param(op(&doc, "post", "/kit/bus/{index}/swap"), "index", "path")["required"],
        true
    );
    // A route for any method is listed under every method.
    for method in ["get", "post", "put", "patch", "delete"] {
        let echo = op(&doc, method, "/kit/echo/{id}");
        assert_eq!(param(echo, "id", "path")["required"], true);
    }
    // Routes the testkit failed to register are not there.
    let paths = doc["paths"].as_object().unwrap();
    assert!(!paths.contains_key(&format!("/{NAME}/kit/too-late")));
    assert!(
        !paths.keys().any(|p| p.contains("{*")),
        "catch-alls are written {{name}}"
    );

    // Tags are declared, and every reference resolves.
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for tag in [
        "Service",
        "Events",
        "device-plugin",
        "history-plugin",
        "testkit-plugin",
    ] {
        assert!(tags.contains(&tag), "{tag} in {tags:?}");
    }
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in &all {
        resolve(&doc, &json!({ "$ref": reference }));
    }

    // One name per schema: the SDK's error body, declared by two plugins alike, is one
    // schema; nothing is numbered; every schema is used.
    let names: BTreeSet<&str> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(names.contains("Error"), "{names:?}");
    assert!(!names.iter().any(|name| name.ends_with("_2")), "{names:?}");
    for name in &names {
        assert!(
            all.contains(&format!("#/components/schemas/{name}")),
            "{name} is not used"
        );
    }
    // Descriptions carry no rustdoc link markup (the SDK's error body links `Error`).
    let text = doc.to_string();
    assert!(!text.contains("[`"), "rustdoc links in the document");
    assert!(!text.contains("](crate::"), "rustdoc links in the document");
}

#[test]
fn document_is_valid_openapi() {
    let (host, _dir) = docs_host();
    let doc = fetch_document(&host);
    let schema_path = workspace_root().join("tests/fixtures/openapi/openapi-3.0-schema.json");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&schema_path)
            .unwrap_or_else(|err| panic!("{}: {err}", schema_path.display())),
    )
    .expect("schema JSON");
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the OpenAPI 3.0 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the document is not valid OpenAPI 3.0:\n{}",
        errors.join("\n")
    );
    // The check is not vacuous: a broken document fails it.
    let mut broken = doc.clone();
    broken["paths"][format!("/{NAME}/device/state")]["get"]["bogus"] = json!(1);
    broken["info"].as_object_mut().unwrap().remove("title");
    assert_eq!(validator.iter_errors(&broken).count(), 2);

    // Things the JSON Schema cannot check: path templates and their parameters agree, and
    // operation ids are unique.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let templated: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        for (method, operation) in item.as_object().unwrap() {
            let declared: BTreeSet<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(templated, declared, "{method} {path}");
            if let Some(id) = operation["operationId"].as_str() {
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            }
        }
    }
}

/// An OpenAPI 3.0 schema (with the document's components) as a draft 7 JSON Schema:
/// `nullable` becomes a `null` type, components become definitions.
fn as_json_schema(doc: &Value, schema: &Value) -> Value {
    fn convert(value: &mut Value) {
        match value {
            Value::Object(object) => {
                if object.remove("nullable") == Some(Value::Bool(true)) {
                    if let Some(Value::String(kind)) = object.get("type").cloned() {
                        object.insert("type".into(), json!([kind, "null"]));
                    } else if let Some(Value::Array(options)) = object.get_mut("enum") {
                        options.push(Value::Null);
                    }
                }
                if let Some(Value::String(target)) = object.get_mut("$ref") {
                    *target = target.replace("#/components/schemas/", "#/definitions/");
                }
                object.values_mut().for_each(convert);
            }
            Value::Array(items) => items.iter_mut().for_each(convert),
            _ => {}
        }
    }
    let mut root = json!({
        "allOf": [schema],
        "definitions": doc["components"]["schemas"],
    });
    convert(&mut root);
    root
}

/// Checks `body` against the schema the document gives `method path` for `status`.
fn assert_matches(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let response = &op(doc, method, path)["responses"][status.to_string()];
    let schema = json_schema(response);
    assert!(
        schema.is_object(),
        "{method} {path} documents no JSON answer for {status}"
    );
    let validator = jsonschema::draft7::new(&as_json_schema(doc, schema)).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} → {status} {body} does not match its schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn real_answers_match_their_schemas() {
    let (host, _dir) = docs_host();
    let doc = fetch_document(&host);
    let call = |method: reqwest::Method, path: &str, body: Option<&str>| -> (u16, Value) {
        let mut request = host.client.request(method, host.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().expect("JSON answer"))
    };
    use reqwest::Method as M;

    let (status, body) = call(M::GET, "/_service/status", None);
    assert_matches(&doc, "get", "/_service/status", status, &body);
    let (status, body) = call(M::GET, "/_service/health", None);
    assert_matches(&doc, "get", "/_service/health", status, &body);

    let (status, body) = call(M::GET, "/device/state", None);
    assert_matches(&doc, "get", "/device/state", status, &body);
    // Not vacuous: the state is not an error body.
    let error_schema = json_schema(&op(&doc, "put", "/device/setpoint")["responses"]["400"]);
    let validator = jsonschema::draft7::new(&as_json_schema(&doc, error_schema)).unwrap();
    assert!(!validator.is_valid(&body));
    let (status, body) = call(M::PUT, "/device/setpoint", Some(r#"{"setpoint": 21}"#));
    assert_eq!(status, 200);
    assert_matches(&doc, "put", "/device/setpoint", status, &body);
    let (status, body) = call(M::PUT, "/device/setpoint", Some(r#"{"setpoint": 500}"#));
    assert_eq!(status, 400);
    assert_matches(&doc, "put", "/device/setpoint", status, &body);

    for path in ["/history/last", "/history/keys", "/history/subscriptions"] {
        let (status, body) = call(M::GET, path, None);
        assert_matches(&doc, "get", path, status, &body);
    }
    let (status, body) = call(M::GET, "/history/recent/no.such.key", None);
    assert_eq!(status, 404);
    assert_matches(&doc, "get", "/history/recent/{key}", status, &body);
    let (status, body) = call(M::POST, "/history/subscribe", Some(r#"{"exchange": 1}"#));
    assert_eq!(status, 400);
    assert_matches(&doc, "post", "/history/subscribe", status, &body);

    // The successes of the history's routes that need a subscription and a message.
    let exchange = amqp::unique("openapi");
    let subscribe = json!({"exchange": exchange, "routing": "#"}).to_string();
    let (status, body) = call(M::POST, "/history/subscribe", Some(&subscribe));
    assert_eq!(status, 200, "{body}");
    assert_matches(&doc, "post", "/history/subscribe", status, &body);
    let recent = recorded(&host, &exchange, "openapi.key");
    assert_matches(&doc, "get", "/history/recent/{key}", 200, &recent);
}

/// Publishes a message to `exchange` (to which the history subscribed) with routing key
/// `key` once the subscription is active, and returns the `GET /history/recent/{key}` answer
/// once it holds the message.
fn recorded(host: &Host, exchange: &str, key: &str) -> Value {
    let active = || -> bool {
        let (_, health) = host.health();
        health["eventbus"]["subscriptions"]
            .as_array()
            .is_some_and(|subs| {
                subs.iter()
                    .any(|s| s["exchange"] == exchange && s["state"] == "active")
            })
    };
    assert!(wait_until(Duration::from_secs(20), active), "subscribed");
    let peer = amqp::SyncPeer::connect();
    peer.publish_json(exchange, key, &json!({"temperature": 20.5}));
    let path = format!("/history/recent/{key}");
    assert!(
        wait_until(Duration::from_secs(10), || host.get(&path).status() == 200),
        "the message was recorded"
    );
    let recent: Value = host.get(&path).json().expect("JSON answer");
    assert_eq!(
        recent[0]["message"],
        json!({"temperature": 20.5}),
        "{recent}"
    );
    recent
}

/// `src="…"` and `href="…"` values of a page.
fn links(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in page.split(attribute).skip(1) {
            if let Some(end) = part.find('"') {
                found.push(part[..end].to_owned());
            }
        }
    }
    found
}

#[test]
fn ui_is_served_from_the_binary() {
    let (host, _dir) = docs_host();
    // `/api/doc` resolves relative URLs against `/{name}/api/`, `/api/doc/` against
    // `/{name}/api/doc/`; both pages must reach the same files.
    for (page_path, base) in [
        ("/api/doc", format!("/{NAME}/api/")),
        ("/api/doc/", format!("/{NAME}/api/doc/")),
    ] {
        let response = host.get(page_path);
        assert_eq!(response.status(), 200, "{page_path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8"
        );
        assert_eq!(response.headers()["cache-control"], "no-cache");
        let page = response.text().unwrap();
        assert!(page.contains("SwaggerUIBundle"), "{page}");
        assert!(
            !page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"),
            "the page refers to nothing outside the service:\n{page}"
        );
        let spec_url = page
            .split("url: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page names the document");
        let spec = host
            .client
            .get(host.raw_url(&format!("{base}{spec_url}")))
            .send()
            .unwrap();
        assert_eq!(spec.status(), 200, "{page_path} → {spec_url}");
        assert!(spec.json::<Value>().unwrap()["paths"].is_object());

        let files = links(&page);
        assert!(
            files.iter().any(|f| f.contains("swagger-ui-bundle.js"))
                && files.iter().any(|f| f.contains("swagger-ui.css")),
            "{files:?}"
        );
        for file in files.iter().filter(|f| f.contains("swagger_static/")) {
            let response = host
                .client
                .get(host.raw_url(&format!("{base}{file}")))
                .send()
                .unwrap();
            assert_eq!(response.status(), 200, "{page_path} → {file}");
            let headers = response.headers().clone();
            let expected = if file.contains(".js") {
                "text/javascript; charset=utf-8"
            } else if file.contains(".css") {
                "text/css; charset=utf-8"
            } else {
                "image/png"
            };
            assert_eq!(headers["content-type"], expected, "{file}");
            assert_eq!(
                headers["cache-control"], "public, max-age=31536000, immutable",
                "{file}: the URL carries a content hash"
            );
            assert_eq!(headers["x-content-type-options"], "nosniff");
            let etag = headers["etag"].to_str().unwrap().to_owned();
            assert!(
                file.contains(&format!("?v={}", etag.trim_matches('"'))),
                "{file} is versioned by {etag}"
            );
            let size = response.bytes().unwrap().len();
            assert!(size > 100, "{file}: {size} bytes");
            // Revalidation.
            let again = host
                .client
                .get(host.raw_url(&format!("{base}{file}")))
                .header("if-none-match", &etag)
                .send()
                .unwrap();
            assert_eq!(again.status(), 304, "{file}");
        }
    }
    // The licence travels with the UI; unknown files are the usual 404.
    let licence = host.get("/api/doc/swagger_static/LICENSE");
    assert_eq!(licence.status(), 200);
    assert!(licence.text().unwrap().contains("Apache License"));
    let missing = host.get("/api/doc/swagger_static/nope.js");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().unwrap(), "404: Not Found");
    // HEAD works as for every GET route.
    let head = host
        .client
        .head(host.url("/api/doc/swagger.json"))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
}

#[test]
fn ui_renders_in_headless_chromium() {
    let browser = chromium();
    let (host, _dir) = docs_host();
    let origin = host.raw_url("");
    let origin = origin.trim_end_matches('/');
    for page in ["/api/doc", "/api/doc/"] {
        let rendered = render(&host.url(page), origin, &[]);
        let dom = &rendered.dom;

        // Swagger UI rendered the document: the title and the device plugin's routes.
        assert!(
            dom.contains(&format!("data-path=\"/{NAME}/device/state\"")),
            "{} did not render the device routes of {page}; DOM:\n{}",
            browser.display(),
            &dom[..dom.len().min(4000)]
        );
        assert!(dom.contains(&format!("data-path=\"/{NAME}/device/setpoint\"")));
        assert!(dom.contains("Current device state"), "{page}");
        assert!(dom.contains("device-plugin"), "{page}");
        assert!(
            dom.contains(&format!("Brewblox Service \"{NAME}\""))
                || dom.contains(&format!("Brewblox Service &quot;{NAME}&quot;")),
            "{page}: title"
        );

        // Fully offline: everything the page asked for came from this service.
        let requested = |suffix: &str| rendered.page_requests.iter().any(|u| u.contains(suffix));
        assert!(
            requested("/api/doc/swagger_static/swagger-ui-bundle.js")
                && requested("/api/doc/swagger_static/swagger-ui.css")
                && requested("/api/doc/swagger.json"),
            "{page}: page requests {:?}\nall requests: {:?}",
            rendered.page_requests,
            rendered.all_requests
        );
        for url in &rendered.page_requests {
            assert!(
                url.starts_with(&format!("{origin}/{NAME}/api/doc/")),
                "{page} requested {url}, outside the service's docs"
            );
        }
    }
}

/// Every response a route answers is documented with its status and media type: a declared
/// status the handler returns bare, text, nothing, and a 400 that names every part of the
/// request the extractors can refuse. Each documented answer is checked against a real one.
#[test]
fn the_document_says_what_each_handler_shape_answers() {
    let (host, _dir) = docs_host();
    let doc = fetch_document(&host);
    let send = |method: reqwest::Method, path: &str, body: Option<&str>| {
        let mut request = host.client.request(method, host.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request.send().expect("request")
    };
    use reqwest::Method as M;

    // A declared status, handler `Result<StatusCode>`: the 204 is there, with its words.
    let responses = &op(&doc, "delete", "/kit/docs/item/{id}")["responses"];
    assert_eq!(
        responses["204"],
        json!({"description": "Deleted"}),
        "{responses}"
    );
    assert!(responses["404"].is_object(), "{responses}");
    assert_eq!(send(M::DELETE, "/kit/docs/item/4", None).status(), 204);
    let answer = send(M::DELETE, "/kit/docs/item/0", None);
    assert_eq!(answer.status(), 404);
    assert_matches(
        &doc,
        "delete",
        "/kit/docs/item/{id}",
        404,
        &answer.json().unwrap(),
    );

    // `String`: text/plain, not "Not documented by the plugin".
    let responses = &op(&doc, "get", "/kit/docs/text")["responses"];
    assert_eq!(
        responses["200"]["content"],
        json!({"text/plain": {"schema": {"type": "string"}}}),
        "{responses}"
    );
    let answer = send(M::GET, "/kit/docs/text", None);
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");

    // `()`: 204 without a body.
    let responses = &op(&doc, "post", "/kit/docs/nothing")["responses"];
    assert_eq!(responses["204"]["description"], "No Content", "{responses}");
    assert_eq!(send(M::POST, "/kit/docs/nothing", None).status(), 204);

    // Path, query and body can each be refused: the 400 says so, and each refusal is one.
    let path = "/kit/docs/scaled/{id}";
    let bad = op(&doc, "post", path)["responses"]["400"]["description"]
        .as_str()
        .unwrap()
        .to_owned();
    for part in ["path parameter", "query parameter", "body"] {
        assert!(bad.contains(part), "{part} missing from: {bad}");
    }
    for (url, body) in [
        ("/kit/docs/scaled/x?factor=2", r#"{"value": 1}"#),
        ("/kit/docs/scaled/1?factor=two", r#"{"value": 1}"#),
        ("/kit/docs/scaled/1?factor=2", r#"{"value": "one"}"#),
    ] {
        let answer = send(M::POST, url, Some(body));
        assert_eq!(answer.status(), 400, "{url} {body}");
        assert_matches(&doc, "post", path, 400, &answer.json().unwrap());
    }
    let answer = send(
        M::POST,
        "/kit/docs/scaled/1?factor=2",
        Some(r#"{"value": 1.5}"#),
    );
    assert_eq!(answer.status(), 200);
    assert_matches(&doc, "post", path, 200, &answer.json().unwrap());

    // Schema names a reader can predict: a type used one way only has its own name, and a
    // form suffix comes with its counterpart, unless the plain name is another schema's.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("Reading"), "{:?}", schemas.keys());
    assert!(schemas.contains_key("Sample"), "{:?}", schemas.keys());
    assert!(!schemas.contains_key("Sample-Output"));
    for name in schemas.keys() {
        for (mine, theirs) in [("-Output", "-Input"), ("-Input", "-Output")] {
            if let Some(base) = name.strip_suffix(mine) {
                let other = format!("{base}{theirs}");
                assert!(
                    schemas.contains_key(&other) || schemas.contains_key(base),
                    "{name} without {other} or {base}"
                );
            }
        }
    }
    let answer = send(M::GET, "/kit/docs/sample", None);
    assert_matches(
        &doc,
        "get",
        "/kit/docs/sample",
        200,
        &answer.json().unwrap(),
    );
}
