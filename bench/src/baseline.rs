//! The baseline service: a bare axum app (and, with `--amqp`, a bare lapin consumer and
//! publisher connection) — what a user would write instead of using the host. The harness
//! starts it as a separate process (`bench baseline-server …`) so it is measured like the host.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::amqp;

pub struct Options {
    pub port: u16,
    pub name: String,
    pub amqp_exchange: Option<String>,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        port: 0,
        name: "bench_svc".into(),
        amqp_exchange: None,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--port" => options.port = iter.next().context("--port value")?.parse()?,
            "--name" => options.name = iter.next().context("--name value")?.clone(),
            "--amqp" => options.amqp_exchange = Some(iter.next().context("--amqp value")?.clone()),
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
        let app = Router::new()
            .route(&format!("/{}/_service/status", options.name), get(status))
            .route(
                &format!("/{}/bench/plugin", options.name),
                get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
            );
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
