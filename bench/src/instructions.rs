//! Rows 11a–11g: instructions per request or message, host against its baseline, counted by
//! callgrind through `bench/scripts/callgrind-*`.
//!
//! Instruction counts do not move with the machine's load, unlike the timed rows, so these
//! rows are the steady measure of what the host adds on each hot path. Each script runs its
//! server twice (with N1 and N2 requests or messages) and reports the difference per unit,
//! so start-up and shutdown cancel out; this module only runs the scripts and reads the
//! figures they print.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{
    util::{self, Builds, PluginDir},
    verdict, Config, Row,
};

/// What one row compares, and the target its ratio (host over baseline) must meet.
struct Spec {
    id: &'static str,
    what: &'static str,
    /// `None`: the host's figure is shown without a baseline.
    limit: Option<f64>,
}

const ROUTE: Spec = Spec {
    id: "11a",
    what:
        "instructions per request, plugin route / the same handler compiled in (`/_bench/native`)",
    limit: Some(1.05),
};
const STATUS: Spec = Spec {
    id: "11b",
    what: "instructions per request, `/_service/status` / bare axum",
    limit: Some(1.15),
};
const STATUS_STACK: Spec = Spec {
    id: "11c",
    what: "instructions per request, `/_service/status` / axum + tower-http CORS + axum-prometheus",
    limit: Some(1.0),
};
const AMQP_PUBLISH: Spec = Spec {
    id: "11d",
    what: "instructions per AMQP publish+confirm from a plugin task, whole host / bare lapin",
    limit: Some(1.10),
};
const MQTT_PUBLISH: Spec = Spec {
    id: "11e",
    what: "instructions per MQTT QoS 1 publish from a plugin task, whole process / bare rumqttc",
    limit: Some(1.10),
};
const MQTT_DELIVER: Spec = Spec {
    id: "11f",
    what: "instructions per MQTT message into a plugin subscription, whole process / bare rumqttc",
    limit: Some(1.10),
};
const AMQP_DELIVER: Spec = Spec {
    id: "11g",
    what: "instructions per AMQP message into a plugin handler, whole host / a bare lapin consumer process (row 3a's)",
    limit: None,
};

/// Runs on the caller's thread: a row takes a minute or more of valgrind.
pub fn rows(config: &Config) -> Result<Vec<Row>> {
    let specs = [
        &ROUTE,
        &STATUS,
        &STATUS_STACK,
        &AMQP_PUBLISH,
        &MQTT_PUBLISH,
        &MQTT_DELIVER,
        &AMQP_DELIVER,
    ];
    if !valgrind_present() {
        return Ok(specs
            .iter()
            .map(|s| Row::skipped(s.id, s.what, "valgrind is not installed"))
            .collect());
    }
    if config.quick {
        return Ok(quick_rows(config, &specs));
    }
    let host = Builds::require(&config.builds.host())?;
    let bench = std::env::current_exe()?;
    let plugins = PluginDir::new(&[Builds::require(&config.builds.plugin("bench-plugin"))?])?;
    let run = Scripts {
        counts: ["500", "2500"],
        plugins: plugins.path().to_owned(),
        bench,
    };
    let mut rows = Vec::new();
    match config.builds.native_host() {
        Some(native) => rows.push(row(&ROUTE, || {
            let plugin = run.route(&native, "/bench/plugin")?;
            let handler = run.route(&native, "/_bench/native")?;
            Ok((plugin, Some(handler)))
        })),
        None => rows.push(Row::skipped(
            ROUTE.id,
            ROUTE.what,
            "no bench-native host (see `bench/run`)",
        )),
    }
    let status = run.route(&host, "/_service/status");
    rows.push(row(&STATUS, || {
        Ok((copy(&status)?, Some(run.baseline("bare")?)))
    }));
    rows.push(row(&STATUS_STACK, || {
        Ok((copy(&status)?, Some(run.baseline("stack")?)))
    }));
    rows.push(row(&AMQP_PUBLISH, || {
        let out = run.script("callgrind-publish", &host, &["0"])?;
        Ok((
            number_after(&out, "host ")?,
            Some(number_after(&out, "bare lapin ")?),
        ))
    }));
    for (spec, what) in [(&MQTT_PUBLISH, "publish"), (&MQTT_DELIVER, "deliver")] {
        rows.push(row(spec, || {
            let out = run.mqtt(what, &host)?;
            Ok((
                number_after(&out, "host ")?,
                Some(number_after(&out, "bare rumqttc ")?),
            ))
        }));
    }
    rows.push(row(&AMQP_DELIVER, || {
        let host = run.script("callgrind-deliver", &host, &[])?;
        let bare = run.deliver_baseline()?;
        Ok((
            number_after(&host, "host: ")?,
            Some(number_after(&bare, "bare: ")?),
        ))
    }));
    Ok(rows)
}

/// A smoke run (`--quick`) checks the scripts' plumbing with one row, on few requests: each
/// row runs valgrind four times, too long for a run of seconds.
fn quick_rows(config: &Config, specs: &[&Spec]) -> Vec<Row> {
    let checked = row(&STATUS, || {
        let plugins = PluginDir::new(&[Builds::require(&config.builds.plugin("bench-plugin"))?])?;
        let run = Scripts {
            counts: ["5", "15"],
            plugins: plugins.path().to_owned(),
            bench: std::env::current_exe()?,
        };
        let host = Builds::require(&config.builds.host())?;
        Ok((
            run.route(&host, "/_service/status")?,
            Some(run.baseline("bare")?),
        ))
    });
    let mut checked = Some(checked);
    specs
        .iter()
        .map(|s| match checked.take_if(|_| s.id == STATUS.id) {
            Some(row) => row,
            None => Row::skipped(s.id, s.what, "--quick checks row 11b only"),
        })
        .collect()
}

