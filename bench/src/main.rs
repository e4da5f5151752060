//! `bench`: measures brewblox-host against its baselines in one run and prints a table.
//!
//! Builds nothing (except `--generate`): build first, see BENCHMARKS.md.
//!
//! ```text
//! cargo build --release --workspace
//! cargo build --release -p brewblox-host --features bench-native --target-dir target/bench
//! cargo run --release -p bench -- --generate 50     # once: 50 plugins for the startup row
//! cargo run --release -p bench                      # the table
//! cargo run --release -p bench -- --quick --profile debug   # smoke run (seconds)
//! ```
//!
//! Every figure is measured against a baseline in the same run: alternating A/B rounds, the
//! median of each side, and the median of the per-round ratios.

mod amqp;
mod baseline;
mod failover;
mod generate;
mod instructions;
mod load;
mod mqtt;
mod mqtt_rows;
mod reload;
mod shared_rows;
/// What the shared-subscription rows' two sides share with bench-plugin.
#[path = "../plugins/bench-plugin/src/shared_work.rs"]
mod shared_work;
mod util;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::Value;

use util::{median, unix_ns, Builds, PluginDir, Proc};

struct Config {
    quick: bool,
    builds: Builds,
    rounds: usize,
    only: Option<Vec<String>>,
    connections: usize,
}

impl Config {
    fn wants(&self, group: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|g| g == group))
    }

    /// The bus rows take twice the rounds: a confirmed publish or a delivery is mostly waiting
    /// on the broker, whose pace on a shared VM moves by tens of per cent from round to round.
    fn bus_rounds(&self) -> usize {
        if self.quick {
            self.rounds
        } else {
            self.rounds * 2
        }
    }

    fn http_time(&self) -> (Duration, Duration) {
        if self.quick {
            (Duration::from_millis(100), Duration::from_millis(300))
        } else {
            (Duration::from_millis(500), Duration::from_secs(3))
        }
    }
}

/// One line of the table.
struct Row {
    id: &'static str,
    what: String,
    host: String,
    baseline: String,
    ratio: String,
    target: String,
    verdict: String,
}

impl Row {
    fn error(id: &'static str, what: &str, err: &anyhow::Error) -> Row {
        Row {
            id,
            what: what.to_owned(),
            host: format!("ERROR: {}", one_line(&format!("{err:#}"))),
            baseline: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: "error".into(),
        }
    }

    fn skipped(id: &'static str, what: &str, why: &str) -> Row {
        Row {
            id,
            what: what.to_owned(),
            host: format!("skipped: {why}"),
            baseline: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: "skipped".into(),
        }
    }
}

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(160).collect()
}

/// The workspace root, for the cluster script (`tests/src/cluster.rs`, shared with the tests).
fn workspace_root() -> PathBuf {
    util::root()
}

fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.into()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("baseline-server") {
        return match baseline::parse(&args[1..]).and_then(baseline::serve) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("baseline-server: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("bare-publish") {
        // Diagnostics (callgrind): N sequential publish+confirm, bare lapin, then exit; to an
        // exchange of its own, or to EXCHANGE (a host's `--bench-exchange`, for delivery).
        let n: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1000);
        let declare = args.get(2).map(String::as_str) == Some("1");
        let target = args.get(3).cloned();
        let result = tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(async {
                    let conn = amqp::connect("bench:bare-publish").await?;
                    let ch = amqp::confirm_channel(&conn).await?;
                    let exchange =
                        target.unwrap_or_else(|| format!("bench_bare_pub_{}", std::process::id()));
                    amqp::declare_exchange(&ch, &exchange).await?;
                    let elapsed = amqp::publish_sequential_task(&ch, &exchange, n, declare).await?;
                    println!("{n} publishes in {elapsed:?}");
                    Ok(())
                })
            });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bare-publish: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("mqtt") {
        // Diagnostics (callgrind): the MQTT baselines and a paced sender; see mqtt::tool.
        let result = tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(mqtt::tool(&args[1..])));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bench mqtt: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("bench: {err:#}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: bench [--quick] [--profile release|debug] [--rounds N] \
[--connections N] [--only http,status,bus,mqtt,latency,startup,rss,recovery,failover,shared,reload,instructions] \
[--generate N]";

fn run(args: &[String]) -> Result<bool> {
    let mut quick = false;
    let mut profile = None;
    let mut rounds = None;
    let mut only = None;
    let mut generate_count = None;
    let mut connections = 32;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| iter.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => quick = true,
            "--profile" => profile = Some(value("--profile")?.clone()),
            "--rounds" => rounds = Some(value("--rounds")?.parse()?),
            "--connections" => connections = value("--connections")?.parse()?,
            "--only" => {
                only = Some(value("--only")?.split(',').map(str::to_owned).collect());
            }
            "--generate" => generate_count = Some(value("--generate")?.parse()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let builds = Builds {
        profile: profile.unwrap_or_else(|| "release".into()),
    };
    if let Some(count) = generate_count {
        generate::generate(count, &builds)?;
        return Ok(true);
    }
    let config = Config {
        quick,
        builds,
        // Even, so that each side goes first equally often.
        rounds: rounds.unwrap_or(if quick { 2 } else { 6 }),
        only,
        connections,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(measure_all(&config));
    runtime.shutdown_timeout(Duration::from_secs(2));
    print_table(&config, &rows);
    Ok(!rows.iter().any(|r| r.verdict == "error"))
}

fn print_table(config: &Config, rows: &[Row]) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "brewblox-host benchmarks — {cores} cores, {cpu}; profile {}, {} rounds ({} for rows 3){}, \
         {} connections",
        config.builds.profile,
        config.rounds,
        config.bus_rounds(),
        if config.quick {
            " (--quick: smoke run, not figures)"
        } else {
            ""
        },
        config.connections
    );
    println!();
    println!("| # | measurement | brewblox-host | baseline | ratio | target | |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.id, row.what, row.host, row.baseline, row.ratio, row.target, row.verdict
        );
    }
}

