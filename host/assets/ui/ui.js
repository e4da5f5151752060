// brewblox-host operator page. Polls the documented JSON endpoint `overview` (beside this
// page, under /{name}/_service/) every 2 s and draws it. Everything that comes from the
// service — names, topics, routing keys, payloads, errors — goes into the page with
// textContent or setAttribute, never as HTML: nothing from the data is ever interpreted.
"use strict";

const POLL_MS = 2000;
const HISTORY_POLL_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";
const state = { generations: "", historyBase: null, historyKey: "", historyField: "" };

// ---- DOM helpers: text only ----
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}
function replace(id, ...children) {
  const node = document.getElementById(id);
  node.replaceChildren(...children);
  return node;
}
function badge(text) {
  return el("span", { class: "badge " + String(text).replace(/[^a-z]/g, "") }, text);
}
function fmt(value, digits) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Number(value).toFixed(digits === undefined ? 0 : digits);
}
function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "min"], [s % 60, "s"]];
  const shown = parts.filter(([n]) => n > 0).slice(0, 2);
  return shown.length ? shown.map(([n, unit]) => n + " " + unit).join(" ") : "0 s";
}
function table(headers, rows, className) {
  return el("table", { class: className || "" },
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}
function pageError(text) {
  const list = document.getElementById("page-errors");
  if (list.children.length < 20) list.append(el("li", {}, text));
}

// ---- plots: inline SVG built node by node ----
// points: [[timeMs, value], …] (value null: a gap, skipped).
function plot(title, points, unit) {
  const W = 300, H = 110, L = 38, R = 6, T = 8, B = 16;
  const shown = points.filter(([, v]) => v !== null && Number.isFinite(v));
  const box = svg("svg", { class: "plot", viewBox: `0 0 ${W} ${H}`, "data-points": shown.length,
    role: "img" });
  const label = svg("title");
  label.textContent = title;
  box.append(label);
  const last = shown.length ? shown[shown.length - 1][1] : null;
  const caption = el("figcaption", {}, title + ": ", el("b", {}, fmt(last, 2)), unit ? " " + unit : "");
  if (shown.length === 0) {
    const empty = svg("text", { x: L, y: H / 2 });
    empty.textContent = "no data yet";
    box.append(empty);
    return el("figure", {}, box, caption);
  }
  const t0 = shown[0][0], t1 = Math.max(shown[shown.length - 1][0], t0 + 1);
  let lo = Math.min(...shown.map(([, v]) => v)), hi = Math.max(...shown.map(([, v]) => v));
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (const v of [lo, hi]) {
    box.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const tick = svg("text", { x: 2, y: y(v) + 3 });
    tick.textContent = fmt(v, Math.abs(hi - lo) < 10 ? 1 : 0);
    box.append(tick);
  }
  const span = svg("text", { x: L, y: H - 3 });
  span.textContent = duration((t1 - t0) / 1000) + " shown";
  box.append(span);
  box.append(svg("polyline", {
    points: shown.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" "),
  }));
  const [lt, lv] = shown[shown.length - 1];
  box.append(svg("circle", { cx: x(lt), cy: y(lv), r: 2.5 }));
  return el("figure", {}, box, caption);
}

// Per-second rates from a running total sampled at `times`.
function rates(times, values) {
  const out = [];
  for (let i = 1; i < times.length; i++) {
    const a = values[i - 1], b = values[i], dt = (times[i] - times[i - 1]) / 1000;
    out.push([times[i], a === null || b === null || dt <= 0 ? null : Math.max(0, b - a) / dt]);
  }
  return out;
}

// ---- the overview ----
const TOTAL_TITLES = {
  http_requests: "HTTP requests/s", http_errors: "HTTP 5xx/s", messages: "messages delivered/s",
  message_errors: "messages failed or dropped/s", publishes: "publishes/s",
  publish_errors: "publishes failed/s",
};

function drawService(data) {
  const s = data.service;
  document.title = s.name + " — brewblox-host";
  replace("service-name", s.name);
  replace("status", s.status).className = "badge " + s.status;
  const facts = [["version", "brewblox-host " + s.version], ["uptime", duration(s.uptime_seconds)],
    ["buses", s.brokers.map((b) => b.bus).join(", ") || "none"]];
  const dl = replace("service-facts");
  for (const [key, value] of facts) dl.append(el("dt", {}, key), el("dd", {}, value));
  // The broker in use (live); with a list, the whole list after it.
  for (const b of s.brokers) {
    const list = b.list.length > 1 ? el("span", { class: "muted" }, " of the list " + b.list.join(", ")) : null;
    dl.append(el("dt", {}, b.bus + " broker"),
      el("dd", { class: "broker", "data-bus": b.bus }, el("span", { class: "broker-url" }, b.url), " ", badge(b.state), list));
  }
  replace("problems", ...s.problems.map((p) => el("li", { class: "problem" }, p)));
}