/// One row from a measurement of (host, baseline) instructions; an error becomes the row.
fn row(spec: &Spec, measure: impl FnOnce() -> Result<(u64, Option<u64>)>) -> Row {
    let (host, baseline) = match measure() {
        Ok(pair) => pair,
        Err(err) => return Row::error(spec.id, spec.what, &err),
    };
    let ratio = baseline.map(|b| host as f64 / b as f64);
    let met = match (ratio, spec.limit) {
        (Some(ratio), Some(limit)) => Some(ratio <= limit),
        _ => None,
    };
    Row {
        id: spec.id,
        what: spec.what.to_owned(),
        host: host.to_string(),
        baseline: baseline.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        ratio: ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
        target: spec.limit.map_or_else(String::new, |l| format!("≤ {l:.2}")),
        verdict: met.map(verdict).unwrap_or_default(),
    }
}

/// The status route's count serves two rows; its error is reported in both.
fn copy(measured: &Result<u64>) -> Result<u64> {
    match measured {
        Ok(n) => Ok(*n),
        Err(err) => bail!("{err:#}"),
    }
}

/// How the callgrind scripts are called in this run.
struct Scripts {
    counts: [&'static str; 2],
    plugins: PathBuf,
    bench: PathBuf,
}

impl Scripts {
    /// `callgrind-route HOST PLUGINS PATH N1 N2`: instructions per request.
    fn route(&self, host: &Path, path: &str) -> Result<u64> {
        let mut cmd = script_command("callgrind-route");
        cmd.arg(host).arg(&self.plugins).arg(path).args(self.counts);
        number_before(&output(cmd)?, " instructions per request")
    }

    /// `callgrind-route --baseline KIND BENCH /_service/status N1 N2`.
    fn baseline(&self, kind: &str) -> Result<u64> {
        let mut cmd = script_command("callgrind-route");
        cmd.args(["--baseline", kind])
            .arg(&self.bench)
            .arg("/_service/status")
            .args(self.counts);
        number_before(&output(cmd)?, " instructions per request")
    }

    /// `SCRIPT HOST BENCH PLUGINS [EXTRA…] N1 N2`.
    fn script(&self, name: &str, host: &Path, extra: &[&str]) -> Result<String> {
        let mut cmd = script_command(name);
        cmd.arg(host)
            .arg(&self.bench)
            .arg(&self.plugins)
            .args(extra)
            .args(self.counts);
        output(cmd)
    }

    /// `callgrind-deliver --baseline BENCH N1 N2`: row 3a's bare lapin consumer.
    fn deliver_baseline(&self) -> Result<String> {
        let mut cmd = script_command("callgrind-deliver");
        cmd.arg("--baseline").arg(&self.bench).args(self.counts);
        output(cmd)
    }

    /// `callgrind-mqtt publish|deliver HOST BENCH PLUGINS N1 N2`.
    fn mqtt(&self, what: &str, host: &Path) -> Result<String> {
        let mut cmd = script_command("callgrind-mqtt");
        cmd.arg(what)
            .arg(host)
            .arg(&self.bench)
            .arg(&self.plugins)
            .args(self.counts);
        output(cmd)
    }
}

fn script_command(name: &str) -> Command {
    Command::new(util::root().join("bench").join("scripts").join(name))
}

fn valgrind_present() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs a script to its end (each bounds its own waits) and returns the last line it printed.
fn output(mut cmd: Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    eprintln!("[bench] {shown}");
    let out = cmd.output().with_context(|| format!("run {shown}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        bail!("{shown} failed ({}): {}", out.status, tail.join(" / "));
    }
    // The figure is on the script's last line.
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    eprintln!("[bench] {last}");
    Ok(last.to_owned())
}

/// The number that follows `key` in `text` (`host 18280, bare …` → 18280).
fn number_after(text: &str, key: &str) -> Result<u64> {
    let start = text
        .find(key)
        .with_context(|| format!("no `{key}` in {text:?}"))?
        + key.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .with_context(|| format!("no number after `{key}` in {text:?}"))
}

/// The number just before `key` in `text` (`/x: 23879 instructions per request` → 23879).
fn number_before(text: &str, key: &str) -> Result<u64> {
    let end = text
        .find(key)
        .with_context(|| format!("no `{key}` in {text:?}"))?;
    let head = &text[..end];
    let start = head
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    head[start..]
        .parse()
        .with_context(|| format!("no number before `{key}` in {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_figures() {
        let route = "/bench/plugin: 23879 instructions per request (Ir 1 @ 500, 2 @ 2500)\n";
        assert_eq!(
            number_before(route, " instructions per request").unwrap(),
            23879
        );
        let mqtt =
            "publish: host 18280, bare rumqttc 14260 instructions per message (bare/host 0.780)";
        assert_eq!(number_after(mqtt, "host ").unwrap(), 18280);
        assert_eq!(number_after(mqtt, "bare rumqttc ").unwrap(), 14260);
        let deliver = "host: 44800 instructions per delivered message\n";
        assert_eq!(number_after(deliver, "host: ").unwrap(), 44800);
        assert!(number_after("nothing here", "host ").is_err());
        assert!(number_before("x: instructions per request", " instructions per request").is_err());
    }
}
