//! Rows 3d and 3e: the MQTT eventbus against bare rumqttc, on a private Mosquitto, with a
//! host that uses MQTT only and loads bench-plugin.
//!
//! - 3d, delivery: a rumqttc client of the harness publishes QoS 0 messages, in windows that
//!   keep every queue on the way short (see [`mqtt::Publisher::publish_windowed`]), to the
//!   plugin's subscription or to a bare rumqttc subscriber doing the same work.
//! - 3e, QoS 1 publish: the plugin publishes from a task of its own, each publish awaited
//!   until the broker acknowledged it; bare rumqttc does the same from a task.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use hyper::Method;
use tokio::sync::Mutex;

use crate::{
    ab_rounds, amqp, load, mqtt, ratios, u64_of,
    util::{self, median, unix_ns, Builds, PluginDir, Proc},
    verdict, Config, Row,
};

/// Messages sent and not yet counted stay under `2 × WINDOW`: below the 1,000 that both
/// Mosquitto (per client) and the host (per subscription) hold before they drop.
const WINDOW: u64 = 400;
const TIMEOUT: Duration = Duration::from_secs(300);

/// The host under test: MQTT only, bench-plugin loaded.
struct MqttHost {
    proc: Proc,
    _plugins: PluginDir,
}

impl MqttHost {
    fn start(config: &Config, broker: &mqtt::Broker) -> Result<MqttHost> {
        let binary = Builds::require(&config.builds.host())?;
        let plugins = PluginDir::new(&[Builds::require(&config.builds.plugin("bench-plugin"))?])?;
        let name = format!("bench_mqtt_{}", std::process::id());
        let port = util::free_port();
        let cmd = mqtt::host_command(&binary, plugins.path(), &name, port, broker);
        let mut proc = Proc::spawn(cmd, port, &name)?;
        proc.wait_ready(Duration::from_secs(30))?;
        Ok(MqttHost {
            proc,
            _plugins: plugins,
        })
    }

    fn path(&self, rest: &str) -> String {
        format!("/{}{rest}", self.proc.name)
    }

    async fn call(&self, method: Method, rest: &str) -> Result<serde_json::Value> {
        load::json(self.proc.addr(), method, &self.path(rest)).await
    }
}

/// Rows 3d and 3e; each is an `ERROR` row of its own when it fails.
pub async fn rows(config: &Config) -> Result<Vec<Row>> {
    let broker = mqtt::Broker::start()?;
    let host = MqttHost::start(config, &broker)?;
    Ok(vec![
        delivery_row(config, &broker, &host)
            .await
            .unwrap_or_else(|err| Row::error("3d", "MQTT delivery", &err)),
        publish_row(config, &broker, &host)
            .await
            .unwrap_or_else(|err| Row::error("3e", "MQTT QoS 1 publish", &err)),
    ])
}

/// Waits until the plugin's subscription is acknowledged by the broker (a probe arrives).
async fn wait_subscribed(host: &MqttHost, publisher: &mqtt::Publisher) -> Result<()> {
    host.call(Method::POST, "/bench/reset").await?;
    let counted = || async {
        let stats = host.call(Method::GET, "/bench/stats").await?;
        Ok(u64_of(&stats, "count"))
    };
    // Each attempt publishes one probe and waits for it (≤ 2 s): 20 s in all.
    let mut result = Ok(());
    for _ in 0..10 {
        result = publisher
            .publish_windowed(
                "bench/deliver/probe",
                1,
                1,
                amqp::untimed_message,
                counted,
                Duration::from_secs(2),
            )
            .await;
        if result.is_ok() {
            break;
        }
        host.call(Method::POST, "/bench/reset").await?;
    }
    result?;
    host.call(Method::POST, "/bench/reset").await?;
    Ok(())
}

/// The baseline of row 3d: a process of its own (`bench baseline-server --mqtt PORT`), as
/// the host is, with a bare rumqttc subscriber whose counters are read the same way.
fn start_bare(broker: &mqtt::Broker) -> Result<Proc> {
    start_bare_subscriber(broker, "bare_mqtt", &[])
}

