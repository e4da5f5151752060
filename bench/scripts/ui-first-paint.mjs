#!/usr/bin/env node
// The operator page's first paint, measured: a host with the bundled plugins on its embedded
// MQTT broker, and headless Chromium driven over the DevTools protocol (a pipe, no extra
// package) with its CPU slowed down N times, as DevTools' "CPU throttling" does, to stand in
// for a Raspberry-Pi-class machine. For each slowdown, `--runs` cold loads (a fresh browser
// profile: nothing cached) and as many warm ones (the same browser again: the page's two files
// come from its cache, their URLs carry a content hash), each reporting:
//
//   fcp    Chromium's first-contentful-paint (ms after navigation start)
//   data   when the first overview is drawn: the plugin cards are in the page (ms)
//   before first paint: the requests made and the bytes transferred (headers included)
//   until first data:   the same, up to the first overview drawn
//
// and the median of each. This is a measurement, not a test: nothing fails on a slow figure.
//
//   node bench/scripts/ui-first-paint.mjs [--profile release|debug] [--runs 5] [--throttle 1,4,6]
//
// Needs the built host and plugins of the profile (`cargo build --release --workspace`) and
// Debian's chromium (/usr/bin/chromium, or $CHROMIUM).
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const NAME = "first_paint_svc";
const PLUGINS = ["device_plugin", "history_plugin", "hello_plugin"];
const TIMEOUT_MS = 60_000;

function options() {
  const args = process.argv.slice(2);
  const value = (flag, fallback) => {
    const at = args.indexOf(flag);
    return at >= 0 && args[at + 1] ? args[at + 1] : fallback;
  };
  return {
    profile: value("--profile", "release"),
    runs: Number(value("--runs", "5")),
    throttle: value("--throttle", "1,4,6").split(",").map(Number),
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The host, its plugins copied into a private folder (the host refuses one others can write).
async function startHost(profile) {
  const build = path.join(root, "target", profile);
  const plugins = fs.mkdtempSync(path.join(os.tmpdir(), "first-paint-"));
  for (const lib of PLUGINS) {
    fs.copyFileSync(path.join(build, `lib${lib}.so`), path.join(plugins, `lib${lib}.so`));
  }
  const [port, broker] = [await freePort(), await freePort()];
  const host = spawn(path.join(build, "brewblox-host"), [
    "--plugins", plugins, "--name", NAME, "--host", "127.0.0.1", "--port", String(port),
    "--embedded-broker", `127.0.0.1:${broker}`, "--update-interval", "1",
  ], { stdio: ["ignore", "ignore", "ignore"] });
  const stop = () => { host.kill("SIGTERM"); fs.rmSync(plugins, { recursive: true, force: true }); };
  const base = `http://127.0.0.1:${port}/${NAME}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${base}/_service/status`)).ok) return { base, stop };
    } catch { /* not up yet */ }
    await sleep(100);
  }
  stop();
  throw new Error("the host did not serve within 30 s");
}

// Chromium with the DevTools protocol on fds 3 (commands in) and 4 (answers out), messages
// separated by NUL bytes.
class Browser {
  constructor() {
    this.profile = fs.mkdtempSync(path.join(os.tmpdir(), "first-paint-chromium-"));
    this.child = spawn(process.env.CHROMIUM || "/usr/bin/chromium", [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
      "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
      "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--window-size=1280,900",
      `--user-data-dir=${this.profile}`, "--remote-debugging-pipe",
    ], { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"], detached: true });
    this.exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.next = 1;
    this.pending = new Map();
    this.listeners = [];
    let buffer = Buffer.alloc(0);
    this.child.stdio[4].on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      let end;
      while ((end = buffer.indexOf(0)) >= 0) {
        this.receive(JSON.parse(buffer.subarray(0, end).toString()));
        buffer = buffer.subarray(end + 1);
      }
    });
  }

  receive(message) {
    if (message.id && this.pending.has(message.id)) {
      const { resolve, reject } = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) reject(new Error(JSON.stringify(message.error)));
      else resolve(message.result);
      return;
    }
    for (const listener of this.listeners) listener(message);
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.next++;
    const message = { id, method, params, ...(sessionId ? { sessionId } : {}) };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdio[3].write(JSON.stringify(message) + "\0");
      setTimeout(() => reject(new Error(`${method}: no answer`)), TIMEOUT_MS).unref();
    });
  }

  event(method, sessionId) {
    return new Promise((resolve, reject) => {
      const listener = (message) => {
        if (message.method === method && message.sessionId === sessionId) {
          this.listeners = this.listeners.filter((l) => l !== listener);
          resolve(message.params);
        }
      };
      this.listeners.push(listener);
      setTimeout(() => reject(new Error(`no ${method}`)), TIMEOUT_MS).unref();
    });
  }

  // Kills the browser and its helper processes (its own process group), then its profile.
  async close() {
    try {
      process.kill(-this.child.pid, "SIGKILL");
    } catch { /* gone already */ }
    await Promise.race([this.exited, sleep(5000)]);
    await sleep(200);
    fs.rmSync(this.profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }
}

