//! The baseline service: a bare axum app — what a user would write instead of using the
//! host. The harness starts it as a separate process (`bench baseline-server …`) so it is
//! measured like the host. Besides the status route:
//!
//! - `--stack`: behind tower-http's CORS layer and axum-prometheus' metrics layer, the stack
//!   a user would put in front of the same routes;
//! - `--amqp EXCHANGE`: also a bare lapin consumer of `EXCHANGE` (row 3a's, its counters at
//!   `GET /{name}/bench/stats` and `/bench/count` as the bench plugin's) and a publisher
//!   connection; with `--amqp-share QUEUE` and `--work N` as well, instead a bare lapin
//!   consumer of the named quorum queue `QUEUE` of a shared subscription (declared as the
//!   host declares a group's, bound to `EXCHANGE`) doing `N` rounds of fixed work per
//!   message, its counters at `GET /{name}/bench/stats` and `POST /{name}/bench/reset` and
//!   its gate at `POST /{name}/bench/gate?closed=0|1`, as the bench plugin's;
//! - `--mqtt PORT`: a bare rumqttc subscriber to `bench/bare/#` on the Mosquitto at
//!   127.0.0.1:PORT, its counters at the same routes; with `--mqtt-share GROUP` and
//!   `--work N` as well, a QoS 1 subscriber to `$share/GROUP/bench/shared/GROUP/#` doing `N`
//!   rounds of fixed work per message.
//!
//! So each bare consumer of the shared-subscription rows runs in a process of its own, as
//! each host instance does.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

use anyhow::{bail, Context, Result};
use axum::{
    extract::Query,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};

use crate::{amqp, mqtt};

pub struct Options {
    pub port: u16,
    pub name: String,
    pub amqp_exchange: Option<String>,
    /// With `--amqp`: consume this named quorum queue of a shared subscription instead.
    pub amqp_share: Option<String>,
    pub mqtt_port: Option<u16>,
    /// With `--mqtt`: subscribe in this `$share` group instead (the shared-subscription rows).
    pub mqtt_share: Option<String>,
    /// Rounds of [`crate::shared_work::spin`] per shared message (`--work`).
    pub work: u32,
    /// CORS and Prometheus metrics layers in front of the routes, `/metrics` beside them.
    pub stack: bool,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        port: 0,
        name: "bench_svc".into(),
        amqp_exchange: None,
        amqp_share: None,
        mqtt_port: None,
        mqtt_share: None,
        work: 0,
        stack: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} value"));
        match arg.as_str() {
            "--port" => options.port = value()?.parse()?,
            "--name" => options.name = value()?.clone(),
            "--amqp" => options.amqp_exchange = Some(value()?.clone()),
            "--amqp-share" => options.amqp_share = Some(value()?.clone()),
            "--mqtt" => options.mqtt_port = Some(value()?.parse()?),
            "--mqtt-share" => options.mqtt_share = Some(value()?.clone()),
            "--work" => options.work = value()?.parse()?,
            "--stack" => options.stack = true,
            other => bail!("unknown baseline-server argument {other}"),
        }
    }
    if options.amqp_share.is_some() && options.amqp_exchange.is_none() {
        bail!("--amqp-share needs --amqp EXCHANGE");
    }
    if options.mqtt_share.is_some() && options.mqtt_port.is_none() {
        bail!("--mqtt-share needs --mqtt PORT");
    }
    if options.amqp_share.is_some() && options.mqtt_port.is_some() {
        bail!("--amqp-share and --mqtt both serve the counters: give one of them");
    }
    Ok(options)
}

async fn status() -> Response {
    let mut response = r#"{"status": "ok"}"#.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

pub fn serve(options: Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (mut app, _held) = app(&options).await?;
        if options.stack {
            app = with_stack(app);
        }
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                term.recv().await;
            })
            .await?;
        Ok(())
    })
}

/// What `--amqp` (without `--amqp-share`) holds for the process's life: the publisher
/// connection (the consumer is held by its routes).
type Held = Option<lapin::Connection>;