// ------------------------------------------------------------------------------ measuring

/// The host under test for the HTTP and bus rows: bench-plugin loaded, native route if built.
struct BenchHost {
    proc: Proc,
    native: bool,
    exchange: String,
    _plugins: PluginDir,
}

impl BenchHost {
    fn path(&self, rest: &str) -> String {
        format!("/{}{rest}", self.proc.name)
    }

    fn addr(&self) -> SocketAddr {
        self.proc.addr()
    }

    async fn call(&self, method: Method, rest: &str) -> Result<Value> {
        load::json(self.addr(), method, &self.path(rest)).await
    }

    fn listener_connection(&self) -> String {
        format!("brewblox-host:{}:listener", self.proc.name)
    }
}

fn host_command(binary: &PathBuf, plugins: &std::path::Path, name: &str, port: u16) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("--plugins")
        .arg(plugins)
        .args([
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--eventbus-host", "127.0.0.1"]);
    cmd
}

fn start_bench_host(config: &Config) -> Result<BenchHost> {
    let (binary, native) = match config.builds.native_host() {
        Some(path) => (path, true),
        None => (Builds::require(&config.builds.host())?, false),
    };
    let plugins = PluginDir::new(&[Builds::require(&config.builds.plugin("bench-plugin"))?])?;
    let name = format!("bench_{}", std::process::id());
    let exchange = format!("bench_deliver_{}", std::process::id());
    let port = util::free_port();
    let mut cmd = host_command(&binary, plugins.path(), &name, port);
    cmd.args(["--bench-exchange", &exchange]);
    let mut proc = Proc::spawn(cmd, port, &name)?;
    proc.wait_ready(Duration::from_secs(30))?;
    Ok(BenchHost {
        proc,
        native,
        exchange,
        _plugins: plugins,
    })
}

/// `bench baseline-server --port PORT --name NAME`: this binary as the baseline service.
fn baseline_command(name: &str, port: u16) -> Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "baseline-server",
        "--port",
        &port.to_string(),
        "--name",
        name,
    ]);
    Ok(cmd)
}

/// `stack`: behind the CORS and metrics layers (`baseline-server --stack`).
fn start_baseline(name: &str, amqp_exchange: Option<&str>, stack: bool) -> Result<Proc> {
    let port = util::free_port();
    let mut cmd = baseline_command(name, port)?;
    if let Some(exchange) = amqp_exchange {
        cmd.args(["--amqp", exchange]);
    }
    if stack {
        cmd.arg("--stack");
    }
    Proc::spawn(cmd, port, name)
}

/// A `bench baseline-server` process named `bench_{tag}_{pid}` with `args`, ready (≤ 30 s):
/// the bare clients that run in processes of their own, as the host does.
fn start_baseline_ready(tag: &str, args: &[&str]) -> Result<Proc> {
    let name = format!("bench_{tag}_{}", std::process::id());
    let port = util::free_port();
    let mut cmd = baseline_command(&name, port)?;
    cmd.args(args);
    let mut proc = Proc::spawn(cmd, port, &name)?;
    proc.wait_ready(Duration::from_secs(30))?;
    Ok(proc)
}

async fn measure_all(config: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut reported = 0;
    let needs_host = [
        "http", "status", "bus", "latency", "rss", "recovery", "reload",
    ]
    .iter()
    .any(|g| config.wants(g));
    let host = if needs_host {
        match start_bench_host(config) {
            Ok(host) => Some(host),
            Err(err) => {
                rows.push(Row::error("-", "start the bench host", &err));
                None
            }
        }
    } else {
        None
    };
    if let Some(host) = &host {
        report(&rows, &mut reported);
        if config.wants("http") {
            rows.extend(
                http_rows(config, host).await.unwrap_or_else(|err| {
                    vec![Row::error("1", "HTTP plugin route vs native", &err)]
                }),
            );
        }
        report(&rows, &mut reported);
        if config.wants("status") {
            rows.extend(
                status_rows(config, host)
                    .await
                    .unwrap_or_else(|err| vec![Row::error("2", "status req/s", &err)]),
            );
        }
        report(&rows, &mut reported);
        if config.wants("bus") {
            rows.extend(
                bus_rows(config, host)
                    .await
                    .unwrap_or_else(|err| vec![Row::error("3", "eventbus throughput", &err)]),
            );
        }
        report(&rows, &mut reported);
        if config.wants("latency") {
            rows.extend(
                latency_rows(config, host)
                    .await
                    .unwrap_or_else(|err| vec![Row::error("4", "eventbus latency", &err)]),
            );
        }
    }
    report(&rows, &mut reported);
    if config.wants("mqtt") {
        rows.extend(
            mqtt_rows::rows(config)
                .await
                .unwrap_or_else(|err| vec![Row::error("3d", "MQTT eventbus throughput", &err)]),
        );
    }
    report(&rows, &mut reported);
    if config.wants("startup") {
        rows.extend(
            startup_rows(config)
                .await
                .unwrap_or_else(|err| vec![Row::error("5", "startup", &err)]),
        );
    }
    report(&rows, &mut reported);
    if config.wants("rss") {
        rows.push(
            idle_rss_row(config)
                .await
                .unwrap_or_else(|err| Row::error("6", "idle RSS", &err)),
        );
        rows.push(
            idle_rss_mqtt_row(config)
                .await
                .unwrap_or_else(|err| Row::error("6m", "idle RSS with MQTT", &err)),
        );
        if let Some(host) = &host {
            rows.extend(
                long_rss_rows(config, host)
                    .await
                    .unwrap_or_else(|err| vec![Row::error("6", "RSS after long runs", &err)]),
            );
        }
    }
    report(&rows, &mut reported);
    if let (true, Some(host)) = (config.wants("recovery"), &host) {
        rows.push(
            recovery_row(config, host)
                .await
                .unwrap_or_else(|err| Row::error("7", "recovery", &err)),
        );
    }
    report(&rows, &mut reported);
    if config.wants("failover") {
        rows.push(
            failover::row(config)
                .await
                .unwrap_or_else(|err| Row::error("9", "failover", &err)),
        );
    }
    report(&rows, &mut reported);
    if config.wants("shared") {
        rows.extend(
            shared_rows::rows(config)
                .await
                .unwrap_or_else(|err| vec![Row::error("10", "shared subscriptions", &err)]),
        );
    }
    report(&rows, &mut reported);
    if config.wants("instructions") {
        rows.extend(
            tokio::task::block_in_place(|| instructions::rows(config)).unwrap_or_else(|err| {
                vec![Row::error(
                    "11",
                    "instructions per request or message",
                    &err,
                )]
            }),
        );
    }
    report(&rows, &mut reported);
    // Last: it replaces the host's plugin set (with the same files).
    if let (true, Some(host)) = (config.wants("reload"), &host) {
        rows.extend(
            reload_rows(config, host)
                .await
                .unwrap_or_else(|err| vec![Row::error("8", "reload under load", &err)]),
        );
    }
    report(&rows, &mut reported);
    rows
}

