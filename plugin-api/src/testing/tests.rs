//! The kit driving a small plugin that uses every service, as a plugin's own tests would.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::{json, Value};

use super::{TestHost, TestRequest};
use crate::{
    http::{Method, StatusCode},
    Arg, Context, Error, ErrorKind, Json, Message, Path, Plugin, QoS, Repeat, Repeater, Request,
    Response, Result, Route, State, Subscription, Topic,
};

/// What the plugin's hooks and handlers did, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

#[derive(Default)]
struct Lab {
    log: Log,
    /// `run` calls of the "simulation" repeater.
    steps: Arc<AtomicU32>,
    /// Set when the "forever" task's future is dropped (cancelled).
    task_dropped: Arc<AtomicBool>,
}

struct Simulation {
    steps: Arc<AtomicU32>,
    fail_next: bool,
}

impl Repeater for Simulation {
    async fn prepare(&mut self) -> Result<Repeat> {
        Ok(Repeat::Continue)
    }

    async fn run(&mut self) -> Result<Repeat> {
        let done = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if std::mem::take(&mut self.fail_next) {
            return Err(Error::msg("heater stuck"));
        }
        Ok(if done >= 3 {
            Repeat::Stop
        } else {
            Repeat::Continue
        })
    }
}

/// Sets its flag when dropped: proof that a task was cancelled.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn kaboom() -> Result<()> {
    panic!("kaboom")
}

/// What the lab's handlers share: its log, and a context to publish and add routes with.
#[derive(Clone)]
struct Shared {
    log: Log,
    ctx: Context,
}

async fn item(req: Request) -> Response {
    Response::json(&json!({
        "id": req.param("id"),
        "path": req.path(),
        "query": req.query_param("q"),
        "client": req.header("x-client"),
    }))
}

async fn put_item(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(body))
}

/// Answers with the status the path names, a body and its length, as a plugin may.
async fn status(Path(code): Path<u16>) -> Result<Response> {
    let status = StatusCode::from_u16(code).map_err(|_| Error::bad_request("no such status"))?;
    let body = format!("status {code}");
    Ok(Response::text(body.clone())
        .with_status(status)
        .header("content-length", body.len().to_string()))
}

async fn file(Path(path): Path<String>) -> String {
    path
}

async fn late_route(State(shared): State<Shared>) -> Result<()> {
    shared.ctx.route(Route::get("/late"), || async {})
}

async fn on_temp(
    State(shared): State<Shared>,
    Topic(key): Topic,
    Json(message): Json<Value>,
) -> Result<()> {
    let temp = message.as_f64().ok_or_else(|| Error::msg("not a number"))?;
    note(&shared.log, format!("amqp {key} {temp}"));
    shared
        .ctx
        .publish("brewcast", "lab.seen", &json!({ "key": key }))
        .await
}

async fn on_alert(State(shared): State<Shared>, sub: Subscription, Json(message): Json<Value>) {
    note(&shared.log, format!("alert {message}"));
    sub.cancel();
}

async fn on_command(State(shared): State<Shared>, message: Message) -> Result<()> {
    note(
        &shared.log,
        format!("mqtt {} {}", message.topic(), message.text()?),
    );
    let reply = QoS::AtLeastOnce;
    shared
        .ctx
        .mqtt_publish("lab/ack", message.into_payload(), reply, false)
        .await
}

async fn double(Json(n): Json<Value>) -> Result<Json<Value>> {
    let n = n
        .as_i64()
        .ok_or_else(|| Error::bad_request("not an integer"))?;
    Ok(Json(json!(n * 2)))
}