function subscriptionRows(subs) {
  return subs.map((s) => el("tr", { class: "subscription" },
    el("td", {}, s.bus), el("td", { class: "exchange" }, s.exchange),
    el("td", { class: "routing" }, s.routing), el("td", {}, badge(s.state)),
    el("td", { class: "num delivered" }, fmt(s.delivered)),
    el("td", { class: "num failed" }, fmt(s.failed)),
    el("td", { class: "num dropped" }, fmt(s.dropped)),
    el("td", { class: "num" }, s.delivered > 0 ? fmt((s.handler_seconds / s.delivered) * 1000, 2) : "–"),
    el("td", {}, s.error || "")));
}
const SUB_HEADERS = ["bus", "exchange", "routing / filter", "state", "delivered", "failed",
  "dropped", "ms/message", "error"];

// A link into the API UI (Swagger UI's deep links: `#/<tag>/<operation>`, the operation named
// by its operationId or, without one, by method and path with every non-word character as `_`).
function routeLink(route) {
  let href = "../api/doc";
  if (route.tag) {
    const method = route.method === "*" ? "get" : route.method.toLowerCase();
    const operation = route.operation_id ? route.operation_id.replace(/\W/g, "_")
      : method + route.path.replace("{*", "{").replace(/\W/g, "_");
    href += "#/" + encodeURIComponent(route.tag) + "/" + encodeURIComponent(operation);
  }
  return el("li", {}, el("code", {}, route.method), " ", el("a", { href }, route.path));
}

function drawPlugins(data) {
  const cards = data.plugins.map((p) => el("div", { class: "plugin", "data-plugin": p.name },
    el("h3", {}, el("span", { class: "plugin-name" }, p.name), " ", badge(p.state)),
    el("div", { class: "meta" }, "version " + p.version + " · build " +
      (p.build ? p.build.slice(0, 16) : "unknown") + " · generation " + fmt(p.generation) +
      " · task failures " + fmt(p.task_failures) + " · repeater failures " + fmt(p.repeater_failures)),
    p.error ? el("p", { class: "problem" }, p.error) : null,
    p.tasks.length ? el("p", {}, "tasks and repeaters: " + p.tasks.join(", ")) : null,
    p.routes.length ? el("ul", { class: "routes" }, ...p.routes.map(routeLink)) : null,
    p.subscriptions.length ? table(SUB_HEADERS, subscriptionRows(p.subscriptions)) : null));
  replace("plugins", ...(cards.length ? cards : [el("p", { class: "muted" }, "No plugins loaded.")]));
  const host = data.host_subscriptions;
  replace("host-subscriptions", host.length ? table(SUB_HEADERS, subscriptionRows(host))
    : el("p", { class: "muted" }, "None (POST …/_debug/subscribe makes them)."));
  replace("reloads", ...(data.reloads.length ? data.reloads.map((r) => el("li", {},
    r.time + " ", badge(r.ok ? "ok" : "failed"), r.error ? " " + r.error : ""))
    : [el("li", { class: "muted" }, "No reload since the start.")]));
}

function drawWindow(data) {
  const w = data.window;
  replace("rates", ...w.totals.map((s) => plot(TOTAL_TITLES[s.key] || s.key, rates(w.times, s.values), "")));
  const gauges = w.gauges.map((s) => plot(s.key, w.times.map((t, i) => [t, s.values[i]]), ""));
  replace("gauges", ...(gauges.length ? gauges : [el("p", { class: "muted" }, "No plugin gauges.")]));
}

// The history plugin's routes, when a plugin serves them: found in the overview's routes.
function findHistory(data) {
  for (const p of data.plugins) {
    const keys = p.routes.find((r) => r.method === "GET" && r.path.endsWith("/history/keys"));
    const recent = p.routes.find((r) => r.method === "GET" && r.path.endsWith("/history/recent/{key}"));
    if (keys && recent) return keys.path.slice(0, -"/keys".length);
  }
  return null;
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!response.ok && response.status !== 503) throw new Error(url + ": HTTP " + response.status);
  return response.json();
}

// Every numeric field of a message, by dotted path (`data.temperature[degC]`).
function numericFields(value, prefix, out) {
  if (typeof value === "number" && Number.isFinite(value)) out[prefix || "value"] = value;
  else if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, child] of Object.entries(value)) {
      if (Object.keys(out).length < 50) numericFields(child, prefix ? prefix + "." + key : key, out);
    }
  }
  return out;
}

function fillSelect(select, options, current) {
  const chosen = options.includes(current) ? current : options[0] || "";
  select.replaceChildren(...options.map((o) => {
    const option = el("option", {}, o);
    option.value = o;
    if (o === chosen) option.selected = true;
    return option;
  }));
  return chosen;
}

// A failed history fetch (a dropped connection) is said where the plot is, not kept as an error.
function historyError(err) {
  document.getElementById("history-note").textContent = "History not loaded: " + err.message;
}

