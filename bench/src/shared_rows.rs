//! Rows 10a–10d: shared subscriptions, one instance against two, each against bare clients
//! doing the same work in the same run.
//!
//! Three hosts with bench-plugin, each with `--bench-work` ([`WORK`] rounds of
//! [`crate::shared_work::spin`] per message, some 10–20 µs): one alone in a group, two of one
//! service in another group. They use both buses: the machine's RabbitMQ, where a group is
//! the named quorum queue `<group>:<exchange>:#`, and a private Mosquitto, where it is
//! `$share/<group>/<filter>` (QoS 1). The baselines, doing the same work per message, each
//! in a process of its own as each host instance is: bare lapin consumers (one; two) of a
//! quorum queue declared the same way (`bench baseline-server --amqp-share`); bare rumqttc
//! `$share` subscribers at QoS 1 (one; two), as row 3d's (`bench baseline-server
//! --mqtt-share`). Both sides of a row are driven over HTTP the same way.
//!
//! - AMQP (10a, 10b): as row 3a, `M` messages queued behind the closed gates of the group's
//!   consumers, then the gates opened and the drain timed until the last message handled by
//!   any of them.
//! - MQTT (10c, 10d): as row 3d, a rumqttc publisher in windows (at most `2 × WINDOW` sent
//!   and not yet counted by the group's consumers together), QoS 0 messages.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{bail, Result};
use hyper::Method;
use lapin::Connection;
use tokio::sync::Mutex;

use crate::{
    ab_rounds, amqp, host_command, load, mqtt, ratios, u64_of,
    util::{self, median, unix_ns, Builds, PluginDir, Proc},
    verdict, BenchHost, Config, Row,
};

/// Rounds of [`crate::shared_work::spin`] per message on every side: some 20 µs.
pub const WORK: u32 = 5_000;
/// As row 3d: messages sent and not yet counted stay under `2 × WINDOW`.
const WINDOW: u64 = 400;
const TIMEOUT: Duration = Duration::from_secs(300);

/// One side of a row: the consumers of one group, counted together.
trait Consumers {
    /// Zeroes the counts.
    async fn reset(&self) -> Result<()>;
    /// Holds (or lets go of) every consumer's handler.
    async fn gate(&self, closed: bool) -> Result<()>;
    /// (messages handled, the last one's time in Unix ns) over all consumers.
    async fn counted(&self) -> Result<(u64, u64)>;
}

/// Host instances of one group.
struct Instances {
    hosts: Vec<BenchHost>,
    group: String,
}

/// The processes of one group driven over HTTP, host instances or bare clients in processes
/// of their own (`bench baseline-server`): each process's address and its routes' prefix
/// (`/{name}`), under which it serves the bench plugin's `/bench/stats`, `/bench/reset` and
/// (AMQP) `/bench/gate`.
struct Members(Vec<(SocketAddr, String)>);

impl Members {
    fn of_hosts(group: &Instances) -> Members {
        Members(
            group
                .hosts
                .iter()
                .map(|host| (host.addr(), host.path("")))
                .collect(),
        )
    }

    fn of_procs(procs: &[Proc]) -> Members {
        Members(
            procs
                .iter()
                .map(|proc| (proc.addr(), format!("/{}", proc.name)))
                .collect(),
        )
    }

    /// `method` `rest` (under each one's prefix) to every member, one after the other.
    async fn call_each(&self, method: Method, rest: &str) -> Result<Vec<serde_json::Value>> {
        let mut answers = Vec::with_capacity(self.0.len());
        for (addr, prefix) in &self.0 {
            answers.push(load::json(*addr, method.clone(), &format!("{prefix}{rest}")).await?);
        }
        Ok(answers)
    }
}

impl Consumers for Members {
    async fn reset(&self) -> Result<()> {
        self.call_each(Method::POST, "/bench/reset").await?;
        Ok(())
    }

    async fn gate(&self, closed: bool) -> Result<()> {
        let path = format!("/bench/gate?closed={}", u8::from(closed));
        self.call_each(Method::POST, &path).await?;
        Ok(())
    }

    async fn counted(&self) -> Result<(u64, u64)> {
        let stats = self.call_each(Method::GET, "/bench/stats").await?;
        Ok(stats.iter().fold((0, 0), |(count, last), stats| {
            (
                count + u64_of(stats, "count"),
                last.max(u64_of(stats, "last_ns")),
            )
        }))
    }
}