impl Lab {
    fn routes(&self, ctx: &Context<Shared>) -> Result<()> {
        ctx.route(Route::get("/items/{id}"), item)?;
        ctx.route(Route::put("/items/{id}"), put_item)?;
        ctx.route(Route::get("/items/special"), || async { "special" })?;
        ctx.route(Route::get("/files/{*path}"), file)?;
        ctx.route(Route::get("/status/{code}"), status)?;
        ctx.route(Route::any("/any"), |method: Method| async move {
            method.to_string()
        })?;
        ctx.route(Route::get("/fail"), || async {
            Err::<(), _>(Error::msg("sensor\noffline"))
        })?;
        ctx.route(Route::get("/panic"), || async { kaboom() })?;
        ctx.route(Route::get("/problem"), || async {
            Response::json(&json!({"title": "gone"}))
                .with_status(StatusCode::GONE)
                .header("Content-Type", "application/problem+json")
        })?;
        ctx.route(Route::get("/sleep"), || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "rested"
        })?;
        ctx.route(Route::post("/late-route"), late_route)
    }

    fn eventbus(&self, ctx: &Context<Shared>) -> Result<()> {
        ctx.subscribe("brewcast", "fermenter.*.temp", on_temp)?;
        ctx.subscribe_with("alerts", "", crate::ExchangeType::Fanout, on_alert)?;
        ctx.mqtt_subscribe("lab/+/cmd/#", on_command)?;
        ctx.mqtt_set_will("lab/state", "gone", true)
    }
}

impl Plugin for Lab {
    fn args() -> Vec<Arg> {
        vec![
            Arg::string("device-id").default("lab-1"),
            Arg::float("interval").default(5.0),
            Arg::flag("fail-startup"),
        ]
    }

    async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
        note(
            &self.log,
            format!("startup {}", ctx.config().get::<String>("device-id")?),
        );
        let shared = ctx.with_state(Shared {
            log: self.log.clone(),
            ctx: ctx.clone(),
        });
        self.routes(&shared)?;
        self.eventbus(&shared)?;
        ctx.add_feature("double", double)?;
        let simulation = Simulation {
            steps: self.steps.clone(),
            fail_next: true,
        };
        ctx.repeat("simulation", simulation);
        let flag = DropFlag(self.task_dropped.clone());
        ctx.spawn("forever", async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        ctx.spawn("broken", async { Err::<(), _>(Error::msg("task gave up")) });
        ctx.gauge("interval_seconds", "Interval", &[("device", "lab-1")])?
            .set(ctx.config().get("interval")?);
        if ctx.config().get::<bool>("fail-startup")? {
            return Err(Error::msg("startup refused"));
        }
        Ok(())
    }

    async fn before_shutdown(&self, _ctx: &Context) -> Result<()> {
        note(&self.log, "before_shutdown");
        Ok(())
    }

    async fn shutdown(&self, _ctx: &Context) -> Result<()> {
        note(&self.log, "shutdown");
        Ok(())
    }
}

async fn lab() -> TestHost<Lab> {
    TestHost::start(Lab::default()).await.unwrap()
}

fn log(host: &TestHost<Lab>) -> Vec<String> {
    host.plugin().log.lock().unwrap().clone()
}

#[tokio::test]
async fn configuration_has_the_host_options_the_defaults_and_the_overrides() {
    let host = TestHost::builder(Lab::default())
        .arg("device-id", "f1")
        .arg("interval", "0.5")
        .name("lab")
        .start()
        .await
        .unwrap();
    let config = host.config();
    assert_eq!(config.name(), "lab");
    assert_eq!(config.get::<String>("device-id").unwrap(), "f1");
    assert_eq!(config.get::<f64>("interval").unwrap(), 0.5);
    assert!(!config.get::<bool>("fail-startup").unwrap());
    assert_eq!(config.state_topic().as_deref(), Some("brewcast/state/lab"));
    assert!(
        config.get::<String>("state-topic").is_err(),
        "a common setting, not an argument"
    );
    assert_eq!(log(&host), ["startup f1"]);
    let err = TestHost::builder(Lab::default())
        .arg("colour", "red")
        .start()
        .await
        .err();
    assert_eq!(err.unwrap().message(), "unknown argument --colour");
}

#[tokio::test]
async fn a_failing_startup_is_an_error_and_cancels_the_tasks_it_spawned() {
    let plugin = Lab::default();
    let dropped = plugin.task_dropped.clone();
    let err = TestHost::builder(plugin)
        .arg("fail-startup", true)
        .start()
        .await
        .err();
    assert_eq!(err.unwrap().message(), "startup refused");
    for _ in 0..100 {
        if dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the task spawned before the error was cancelled"
    );
}

