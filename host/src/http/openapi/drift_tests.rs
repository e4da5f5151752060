//! The built-in routes answer what the document says: each route is served through the
//! real app and its answer checked against the documented status, media type and schema
//! (strictly: a field the document lacks is an error too), and the request bodies the
//! document describes are the ones the handlers accept.

use plugin_abi::features::FeatureRegistry;
use std::sync::Arc;

use axum::{
    body::{to_bytes, Body},
    http::{Method, Request, StatusCode},
    routing::{get, post},
};
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use super::{document, DocInfo};
use crate::{
    bus::{
        BusConfig, BusHealth, BusState, ConnectionHealth, EventBus, ExchangeKind,
        SubscriptionHealth,
    },
    http::{
        self,
        debug::DebugBuses,
        health::{
            BusKind, FeatureHealth, HealthReport, HealthSources, HealthStatus, PluginHealth,
            PluginStateName,
        },
        AppSpec,
    },
    metrics::bus::BusMetrics,
    mqtt::{MqttHealth, MqttState, MqttSubHealth},
    plugins::{
        bridge::BusBridge,
        context::{HostServices, PluginState, PluginStatus},
        routes::RouteTable,
    },
    reloads::{LastReload, ReloadLog, ReloadReport},
};

const NAME: &str = "svc";

fn doc() -> Value {
    document(
        &DocInfo {
            name: NAME,
            version: "1.0.0",
            plugins: &[],
        },
        &[],
    )
}

/// The document as the service serves it: built at its first use.
fn lazy_doc() -> Arc<http::openapi::LazyDocument> {
    Arc::new(http::openapi::LazyDocument::new(
        NAME,
        Vec::new(),
        Vec::new(),
    ))
}