async fn reload_rows(config: &Config, host: &BenchHost) -> Result<Vec<Row>> {
    let (phase, reloads) = if config.quick {
        (Duration::from_millis(500), 2)
    } else {
        (Duration::from_secs(4), 10)
    };
    let outcome = reload::measure(
        host.addr(),
        host.proc.pid(),
        &host.path("/bench/plugin"),
        &host.path("/_service/health"),
        phase,
        reloads,
    )
    .await?;
    let failed = outcome.steady.failed + outcome.reloading.failed;
    let (stall, steady_p99) = (
        outcome.longest_overlapping_a_reload_ms(),
        outcome.steady.p99_ms(),
    );
    // Whether the phase's longest request is the reload's: the steady phase's own longest
    // request, and where in its reload the phase's longest one fell.
    eprintln!(
        "[bench] 8b steady longest {:.1} ms; longest of the reload phase {:.1} ms, began {}",
        outcome.steady.max_ms(),
        outcome.reloading.max_ms(),
        match outcome.longest_in_reload() {
            Some((after, took)) =>
                format!("{after:.1} ms after a SIGHUP whose reload took {took:.0} ms"),
            None => "before the first SIGHUP".into(),
        }
    );
    Ok(vec![
        Row {
            id: "8a",
            what: format!(
                "reload under load: failed requests in {} reloads ({} requests, 4 keep-alive clients + new connections)",
                outcome.reloads,
                outcome.reloading.ok + outcome.reloading.failed
            ),
            host: failed.to_string(),
            baseline: String::new(),
            ratio: String::new(),
            target: "0".into(),
            verdict: verdict(failed == 0 && outcome.reloads == reloads),
        },
        Row {
            id: "8b",
            what: "reload under load: longest request ms that a reload overlapped / steady p99 ms".into(),
            host: format!("{stall:.1}"),
            baseline: format!("{steady_p99:.2}"),
            ratio: format!("{:.1}", stall / steady_p99.max(0.001)),
            target: "< 5 ms".into(),
            verdict: verdict(stall < 5.0),
        },
    ])
}

/// Prints rows measured since the last call to stderr, so a long run shows progress.
fn report(rows: &[Row], reported: &mut usize) {
    for row in &rows[*reported..] {
        eprintln!(
            "[bench] {} {}: {} | {} | {} {}",
            row.id, row.what, row.host, row.baseline, row.ratio, row.verdict
        );
    }
    *reported = rows.len();
}

fn http_spec(config: &Config, addr: SocketAddr, path: String) -> load::LoadSpec {
    let (warmup, duration) = config.http_time();
    load::LoadSpec {
        addr,
        path,
        connections: config.connections,
        warmup,
        duration,
        limit: None,
        latencies: true,
    }
}

/// Alternating A/B rounds (A first in even rounds).
async fn ab_rounds<A, B, FA, FB, T>(rounds: usize, mut a: A, mut b: B) -> Result<(Vec<T>, Vec<T>)>
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: std::future::Future<Output = Result<T>>,
    FB: std::future::Future<Output = Result<T>>,
{
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            xs.push(a().await?);
            ys.push(b().await?);
        } else {
            ys.push(b().await?);
            xs.push(a().await?);
        }
    }
    Ok((xs, ys))
}

/// The median of the per-round ratios. Each round's ratio goes to stderr too, and each
/// round's two readings: how far they spread is what tells a real difference from this
/// machine's noise, and the readings tell which side moved.
fn ratios(id: &str, xs: &[f64], ys: &[f64]) -> f64 {
    let per_round: Vec<f64> = xs.iter().zip(ys).map(|(x, y)| x / y).collect();
    let shown: Vec<String> = per_round.iter().map(|r| format!("{r:.3}")).collect();
    eprintln!("[bench] {id} per round: {}", shown.join(" "));
    let side = |v: f64| {
        if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    let sides: Vec<String> = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| format!("{}/{}", side(*x), side(*y)))
        .collect();
    eprintln!("[bench] {id} per round, host/baseline: {}", sides.join(" "));
    median(&per_round)
}