/// The routes of `options`, and what the process holds besides them.
async fn app(options: &Options) -> Result<(Router, Held)> {
    let name = &options.name;
    let mut app = Router::new()
        .route(&format!("/{name}/_service/status"), get(status))
        .route(
            &format!("/{name}/bench/plugin"),
            get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
        );
    let mut held = None;
    match (&options.amqp_exchange, &options.amqp_share) {
        (Some(exchange), Some(queue)) => {
            let consumer = amqp::BareConsumer::start_shared(exchange, queue, options.work).await?;
            app = app.merge(gated_routes(name, Arc::new(consumer)));
        }
        (Some(exchange), None) => {
            // Counted over HTTP as the bench plugin's handler is (`callgrind-deliver
            // --baseline`).
            let consumer = amqp::BareConsumer::start(exchange).await?;
            app = app.merge(counter_routes(name, Arc::new(consumer)));
            held = Some(amqp::connect("bench:baseline-publisher").await?);
        }
        (None, _) => {}
    }
    if let Some(port) = options.mqtt_port {
        let sub = mqtt_subscriber(port, options.mqtt_share.as_deref(), options.work).await?;
        app = app.merge(counter_routes(name, Arc::new(sub)));
    }
    Ok((app, held))
}

/// The `--mqtt` subscriber: to `bench/bare/#`, or in `$share` group `share` doing `work`.
async fn mqtt_subscriber(
    port: u16,
    share: Option<&str>,
    work: u32,
) -> Result<mqtt::BareSubscriber> {
    let broker = mqtt::external(port);
    match share {
        None => mqtt::BareSubscriber::start(&broker, "bench/bare/#").await,
        Some(group) => {
            let filter = format!(
                "$share/{group}/{}",
                crate::shared_work::shared_filter(group)
            );
            let qos = rumqttc::QoS::AtLeastOnce;
            mqtt::BareSubscriber::start_with(&broker, "bench-bare-share", &filter, qos, work).await
        }
    }
}

/// A bare client whose counters the bench routes serve, as the bench plugin's.
trait Counted: Send + Sync + 'static {
    /// (messages handled, the last one's time in Unix ns).
    fn counted(&self) -> (u64, u64);
    /// Zeroes the counts.
    fn reset(&self);
}

impl Counted for mqtt::BareSubscriber {
    fn counted(&self) -> (u64, u64) {
        let (count, last) = (&self.count, &self.last_ns);
        (count.load(Ordering::SeqCst), last.load(Ordering::SeqCst))
    }

    fn reset(&self) {
        mqtt::BareSubscriber::reset(self);
    }
}

impl Counted for amqp::BareConsumer {
    fn counted(&self) -> (u64, u64) {
        let (count, last) = (&self.count, &self.last_ns);
        (count.load(Ordering::SeqCst), last.load(Ordering::SeqCst))
    }

    fn reset(&self) {
        amqp::BareConsumer::reset(self);
    }
}

/// `GET /{name}/bench/stats` and `GET /{name}/bench/count` (both `{"count", "last_ns"}`) and
/// `POST /{name}/bench/reset` over `counted`, as the bench plugin serves them.
fn counter_routes(name: &str, counted: Arc<impl Counted>) -> Router {
    let (stats, reset) = (counted.clone(), counted);
    let counts = get(move || async move {
        let (count, last_ns) = stats.counted();
        axum::Json(serde_json::json!({"count": count, "last_ns": last_ns}))
    });
    Router::new()
        .route(&format!("/{name}/bench/stats"), counts.clone())
        .route(&format!("/{name}/bench/count"), counts)
        .route(
            &format!("/{name}/bench/reset"),
            post(move || async move {
                reset.reset();
                axum::Json(serde_json::json!({"reset": true}))
            }),
        )
}

/// [`counter_routes`] of a shared-queue consumer, and `POST /{name}/bench/gate?closed=0|1`
/// holding (or letting go of) its handler, as the bench plugin's gate.
fn gated_routes(name: &str, consumer: Arc<amqp::BareConsumer>) -> Router {
    let gate = consumer.clone();
    counter_routes(name, consumer).route(
        &format!("/{name}/bench/gate"),
        post(
            move |Query(query): Query<HashMap<String, String>>| async move {
                match query.get("closed").map(|value| value.parse::<u8>()) {
                    Some(Ok(closed)) => {
                        gate.set_gate(closed != 0);
                        axum::Json(serde_json::json!({"closed": closed != 0})).into_response()
                    }
                    _ => (StatusCode::BAD_REQUEST, "closed=0|1 expected").into_response(),
                }
            },
        ),
    )
}

/// What a user writing the service by hand would put in front of it: CORS on every answer
/// (tower-http, mirroring the request as the host's CORS does, with credentials) and
/// Prometheus metrics per request (axum-prometheus: a counter and a latency histogram by
/// method, matched route and status, and requests in flight), exported at `/metrics`.
fn with_stack(app: Router) -> Router {
    let (metrics, handle) = axum_prometheus::PrometheusMetricLayer::pair();
    app.route("/metrics", get(move || async move { handle.render() }))
        .layer(metrics)
        .layer(tower_http::cors::CorsLayer::very_permissive())
}
