//! The baseline service: a bare axum app (with `--stack`, behind tower-http's CORS layer and
//! axum-prometheus' metrics layer, the stack a user would put in front of the same routes;
//! with `--amqp`, also a bare lapin consumer and publisher connection; with `--mqtt PORT`, a bare rumqttc subscriber to `bench/bare/#` on
//! the Mosquitto at 127.0.0.1:PORT, its counters at `GET /{name}/bench/stats` as the bench
//! plugin's; with `--mqtt-share GROUP` and `--work N` as well, a QoS 1 subscriber to
//! `$share/GROUP/bench/shared/GROUP/#` doing `N` rounds of fixed work per message) — what a user would write instead of using the host. The harness starts it as a
//! separate process (`bench baseline-server …`) so it is measured like the host.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

use anyhow::{Context, Result};
use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::{amqp, mqtt};

pub struct Options {
    pub port: u16,
    pub name: String,
    pub amqp_exchange: Option<String>,
    pub mqtt_port: Option<u16>,
    /// With `--mqtt`: subscribe in this `$share` group instead (the shared-subscription rows).
    pub mqtt_share: Option<String>,
    /// Rounds of [`crate::shared_work::spin`] per MQTT message (`--work`).
    pub work: u32,
    /// CORS and Prometheus metrics layers in front of the routes, `/metrics` beside them.
    pub stack: bool,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        port: 0,
        name: "bench_svc".into(),
        amqp_exchange: None,
        mqtt_port: None,
        mqtt_share: None,
        work: 0,
        stack: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--port" => options.port = iter.next().context("--port value")?.parse()?,
            "--name" => options.name = iter.next().context("--name value")?.clone(),
            "--amqp" => options.amqp_exchange = Some(iter.next().context("--amqp value")?.clone()),
            "--mqtt" => options.mqtt_port = Some(iter.next().context("--mqtt value")?.parse()?),
            "--mqtt-share" => {
                options.mqtt_share = Some(iter.next().context("--mqtt-share value")?.clone());
            }
            "--work" => options.work = iter.next().context("--work value")?.parse()?,
            "--stack" => options.stack = true,
            other => anyhow::bail!("unknown baseline-server argument {other}"),
        }
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
        let _consumer = match &options.amqp_exchange {
            Some(exchange) => {
                let consumer = amqp::BareConsumer::start(exchange).await?;
                let publisher = amqp::connect("bench:baseline-publisher").await?;
                Some((consumer, publisher))
            }
            None => None,
        };
        let mut app = Router::new()
            .route(&format!("/{}/_service/status", options.name), get(status))
            .route(
                &format!("/{}/bench/plugin", options.name),
                get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
            );
        if let Some(port) = options.mqtt_port {
            let broker = mqtt::external(port);
            let sub = Arc::new(match &options.mqtt_share {
                None => mqtt::BareSubscriber::start(&broker, "bench/bare/#").await?,
                Some(group) => {
                    let filter = format!(
                        "$share/{group}/{}",
                        crate::shared_work::shared_filter(group)
                    );
                    let qos = rumqttc::QoS::AtLeastOnce;
                    mqtt::BareSubscriber::start_with(
                        &broker,
                        "bench-bare-share",
                        &filter,
                        qos,
                        options.work,
                    )
                    .await?
                }
            });
            let (stats, reset) = (sub.clone(), sub);
            app = app
                .route(
                    &format!("/{}/bench/stats", options.name),
                    get(move || async move {
                        axum::Json(serde_json::json!({
                            "count": stats.count.load(Ordering::SeqCst),
                            "last_ns": stats.last_ns.load(Ordering::SeqCst),
                        }))
                    }),
                )
                .route(
                    &format!("/{}/bench/reset", options.name),
                    axum::routing::post(move || async move {
                        reset.reset();
                        axum::Json(serde_json::json!({"reset": true}))
                    }),
                );
        }
        if options.stack {
            app = with_stack(app);
        }
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                term.recv().await;
            })
            .await?;
        Ok(())
    })
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