async fn http_rows(config: &Config, host: &BenchHost) -> Result<Vec<Row>> {
    let what = "HTTP: plugin route vs native route";
    if !host.native {
        return Ok(vec![Row::skipped(
            "1",
            what,
            "no bench-native host (cargo build -p brewblox-host --features bench-native --target-dir target/bench)",
        )]);
    }
    let plugin = http_spec(config, host.addr(), host.path("/bench/plugin"));
    let native = http_spec(config, host.addr(), host.path("/_bench/native"));
    let (p, n) = ab_rounds(config.rounds, || load::run(&plugin), || load::run(&native)).await?;
    check_errors(&p)?;
    check_errors(&n)?;
    let rps = |v: &[load::LoadResult]| v.iter().map(load::LoadResult::rps).collect::<Vec<_>>();
    let p50 = |v: &[load::LoadResult]| v.iter().map(|r| r.p50_us).collect::<Vec<_>>();
    let p99 = |v: &[load::LoadResult]| v.iter().map(|r| r.p99_us).collect::<Vec<_>>();
    let rps_ratio = ratios("1a", &rps(&p), &rps(&n));
    let p99_ratio = ratios("1c", &p99(&p), &p99(&n));
    Ok(vec![
        Row {
            id: "1a",
            what: "HTTP req/s, plugin route / native route (same host, same handler)".into(),
            host: format!("{:.0}", median(&rps(&p))),
            baseline: format!("{:.0}", median(&rps(&n))),
            ratio: format!("{rps_ratio:.3}"),
            target: "≥ 0.97".into(),
            verdict: verdict(rps_ratio >= 0.97),
        },
        Row {
            id: "1b",
            what: "HTTP p50 latency µs, plugin / native".into(),
            host: format!("{:.0}", median(&p50(&p))),
            baseline: format!("{:.0}", median(&p50(&n))),
            ratio: format!("{:.3}", ratios("1b", &p50(&p), &p50(&n))),
            target: String::new(),
            verdict: String::new(),
        },
        Row {
            id: "1c",
            what: "HTTP p99 latency µs, plugin / native".into(),
            host: format!("{:.0}", median(&p99(&p))),
            baseline: format!("{:.0}", median(&p99(&n))),
            ratio: format!("{p99_ratio:.3}"),
            target: "≤ 1.05".into(),
            verdict: verdict(p99_ratio <= 1.05),
        },
    ])
}

fn check_errors(results: &[load::LoadResult]) -> Result<()> {
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    if results.iter().any(|r| r.requests == 0) {
        bail!("a round completed no request");
    }
    Ok(())
}

/// Row 2: the status route against a bare axum process; row 2b against the stack a user
/// would write instead (axum behind tower-http's CORS and axum-prometheus' metrics layers).
async fn status_rows(config: &Config, host: &BenchHost) -> Result<Vec<Row>> {
    let ours = http_spec(config, host.addr(), host.path("/_service/status"));
    let mut rows = Vec::new();
    for stack in [false, true] {
        let mut base = start_baseline(&host.proc.name, None, stack)?;
        base.wait_ready(Duration::from_secs(10))?;
        let theirs = http_spec(
            config,
            base.addr(),
            format!("/{}/_service/status", base.name),
        );
        let id = if stack { "2b" } else { "2" };
        let (h, b) = ab_rounds(config.rounds, || load::run(&ours), || load::run(&theirs)).await?;
        check_errors(&h)?;
        check_errors(&b)?;
        let hr: Vec<f64> = h.iter().map(load::LoadResult::rps).collect();
        let br: Vec<f64> = b.iter().map(load::LoadResult::rps).collect();
        let (rate, ratio) = (median(&hr), ratios(id, &hr, &br));
        let p99 = median(&h.iter().map(|r| r.p99_us).collect::<Vec<_>>());
        rows.push(if stack {
            Row {
                id,
                what: format!(
                    "status req/s (p99 {p99:.0} µs), host / axum + tower-http CORS + axum-prometheus"
                ),
                host: format!("{rate:.0}"),
                baseline: format!("{:.0}", median(&br)),
                ratio: format!("{ratio:.3}"),
                target: "≥ 1.0".into(),
                verdict: verdict(ratio >= 1.0),
            }
        } else {
            Row {
                id,
                what: format!("status req/s (p99 {p99:.0} µs), host / bare axum process"),
                host: format!("{rate:.0}"),
                baseline: format!("{:.0}", median(&br)),
                ratio: format!("{ratio:.3}"),
                target: "≥ 50,000 req/s".into(),
                verdict: verdict(rate >= 50_000.0),
            }
        });
    }
    Ok(rows)
}