#[tokio::test]
async fn requests_reach_the_route_the_router_picks() {
    let host = lab().await;
    let request = TestRequest::get("/items/a%20b?q=x").header("X-Client", "ui");
    let response = host.request(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let body: Value = response.json().unwrap();
    let expected = json!({"id": "a b", "path": "/test/items/a%20b", "query": "x", "client": "ui"});
    assert_eq!(body, expected);

    assert_eq!(host.get("/items/special").await.text(), "special");
    assert_eq!(host.get("/files/a/b.txt").await.text(), "a/b.txt");
    assert_eq!(host.get("/files/").await.status(), 404);
    let created = host.put_json("/items/7", &json!({"n": 1})).await;
    assert_eq!(
        (created.status(), created.json::<Value>().unwrap()),
        (201, json!({"n": 1}))
    );
    assert_eq!(
        host.request(TestRequest::new("patch", "/any")).await.text(),
        "PATCH"
    );
}

#[tokio::test]
async fn the_router_answers_404_405_and_head_as_the_host_does() {
    let host = lab().await;
    let missing = host.get("/nope").await;
    assert_eq!(
        (missing.status(), missing.text()),
        (404, "404: Not Found".into())
    );
    let wrong = host.delete("/items/7").await;
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.header("allow"), Some("GET,HEAD,PUT"));
    let head = host
        .request(TestRequest::new("HEAD", "/items/special"))
        .await;
    assert_eq!((head.status(), head.body()), (200, &b""[..]));
}

#[tokio::test]
async fn handler_errors_and_panics_become_the_hosts_error_responses() {
    let host = lab().await;
    let bad = host.put_json("/items/7", &()).await;
    assert_eq!(bad.status(), 201, "null is JSON");
    let bad = host.request(TestRequest::put("/items/7").body("{")).await;
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    let failed = host.get("/fail").await;
    assert_eq!(
        (failed.status(), failed.text()),
        (500, "500: sensor offline".into())
    );
    let panicked = host.get("/panic").await;
    assert_eq!(
        (panicked.status(), panicked.text()),
        (500, "500: panicked: kaboom".into())
    );
}

#[tokio::test]
async fn content_types_are_the_sdks_own_unless_set_by_hand() {
    let host = lab().await;
    let json = host.get("/items/7").await;
    assert_eq!(json.header("content-type"), Some("application/json"));
    let text = host.get("/items/special").await;
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let problem = host.get("/problem").await;
    let types: Vec<_> = problem
        .headers()
        .filter(|(name, _)| *name == "content-type")
        .collect();
    assert_eq!(types, [("content-type", &b"application/problem+json"[..])]);
    assert_eq!(problem.json::<Value>().unwrap(), json!({"title": "gone"}));
}

#[tokio::test]
async fn statuses_follow_the_hosts_rule() {
    let host = lab().await;
    for code in [100, 101, 103, 600, 999] {
        let response = host.get(&format!("/status/{code}")).await;
        assert_eq!(response.status(), 500, "{code}: {response:?}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        let expected = format!(
            "plugin returned an invalid response: status {code} (a plugin answers 200 to 599)"
        );
        let body: Value = response.json().unwrap();
        assert_eq!(body, json!({ "error": expected }), "{code}");
    }
    for code in [204, 304] {
        let response = host.get(&format!("/status/{code}")).await;
        assert_eq!(response.status(), code);
        assert_eq!(response.body(), b"", "{code}");
        assert_eq!(response.header("content-length"), None, "{code}");
    }
    for code in [200, 302, 418, 599] {
        let response = host.get(&format!("/status/{code}")).await;
        assert_eq!(response.status(), code);
        assert_eq!(response.text(), format!("status {code}"));
        assert_eq!(response.header("content-length"), Some("10"), "{code}");
    }
}

#[tokio::test]
async fn routes_are_closed_once_startup_returned() {
    let host = lab().await;
    let response = host.post_json("/late-route", &()).await;
    assert_eq!(response.status(), 500);
    assert!(
        response
            .text()
            .contains("routes must be registered during startup"),
        "{response:?}"
    );
    assert!(host.routes().iter().all(|(_, path)| path != "/late"));
    assert!(host.routes().contains(&("*".into(), "/any".into())));
}

#[tokio::test(start_paused = true)]
async fn handlers_run_on_the_tests_runtime_and_its_paused_clock() {
    let host = lab().await;
    let (real, virtual_start) = (std::time::Instant::now(), tokio::time::Instant::now());
    // Were the handler on the plugin's private runtime, the paused clock would fire this
    // timeout at once instead of the handler's sleep.
    let rested = tokio::time::timeout(Duration::from_secs(7200), host.get("/sleep")).await;
    assert_eq!(rested.unwrap().text(), "rested");
    assert!(virtual_start.elapsed() >= Duration::from_secs(3600));
    assert!(
        real.elapsed() < Duration::from_secs(60),
        "the hour passed on the paused clock"
    );
}