async function drawHistory() {
  if (!state.historyBase) return;
  document.getElementById("history-note").textContent = "From " + state.historyBase + "/keys and /recent/{key}.";
  const keys = await getJson(state.historyBase + "/keys");
  // BrewBlox's history events (topic brewcast/history/…) first: they carry the readings.
  const sorted = (Array.isArray(keys) ? keys.map(String).slice(0, 1000) : [])
    .sort((a, b) => (b.includes("/history/") - a.includes("/history/")) || a.localeCompare(b));
  state.historyKey = fillSelect(document.getElementById("history-key"), sorted, state.historyKey);
  if (!state.historyKey) return;
  const recent = await getJson(state.historyBase + "/recent/" + encodeURIComponent(state.historyKey));
  const rows = (Array.isArray(recent) ? recent : []).map((entry) =>
    [Date.parse(entry.received), numericFields(entry.message, "", {})]);
  const fields = [...new Set(rows.flatMap(([, f]) => Object.keys(f)))].sort();
  // A temperature first, as BrewBlox's graphs open with one.
  const preferred = fields.includes(state.historyField) ? state.historyField
    : fields.find((f) => /temperature/i.test(f)) || "";
  state.historyField = fillSelect(document.getElementById("history-field"), fields, preferred);
  const points = rows.filter(([t, f]) => Number.isFinite(t) && state.historyField in f)
    .map(([t, f]) => [t, f[state.historyField]]);
  replace("history-plot", state.historyField
    ? plot(state.historyKey + " · " + state.historyField, points, "")
    : el("p", { class: "muted" }, "No numeric field in the messages of this key."));
}

// The eventbus contracts, from the AsyncAPI document: one row per channel.
function shape(schema, doc, depth) {
  if (schema === true || (schema && typeof schema === "object" && Object.keys(schema).length === 0)) return "any";
  if (!schema || typeof schema !== "object" || depth > 4) return "…";
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.split("/").pop();
    const target = doc.components && doc.components.schemas && doc.components.schemas[name];
    return depth === 0 && target ? name + " " + shape(target, doc, depth + 1) : name;
  }
  const alternatives = schema.anyOf || schema.oneOf;
  if (Array.isArray(alternatives)) return alternatives.map((s) => shape(s, doc, depth + 1)).join(" | ");
  if (schema.properties) {
    return "{" + Object.entries(schema.properties).map(([k, v]) => k + ": " + shape(v, doc, depth + 1)).join(", ") + "}";
  }
  if (schema.type === "object" && schema.additionalProperties) {
    return "{…: " + shape(schema.additionalProperties, doc, depth + 1) + "}";
  }
  if (schema.type === "array") return shape(schema.items, doc, depth + 1) + "[]";
  return Array.isArray(schema.type) ? schema.type.join(" | ") : String(schema.type || "any");
}

async function drawChannels() {
  const doc = await getJson("../api/asyncapi.json");
  const ops = Object.values(doc.operations || {});
  const rows = Object.entries(doc.channels || {}).map(([id, channel]) => {
    const mine = ops.filter((op) => op.channel && op.channel.$ref === "#/channels/" + id);
    const messages = Object.values(channel.messages || {}).map((m) => {
      const msg = m.$ref ? (doc.components.messages || {})[m.$ref.split("/").pop()] || {} : m;
      return shape(msg.payload, doc, 0) === "any" ? (msg.name || "") + ": any"
        : shape(msg.payload, doc, 0);
    });
    return el("tr", { class: "channel" },
      el("td", {}, mine.map((op) => op.action + (op["x-plugin"] ? " (" + op["x-plugin"] + ")" : "")).join(", ")),
      el("td", {}, (channel.servers || []).map((ref) => String(ref.$ref || "").split("/").pop()).join(", ")),
      el("td", { class: "address" }, channel.address === null ? "(any)" : String(channel.address)),
      el("td", {}, messages.join("; ")));
  });
  replace("channels", rows.length ? table(["operations", "bus", "address", "messages"], rows)
    : el("p", { class: "muted" }, "No channels."));
}

// ---- polling, recovering by itself ----
async function refresh() {
  let data;
  try {
    data = await getJson("overview");
  } catch (err) {
    replace("connection", "connection lost, retrying").className = "badge lost";
    return;
  }
  replace("connection", "live").className = "badge ok";
  drawService(data);
  drawPlugins(data);
  drawWindow(data);
  const generations = data.plugins.map((p) => p.name + "@" + p.generation).join(",");
  if (generations !== state.generations) {
    state.generations = generations;
    state.historyBase = findHistory(data);
    drawHistory().catch(historyError);
    drawChannels().catch((err) => {
      state.generations = ""; // tried again at the next poll
      replace("channels", el("p", { class: "muted" }, "AsyncAPI document not loaded: " + err.message));
    });
  }
}

function loop(task, ms) {
  const run = () => task().catch((err) => pageError(err.message)).finally(() => setTimeout(run, ms));
  run();
}

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("error", (event) => pageError(String(event.message)));
  for (const id of ["history-key", "history-field"]) {
    document.getElementById(id).addEventListener("change", (event) => {
      if (id === "history-key") state.historyKey = event.target.value;
      else state.historyField = event.target.value;
      drawHistory().catch(historyError);
    });
  }
  loop(refresh, POLL_MS);
  loop(() => drawHistory().catch(historyError), HISTORY_POLL_MS);
});