// Installed before the page's own scripts (DevTools' injection, outside the page's CSP):
// notes the time the first plugin card is added, i.e. the first overview drawn.
const WATCH = `new MutationObserver((_, observer) => {
  if (document.querySelector("#plugins .plugin")) {
    window.__firstData = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });`;

// Run in the page after its load, once the first overview is drawn: first-contentful-paint,
// that time, and the requests (navigation first) with their end times and transferred bytes.
const IN_PAGE = `new Promise((resolve) => {
  const done = () => {
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
      .map((e) => ({ name: e.name, end: e.responseEnd, bytes: e.transferSize }));
    resolve(JSON.stringify({ fcp: paint ? paint.startTime : null, data: window.__firstData, entries }));
  };
  // Both the first data and Chromium's paint entry (reported once the frame is presented),
  // at most 20 s.
  const until = performance.now() + 20000;
  const wait = () => {
    const painted = performance.getEntriesByName("first-contentful-paint").length > 0;
    if ((window.__firstData && painted) || performance.now() > until) done();
    else setTimeout(wait, 20);
  };
  wait();
})`;

// One load of the page in a new tab, the CPU slowed down `rate` times.
async function load(browser, url, rate) {
  const { targetId } = await browser.send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await browser.send("Target.attachToTarget", { targetId, flatten: true });
  await browser.send("Page.enable", {}, sessionId);
  await browser.send("Page.addScriptToEvaluateOnNewDocument", { source: WATCH }, sessionId);
  await browser.send("Emulation.setCPUThrottlingRate", { rate }, sessionId);
  const loaded = browser.event("Page.loadEventFired", sessionId);
  await browser.send("Page.navigate", { url }, sessionId);
  await loaded;
  const { result } = await browser.send("Runtime.evaluate",
    { expression: IN_PAGE, awaitPromise: true, returnByValue: true }, sessionId);
  await browser.send("Target.closeTarget", { targetId });
  const { fcp, data, entries } = JSON.parse(result.value);
  const upTo = (time) => {
    const before = entries.filter((e) => e.end <= time);
    return { requests: before.length, bytes: before.reduce((sum, e) => sum + e.bytes, 0) };
  };
  const names = (time) => entries.filter((e) => e.end <= time).map((e) => new URL(e.name).pathname);
  return { fcp, data, beforePaint: upTo(fcp), untilData: upTo(data), paintNames: names(fcp), dataNames: names(data) };
}

// The median of the values there are (a run without a paint entry has none).
function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : NaN;
}

function report(label, rate, runs) {
  const pick = (f) => median(runs.map(f));
  const line = [
    `${label} ${rate}x`.padEnd(10),
    `fcp ${pick((r) => r.fcp).toFixed(0)} ms`.padEnd(14),
    `data ${pick((r) => r.data).toFixed(0)} ms`.padEnd(15),
    `before first paint: ${pick((r) => r.beforePaint.requests)} requests, ${pick((r) => r.beforePaint.bytes)} B`.padEnd(48),
    `until first data: ${pick((r) => r.untilData.requests)} requests, ${pick((r) => r.untilData.bytes)} B`,
  ];
  console.log(line.join(" "));
}

async function main() {
  const { profile, runs, throttle } = options();
  const host = await startHost(profile);
  try {
    // A few samples in the window first, as a page opened on a running service sees.
    await sleep(6000);
    const url = `${host.base}/_service/ui`;
    const loadAverage = os.loadavg()[0].toFixed(2);
    console.log(`# ${profile} host, ${os.cpus()[0].model}, ${os.cpus().length} CPUs, load ${loadAverage}; median of ${runs} runs`);
    for (const rate of throttle) {
      const cold = [];
      const warm = [];
      for (let i = 0; i < runs; i++) {
        const browser = new Browser();
        try {
          cold.push(await load(browser, url, rate));
          warm.push(await load(browser, url, rate));
        } finally {
          await browser.close();
        }
      }
      report("cold", rate, cold);
      report("warm", rate, warm);
      if (rate === throttle[0]) {
        console.log(`#   cold, first run, before first paint: ${cold[0].paintNames.join(" ")}`);
        console.log(`#   cold, first run, until first data: ${cold[0].dataNames.join(" ")}`);
      }
    }
  } finally {
    host.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