#[tokio::test]
async fn features_are_called_through_the_abi_and_provided_ones_are_found() {
    let host = TestHost::builder(Lab::default())
        .feature("clock", || async { Json(42) })
        .start()
        .await
        .unwrap();
    assert_eq!(host.feature::<_, i64>("double", &21).await.unwrap(), 42);
    let err = host.feature::<_, i64>("double", &"x").await.unwrap_err();
    assert!(err.message().contains("not an integer"), "{err}");
    assert_eq!(host.feature_names(), ["clock", "double"]);
    let clock: i64 = host
        .context()
        .feature("clock")
        .unwrap()
        .call(&())
        .await
        .unwrap();
    assert_eq!(clock, 42);
    let missing = host.feature::<_, Value>("nope", &()).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn amqp_messages_reach_matching_bindings_and_publishes_are_recorded() {
    let host = lab().await;
    let results = host.deliver("brewcast", "fermenter.f1.temp", &20.5).await;
    assert!(matches!(results.as_slice(), [Ok(())]), "{results:?}");
    assert!(host
        .deliver("brewcast", "fermenter.temp", &1)
        .await
        .is_empty());
    assert!(host
        .deliver("other", "fermenter.f1.temp", &1)
        .await
        .is_empty());
    let failed = host.deliver("brewcast", "fermenter.f1.temp", &"hot").await;
    assert_eq!(failed[0].as_ref().unwrap_err().message(), "not a number");
    let not_json = host
        .deliver_bytes("brewcast", "fermenter.f1.temp", "{")
        .await;
    assert!(not_json[0]
        .as_ref()
        .unwrap_err()
        .message()
        .contains("not JSON"));

    let [published] = host.take_published().try_into().unwrap();
    assert_eq!(
        (published.exchange.as_str(), published.routing.as_str()),
        ("brewcast", "lab.seen")
    );
    assert_eq!(
        published.json::<Value>().unwrap(),
        json!({"key": "fermenter.f1.temp"})
    );
    assert!(host.published().is_empty());
    assert!(log(&host).contains(&"amqp fermenter.f1.temp 20.5".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_publish_that_never_comes_times_out_and_says_what_was_published() {
    let host = lab().await;
    host.deliver("brewcast", "fermenter.f1.temp", &20.5).await;
    host.mqtt_deliver("lab/f1/cmd", "start").await;
    let timeout = Duration::from_secs(3);

    let start = tokio::time::Instant::now();
    let err = host
        .wait_published(timeout, |m| m.routing == "never")
        .await
        .unwrap_err();
    assert!(start.elapsed() >= timeout, "it waited the whole timeout");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let expected = r#"within 3.0 s; published: ["brewcast lab.seen"]"#;
    assert!(err.message().ends_with(expected), "{err}");

    let start = tokio::time::Instant::now();
    let err = host
        .wait_mqtt_published(timeout, |m| m.topic == "never")
        .await
        .unwrap_err();
    assert!(start.elapsed() >= timeout, "it waited the whole timeout");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let expected = r#"within 3.0 s; published: ["lab/ack"]"#;
    assert!(err.message().ends_with(expected), "{err}");

    // What was published is still found at once, before any timeout.
    let found = host.wait_published(timeout, |m| m.routing == "lab.seen");
    let found = tokio::time::timeout(Duration::ZERO, found).await;
    assert!(matches!(found, Ok(Ok(_))), "{found:?}");
}

#[tokio::test]
async fn a_cancelled_subscription_gets_nothing_more() {
    let host = lab().await;
    assert_eq!(host.deliver("alerts", "any.key", &"hot").await.len(), 1);
    assert!(host.deliver("alerts", "", &"again").await.is_empty());
    let alerts = host
        .subscriptions()
        .into_iter()
        .find(|s| s.exchange == "alerts")
        .unwrap();
    assert!(alerts.cancelled);
    assert_eq!(alerts.exchange_type, "fanout");
    assert_eq!(
        log(&host).iter().filter(|e| e.starts_with("alert")).count(),
        1
    );
}

#[tokio::test]
async fn mqtt_messages_reach_matching_filters_and_the_will_is_published_at_stop() {
    let host = lab().await;
    let results = host.mqtt_deliver("lab/f1/cmd", "start").await;
    assert!(matches!(results.as_slice(), [Ok(())]), "{results:?}");
    assert_eq!(host.mqtt_deliver("lab/f1/cmd/deep/er", "x").await.len(), 1);
    assert!(host.mqtt_deliver("lab/cmd", "x").await.is_empty());
    let bad = host.mqtt_deliver("lab/f1/cmd", vec![0xff]).await;
    assert!(bad[0].is_err(), "not UTF-8");

    let acks = host.take_mqtt_published();
    assert_eq!(acks.len(), 2);
    assert_eq!(
        (acks[0].topic.as_str(), acks[0].payload.as_slice()),
        ("lab/ack", &b"start"[..])
    );
    assert_eq!((acks[0].qos, acks[0].retain), (QoS::AtLeastOnce, false));
    let will = host.mqtt_will().unwrap();
    assert_eq!((will.topic.as_str(), will.retain), ("lab/state", true));

    host.stop().await.unwrap();
    assert_eq!(host.mqtt_published(), [will]);
    assert!(host.mqtt_deliver("lab/f1/cmd", "late").await.is_empty());
}

#[tokio::test]
async fn an_eventbus_not_in_use_or_down_is_unavailable() {
    let err = TestHost::builder(Lab::default())
        .arg("mqtt", false)
        .start()
        .await
        .err();
    assert_eq!(
        err.unwrap().kind(),
        ErrorKind::Unavailable,
        "the lab subscribes on MQTT"
    );

    let host = lab().await;
    host.set_eventbus_down(true);
    let ctx = host.context();
    assert!(ctx
        .publish("x", "y", &1)
        .await
        .unwrap_err()
        .is_unavailable());
    let mqtt = ctx.mqtt_publish("lab/x", "1", QoS::AtMostOnce, false).await;
    assert!(mqtt.unwrap_err().is_unavailable());
    host.set_eventbus_down(false);
    ctx.publish("x", "y", &1).await.unwrap();
    let wildcard = ctx.mqtt_publish("lab/#", "1", QoS::AtMostOnce, false).await;
    assert_eq!(wildcard.unwrap_err().kind(), ErrorKind::Invalid);
    // What a broker would drop the connection for is refused as the host refuses it.
    let control = ctx
        .mqtt_publish("lab/\u{2}", "1", QoS::AtMostOnce, false)
        .await;
    let err = control.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("control character U+0002"), "{err}");
    let deep = vec!["a"; 202].join("/");
    let refused = ctx.mqtt_subscribe(&deep, |_: crate::Message| async {});
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Invalid);
}

#[tokio::test(start_paused = true)]
async fn repeaters_run_only_when_stepped() {
    let host = lab().await;
    assert_eq!(host.repeaters(), ["simulation"]);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        host.plugin().steps.load(Ordering::SeqCst),
        0,
        "an hour without a step"
    );

    let failed = host.step("simulation").await.unwrap_err();
    assert_eq!(failed.message(), "heater stuck");
    assert_eq!(host.step("simulation").await.unwrap(), Repeat::Continue);
    assert_eq!(host.step("simulation").await.unwrap(), Repeat::Stop);
    assert_eq!(host.plugin().steps.load(Ordering::SeqCst), 3);
    let ended = host.step("simulation").await.unwrap_err();
    assert_eq!(ended.kind(), ErrorKind::WrongPhase);
    assert_eq!(
        host.step("nope").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_repeater_is_cancelled_at_stop() {
    let host = lab().await;
    assert_eq!(host.prepare("simulation").await.unwrap(), Repeat::Continue);
    assert_eq!(
        host.prepare("simulation").await.unwrap_err().kind(),
        ErrorKind::WrongPhase
    );
    host.stop().await.unwrap();
    let err = host.step("simulation").await.unwrap_err();
    assert_eq!(err.message(), "repeater \"simulation\" was cancelled");
    assert_eq!(host.plugin().steps.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tasks_run_on_the_tests_runtime_and_stop_cancels_them() {
    let host = lab().await;
    for _ in 0..100 {
        if !host.failed_tasks().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        host.failed_tasks(),
        [("broken".to_owned(), "task gave up".to_owned())]
    );
    assert_eq!(host.running_tasks(), ["forever"]);
    assert!(!host.plugin().task_dropped.load(Ordering::SeqCst));

    host.stop().await.unwrap();
    assert_eq!(log(&host), ["startup lab-1", "before_shutdown", "shutdown"]);
    for _ in 0..100 {
        if host.plugin().task_dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        host.plugin().task_dropped.load(Ordering::SeqCst),
        "forever was cancelled"
    );
    assert!(host.running_tasks().is_empty());
    assert_eq!(host.stop().await.unwrap_err().kind(), ErrorKind::WrongPhase);
}

#[tokio::test]
async fn metrics_are_recorded_and_checked() {
    let host = lab().await;
    assert_eq!(
        host.metric("interval_seconds", &[("device", "lab-1")]),
        Some(5.0)
    );
    assert_eq!(
        host.metric("interval_seconds", &[("device", "other")]),
        None
    );
    let ctx = host.context();
    let counter = ctx.counter("events", "Events", &[("kind", "a")]).unwrap();
    counter.inc_by(2.0);
    counter.inc_by(-5.0);
    ctx.counter("events", "Events", &[("kind", "a")])
        .unwrap()
        .inc();
    assert_eq!(
        host.metric("events", &[("kind", "a")]),
        Some(3.0),
        "one series, found again"
    );
    let clash = ctx
        .gauge("events", "Events", &[("kind", "a")])
        .err()
        .unwrap();
    assert_eq!(clash.kind(), ErrorKind::Invalid);
    let bad = ctx.counter("events_total", "Events", &[]).err().unwrap();
    assert_eq!(bad.kind(), ErrorKind::Invalid);
    let histogram = ctx
        .histogram("latency", "Latency", &[], &[0.1, 1.0])
        .unwrap();
    histogram.observe(0.5);
    histogram.observe(2.0);
    assert_eq!(host.observations("latency", &[]), [0.5, 2.0]);
    assert_eq!(host.metric("latency", &[]), None);
}

#[tokio::test]
async fn dropping_the_host_lets_go_of_the_plugins_handlers() {
    let host = lab().await;
    let log = Arc::downgrade(&host.plugin().log);
    drop(host);
    assert!(
        log.upgrade().is_none(),
        "a handler still holds the plugin's log"
    );
}

/// Subscribes shared and durable at startup, and keeps the refusals of bad options.
#[derive(Default)]
struct Sharer {
    refusals: Mutex<Vec<String>>,
}

impl Plugin for Sharer {
    async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
        let shared = crate::Shared::group("workers").prefetch(2);
        ctx.subscribe_shared("jobs", "brew.#", shared, |_: Message| async {})?;
        ctx.subscribe_shared("brewcast", "#", crate::Shared::durable(), || async {})?;
        ctx.mqtt_subscribe_shared("jobs/#", crate::Shared::group("workers"), || async {})?;
        ctx.mqtt_subscribe_shared("keep/#", crate::Shared::durable(), || async {})?;
        let bad = [
            ctx.subscribe_shared("jobs", "#", crate::Shared::group("a/b"), || async {}),
            ctx.subscribe_shared(
                "jobs",
                "#",
                crate::Shared::group("g").classic().delivery_limit(3),
                || async {},
            ),
            ctx.mqtt_subscribe_shared("a/#", crate::Shared::group("g").prefetch(1), || async {}),
        ];
        let mut refusals = self.refusals.lock().unwrap();
        for made in bad {
            let err = made.expect_err("a refused sharing option");
            assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
            refusals.push(err.to_string());
        }
        Ok(())
    }
}

#[tokio::test]
async fn shared_and_durable_subscriptions_follow_the_hosts_rules() {
    let host = TestHost::builder(Sharer::default())
        .name("svc")
        .start()
        .await
        .unwrap();
    let subs = host.subscriptions();
    let queues: Vec<Option<&str>> = subs.iter().map(|s| s.queue.as_deref()).collect();
    assert_eq!(
        queues,
        [
            Some("workers:jobs:brew.#"),
            Some("svc:brewcast:#"),
            None,
            None
        ]
    );
    assert_eq!(subs[2].routing, "$share/workers/jobs/#");
    assert_eq!(subs[3].routing, "keep/#");
    assert_eq!(
        subs[3].session.as_deref(),
        Some("brewblox-host-svc-durable")
    );
    assert_eq!(subs[2].session, None);
    assert_eq!(host.mqtt_deliver("jobs/1", "{}").await.len(), 1);
    assert_eq!(host.deliver("jobs", "brew.a", &1).await.len(), 1);
    let refusals = host.plugin().refusals.lock().unwrap().clone();
    assert!(refusals[0].contains("group name"), "{refusals:?}");
    assert!(refusals[1].contains("quorum"), "{refusals:?}");
    assert!(refusals[2].contains("AMQP"), "{refusals:?}");
}

/// A reading, published with typed publishers.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Reading {
    /// Degrees Celsius.
    celsius: f64,
    probe: String,
}

/// Makes a typed publisher per bus in `startup` and publishes one reading on each; the
/// MQTT one also sets the will.
#[derive(Default)]
struct Announcer;

impl Plugin for Announcer {
    async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
        let amqp = ctx.publisher::<Reading>(
            crate::Publishes::amqp("alerts", "")
                .exchange_type(crate::ExchangeType::Fanout)
                .summary("Every reading"),
        )?;
        let mqtt = ctx.publisher::<Reading>(crate::Publishes::mqtt(
            "lab/reading",
            QoS::AtLeastOnce,
            true,
        ))?;
        let reading = Reading {
            celsius: 19.5,
            probe: "p1".into(),
        };
        amqp.publish(&reading).await?;
        mqtt.publish(&reading).await?;
        mqtt.set_will(&Reading {
            celsius: 0.0,
            probe: "gone".into(),
        })?;
        let no_will = amqp.set_will(&reading).expect_err("AMQP has no will");
        assert_eq!(no_will.kind(), ErrorKind::Invalid);
        Ok(())
    }
}

/// The property names of the declared payload's schema (`x-schemas` holds the named ones).
fn declared_properties(publication: &crate::abi::asyncapi::Publication) -> Vec<String> {
    let name = publication.payload["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .expect("a named schema");
    let schema = &publication.payload[crate::openapi::SCHEMAS_KEY][name];
    let mut properties: Vec<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    properties.sort();
    properties
}

#[tokio::test]
async fn a_typed_publisher_declares_its_channel_and_sends_its_type() {
    use crate::abi::asyncapi::Channel;

    let host = TestHost::start(Announcer).await.unwrap();
    let declared = host.declared_publications();
    let channels: Vec<&Channel> = declared.iter().map(|p| &p.channel).collect();
    assert_eq!(
        channels,
        [
            &Channel::Amqp {
                exchange: "alerts".into(),
                exchange_type: "fanout".into(),
                routing: String::new(),
            },
            &Channel::Mqtt {
                topic: "lab/reading".into(),
                qos: 1,
                retain: true,
            },
        ]
    );
    assert_eq!(declared[0].summary, "Every reading");
    for publication in &declared {
        assert_eq!(publication.message, "Reading");
        assert_eq!(declared_properties(publication), ["celsius", "probe"]);
    }

    // What was sent is the declared type, on the declared channel, as declared.
    let [amqp] = host.published().try_into().unwrap();
    assert_eq!(
        (
            amqp.exchange.as_str(),
            amqp.routing.as_str(),
            amqp.exchange_type.as_str()
        ),
        ("alerts", "", "fanout")
    );
    let [mqtt] = host.mqtt_published().try_into().unwrap();
    assert_eq!(
        (mqtt.topic.as_str(), mqtt.qos, mqtt.retain),
        ("lab/reading", QoS::AtLeastOnce, true)
    );
    for body in [amqp.json::<Value>().unwrap(), mqtt.json::<Value>().unwrap()] {
        assert_eq!(body, json!({"celsius": 19.5, "probe": "p1"}));
        let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            declared_properties(&declared[0]).iter().collect::<Vec<_>>()
        );
    }
    let will = host.mqtt_will().expect("the typed will");
    assert_eq!((will.topic.as_str(), will.retain), ("lab/reading", true));
    assert_eq!(
        will.json::<Value>().unwrap(),
        json!({"celsius": 0.0, "probe": "gone"})
    );
}
