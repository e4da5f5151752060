//! Rows 10a–10d: shared subscriptions, one instance against two, each against bare clients
//! doing the same work in the same run.
//!
//! Three hosts with bench-plugin, each with `--bench-work` ([`WORK`] rounds of
//! [`crate::shared_work::spin`] per message, some 10–20 µs): one alone in a group, two of one
//! service in another group. They use both buses: the machine's RabbitMQ, where a group is
//! the named quorum queue `<group>:<exchange>:#`, and a private Mosquitto, where it is
//! `$share/<group>/<filter>` (QoS 1). The baselines, doing the same work per message: bare
//! lapin consumers (one; two) of a quorum queue declared the same way, in the harness as row
//! 3a's; bare rumqttc `$share` subscribers at QoS 1 (one; two), each in a process of its own
//! as row 3d's (`bench baseline-server --mqtt-share`).
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

impl Consumers for Instances {
    async fn reset(&self) -> Result<()> {
        for host in &self.hosts {
            host.call(Method::POST, "/bench/reset").await?;
        }
        Ok(())
    }

    async fn gate(&self, closed: bool) -> Result<()> {
        let path = format!("/bench/gate?closed={}", u8::from(closed));
        for host in &self.hosts {
            host.call(Method::POST, &path).await?;
        }
        Ok(())
    }

    async fn counted(&self) -> Result<(u64, u64)> {
        let (mut count, mut last) = (0, 0);
        for host in &self.hosts {
            let stats = host.call(Method::GET, "/bench/stats").await?;
            count += u64_of(&stats, "count");
            last = last.max(u64_of(&stats, "last_ns"));
        }
        Ok((count, last))
    }
}

/// Bare lapin consumers of one quorum queue.
struct BareAmqp(Vec<amqp::BareConsumer>);

impl Consumers for BareAmqp {
    async fn reset(&self) -> Result<()> {
        self.0.iter().for_each(amqp::BareConsumer::reset);
        Ok(())
    }

    async fn gate(&self, closed: bool) -> Result<()> {
        self.0.iter().for_each(|c| c.set_gate(closed));
        Ok(())
    }

    async fn counted(&self) -> Result<(u64, u64)> {
        use std::sync::atomic::Ordering::SeqCst;
        Ok(self.0.iter().fold((0, 0), |(count, last), c| {
            (
                count + c.count.load(SeqCst),
                last.max(c.last_ns.load(SeqCst)),
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

async fn amqp_rows(
    config: &Config,
    conn: &Connection,
    names: &Names,
    solo: &Instances,
    pair: &Instances,
) -> Result<Vec<Row>> {
    let ch = amqp::confirm_channel(conn).await?;
    wait_consumers(conn, &names.queue("solo"), 1).await?;
    wait_consumers(conn, &names.queue("pair"), 2).await?;
    let bare = |what: &'static str, count: usize| async move {
        let mut consumers = Vec::new();
        for _ in 0..count {
            consumers.push(
                amqp::BareConsumer::start_shared(&names.exchange(what), &names.queue(what), WORK)
                    .await?,
            );
        }
        Ok::<_, anyhow::Error>(BareAmqp(consumers))
    };
    let (bare_solo, bare_pair) = (bare("baresolo", 1).await?, bare("barepair", 2).await?);
    let m: u64 = if config.quick { 300 } else { 20_000 };
    let mut measured = Vec::new();
    for (hosts, bare, host_ex, bare_ex) in [
        (solo, &bare_solo, "solo", "baresolo"),
        (pair, &bare_pair, "pair", "barepair"),
    ] {
        let (host_ex, bare_ex) = (names.exchange(host_ex), names.exchange(bare_ex));
        measured.push(
            ab_rounds(
                config.bus_rounds(),
                || drain_round(hosts, &ch, &host_ex, m),
                || drain_round(bare, &ch, &bare_ex, m),
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

/// The stats routes of the processes of one group (hosts or bare subscribers): each
/// process's address and its routes' prefix (`/{name}`).
type Members = Vec<(SocketAddr, String)>;

fn members_of(group: &Instances) -> Members {
    group
        .hosts
        .iter()
        .map(|host| (host.addr(), host.path("")))
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
        let mut all = true;
        for (addr, prefix) in members {
            let stats = load::json(*addr, Method::GET, &format!("{prefix}/bench/stats")).await?;
            all &= u64_of(&stats, "count") > 0;
        }
        if all {
            for (addr, prefix) in members {
                load::json(*addr, Method::POST, &format!("{prefix}/bench/reset")).await?;
            }
            return Ok(());
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
    let mut pollers = Vec::new();
    for (addr, prefix) in members {
        load::json(*addr, Method::POST, &format!("{prefix}/bench/reset")).await?;
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
    let members = |procs: &[Proc]| -> Members {
        procs
            .iter()
            .map(|proc| (proc.addr(), format!("/{}", proc.name)))
            .collect()
    };
    let sides = [
        (
            members_of(solo),
            topic(&solo.group),
            members(&bare_solo),
            topic("baresolo"),
        ),
        (
            members_of(pair),
            topic(&pair.group),
            members(&bare_pair),
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