/// A `bench baseline-server --mqtt PORT` process (named after `tag`), with `extra` options
/// (say, `--mqtt-share GROUP`), ready.
pub(crate) fn start_bare_subscriber(
    broker: &mqtt::Broker,
    tag: &str,
    extra: &[&str],
) -> Result<Proc> {
    let port = broker.port.to_string();
    crate::start_baseline_ready(tag, &[&["--mqtt", &port], extra].concat())
}

/// One round of row 3d against the receiver at `addr` (its routes under `prefix`): reset,
/// publish `m` messages to `topic` in windows; the rate in msgs/s.
async fn delivery_round(
    publisher: &mqtt::Publisher,
    addr: std::net::SocketAddr,
    prefix: &str,
    topic: &str,
    m: u64,
) -> Result<f64> {
    load::json(addr, Method::POST, &format!("{prefix}/bench/reset")).await?;
    let poller = Arc::new(Mutex::new(load::JsonPoller::connect(addr).await?));
    let stats_path = format!("{prefix}/bench/stats");
    let counted = || {
        let (poller, path) = (poller.clone(), stats_path.clone());
        async move { Ok(u64_of(&poller.lock().await.get(&path).await?, "count")) }
    };
    let t0 = unix_ns();
    publisher
        .publish_windowed(topic, m, WINDOW, amqp::untimed_message, counted, TIMEOUT)
        .await?;
    let stats = load::json(addr, Method::GET, &stats_path).await?;
    Ok(m as f64 / (u64_of(&stats, "last_ns").saturating_sub(t0) as f64 / 1e9))
}

async fn delivery_row(config: &Config, broker: &mqtt::Broker, host: &MqttHost) -> Result<Row> {
    let publisher = mqtt::Publisher::connect(broker, "bench-publisher").await?;
    wait_subscribed(host, &publisher).await?;
    let bare = start_bare(broker)?;
    let (host_prefix, bare_prefix) = (host.path(""), format!("/{}", bare.name));
    let m: u64 = if config.quick { 500 } else { 50_000 };
    let (plugin, baseline) = ab_rounds(
        config.bus_rounds(),
        || {
            delivery_round(
                &publisher,
                host.proc.addr(),
                &host_prefix,
                "bench/deliver/x",
                m,
            )
        },
        || delivery_round(&publisher, bare.addr(), &bare_prefix, "bench/bare/x", m),
    )
    .await?;
    let ratio = ratios("3d", &plugin, &baseline);
    Ok(Row {
        id: "3d",
        what: format!(
            "MQTT delivery msgs/s ({m} QoS 0, ≤ {} unconsumed), plugin subscription / bare rumqttc subscriber",
            2 * WINDOW
        ),
        host: format!("{:.0}", median(&plugin)),
        baseline: format!("{:.0}", median(&baseline)),
        ratio: format!("{ratio:.3}"),
        target: "≥ 0.9".into(),
        verdict: verdict(ratio >= 0.9),
    })
}

async fn publish_row(config: &Config, broker: &mqtt::Broker, host: &MqttHost) -> Result<Row> {
    let bare = Arc::new(mqtt::Publisher::connect(broker, "bench-qos1").await?);
    let n: u64 = if config.quick { 100 } else { 5_000 };
    let (plugin, baseline) = ab_rounds(
        config.bus_rounds(),
        || async {
            let result = host
                .call(Method::POST, &format!("/bench/mqtt-publish?n={n}"))
                .await?;
            Ok(n as f64 / (u64_of(&result, "elapsed_ns") as f64 / 1e9))
        },
        || async {
            let elapsed = bare.publish_qos1_sequential("bench/pub", n).await?;
            Ok(n as f64 / elapsed.as_secs_f64())
        },
    )
    .await?;
    let ratio = ratios("3e", &plugin, &baseline);
    Ok(Row {
        id: "3e",
        what: "MQTT QoS 1 publish msgs/s (each awaited until PUBACK), plugin task / bare rumqttc"
            .into(),
        host: format!("{:.0}", median(&plugin)),
        baseline: format!("{:.0}", median(&baseline)),
        ratio: format!("{ratio:.3}"),
        target: "≥ 0.9".into(),
        verdict: verdict(ratio >= 0.9),
    })
}
