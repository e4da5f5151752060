//! Bench-only plugin (see BENCHMARKS.md, what each row measures).
//!
//! - `GET /{name}/bench/plugin`: the handler the host also compiles natively (feature
//!   `bench-native`, `GET /{name}/_bench/native`): `{"hello":"world"}` as JSON.
//! - a subscription to `--bench-exchange` (topic, `#`) that counts messages, records the
//!   latency of those carrying a send time `t` (Unix ns) and the receive times, and can be
//!   held at a gate so the harness can fill the queue before measuring the drain;
//! - on a service that uses MQTT, the same counting subscription to `bench/deliver/#`;
//! - with `--bench-group G`, both subscriptions shared in group `G` instead (the AMQP one on
//!   the quorum queue `G:<exchange>:#`, the MQTT one to `$share/G/bench/shared/G/#`), and
//!   with `--bench-work N` a fixed amount of work per message (`shared_work::spin`): the
//!   shared-subscription rows;
//! - `GET /bench/stats`, `GET /bench/count` (only the count and the last receive time, as
//!   the bare baselines serve it: what the callgrind scripts poll, so that the stats' sort
//!   of the latency samples is not counted as the host's), `POST /bench/reset`,
//!   `POST /bench/gate?closed=0|1`, `POST /bench/publish?n=&exchange=&declare=0|1`:
//!   counters and publish-with-confirms runs;
//!   `POST /bench/mqtt-publish?n=`: `n` QoS 1 publishes to `bench/pub`, each awaited.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use plugin_api::{
    export_plugin, schemars, Arg, Context, Json, JsonSchema, Message, Plugin, Publish, QoS, Query,
    Result, Route,
};
use serde_json::{json, Value};
use tokio::sync::watch;

mod shared_work;

/// Receive times kept for the recovery measurement (a ring).
const RING: usize = 65_536;
/// Latency samples kept (the harness resets between runs).
const MAX_SAMPLES: usize = 1_000_000;
/// The MQTT subscription's filter (the harness publishes to `bench/deliver/...`).
const MQTT_FILTER: &str = "bench/deliver/#";
/// Where `/bench/mqtt-publish` publishes.
const MQTT_PUBLISH_TOPIC: &str = "bench/pub";

#[derive(Default)]
pub struct Bench;

struct State {
    count: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    latencies_ns: Mutex<Vec<u64>>,
    received: Mutex<VecDeque<u64>>,
    gate: watch::Sender<bool>,
    /// `--bench-work`: rounds of [`shared_work::spin`] per message.
    work: u32,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

impl State {
    fn new(work: u32) -> Self {
        State {
            work,
            count: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            // Both at their full size from the start, as the bare baselines' are: a buffer
            // growing while messages arrive would be the allocator's work in a count
            // meant for the host's.
            latencies_ns: Mutex::new(Vec::with_capacity(MAX_SAMPLES)),
            received: Mutex::new(VecDeque::with_capacity(RING)),
            gate: watch::channel(false).0,
        }
    }

