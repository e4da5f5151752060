//! Row 9, failover: how long a subscriber hears nothing when the broker node it is connected
//! to dies. A throw-away 3-node RabbitMQ cluster on loopback (`scripts/rabbitmq-cluster`,
//! beside the machine's broker); the host (bench-plugin subscribed to an exchange) and a bare
//! lapin consumer are both given nodes 1, 2 and 3 and both connect to node 1; a publisher on
//! node 3 sends a message every 5 ms. Node 1 is killed (SIGKILL, as a crash), then node 2:
//! each time, for each side, the longest silence in what it received from the kill until
//! both were receiving again (and 300 ms more). The two sides live through the same kill, so
//! the ratio compares them under the same broker behaviour.

#[path = "../../tests/src/cluster.rs"]
mod cluster;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    amqp, host_command, median, u64_of, unix_ns, util, wait_stats, BenchHost, Builds, Config,
    PluginDir, Proc, Row,
};
use cluster::RabbitCluster;

const ROUTING: &str = "bench.failover";

pub async fn row(config: &Config) -> Result<Row> {
    const WHAT: &str = "failover";
    if !std::path::Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() {
        return Ok(Row::skipped("9", WHAT, "RabbitMQ's scripts not installed"));
    }
    let binary = Builds::require(&config.builds.host())?;
    let plugin = Builds::require(&config.builds.plugin("bench-plugin"))?;
    // The script asserts (panics) on failure: on a thread of its own, as an error here.
    let cluster = Arc::new(
        tokio::task::spawn_blocking(RabbitCluster::start)
            .await
            .context("starting the 3-node RabbitMQ cluster failed")?,
    );
    let urls: Vec<String> = (1..=3).map(|n| cluster.url(n)).collect();
    let exchange = format!("bench_failover_{}", std::process::id());

    // The publisher on node 3, and an anchor there that keeps the auto-delete exchange while
    // the subscribers' queues die with their nodes.
    let publisher = amqp::connect_to(&urls[2], "bench:failover-publisher").await?;
    let ch = publisher.create_channel().await?;
    amqp::anchor(&ch, &exchange).await?;
    let host = start_host(&binary, &plugin, &urls, &exchange)?;
    let bare =
        amqp::ReconnectingConsumer::start_on(&urls, "bench:bare-failover", &exchange, ROUTING)
            .await?;
    let ticker = amqp::Ticker::start(ch, &exchange, ROUTING);
    let measured = async {
        wait_stats(&host, "", Duration::from_secs(30), |s| {
            u64_of(s, "count") > 0
        })
        .await
        .context("the host's plugin got no message through the cluster")?;
        let mut host_gaps = Vec::new();
        let mut bare_gaps = Vec::new();
        let rounds = if config.quick { 1 } else { 2 };
        for node in 1..=rounds {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let killed = unix_ns();
            let cluster = Arc::clone(&cluster);
            tokio::task::spawn_blocking(move || cluster.kill(node))
                .await
                .context("killing a node failed")?;
            let (h, b) = gaps_after(&host, &bare, killed).await?;
            host_gaps.push(h);
            bare_gaps.push(b);
        }
        Ok::<_, anyhow::Error>((host_gaps, bare_gaps))
    }
    .await;
    ticker.stop().await;
    drop(bare);
    drop(host);
    drop(cluster);
    let (host_gaps, bare_gaps) = measured?;
    let (ms, bare_ms) = (median(&host_gaps), median(&bare_gaps));
    Ok(Row {
        id: "9",
        what: format!(
            "failover ms: the node in use killed → next message in the plugin / in a bare \
             lapin consumer that moves to the next node at once ({} kills)",
            host_gaps.len()
        ),
        host: format!("{ms:.0}"),
        baseline: format!("{bare_ms:.0}"),
        ratio: format!("{:.2}", ms / bare_ms.max(1.0)),
        target: "< 1000 ms".into(),
        verdict: crate::verdict(ms < 1000.0),
    })
}

fn start_host(
    binary: &std::path::PathBuf,
    plugin: &std::path::PathBuf,
    urls: &[String],
    exchange: &str,
) -> Result<BenchHost> {
    let plugins = PluginDir::new(std::slice::from_ref(plugin))?;
    let name = format!("bench_failover_{}", std::process::id());
    let port = util::free_port();
    let mut cmd = host_command(binary, plugins.path(), &name, port);
    cmd.args([
        "--bench-exchange",
        exchange,
        "--eventbus-url",
        &urls.join(","),
    ]);
    let mut proc = Proc::spawn(cmd, port, &name)?;
    proc.wait_ready(Duration::from_secs(30))?;
    Ok(BenchHost {
        proc,
        native: false,
        exchange: exchange.to_owned(),
        _plugins: plugins,
    })
}

/// The longest silence (ms) of each side after `killed`, once each received again and
/// 300 ms passed; at most 60 s.
async fn gaps_after(
    host: &BenchHost,
    bare: &amqp::ReconnectingConsumer,
    killed: u64,
) -> Result<(f64, f64)> {
    const SETTLE_NS: u64 = 300_000_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Back once a message came after the kill's first 300 ms and in the last 300 ms.
        let until = (killed + SETTLE_NS).max(unix_ns().saturating_sub(SETTLE_NS));
        let stats = host
            .call(hyper::Method::GET, &format!("/bench/stats?since={killed}"))
            .await?;
        let bare_gap = bare.gap_ms(killed, until);
        let host_back = u64_of(&stats, "last_ns") > until;
        if let (true, Some(bare_gap)) = (host_back, bare_gap) {
            let host_gap =
                (u64_of(&stats, "gap_to_ns") - u64_of(&stats, "gap_from_ns")) as f64 / 1e6;
            return Ok((host_gap, bare_gap));
        }
        if Instant::now() >= deadline {
            bail!("not both sides received again within 60 s of the kill: host {stats}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
