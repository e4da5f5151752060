//! The documentation of the host's own routes, from the types their handlers use.

use super::{operation::Operation, TAG_DOCS, TAG_EVENTS, TAG_SERVICE};
use crate::http::{
    debug::{PublishBody, SubscribeBody},
    health::HealthReport,
    json_body::ErrorBody,
    metrics,
    status::ServiceStatus,
    ui::overview::Overview,
};

/// The original's empty 200 of the `_debug` routes.
const EMPTY_OK: &str = "Done; an empty body (`application/octet-stream`), as the original";
/// Why a `_debug` route answers 400.
const BAD_BODY: &str = "The body is not one of the two forms; `field` names the field at fault";

/// Every built-in route, in the order the document lists them.
pub fn routes() -> Vec<Operation> {
    let mut routes = vec![status(), health(), prometheus(), publish(), subscribe()];
    routes.extend(operator_page());
    routes.extend(docs());
    routes
}

fn status() -> Operation {
    Operation::new(&["get", "head"], "/_service/status")
        .tag(TAG_SERVICE)
        .summary("Service status")
        .description("Answers `{\"status\": \"ok\"}` (exactly these bytes) while the service runs.")
        .json_response::<ServiceStatus>(200, "The service runs")
}

fn health() -> Operation {
    Operation::new(&["get"], "/_service/health")
        .tag(TAG_SERVICE)
        .summary("Service health")
        .description(
            "The state of every plugin, shared feature and eventbus. 503 while a plugin has \
             failed, an eventbus in use is not connected, or a subscription was refused. A \
             failed reload does not make the service unhealthy: the plugins from before it \
             serve.",
        )
        .json_response::<HealthReport>(200, "Healthy")
        .json_response::<HealthReport>(503, "Unhealthy: see `problems`")
}

fn prometheus() -> Operation {
    Operation::new(&["get"], metrics::PREFIXED)
        .tag(TAG_SERVICE)
        .summary("Prometheus metrics")
        .description(
            "Every metric of the process (HTTP, eventbus, plugins, process) in the Prometheus \
             text format 0.0.4, or in OpenMetrics 1.0 when `Accept` names \
             `application/openmetrics-text`. Also served unprefixed at `/metrics`.",
        )
        .text_response(
            200,
            "The metrics, as `text/plain; version=0.0.4` or OpenMetrics",
        )
}

fn publish() -> Operation {
    Operation::new(&["post"], "/_debug/publish")
        .tag(TAG_EVENTS)
        .summary("Publish a message on an eventbus")
        .description(
            "AMQP form: publishes `message` (JSON) to the topic exchange `exchange` with \
             routing key `routing`, declaring the exchange. MQTT form (a body with `topic`): \
             publishes `message` as its JSON text to `topic` (QoS 1), retained if `retain`.",
        )
        .request_body::<PublishBody>()
        .empty_response(200, EMPTY_OK)
        .json_response::<ErrorBody>(400, BAD_BODY)
        .text_response(
            409,
            "The broker refused it, e.g. the exchange exists with another type \
             (`409: <reason>`)",
        )
        .text_response(413, "The message is over the eventbus's size limit")
        .text_response(
            503,
            "The eventbus of this form is not in use or unreachable (`503: <reason>`)",
        )
}

fn subscribe() -> Operation {
    Operation::new(&["post"], "/_debug/subscribe")
        .tag(TAG_EVENTS)
        .summary("Subscribe to an eventbus")
        .description(
            "AMQP form: subscribes to the topic exchange `exchange` with pattern `routing`. \
             MQTT form (a body with `topic`): subscribes to the filter `topic`. What arrives is \
             logged at INFO (`Unhandled event: …`), as the original's default handler did.",
        )
        .request_body::<SubscribeBody>()
        .empty_response(200, EMPTY_OK)
        .json_response::<ErrorBody>(400, BAD_BODY)
        .text_response(
            409,
            "The broker refused the subscription, or 100 already exist (`409: <reason>`)",
        )
        .text_response(
            503,
            "The eventbus of this form is not in use or unreachable (`503: <reason>`)",
        )
}

/// The operator page and the data behind it.
fn operator_page() -> Vec<Operation> {
    vec![
        Operation::new(&["get"], "/_service/ui")
            .tag(TAG_SERVICE)
            .summary("Operator page")
            .description(
                "A live page of the service for people: health, plugins, subscriptions and \
                 their counts, rates and gauges of the last minutes, recorded history, reloads \
                 and the eventbus channels. Served from the binary; it reads \
                 `/_service/overview` and changes nothing.",
            )
            .string_response(200, "text/html", "The page"),
        Operation::new(&["get"], "/_service/ui/{file}")
            .tag(TAG_SERVICE)
            .summary("Operator page (files)")
            .description("The page's script and style sheet.")
            .path_param("file", "`ui.js` or `ui.css`")
            .empty_response(200, "The file")
            .text_response(404, "No such file"),
        Operation::new(&["get"], "/_service/overview")
            .tag(TAG_SERVICE)
            .summary("Everything the operator page shows")
            .description(
                "The service, every plugin with its routes and subscriptions (counts since the \
                 process started, from the metrics), the last reloads, and the window of the \
                 last 10 minutes (one sample every 2 s): running totals to make rates from, \
                 and the plugins' gauges.",
            )
            .json_response::<Overview>(200, "The overview"),
    ]
}

/// The documentation's own routes.
fn docs() -> Vec<Operation> {
    vec![
        Operation::new(&["get"], "/api/doc")
            .tag(TAG_DOCS)
            .summary("API documentation (UI)")
            .description(
                "This interactive page (Swagger UI), served from the binary with no network \
                 access; also at `/api/doc/`.",
            )
            .string_response(200, "text/html", "The page"),
        Operation::new(&["get"], "/api/doc/swagger.json")
            .tag(TAG_DOCS)
            .summary("API documentation (OpenAPI document)")
            .description("This document: OpenAPI 3.0, every route of the service.")
            .json_response::<serde_json::Map<String, serde_json::Value>>(
                200,
                "The OpenAPI document",
            ),
        Operation::new(&["get"], "/api/asyncapi.json")
            .tag(TAG_DOCS)
            .summary("Eventbus documentation (AsyncAPI document)")
            .description(
                "The eventbus side of the service, AsyncAPI 3.0: the brokers, a `send` \
                 operation for every channel a plugin declared it publishes on (payload schema \
                 from the plugin's Rust type) and a `receive` operation for every live \
                 subscription, with AMQP and MQTT bindings. Built at each request.",
            )
            .json_response::<serde_json::Map<String, serde_json::Value>>(
                200,
                "The AsyncAPI document",
            ),
        Operation::new(&["get"], "/api/doc/swagger_static/{file}")
            .tag(TAG_DOCS)
            .summary("API documentation (UI assets)")
            .description("The script, style sheet, icon and licence files of the UI.")
            .path_param("file", "File name, e.g. `swagger-ui-bundle.js`")
            .empty_response(200, "The file")
            .text_response(404, "No such file"),
    ]
}