    async fn on_message(&self, message: Value) {
        // Held while the harness fills the queue (bounded: the harness always reopens). An
        // open gate is read without subscribing to it: a receiver made and dropped for every
        // message would be the measurement's own cost, which the bare baselines do not pay.
        if *self.gate.borrow() {
            let mut gate = self.gate.subscribe();
            let _ = gate.wait_for(|closed| !*closed).await;
        }
        if self.work > 0 {
            let seq = message.get("seq").and_then(Value::as_u64).unwrap_or(0);
            shared_work::spin(seq, self.work);
        }
        let now = now_ns();
        if let Some(sent) = message.get("t").and_then(Value::as_u64) {
            let mut samples = self.latencies_ns.lock().unwrap_or_else(|e| e.into_inner());
            if samples.len() < MAX_SAMPLES {
                samples.push(now.saturating_sub(sent));
            }
        }
        {
            let mut ring = self.received.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(now);
        }
        let _ = self
            .first_ns
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        self.last_ns.store(now, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn stats(&self, since: Option<u64>) -> Value {
        let mut samples = self
            .latencies_ns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        samples.sort_unstable();
        let ring = self.received.lock().unwrap_or_else(|e| e.into_inner());
        // The longest silence that ended at or after `since`: (last before, first after).
        let mut gap = (0u64, 0u64);
        if let Some(since) = since {
            for (&before, &after) in ring.iter().zip(ring.iter().skip(1)) {
                if after >= since && after - before > gap.1 - gap.0 {
                    gap = (before, after);
                }
            }
        }
        json!({
            "count": self.count.load(Ordering::SeqCst),
            "first_ns": self.first_ns.load(Ordering::SeqCst),
            "last_ns": self.last_ns.load(Ordering::SeqCst),
            "latency_samples": samples.len(),
            "latency_p50_ns": percentile(&samples, 0.50),
            "latency_p99_ns": percentile(&samples, 0.99),
            "gap_from_ns": gap.0,
            "gap_to_ns": gap.1,
        })
    }

    fn reset(&self) {
        self.count.store(0, Ordering::SeqCst);
        self.first_ns.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
        self.latencies_ns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[derive(serde::Deserialize, JsonSchema)]
struct PublishRun {
    n: u64,
    exchange: String,
    #[serde(default)]
    declare: u8,
}

#[derive(serde::Deserialize, JsonSchema)]
struct MqttPublishRun {
    n: u64,
}

#[derive(serde::Deserialize, JsonSchema)]
struct Since {
    since: Option<u64>,
}

#[derive(serde::Deserialize, JsonSchema)]
struct Gate {
    closed: u8,
}

/// The handlers' state (`State` is the bench's own struct, hence the full path).
type Shared = plugin_api::State<Arc<State>>;

/// The measured handler: keep it identical to the host's `bench-native` route.
async fn hello() -> Json<Value> {
    Json(json!({"hello": "world"}))
}

async fn on_message(plugin_api::State(state): Shared, Json(message): Json<Value>) {
    state.on_message(message).await;
}

async fn stats(plugin_api::State(state): Shared, Query(since): Query<Since>) -> Json<Value> {
    Json(state.stats(since.since))
}

async fn count(plugin_api::State(state): Shared) -> Json<Value> {
    let count = state.count.load(Ordering::SeqCst);
    let last_ns = state.last_ns.load(Ordering::SeqCst);
    Json(json!({"count": count, "last_ns": last_ns}))
}

async fn reset(plugin_api::State(state): Shared) -> Json<Value> {
    state.reset();
    Json(json!({"reset": true}))
}

async fn gate(plugin_api::State(state): Shared, Query(gate): Query<Gate>) -> Json<Value> {
    state.gate.send_replace(gate.closed != 0);
    Json(json!({"closed": gate.closed != 0}))
}

async fn publish(
    plugin_api::State(ctx): plugin_api::State<Context>,
    Query(run): Query<PublishRun>,
) -> Result<Json<Value>> {
    let n = run.n.min(10_000_000);
    // Publish from a task of the plugin, as plugins do (a repeater, a background
    // task), not from inside this HTTP request; the request waits for the result.
    let (done, result) = tokio::sync::oneshot::channel();
    let task_ctx = ctx.clone();
    ctx.spawn("bench-publish", async move {
        let start = Instant::now();
        let mut outcome = Ok(());
        for seq in 0..n {
            let message = json!({"t": now_ns(), "seq": seq});
            let sent = match Publish::new(&run.exchange, "bench.pub", &message) {
                Ok(publish) => {
                    task_ctx
                        .publish_with(publish.declare_exchange(run.declare != 0))
                        .await
                }
                Err(err) => Err(err),
            };
            if let Err(err) = sent {
                outcome = Err(err.to_string());
                break;
            }
        }
        let _ = done.send(outcome.map(|()| start.elapsed().as_nanos() as u64));
    });
    match result.await {
        Ok(Ok(elapsed_ns)) => Ok(Json(json!({"n": n, "elapsed_ns": elapsed_ns}))),
        Ok(Err(err)) => Err(plugin_api::Error::msg(err)),
        Err(_) => Err(plugin_api::Error::msg("the publish task ended early")),
    }
}

async fn on_mqtt_message(plugin_api::State(state): Shared, message: Message) {
    // Decoded as the bare client does; a payload that is not JSON counts too.
    let value = message.json::<Value>().unwrap_or(Value::Null);
    state.on_message(value).await;
}

/// `POST /bench/mqtt-publish?n=`: `n` QoS 1 publishes from a task of the plugin, each
/// awaited until the broker acknowledged it; answers the elapsed time.
async fn mqtt_publish(
    plugin_api::State(ctx): plugin_api::State<Context>,
    Query(run): Query<MqttPublishRun>,
) -> Result<Json<Value>> {
    let n = run.n.min(10_000_000);
    let (done, result) = tokio::sync::oneshot::channel();
    let task_ctx = ctx.clone();
    ctx.spawn("bench-mqtt-publish", async move {
        let start = Instant::now();
        let mut outcome = Ok(());
        for seq in 0..n {
            let message = json!({"t": now_ns(), "seq": seq});
            let sent = task_ctx
                .mqtt_publish_json(MQTT_PUBLISH_TOPIC, &message, QoS::AtLeastOnce, false)
                .await;
            if let Err(err) = sent {
                outcome = Err(err.to_string());
                break;
            }
        }
        let _ = done.send(outcome.map(|()| start.elapsed().as_nanos() as u64));
    });
    match result.await {
        Ok(Ok(elapsed_ns)) => Ok(Json(json!({"n": n, "elapsed_ns": elapsed_ns}))),
        Ok(Err(err)) => Err(plugin_api::Error::msg(err)),
        Err(_) => Err(plugin_api::Error::msg("the publish task ended early")),
    }
}

impl Plugin for Bench {
    fn args() -> Vec<Arg> {
        vec![
            Arg::string("bench-exchange")
                .default("brewblox_bench")
                .help("Exchange the bench subscription listens to (routing key #)"),
            Arg::string("bench-group")
                .default("")
                .help("Share the bench subscriptions in this group (empty: plain ones)"),
            Arg::int("bench-work")
                .default(0)
                .help("Rounds of fixed work per message (5000: some 10–20 µs)"),
        ]
    }

    async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
        ctx.route(Route::get("/bench/plugin"), hello)?;

        let config = ctx.config();
        let work: i64 = config.get("bench-work")?;
        let work = u32::try_from(work).map_err(|_| plugin_api::Error::invalid("bench-work"))?;
        let group: String = config.get("bench-group")?;
        let with_state = ctx.with_state(Arc::new(State::new(work)));
        // A service started with `--mqtt-*` options only has no AMQP eventbus, and one
        // without them no MQTT eventbus: subscribe to what the service uses.
        if config.amqp().is_some() {
            let exchange: String = config.get("bench-exchange")?;
            if group.is_empty() {
                with_state.subscribe(&exchange, "#", on_message)?;
            } else {
                let shared = plugin_api::Shared::group(&group);
                with_state.subscribe_shared(&exchange, "#", shared, on_message)?;
            }
        }
        if config.mqtt().is_some() {
            if group.is_empty() {
                with_state.mqtt_subscribe(MQTT_FILTER, on_mqtt_message)?;
            } else {
                let shared = plugin_api::Shared::group(&group);
                with_state.mqtt_subscribe_shared(
                    &shared_work::shared_filter(&group),
                    shared,
                    on_mqtt_message,
                )?;
            }
        }
        with_state.route(Route::get("/bench/stats"), stats)?;
        with_state.route(Route::get("/bench/count"), count)?;
        with_state.route(Route::post("/bench/reset"), reset)?;
        with_state.route(Route::post("/bench/gate"), gate)?;
        let publisher = ctx.with_state(ctx.clone());
        publisher.route(Route::post("/bench/publish"), publish)?;
        publisher.route(Route::post("/bench/mqtt-publish"), mqtt_publish)?;
        Ok(())
    }
}

export_plugin!(Bench);