/// Waits until `consumers` counted `m` messages (no progress for 10 s fails); their
/// (count, last time).
async fn wait_counted(consumers: &impl Consumers, m: u64) -> Result<(u64, u64)> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let (mut seen, mut progress) = (0, tokio::time::Instant::now());
    loop {
        let (count, last) = consumers.counted().await?;
        if count >= m {
            return Ok((count, last));
        }
        if count != seen {
            (seen, progress) = (count, tokio::time::Instant::now());
        }
        if tokio::time::Instant::now() >= deadline || progress.elapsed() > Duration::from_secs(10) {
            bail!("{count} of {m} messages handled, no progress for 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Unique names of this run, for everything it declares on the shared brokers.
struct Names {
    pid: u32,
}

impl Names {
    fn group(&self, what: &str) -> String {
        format!("bench_{what}_{}", self.pid)
    }

    fn exchange(&self, what: &str) -> String {
        format!("bench_shared_{what}_{}", self.pid)
    }

    /// The named queue of group `what` (the host's rule: `<group>:<exchange>:<routing>`).
    fn queue(&self, what: &str) -> String {
        format!("{}:{}:#", self.group(what), self.exchange(what))
    }
}

/// Rows 10a–10d; each is an `ERROR` row of its own when it fails.
pub async fn rows(config: &Config) -> Result<Vec<Row>> {
    let names = Names {
        pid: std::process::id(),
    };
    let broker = mqtt::Broker::start()?;
    let binary = Builds::require(&config.builds.host())?;
    let plugin = Builds::require(&config.builds.plugin("bench-plugin"))?;
    let start = |what: &str, count: usize| -> Result<Instances> {
        let hosts = (0..count)
            .map(|_| start_host(&binary, &plugin, &broker, &names, what))
            .collect::<Result<Vec<_>>>()?;
        Ok(Instances {
            hosts,
            group: names.group(what),
        })
    };
    let (solo, pair) = (start("solo", 1)?, start("pair", 2)?);
    let conn = amqp::connect("bench:shared-publisher").await?;
    let mut rows = amqp_rows(config, &conn, &names, &solo, &pair)
        .await
        .unwrap_or_else(|err| vec![Row::error("10a", "shared AMQP subscription", &err)]);
    rows.extend(
        mqtt_rows(config, &broker, &solo, &pair)
            .await
            .unwrap_or_else(|err| vec![Row::error("10c", "shared MQTT subscription", &err)]),
    );
    drop((solo, pair));
    // The named queues are durable: delete them (each run's names are its own).
    let ch = conn.create_channel().await?;
    for what in ["solo", "pair", "baresolo", "barepair"] {
        let _ = ch
            .queue_delete(&names.queue(what), Default::default())
            .await;
    }
    Ok(rows)
}

/// A host in group `what` with bench-plugin doing [`WORK`] per message, on both buses.
fn start_host(
    binary: &std::path::Path,
    plugin: &std::path::Path,
    broker: &mqtt::Broker,
    names: &Names,
    what: &str,
) -> Result<BenchHost> {
    let plugins = PluginDir::new(&[plugin.to_path_buf()])?;
    let name = format!("bench_shared_{what}_{}", names.pid);
    let port = util::free_port();
    let exchange = names.exchange(what);
    let mut cmd = host_command(&binary.to_path_buf(), plugins.path(), &name, port);
    cmd.args(["--mqtt-host", "127.0.0.1", "--mqtt-port"])
        .arg(broker.port.to_string())
        .args(["--bench-exchange", &exchange])
        .args(["--bench-group", &names.group(what)])
        .args(["--bench-work", &WORK.to_string()]);
    let mut proc = Proc::spawn(cmd, port, &name)?;
    proc.wait_ready(Duration::from_secs(30))?;
    Ok(BenchHost {
        proc,
        native: false,
        exchange,
        _plugins: plugins,
    })
}

/// Waits (≤ 20 s) until `queue` has `n` consumers.
async fn wait_consumers(conn: &Connection, queue: &str, n: u32) -> Result<()> {
    for _ in 0..200 {
        if amqp::consumer_count(conn, queue).await.ok() == Some(n) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{queue} did not get {n} consumers within 20 s")
}

/// One AMQP round: `m` messages to `exchange` queued behind the closed gates, then drained;
/// msgs/s from opening the gates to the last message handled.
async fn drain_round(
    consumers: &impl Consumers,
    ch: &lapin::Channel,
    exchange: &str,
    m: u64,
) -> Result<f64> {
    consumers.reset().await?;
    consumers.gate(true).await?;
    amqp::publish_batch(ch, exchange, m).await?;
    let t0 = unix_ns();
    consumers.gate(false).await?;
    let (_, last) = wait_counted(consumers, m).await?;
    Ok(m as f64 / (last.saturating_sub(t0) as f64 / 1e9))
}

/// A bare lapin consumer of group `what`'s quorum queue in a process of its own
/// (`bench baseline-server --amqp EXCHANGE --amqp-share QUEUE --work N`), as the host
/// instances are, so that a pair does not share one runtime where two hosts do not.
fn start_bare_amqp(names: &Names, what: &str, index: usize) -> Result<Proc> {
    let (exchange, queue, work) = (names.exchange(what), names.queue(what), WORK.to_string());
    let args = ["--amqp", &exchange, "--amqp-share", &queue, "--work", &work];
    crate::start_baseline_ready(&format!("amqp_{what}_{index}"), &args)
}

async fn amqp_rows(
    config: &Config,
    conn: &Connection,
    names: &Names,
    solo: &Instances,
    pair: &Instances,
) -> Result<Vec<Row>> {
    let ch = amqp::confirm_channel(conn).await?;
    let bare = |what: &str, count: usize| {
        (0..count)
            .map(|index| start_bare_amqp(names, what, index))
            .collect::<Result<Vec<_>>>()
    };
    let (bare_solo, bare_pair) = (bare("baresolo", 1)?, bare("barepair", 2)?);
    for (what, n) in [("solo", 1), ("pair", 2), ("baresolo", 1), ("barepair", 2)] {
        wait_consumers(conn, &names.queue(what), n).await?;
    }
    let m: u64 = if config.quick { 300 } else { 20_000 };
    let mut measured = Vec::new();
    for (hosts, bare, host_ex, bare_ex) in [
        (solo, &bare_solo, "solo", "baresolo"),
        (pair, &bare_pair, "pair", "barepair"),
    ] {
        let (hosts, bare) = (Members::of_hosts(hosts), Members::of_procs(bare));
        let (host_ex, bare_ex) = (names.exchange(host_ex), names.exchange(bare_ex));
        measured.push(
            ab_rounds(
                config.bus_rounds(),
                || drain_round(&hosts, &ch, &host_ex, m),
                || drain_round(&bare, &ch, &bare_ex, m),
            )
            .await?,
        );
    }
    let what = |n: usize| {
        format!(
            "shared AMQP msgs/s ({m} queued, quorum queue, {WORK} work rounds each), {} in a \
             group / {}",
            counted(n, "instance"),
            counted(n, "bare lapin consumer")
        )
    };
    Ok(scaled_rows(["10a", "10b"], what, &measured))
}

/// "1 instance", "2 instances".
fn counted(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The two rows of one bus: one consumer, then two, each against the bare side; the second
/// row's text gives how far two scale over one on each side.
fn scaled_rows(
    ids: [&'static str; 2],
    what: impl Fn(usize) -> String,
    measured: &[(Vec<f64>, Vec<f64>)],
) -> Vec<Row> {
    let one = (median(&measured[0].0), median(&measured[0].1));
    measured
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(index, ((host, bare), id))| {
            let ratio = ratios(id, host, bare);
            let (h, b) = (median(host), median(bare));
            let scaling = if index == 0 {
                String::new()
            } else {
                format!(
                    " (two over one: host {:.2}×, bare {:.2}×)",
                    h / one.0.max(1.0),
                    b / one.1.max(1.0)
                )
            };
            Row {
                id,
                what: format!("{}{scaling}", what(index + 1)),
                host: format!("{h:.0}"),
                baseline: format!("{b:.0}"),
                ratio: format!("{ratio:.3}"),
                target: "≥ 0.9".into(),
                verdict: verdict(ratio >= 0.9),
            }
        })
        .collect()
}

/// Waits until every member handled a probe sent to `topic` (so that each one's `$share`
/// subscription is in place), then zeroes their counts.
async fn wait_mqtt_subscribed(
    publisher: &mqtt::Publisher,
    members: &Members,
    topic: &str,
) -> Result<()> {
    for _ in 0..100 {
        let stats = members.call_each(Method::GET, "/bench/stats").await?;
        if stats.iter().all(|stats| u64_of(stats, "count") > 0) {
            return members.reset().await;
        }
        // One probe: `publish_windowed` sends one message and, told it was counted, returns.
        let counted = || async { Ok(u64::MAX) };
        publisher
            .publish_windowed(
                topic,
                1,
                1,
                amqp::untimed_message,
                counted,
                Duration::from_secs(1),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("not every subscriber of {topic} got a probe within 10 s")
}

/// One MQTT round against the members of a group: reset, `m` messages to `topic` in
/// windows, counted over one keep-alive connection per member (as row 3d); msgs/s from the
/// first publish to the last message handled by any member.
async fn windowed_round(
    members: &Members,
    publisher: &mqtt::Publisher,
    topic: &str,
    m: u64,
) -> Result<f64> {
    members.reset().await?;
    let mut pollers = Vec::new();
    for (addr, prefix) in &members.0 {
        let poller = load::JsonPoller::connect(*addr).await?;
        pollers.push((Mutex::new(poller), format!("{prefix}/bench/stats")));
    }
    let pollers = Arc::new(pollers);
    let counted = || {
        let pollers = Arc::clone(&pollers);
        async move {
            let mut count = 0;
            for (poller, path) in pollers.iter() {
                count += u64_of(&poller.lock().await.get(path).await?, "count");
            }
            Ok(count)
        }
    };
    let t0 = unix_ns();
    publisher
        .publish_windowed(topic, m, WINDOW, amqp::untimed_message, counted, TIMEOUT)
        .await?;
    let mut last = 0;
    for (poller, path) in pollers.iter() {
        last = last.max(u64_of(&poller.lock().await.get(path).await?, "last_ns"));
    }
    Ok(m as f64 / (last.saturating_sub(t0) as f64 / 1e9))
}

/// A bare rumqttc `$share` subscriber in `group` in a process of its own
/// (`bench baseline-server --mqtt PORT --mqtt-share GROUP --work N`), as row 3d's baseline
/// is, so that it does not share the harness's runtime with the publisher.
fn start_bare_mqtt(broker: &mqtt::Broker, group: &str, index: usize) -> Result<Proc> {
    let work = WORK.to_string();
    let extra = ["--mqtt-share", group, "--work", &work];
    crate::mqtt_rows::start_bare_subscriber(broker, &format!("{group}_{index}"), &extra)
}

async fn mqtt_rows(
    config: &Config,
    broker: &mqtt::Broker,
    solo: &Instances,
    pair: &Instances,
) -> Result<Vec<Row>> {
    let publisher = mqtt::Publisher::connect(broker, "bench-shared-publisher").await?;
    // A group's filter is `bench/shared/<group>/#` (`shared_work::shared_filter`).
    let topic = |group: &str| format!("bench/shared/{group}/x");
    let bare = |group: &str, count: usize| {
        (0..count)
            .map(|index| start_bare_mqtt(broker, group, index))
            .collect::<Result<Vec<_>>>()
    };
    let (bare_solo, bare_pair) = (bare("baresolo", 1)?, bare("barepair", 2)?);
    let sides = [
        (
            Members::of_hosts(solo),
            topic(&solo.group),
            Members::of_procs(&bare_solo),
            topic("baresolo"),
        ),
        (
            Members::of_hosts(pair),
            topic(&pair.group),
            Members::of_procs(&bare_pair),
            topic("barepair"),
        ),
    ];
    for (hosts, host_topic, bares, bare_topic) in &sides {
        wait_mqtt_subscribed(&publisher, hosts, host_topic).await?;
        wait_mqtt_subscribed(&publisher, bares, bare_topic).await?;
    }
    let m: u64 = if config.quick { 300 } else { 20_000 };
    let mut measured = Vec::new();
    for (hosts, host_topic, bares, bare_topic) in &sides {
        measured.push(
            ab_rounds(
                config.bus_rounds(),
                || windowed_round(hosts, &publisher, host_topic, m),
                || windowed_round(bares, &publisher, bare_topic, m),
            )
            .await?,
        );
    }
    let what = |n: usize| {
        format!(
            "shared MQTT msgs/s ({m} QoS 0, ≤ {} unconsumed, {WORK} work rounds each), {} in a \
             `$share` group / {}",
            2 * WINDOW,
            counted(n, "instance"),
            counted(n, "bare rumqttc subscriber")
        )
    };
    Ok(scaled_rows(["10c", "10d"], what, &measured))
}