/// An OpenAPI 3.0 schema with the document's components as a strict draft 7 JSON Schema:
/// `nullable` becomes a `null` type, and an object with `properties` allows no others.
fn strict(doc: &Value, schema: &Value) -> Value {
    fn convert(value: &mut Value) {
        match value {
            Value::Object(object) => {
                object.values_mut().for_each(convert);
                if object.remove("nullable") == Some(Value::Bool(true)) {
                    if let Some(Value::String(kind)) = object.get("type").cloned() {
                        object.insert("type".into(), json!([kind, "null"]));
                        if let Some(Value::Array(options)) = object.get_mut("enum") {
                            options.push(Value::Null);
                        }
                    } else {
                        let inner = Value::Object(std::mem::take(object));
                        object.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
                if object.contains_key("properties") {
                    object
                        .entry("additionalProperties")
                        .or_insert(Value::Bool(false));
                }
                if let Some(Value::String(target)) = object.get_mut("$ref") {
                    *target = target.replace("#/components/schemas/", "#/definitions/");
                }
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

/// The errors of `instance` against `schema` (see [`strict`]).
fn violations(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::draft7::new(&strict(doc, schema)).expect("the schema compiles");
    validator
        .iter_errors(instance)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect()
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let operation = &doc["paths"][format!("/{NAME}{path}")][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    operation
}

/// The app with every built-in route wired as the service wires them, no plugin, no
/// eventbus in use.
fn app(health: HealthSources) -> http::App {
    let health = Arc::new(health);
    let metrics = Arc::clone(&health.host.metrics);
    let page = http::ui::routes(http::ui::overview::OverviewSources {
        health: Arc::clone(&health),
        routes: http::ui::overview::RouteLinks::new(NAME, lazy_doc()),
        brokers: vec![(
            http::health::BusKind::Amqp,
            vec!["amqp://guest@eventbus:5672/".into()],
        )],
        links: Default::default(),
    });
    let buses = DebugBuses {
        amqp: None,
        mqtt: None,
    };
    let (publish_bus, subscribe_bus) = (buses.clone(), buses);
    let mut extra = vec![
        (
            "/_service/health".to_owned(),
            get(move || http::health::health(Arc::clone(&health))),
        ),
        (
            "/_debug/publish".to_owned(),
            post(move |body| http::debug::publish(publish_bus.clone(), body)),
        ),
        (
            "/_debug/subscribe".to_owned(),
            post(move |body| http::debug::subscribe(subscribe_bus.clone(), body)),
        ),
    ];
    extra.extend(http::swagger_ui::routes(NAME, lazy_doc()));
    extra.extend(page);
    http::app(AppSpec {
        name: NAME.into(),
        max_body_size: 1 << 20,
        body_timeouts: Default::default(),
        debug: false,
        plugin_routes: Vec::new(),
        extra,
        metrics,
    })
}

/// A health source with a failed plugin and a failed reload: the report is 503.
fn unhealthy() -> HealthSources {
    let failed = Arc::new(PluginState::new("broken", "0.1.0"));
    failed.set_status(PluginStatus::Failed("no config".into()));
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let reloads = Arc::new(ReloadLog::new(Arc::clone(&metrics)));
    reloads.record(Err("bad plugin file"));
    HealthSources {
        name: NAME.into(),
        host: Arc::new(HostServices {
            runtime: tokio::runtime::Handle::current(),
            config_json: "{}".into(),
            routes: std::sync::Mutex::new(RouteTable::default()),
            features: FeatureRegistry::default(),
            bus: BusBridge::new(EventBus::new(BusConfig::default(), BusMetrics::detached()))
                .enabled(true),
            mqtt: None,
            life: Default::default(),
            metrics,
        }),
        plugins: vec![Arc::new(PluginState::new("fine", "1.0.0")), failed],
        builds: vec![("fine".into(), Some("15a7".into()))],
        reloads,
    }
}

/// Serves one request and checks the answer against the document: its status is
/// documented, with the media type it has, and a JSON body matches the schema. Returns the
/// status and the body.
async fn served(
    doc: &Value,
    app: &http::App,
    method: Method,
    (documented_path, uri): (&str, &str),
    body: Option<&Value>,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(format!("/{NAME}{uri}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let media_type = response.headers().get("content-type").map(|value| {
        value
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned()
    });
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();

    let what = format!("{method} {uri} → {status}");
    let method_key = method.as_str().to_lowercase();
    let documented = &operation(doc, &method_key, documented_path)["responses"][status.as_str()];
    assert!(documented.is_object(), "{what}: status not documented");
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        return (status, bytes);
    };
    let media_type = media_type.unwrap_or_else(|| panic!("{what}: no content type"));
    let entry = content
        .get(&media_type)
        .unwrap_or_else(|| panic!("{what}: {media_type} is not documented: {documented}"));
    if media_type == "application/json" && method != Method::HEAD {
        let answer: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        let errors = violations(doc, &entry["schema"], &answer);
        assert!(
            errors.is_empty(),
            "{what}: {answer} is not as documented:\n{errors:#?}"
        );
    } else if entry["schema"]["type"] == "string" {
        assert!(std::str::from_utf8(&bytes).is_ok(), "{what}: not text");
    }
    (status, bytes)
}

#[tokio::test]
async fn every_built_in_route_answers_as_documented() {
    let doc = doc();
    let app = app(unhealthy());
    for (method, path) in [
        (Method::GET, "/_service/status"),
        (Method::HEAD, "/_service/status"),
    ] {
        let (status, _) = served(&doc, &app, method, (path, path), None).await;
        assert_eq!(status, 200);
    }
    let health = "/_service/health";
    let (status, body) = served(&doc, &app, Method::GET, (health, health), None).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let metrics = "/_service/metrics";
    served(&doc, &app, Method::GET, (metrics, metrics), None).await;
    for path in ["/api/doc", "/api/doc/swagger.json"] {
        let (status, _) = served(&doc, &app, Method::GET, (path, path), None).await;
        assert_eq!(status, 200, "{path}");
    }
    let file = "/api/doc/swagger_static/{file}";
    for (uri, expected) in [
        ("/api/doc/swagger_static/LICENSE", 200),
        ("/api/doc/swagger_static/nope.js", 404),
    ] {
        let (status, _) = served(&doc, &app, Method::GET, (file, uri), None).await;
        assert_eq!(status, expected, "{uri}");
    }
    // The operator page: the overview matches its schema, even with a failed plugin.
    let overview = "/_service/overview";
    let (status, body) = served(&doc, &app, Method::GET, (overview, overview), None).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["service"]["status"], "unhealthy");
    assert_eq!(
        body["service"]["brokers"][0]["url"],
        "amqp://eventbus:5672/"
    );
    assert_eq!(body["plugins"][1]["state"], "failed");
    assert_eq!(body["reloads"][0]["ok"], false);
    let (status, _) = served(
        &doc,
        &app,
        Method::GET,
        ("/_service/ui", "/_service/ui"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let file = "/_service/ui/{file}";
    for (uri, expected) in [("/_service/ui/ui.js", 200), ("/_service/ui/x.js", 404)] {
        let (status, _) = served(&doc, &app, Method::GET, (file, uri), None).await;
        assert_eq!(status, expected, "{uri}");
    }
}

/// A body the schema accepts: every property, of its type (`x`, `true`, `1`, …).
fn example(doc: &Value, schema: &Value) -> Map<String, Value> {
    let schema = resolve(doc, schema);
    let mut body = Map::new();
    for (name, property) in schema["properties"].as_object().expect("an object schema") {
        let value = match property["type"].as_str() {
            Some("string") => json!("x"),
            Some("boolean") => json!(true),
            Some("integer" | "number") => json!(1),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!(1),
        };
        body.insert(name.clone(), value);
    }
    body
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The forms of a route's documented request body (`anyOf`, or the one schema).
fn forms<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    let body = &operation(doc, "post", path)["requestBody"]["content"]["application/json"];
    let schema = resolve(doc, &body["schema"]);
    match schema["anyOf"].as_array() {
        Some(forms) => forms.iter().collect(),
        None => vec![schema],
    }
}

async fn post_json(doc: &Value, app: &http::App, path: &str, body: Value) -> (StatusCode, Vec<u8>) {
    served(doc, app, Method::POST, (path, path), Some(&body)).await
}

#[tokio::test]
async fn the_debug_routes_read_the_documented_bodies() {
    let doc = doc();
    let app = app(unhealthy());
    for path in ["/_debug/publish", "/_debug/subscribe"] {
        let forms = forms(&doc, path);
        assert_eq!(forms.len(), 2, "{path}: the AMQP and the MQTT form");
        for form in forms {
            let valid = example(&doc, form);
            // Accepted: no bus is in use, so 503, not 400.
            let (status, body) = post_json(&doc, &app, path, Value::Object(valid.clone())).await;
            assert_eq!(
                status,
                503,
                "{path} {valid:?}: {}",
                String::from_utf8_lossy(&body)
            );

            let schema = resolve(&doc, form);
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(!required.is_empty(), "{path}: {schema}");
            for (name, property) in schema["properties"].as_object().unwrap() {
                let mut body = valid.clone();
                if required.contains(&name.as_str()) {
                    body.remove(name);
                } else if property["type"] == "boolean" {
                    body.insert(name.clone(), json!("not a boolean"));
                } else {
                    continue;
                }
                let (status, answer) =
                    post_json(&doc, &app, path, Value::Object(body.clone())).await;
                assert_eq!(status, 400, "{path} {body:?}");
                let answer: Value = serde_json::from_slice(&answer).unwrap();
                // Without `topic` the body is the other form, which misses its own fields.
                if name != "topic" {
                    assert_eq!(answer["field"], name.as_str(), "{path} {body:?}");
                }
            }
        }
    }
}

/// A report with every optional part present.
fn full_report() -> HealthReport {
    let link = ConnectionHealth {
        state: BusState::Connected,
        reconnects: 1,
        last_error: Some("reset".into()),
        blocked: false,
        broker: Some("amqp://guest@eventbus:5672/%2f".into()),
    };
    HealthReport {
        status: HealthStatus::Unhealthy,
        service: NAME.into(),
        problems: vec!["mqtt subscription <a/#> failed: refused".into()],
        plugins: vec![PluginHealth {
            name: "p".into(),
            version: "1.0.0".into(),
            build: Some("15a7".into()),
            state: PluginStateName::Running,
            error: None,
            tasks: vec!["update".into()],
        }],
        features: vec![FeatureHealth {
            name: "device".into(),
            plugin: "p".into(),
        }],
        buses: vec![BusKind::Amqp, BusKind::Mqtt],
        eventbus: BusHealth {
            state: BusState::Connected,
            reconnects: 2,
            last_error: None,
            broker: Some("amqp://guest@eventbus:5672/%2f".into()),
            listener: link.clone(),
            publisher: link,
            subscriptions: vec![SubscriptionHealth {
                id: 1,
                exchange: "brewcast".into(),
                routing: "#".into(),
                exchange_type: ExchangeKind::Topic,
                state: "active",
                queue: Some("amq.gen-1".into()),
                error: None,
                plugin: Some("p".into()),
            }],
        },
        mqtt: Some(MqttHealth {
            connection: crate::mqtt::MqttConnectionHealth {
                state: MqttState::Connected,
                broker: "mqtt://eventbus:1883".into(),
                reconnects: 0,
                last_error: None,
                subscriptions: vec![MqttSubHealth {
                    id: 1,
                    filter: "a/#".into(),
                    plugin: None,
                    state: "failed",
                    error: Some("refused".into()),
                    dropped: 3,
                    qos: 1,
                }],
            },
            wills: vec![crate::mqtt::WillHealth {
                plugin: "device-plugin".into(),
                topic: "brewcast/state/svc".into(),
                held: true,
            }],
            session: Some(crate::mqtt::MqttSessionHealth {
                client_id: "brewblox-host-svc-durable".into(),
                connection: crate::mqtt::MqttConnectionHealth {
                    state: MqttState::Connected,
                    broker: "mqtt://eventbus:1883".into(),
                    reconnects: 0,
                    last_error: None,
                    subscriptions: Vec::new(),
                },
            }),
        }),
        reload: ReloadReport {
            succeeded: 1,
            failed: 1,
            last: Some(LastReload {
                time: "2026-01-01T00:00:00Z".into(),
                ok: false,
                error: Some("bad".into()),
                handovers: vec![crate::plugins::handover::HandoverReport {
                    plugin: "history-plugin".into(),
                    outcome: "refused",
                    detail: Some("state version 1 was handed over".into()),
                }],
            }),
            waiting: Some("libx.so is not ready: truncated".into()),
        },
    }
}

#[test]
fn a_full_health_report_is_as_documented_and_the_check_is_strict() {
    let doc = doc();
    let schema = &operation(&doc, "get", "/_service/health")["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let report = serde_json::to_value(full_report()).unwrap();
    assert_eq!(violations(&doc, schema, &report), Vec::<String>::new());

    // A field the document lacks, deep down, and a missing one are both caught.
    let mut extra = report.clone();
    extra["mqtt"]["subscriptions"][0]["undocumented"] = json!(1);
    assert_eq!(violations(&doc, schema, &extra).len(), 1);
    let mut missing = report;
    missing["eventbus"]["listener"]
        .as_object_mut()
        .unwrap()
        .remove("blocked");
    assert_eq!(violations(&doc, schema, &missing).len(), 1);
}