/// Polls the plugin's stats until `done` holds (bounded).
async fn wait_stats(
    host: &BenchHost,
    query: &str,
    timeout: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = host
            .call(Method::GET, &format!("/bench/stats{query}"))
            .await?;
        if done(&stats) {
            return Ok(stats);
        }
        if Instant::now() >= deadline {
            bail!("plugin stats not as expected within {timeout:?}: {stats}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn u64_of(stats: &Value, key: &str) -> u64 {
    stats.get(key).and_then(Value::as_u64).unwrap_or(0)
}

async fn wait_bare(consumer: &amqp::BareConsumer, count: u64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while consumer.count.load(std::sync::atomic::Ordering::SeqCst) < count {
        if Instant::now() >= deadline {
            bail!("bare consumer got fewer than {count} messages within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits until the host's bench subscription is declared (a probe message arrives).
async fn wait_subscribed(host: &BenchHost, ch: &lapin::Channel) -> Result<()> {
    host.call(Method::POST, "/bench/reset").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        amqp::publish_batch(ch, &host.exchange, 1).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = host.call(Method::GET, "/bench/stats").await?;
        if u64_of(&stats, "count") > 0 {
            host.call(Method::POST, "/bench/reset").await?;
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the bench plugin's subscription got no message within 20 s");
        }
    }
}

async fn bus_rows(config: &Config, host: &BenchHost) -> Result<Vec<Row>> {
    let conn = amqp::connect("bench:publisher").await?;
    let ch = amqp::confirm_channel(&conn).await?;
    amqp::declare_exchange(&ch, &host.exchange).await?;
    wait_subscribed(host, &ch).await?;
    let bare_exchange = format!("bench_bare_{}", std::process::id());
    let bare = amqp::BareConsumer::start(&bare_exchange).await?;
    let m: u64 = if config.quick { 500 } else { 50_000 };
    let timeout = Duration::from_secs(300);

    // 3a: delivery — fill the queue behind a closed gate, then time the drain.
    let (plugin, baseline) = ab_rounds(
        config.bus_rounds(),
        || async {
            host.call(Method::POST, "/bench/reset").await?;
            host.call(Method::POST, "/bench/gate?closed=1").await?;
            amqp::publish_batch(&ch, &host.exchange, m).await?;
            let t0 = unix_ns();
            host.call(Method::POST, "/bench/gate?closed=0").await?;
            let stats = wait_stats(host, "", timeout, |s| u64_of(s, "count") >= m).await?;
            Ok(m as f64 / ((u64_of(&stats, "last_ns").saturating_sub(t0)) as f64 / 1e9))
        },
        || async {
            bare.reset();
            bare.set_gate(true);
            amqp::publish_batch(&ch, &bare_exchange, m).await?;
            let t0 = unix_ns();
            bare.set_gate(false);
            wait_bare(&bare, m, timeout).await?;
            let last = bare.last_ns.load(std::sync::atomic::Ordering::SeqCst);
            Ok(m as f64 / (last.saturating_sub(t0) as f64 / 1e9))
        },
    )
    .await?;
    let deliver_ratio = ratios("3a", &plugin, &baseline);
    let mut rows = vec![Row {
        id: "3a",
        what: format!("bus delivery msgs/s ({m} queued), plugin handler / bare lapin consumer"),
        host: format!("{:.0}", median(&plugin)),
        baseline: format!("{:.0}", median(&baseline)),
        ratio: format!("{deliver_ratio:.3}"),
        target: "≥ 0.97".into(),
        verdict: verdict(deliver_ratio >= 0.97),
    }];

    // 3b/3c: publish with confirms, one at a time (the SDK's strategy), to a declared exchange.
    let n: u64 = if config.quick { 100 } else { 5_000 };
    let pub_exchange = format!("bench_pub_{}", std::process::id());
    amqp::declare_exchange(&ch, &pub_exchange).await?;
    for (id, declare, what) in [
        (
            "3b",
            false,
            "publish+confirm msgs/s (declare_exchange(false))",
        ),
        ("3c", true, "declare+publish+confirm msgs/s (SDK default)"),
    ] {
        let (plugin, baseline) = ab_rounds(
            config.bus_rounds(),
            || async {
                let result = host
                    .call(
                        Method::POST,
                        &format!(
                            "/bench/publish?n={n}&exchange={pub_exchange}&declare={}",
                            u8::from(declare)
                        ),
                    )
                    .await?;
                Ok(n as f64 / (u64_of(&result, "elapsed_ns") as f64 / 1e9))
            },
            || async {
                let elapsed = amqp::publish_sequential_task(&ch, &pub_exchange, n, declare).await?;
                Ok(n as f64 / elapsed.as_secs_f64())
            },
        )
        .await?;
        let ratio = ratios(id, &plugin, &baseline);
        rows.push(Row {
            id,
            what: format!("{what}, plugin / bare lapin"),
            host: format!("{:.0}", median(&plugin)),
            baseline: format!("{:.0}", median(&baseline)),
            ratio: format!("{ratio:.3}"),
            target: "≥ 0.9".into(),
            verdict: verdict(ratio >= 0.9),
        });
    }
    Ok(rows)
}

/// Publishes `count` messages at `rate`/s on a plain channel.
async fn publish_paced(ch: &lapin::Channel, exchange: &str, count: u64, rate: u64) -> Result<()> {
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    for seq in 0..count {
        tick.tick().await;
        let _confirm = ch
            .basic_publish(
                exchange,
                "bench.lat",
                lapin::options::BasicPublishOptions::default(),
                &amqp::message(seq),
                lapin::BasicProperties::default(),
            )
            .await?;
    }
    Ok(())
}

async fn latency_rows(config: &Config, host: &BenchHost) -> Result<Vec<Row>> {
    let conn = amqp::connect("bench:latency-publisher").await?;
    let ch = conn.create_channel().await?;
    amqp::declare_exchange(&ch, &host.exchange).await?;
    let confirm = amqp::confirm_channel(&conn).await?;
    wait_subscribed(host, &confirm).await?;
    let bare_exchange = format!("bench_bare_lat_{}", std::process::id());
    let bare = amqp::BareConsumer::start(&bare_exchange).await?;
    let rate = 1_000;
    let count: u64 = if config.quick { 200 } else { 5_000 };
    let timeout = Duration::from_secs(60);
    let (plugin, baseline) = ab_rounds(
        config.rounds,
        || async {
            host.call(Method::POST, "/bench/reset").await?;
            publish_paced(&ch, &host.exchange, count, rate).await?;
            let stats = wait_stats(host, "", timeout, |s| u64_of(s, "count") >= count).await?;
            Ok((
                u64_of(&stats, "latency_p50_ns") as f64 / 1e3,
                u64_of(&stats, "latency_p99_ns") as f64 / 1e3,
            ))
        },
        || async {
            bare.reset();
            publish_paced(&ch, &bare_exchange, count, rate).await?;
            wait_bare(&bare, count, timeout).await?;
            let (p50, p99) = bare.latency();
            Ok((p50 as f64 / 1e3, p99 as f64 / 1e3))
        },
    )
    .await?;
    let pick = |v: &[(f64, f64)], second: bool| -> Vec<f64> {
        v.iter().map(|x| if second { x.1 } else { x.0 }).collect()
    };
    let p99_ratio = ratios("4b", &pick(&plugin, true), &pick(&baseline, true));
    Ok(vec![
        Row {
            id: "4a",
            what: format!(
                "bus latency p50 µs at {rate} msg/s, publish → plugin handler / bare lapin"
            ),
            host: format!("{:.0}", median(&pick(&plugin, false))),
            baseline: format!("{:.0}", median(&pick(&baseline, false))),
            ratio: format!(
                "{:.3}",
                ratios("4a", &pick(&plugin, false), &pick(&baseline, false))
            ),
            target: String::new(),
            verdict: String::new(),
        },
        Row {
            id: "4b",
            what: format!("bus latency p99 µs at {rate} msg/s, plugin / bare lapin"),
            host: format!("{:.0}", median(&pick(&plugin, true))),
            baseline: format!("{:.0}", median(&pick(&baseline, true))),
            ratio: format!("{p99_ratio:.3}"),
            target: "≤ 1.05".into(),
            verdict: verdict(p99_ratio <= 1.05),
        },
    ])
}

/// Process start → first 200 on the status route, in ms.
fn time_to_ready(cmd: Command, port: u16, name: &str) -> Result<f64> {
    let started = Instant::now();
    let mut proc = Proc::spawn(cmd, port, name)?;
    let ready = proc.wait_ready(Duration::from_secs(30))?;
    let ms = (ready - started).as_secs_f64() * 1e3;
    proc.stop();
    Ok(ms)
}

async fn startup_rows(config: &Config) -> Result<Vec<Row>> {
    let host = Builds::require(&config.builds.host())?;
    let generated = generate::available(&config.builds);
    let counts: Vec<usize> = if config.quick {
        vec![1]
    } else {
        vec![1, 10, 50]
    };
    let mut rows = Vec::new();
    let name = "bench_start";
    let rounds = config.rounds.max(3);
    for count in counts {
        let files: Vec<PathBuf> = if generated >= count {
            (0..count).map(|i| config.builds.generated(i)).collect()
        } else if count == 1 {
            vec![Builds::require(&config.builds.plugin("hello-plugin"))?]
        } else {
            rows.push(Row::skipped(
                "5",
                &format!("startup → first 200, {count} plugins"),
                &format!("{generated} generated plugins; run `bench --generate 50` first"),
            ));
            continue;
        };
        // A restart with unchanged plugins, as an operator's: the files settled, and their
        // copies kept by an earlier start (the warm-up start).
        let dir = PluginDir::new(&files)?.settled();
        let cache = tempfile::Builder::new().prefix("bench-cache-").tempdir()?;
        let cache_dir = cache.path().join("copies");
        start_with(&host, &dir, name, &cache_dir)?;
        let (h, b) = ab_rounds(
            rounds,
            || async { start_with(&host, &dir, name, &cache_dir) },
            || async {
                let port = util::free_port();
                time_to_ready(baseline_command(name, port)?, port, name)
            },
        )
        .await?;
        let ms = median(&h);
        let ratio = ratios(&format!("5 ({count})"), &h, &b);
        // 50 plugins: under 30 ms; 1 plugin: within 2x a bare axum process.
        let (target, met) = match count {
            50 => ("< 30 ms".to_owned(), Some(ms < 30.0)),
            1 => ("≤ 2.0".to_owned(), Some(ratio <= 2.0)),
            _ => (String::new(), None),
        };
        rows.push(Row {
            id: "5",
            what: format!(
                "startup → first 200 ms, {count} plugin(s){}, copies from the cache / bare axum process",
                if generated >= count {
                    ""
                } else {
                    " (hello-plugin)"
                }
            ),
            host: format!("{ms:.1}"),
            baseline: format!("{:.1}", median(&b)),
            ratio: format!("{ratio:.2}"),
            target,
            verdict: met.map(verdict).unwrap_or_default(),
        });
        if count == 50 {
            rows.push(first_start_row(&host, rounds, &dir, name).await?);
            rows.push(copies_cost_row(config, rounds, &files, name).await?);
        }
    }
    Ok(rows)
}

/// Row 5f: the first start with 50 plugins: no copy cached yet, so every copy is written and
/// then kept (each round with an empty cache), against a restart that finds them all.
async fn first_start_row(
    host: &PathBuf,
    rounds: usize,
    dir: &PluginDir,
    name: &str,
) -> Result<Row> {
    let cache = tempfile::Builder::new().prefix("bench-cache-").tempdir()?;
    let warm = cache.path().join("warm");
    start_with(host, dir, name, &warm)?;
    let mut round = 0;
    let (first, again) = ab_rounds(
        rounds,
        || {
            round += 1;
            let empty = cache.path().join(round.to_string());
            async move { start_with(host, dir, name, &empty) }
        },
        || async { start_with(host, dir, name, &warm) },
    )
    .await?;
    let ms = median(&first);
    Ok(Row {
        id: "5f",
        what: "startup → first 200 ms, 50 plugins, first start (every copy written and kept) / restart (copies from the cache)".into(),
        host: format!("{ms:.1}"),
        baseline: format!("{:.1}", median(&again)),
        ratio: format!("{:.2}", ratios("5f", &first, &again)),
        target: "< 30 ms".into(),
        verdict: verdict(ms < 30.0),
    })
}

/// One start with the copies cached in `cache`, in ms to the first 200.
fn start_with(host: &PathBuf, dir: &PluginDir, name: &str, cache: &std::path::Path) -> Result<f64> {
    let port = util::free_port();
    let mut cmd = host_command(host, dir.path(), name, port);
    cmd.arg("--plugin-cache").arg(cache);
    time_to_ready(cmd, port, name)
}

/// Row 5c: what the private copies cost a start with 50 plugins. The bench build of the host
/// opens the plugins where they lie when `BREWBLOX_BENCH_NO_PRIVATE_COPIES=1`; the same
/// binary, with and without, in alternating rounds.
async fn copies_cost_row(
    config: &Config,
    rounds: usize,
    files: &[PathBuf],
    name: &str,
) -> Result<Row> {
    let what = "startup → first 200 ms, 50 plugins opened where they lie / with private copies (bench build)";
    let Some(host) = config.builds.native_host() else {
        return Ok(Row::skipped(
            "5c",
            what,
            "no bench-native host (see `bench/run`)",
        ));
    };
    let dir = PluginDir::new(files)?;
    let start = |copies: bool| {
        let port = util::free_port();
        let mut cmd = host_command(&host, dir.path(), name, port);
        // Every copy written, as at a first start.
        cmd.args(["--plugin-cache", "off"]);
        if !copies {
            cmd.env("BREWBLOX_BENCH_NO_PRIVATE_COPIES", "1");
        }
        time_to_ready(cmd, port, name)
    };
    let (without, with) =
        ab_rounds(rounds, || async { start(false) }, || async { start(true) }).await?;
    Ok(Row {
        id: "5c",
        what: what.into(),
        host: format!("{:.1}", median(&without)),
        baseline: format!("{:.1}", median(&with)),
        ratio: format!("{:.2}", ratios("5c", &without, &with)),
        target: String::new(),
        verdict: String::new(),
    })
}

async fn idle_rss_row(config: &Config) -> Result<Row> {
    let host = Builds::require(&config.builds.host())?;
    let files = ["device-plugin", "history-plugin", "hello-plugin"]
        .iter()
        .map(|c| Builds::require(&config.builds.plugin(c)))
        .collect::<Result<Vec<_>>>()?;
    let dir = PluginDir::new(&files)?;
    let settle = if config.quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    };
    let name = format!("bench_idle_{}", std::process::id());
    let exchange = format!("bench_idle_ex_{}", std::process::id());
    let (h, b) = ab_rounds(
        config.rounds.min(3),
        || async {
            let port = util::free_port();
            let mut proc = Proc::spawn(host_command(&host, dir.path(), &name, port), port, &name)?;
            proc.wait_ready(Duration::from_secs(30))?;
            tokio::time::sleep(settle).await;
            let rss = proc.rss_kib()? as f64 / 1024.0;
            proc.stop();
            Ok(rss)
        },
        || async {
            let mut proc = start_baseline(&name, Some(&exchange), false)?;
            proc.wait_ready(Duration::from_secs(30))?;
            tokio::time::sleep(settle).await;
            let rss = proc.rss_kib()? as f64 / 1024.0;
            proc.stop();
            Ok(rss)
        },
    )
    .await?;
    let mib = median(&h);
    Ok(Row {
        id: "6a",
        what: "idle RSS MiB, host + device, history, hello / bare axum + lapin process".into(),
        host: format!("{mib:.1}"),
        baseline: format!("{:.1}", median(&b)),
        ratio: format!("{:.2}", ratios("6a", &h, &b)),
        target: "< 10 MiB".into(),
        verdict: verdict(mib < 10.0),
    })
}

/// Idle RSS with the MQTT eventbus connected (a private Mosquitto) and the bundled plugins:
/// the device publishing its history and retained state, the history recording them.
async fn idle_rss_mqtt_row(config: &Config) -> Result<Row> {
    let host = Builds::require(&config.builds.host())?;
    let files = ["device-plugin", "history-plugin", "hello-plugin"]
        .iter()
        .map(|c| Builds::require(&config.builds.plugin(c)))
        .collect::<Result<Vec<_>>>()?;
    let dir = PluginDir::new(&files)?;
    let broker = mqtt::Broker::start()?;
    let settle = if config.quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    };
    let name = format!("bench_idle_mqtt_{}", std::process::id());
    let mut samples = Vec::new();
    for _ in 0..config.rounds.min(3) {
        let port = util::free_port();
        let mut cmd = mqtt::host_command(&host, dir.path(), &name, port, &broker);
        cmd.args(["--eventbus-host", "127.0.0.1"]);
        let mut proc = Proc::spawn(cmd, port, &name)?;
        proc.wait_ready(Duration::from_secs(30))?;
        tokio::time::sleep(settle).await;
        samples.push(proc.rss_kib()? as f64 / 1024.0);
        proc.stop();
    }
    let mib = median(&samples);
    Ok(Row {
        id: "6m",
        what: "idle RSS MiB, host + device, history, hello, AMQP and MQTT connected".into(),
        host: format!("{mib:.1}"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "< 10 MiB".into(),
        verdict: verdict(mib < 10.0),
    })
}

/// RSS after a warm-up share of the work, then after all of it: "flat" is within 10 %.
async fn long_rss_rows(config: &Config, host: &BenchHost) -> Result<Vec<Row>> {
    let (warm, total): (u64, u64) = if config.quick {
        (1_000, 5_000)
    } else {
        (100_000, 1_000_000)
    };
    let mut rows = Vec::new();

    let spec = |limit| load::LoadSpec {
        addr: host.addr(),
        path: host.path("/bench/plugin"),
        connections: config.connections,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(900),
        limit: Some(limit),
        latencies: false,
    };
    load::run(&spec(warm)).await?;
    let before = host.proc.rss_kib()? as f64 / 1024.0;
    let started = Instant::now();
    let result = load::run(&spec(total - warm)).await?;
    if result.errors > 0 {
        bail!("{} requests failed", result.errors);
    }
    let after = host.proc.rss_kib()? as f64 / 1024.0;
    rows.push(flat_row(
        "6b",
        format!(
            "RSS MiB after {total} plugin-route requests ({:.0} s) vs after the first {warm}",
            started.elapsed().as_secs_f64()
        ),
        after,
        before,
    ));

    let conn = amqp::connect("bench:rss-publisher").await?;
    let ch = amqp::confirm_channel(&conn).await?;
    amqp::declare_exchange(&ch, &host.exchange).await?;
    wait_subscribed(host, &ch).await?;
    let batch = 10_000.min(warm);
    let send = |upto: u64| {
        let ch = ch.clone();
        async move {
            let mut sent = u64_of(&host.call(Method::GET, "/bench/stats").await?, "count");
            let deadline = Instant::now() + Duration::from_secs(900);
            while sent < upto {
                let n = batch.min(upto - sent);
                amqp::publish_batch_with(&ch, &host.exchange, n, amqp::untimed_message).await?;
                sent += n;
                // Keep the queue short: wait until the plugin is within two batches.
                wait_stats(host, "", Duration::from_secs(120), |s| {
                    u64_of(s, "count") + 2 * batch >= sent
                })
                .await?;
                if Instant::now() >= deadline {
                    bail!("bus RSS run took longer than 900 s");
                }
            }
            wait_stats(host, "", Duration::from_secs(120), |s| {
                u64_of(s, "count") >= upto
            })
            .await?;
            Ok::<_, anyhow::Error>(())
        }
    };
    host.call(Method::POST, "/bench/reset").await?;
    send(warm).await?;
    let before = host.proc.rss_kib()? as f64 / 1024.0;
    let started = Instant::now();
    send(total).await?;
    let after = host.proc.rss_kib()? as f64 / 1024.0;
    rows.push(flat_row(
        "6c",
        format!(
            "RSS MiB after {total} bus messages into the plugin ({:.0} s) vs after the first {warm}",
            started.elapsed().as_secs_f64()
        ),
        after,
        before,
    ));
    Ok(rows)
}

fn flat_row(id: &'static str, what: String, after: f64, before: f64) -> Row {
    let ratio = after / before;
    Row {
        id,
        what,
        host: format!("{after:.1}"),
        baseline: format!("{before:.1}"),
        ratio: format!("{ratio:.3}"),
        target: "flat (≤ 1.10)".into(),
        verdict: verdict(ratio <= 1.10),
    }
}

async fn recovery_row(config: &Config, host: &BenchHost) -> Result<Row> {
    if Command::new("rabbitmqctl").arg("--help").output().is_err() {
        return Ok(Row::skipped("7", "recovery", "rabbitmqctl not found"));
    }
    let conn = amqp::connect("bench:recovery-publisher").await?;
    let ch = conn.create_channel().await?;
    amqp::anchor(&ch, &host.exchange).await?;
    let confirm = amqp::confirm_channel(&conn).await?;
    wait_subscribed(host, &confirm).await?;
    let ticker = amqp::Ticker::start(ch.clone(), &host.exchange, "bench.rec");
    let bare = amqp::ReconnectingConsumer::start(
        "bench:bare-recovery-listener",
        &host.exchange,
        "bench.rec",
    )
    .await?;
    let mut gaps = Vec::new();
    let mut bare_gaps = Vec::new();
    let rounds = if config.quick { 1 } else { 3 };
    let result = async {
        for _ in 0..rounds {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            gaps.push(host_gap(host).await?);
            tokio::time::sleep(Duration::from_millis(1000)).await;
            bare_gaps.push(bare_gap(&bare).await?);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    ticker.stop().await;
    result?;
    let (ms, bare_ms) = (median(&gaps), median(&bare_gaps));
    Ok(Row {
        id: "7",
        what: "recovery ms: broker closed the listener connection → next message in the plugin \
               / in a bare lapin consumer that reconnects at once (reconnect interval 1 s, \
               default)"
            .into(),
        host: format!("{ms:.0}"),
        baseline: format!("{bare_ms:.0}"),
        ratio: format!("{:.2}", ms / bare_ms.max(1.0)),
        target: "< 300 ms".into(),
        verdict: verdict(ms < 300.0),
    })
}

/// Closes `name` at the broker; returns when the close was asked for and when `rabbitmqctl`
/// returned (Unix ns). The close happens in between; `rabbitmqctl` takes about a second,
/// and a client that reconnects at once is back long before it returns.
async fn close_at_broker(name: String) -> Result<(u64, u64)> {
    let asked = unix_ns();
    let closed = tokio::task::spawn_blocking({
        let name = name.clone();
        move || amqp::close_connection(&name)
    })
    .await??;
    if closed == 0 {
        bail!("no broker connection named {name}");
    }
    Ok((asked, unix_ns()))
}

/// One outage of the host's listener: the longest silence in the plugin's messages between
/// asking for the close and 300 ms after it was done (ms).
async fn host_gap(host: &BenchHost) -> Result<f64> {
    let (asked, done) = close_at_broker(host.listener_connection()).await?;
    let stats = wait_stats(
        host,
        &format!("?since={asked}"),
        Duration::from_secs(30),
        |s| u64_of(s, "last_ns") > done + 300_000_000,
    )
    .await?;
    Ok((u64_of(&stats, "gap_to_ns") - u64_of(&stats, "gap_from_ns")) as f64 / 1e6)
}

/// One outage of the bare consumer, measured the same way.
async fn bare_gap(bare: &amqp::ReconnectingConsumer) -> Result<f64> {
    let (asked, done) = close_at_broker(bare.name.clone()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(gap) = bare.gap_ms(asked, done + 300_000_000) {
            return Ok(gap);
        }
        if Instant::now() >= deadline {
            bail!("the bare consumer did not recover within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
