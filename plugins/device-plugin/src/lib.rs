//! A simulated fermentation chamber, served the way a brewblox device service would be.
//!
//! It gives the host something realistic to run: state that changes by itself (a repeater
//! advances the simulation), a route that reads it, a route that changes it with validated
//! JSON, a feature other plugins can query, and a state message on the eventbus after
//! every update — exchange `--device-exchange`, routing key = service name, like every
//! brewblox service publishes.
//!
//! Routes (under `/{name}`):
//! - `GET /device/state` → the [`DeviceState`] as JSON;
//! - `PUT /device/setpoint` with `{"setpoint": <°C>}` → the new [`DeviceState`]; a missing,
//!   mistyped or out-of-range setpoint → 400 `{"error": ..., "field": "setpoint"}`.
//!
//! At a hot swap the chamber (setpoint, simulated temperature, ambient, heater and cooler)
//! is handed to the new generation as JSON of [`STATE_VERSION`]; during the overlap the
//! outgoing generation's simulation pauses, so only one generation publishes.

pub mod chamber;
pub mod events;
pub mod outage;

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use plugin_api::{prelude::*, rfc3339, Gauge};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, time::Instant};

use crate::{
    chamber::Chamber,
    outage::{Outage, Transition},
};

/// Default for `--device-id`.
pub const DEFAULT_DEVICE_ID: &str = "fermenter-1";

/// Default for `--update-interval` (seconds).
pub const DEFAULT_UPDATE_INTERVAL: f64 = 5.0;

/// Default for `--device-exchange`: the exchange brewblox services broadcast state on.
pub const DEFAULT_EXCHANGE: &str = "brewcast";

/// The shortest update interval honoured. A typo like `--update-interval 1e-9` should not
/// turn the plugin into a busy loop that starves the host on a small machine.
pub const MIN_UPDATE_INTERVAL: Duration = Duration::from_millis(10);

/// How long one publish may wait for the broker's confirmation before it counts as failed.
/// Publishing runs beside the simulation, so a slow broker delays only the messages.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The device's state as clients, other plugins and the eventbus see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceState {
    /// `--device-id`, so that consumers of the eventbus can tell devices apart.
    pub device_id: String,
    /// Chamber temperature (°C).
    pub temperature: f64,
    /// Target temperature (°C).
    pub setpoint: f64,
    /// Room temperature (°C).
    pub ambient: f64,
    /// Whether the heater runs.
    pub heater: bool,
    /// Whether the cooler runs.
    pub cooler: bool,
    /// When the state last changed, RFC 3339 in UTC with milliseconds.
    pub updated: String,
}

/// The body of `PUT /device/setpoint`.
#[derive(Debug, Deserialize, JsonSchema)]
struct SetpointRequest {
    /// The new target temperature (°C), from -20 to 120.
    #[schemars(range(min = -20.0, max = 120.0))]
    setpoint: f64,
}

/// The device shared by the routes, the feature and the repeater.
struct Device {
    id: String,
    inner: Mutex<Inner>,
    /// The state as metrics, set whenever the state is read or changes.
    gauges: Option<Gauges>,
}

/// The device's state as gauges (`plugin_device_plugin_*{device="…"}`).
struct Gauges {
    temperature: Gauge,
    setpoint: Gauge,
    heater: Gauge,
    cooler: Gauge,
}

impl Gauges {
    fn register(ctx: &Context, id: &str) -> Result<Gauges> {
        let labels = [("device", id)];
        Ok(Gauges {
            temperature: ctx.gauge("temperature_celsius", "Chamber temperature", &labels)?,
            setpoint: ctx.gauge("setpoint_celsius", "Target temperature", &labels)?,
            heater: ctx.gauge("heater_on", "1 while the heater runs", &labels)?,
            cooler: ctx.gauge("cooler_on", "1 while the cooler runs", &labels)?,
        })
    }

    fn show(&self, chamber: &Chamber) {
        self.temperature.set(chamber.temperature);
        self.setpoint.set(chamber.setpoint);
        self.heater.set(f64::from(u8::from(chamber.heater)));
        self.cooler.set(f64::from(u8::from(chamber.cooler)));
    }
}

struct Inner {
    chamber: Chamber,
    updated: SystemTime,
}

impl Device {
    fn new(id: String) -> Self {
        Device {
            id,
            inner: Mutex::new(Inner {
                chamber: Chamber::default(),
                updated: SystemTime::now(),
            }),
            gauges: None,
        }
    }

    /// The lock is never held across an await or user code, so a poisoned one can only
    /// come from a bug in the simulation; the state is still the best we have.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> DeviceState {
        let inner = self.lock();
        self.render(&inner)
    }

    fn advance(&self, elapsed: Duration) -> DeviceState {
        let mut inner = self.lock();
        inner.chamber.step(elapsed);
        inner.updated = SystemTime::now();
        self.render(&inner)
    }

    /// Validates and applies a setpoint; the error is a 400 naming the field.
    fn set_setpoint(&self, setpoint: f64) -> Result<DeviceState> {
        let mut inner = self.lock();
        inner
            .chamber
            .set_setpoint(setpoint)
            .map_err(|message| Error::invalid(message).field("setpoint"))?;
        inner.updated = SystemTime::now();
        Ok(self.render(&inner))
    }

    fn render(&self, inner: &Inner) -> DeviceState {
        let chamber = &inner.chamber;
        if let Some(gauges) = &self.gauges {
            gauges.show(chamber);
        }
        DeviceState {
            device_id: self.id.clone(),
            temperature: chamber.temperature,
            setpoint: chamber.setpoint,
            ambient: chamber.ambient,
            heater: chamber.heater,
            cooler: chamber.cooler,
            updated: rfc3339(inner.updated),
        }
    }
}

/// Reads `--update-interval`: `None` disables updates (`<= 0`, as the original disables a
/// repeater), a nonsensical value is a startup error rather than a surprise later.
fn update_interval(seconds: f64) -> Result<Option<Duration>> {
    if seconds.is_nan() {
        return Err(Error::msg(
            "--update-interval must be a finite number of seconds",
        ));
    }
    if seconds <= 0.0 {
        return Ok(None);
    }
    let interval = Duration::try_from_secs_f64(seconds).map_err(|err| {
        Error::msg(format!(
            "--update-interval {seconds} is not a usable duration: {err}"
        ))
    })?;
    Ok(Some(interval.max(MIN_UPDATE_INTERVAL)))
}

/// Advances the simulation every interval and hands each new state to the publisher.
struct Simulation {
    device: Arc<Device>,
    interval: Option<Duration>,
    last: Instant,
    updates: watch::Sender<Option<DeviceState>>,
}

impl Repeater for Simulation {
    async fn prepare(&mut self) -> Result<Repeat> {
        if self.interval.is_none() {
            tracing::info!("Updates disabled: --update-interval is not positive");
            return Ok(Repeat::Stop);
        }
        self.last = Instant::now();
        Ok(Repeat::Continue)
    }

    async fn run(&mut self) -> Result<Repeat> {
        let Some(interval) = self.interval else {
            return Ok(Repeat::Stop);
        };
        tokio::time::sleep(interval).await;
        // The time that really passed, not the nominal interval: a busy host or a slow
        // step must not slow down the simulated physics.
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let state = self.device.advance(elapsed);
        // A watch keeps only the newest state: if the bus is slower than the updates, it
        // publishes the latest instead of a growing backlog of stale ones.
        self.updates.send_replace(Some(state));
        Ok(Repeat::Continue)
    }
}

/// Where the device's states go: a typed publisher per channel of the eventbuses the
/// service uses, each declared with its message type for the AsyncAPI document.
#[derive(Debug, Clone)]
struct Targets {
    service: String,
    /// The AMQP exchange and its publisher (the routing key is the service name).
    amqp: Option<(String, Publisher<DeviceState>)>,
    mqtt: Option<MqttTargets>,
}

/// The MQTT topics and their publishers.
#[derive(Debug, Clone)]
struct MqttTargets {
    topics: events::Topics,
    history: Publisher<events::HistoryEvent>,
    state: Publisher<events::StateEvent>,
}

/// Publishes every state the simulation produces. It runs apart from the repeater so that
/// an eventbus that is down or slow never stops or delays the simulation; failures are
/// logged once per outage and bus and otherwise dropped, since the next update supersedes
/// them.
async fn publish_states(targets: Targets, mut updates: watch::Receiver<Option<DeviceState>>) {
    let mut amqp_outage = Outage::default();
    let mut mqtt_outage = Outage::default();
    while updates.changed().await.is_ok() {
        let Some(state) = updates.borrow_and_update().clone() else {
            continue;
        };
        if let Some((exchange, publisher)) = &targets.amqp {
            let result = bounded(publisher.publish(&state)).await;
            report(
                &mut amqp_outage,
                &format!("exchange \"{exchange}\""),
                result,
            );
        }
        if let Some(mqtt) = &targets.mqtt {
            let result = bounded(publish_mqtt(mqtt, &targets.service, &state)).await;
            let topics = &mqtt.topics;
            let target = format!(
                "MQTT topics \"{}\" and \"{}\"",
                topics.history, topics.state
            );
            report(&mut mqtt_outage, &target, result);
        }
    }
}

/// The history event, then the retained state.
async fn publish_mqtt(mqtt: &MqttTargets, service: &str, state: &DeviceState) -> Result<()> {
    mqtt.history
        .publish(&events::history(service, state))
        .await?;
    mqtt.state
        .publish(&events::state(service, Some(state)))
        .await
}

async fn bounded(publish: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
        Ok(result) => result,
        Err(_) => Err(Error::msg(format!(
            "no confirmation within {} s",
            PUBLISH_TIMEOUT.as_secs()
        ))),
    }
}

/// One log line when publishing to `target` starts failing and one when it works again.
fn report(outage: &mut Outage, target: &str, result: Result<()>) {
    match (outage.record(result.is_ok()), result) {
        (Transition::Down, Err(err)) => {
            let what = if err.is_unavailable() {
                "eventbus unavailable"
            } else {
                "publish failed"
            };
            tracing::warn!(
                "Cannot publish device state to {target} ({what}: {err}); \
                 retrying with every update, quietly until it works again"
            );
        }
        (Transition::Recovered { failed }, _) => tracing::info!(
            "Publishing device state to {target} works again \
             ({failed} updates were not published)"
        ),
        (_, Err(err)) => tracing::debug!("publish to {target} failed: {err}"),
        (_, Ok(())) => {}
    }
}

/// `GET /device/state`, and the `device` feature.
async fn get_state(State(device): State<Arc<Device>>) -> Json<DeviceState> {
    Json(device.state())
}

/// `PUT /device/setpoint`.
async fn put_setpoint(
    State(device): State<Arc<Device>>,
    Json(body): Json<SetpointRequest>,
) -> Result<Json<DeviceState>> {
    let state = device.set_setpoint(body.setpoint)?;
    tracing::info!(
        "Setpoint of {} set to {} °C",
        state.device_id,
        state.setpoint
    );
    Ok(Json(state))
}

/// The plugin: all of its state lives in the `Device` that `startup` makes from the
/// configuration and hands to the routes, the feature and the repeater; it is kept here too
/// for the handover at a hot swap.
#[derive(Default)]
pub struct DevicePlugin {
    device: std::sync::OnceLock<Arc<Device>>,
}

/// The format of the chamber handed over at a hot swap; a build that changes it moves this
/// on (the new generation then starts from the defaults, and the host logs why).
pub const STATE_VERSION: u32 = 1;

/// The chamber as handed over.
#[derive(Serialize, Deserialize)]
struct HandedChamber {
    temperature: f64,
    setpoint: f64,
    ambient: f64,
    heater: bool,
    cooler: bool,
}

impl HandedChamber {
    fn of(chamber: &Chamber) -> Self {
        HandedChamber {
            temperature: chamber.temperature,
            setpoint: chamber.setpoint,
            ambient: chamber.ambient,
            heater: chamber.heater,
            cooler: chamber.cooler,
        }
    }

    /// The chamber, if its values are ones this build accepts.
    fn chamber(self) -> std::result::Result<Chamber, String> {
        let setpoint = chamber::validate_setpoint(self.setpoint)?;
        if !(self.temperature.is_finite() && self.ambient.is_finite()) {
            return Err("the temperatures handed over are not finite".into());
        }
        let mut chamber = Chamber::new(self.ambient, setpoint);
        chamber.temperature = self.temperature;
        chamber.heater = self.heater;
        chamber.cooler = self.cooler;
        Ok(chamber)
    }
}

impl Plugin for DevicePlugin {
    fn args() -> Vec<Arg> {
        vec![
            Arg::string("device-id")
                .default(DEFAULT_DEVICE_ID)
                .help("Name of the simulated device, reported in its state"),
            Arg::float("update-interval")
                .default(DEFAULT_UPDATE_INTERVAL)
                .help("Seconds between simulation updates and state messages; 0 or less disables updates"),
            Arg::string("device-exchange")
                .default(DEFAULT_EXCHANGE)
                .help("Eventbus exchange the device state is published to (routing key: the service name)"),
        ]
    }

    async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
        let config = ctx.config();
        let id: String = config.get("device-id")?;
        if id.trim().is_empty() {
            return Err(Error::msg("--device-id must not be empty"));
        }
        // NaN and infinities reach the plugin as JSON null; they get the same clear error.
        let seconds: Option<f64> = config.get("update-interval")?;
        let interval = update_interval(seconds.unwrap_or(f64::NAN))?;
        let exchange: String = config.get("device-exchange")?;
        let routing = config.name().to_owned();
        let device = Device {
            gauges: Some(Gauges::register(ctx, &id)?),
            ..Device::new(id.clone())
        };
        let handed = ctx.handed_over_with(|handover| {
            if handover.version() != STATE_VERSION {
                return Err(format!(
                    "state version {} was handed over; this build reads version {STATE_VERSION}",
                    handover.version()
                ));
            }
            serde_json::from_slice::<HandedChamber>(handover.data())
                .map_err(|err| err.to_string())
                .and_then(HandedChamber::chamber)
        });
        if let HandedOver::Accepted(chamber) = handed {
            tracing::info!(
                "Device {id} took over the previous generation's chamber (setpoint {} °C, \
                 temperature {:.2} °C)",
                chamber.setpoint,
                chamber.temperature
            );
            device.lock().chamber = chamber;
        }
        // The gauges show the state from the start.
        device.state();
        let device = Arc::new(device);
        let _ = self.device.set(Arc::clone(&device));

        let api = ctx.with_state(Arc::clone(&device));
        api.route(
            Route::get("/device/state")
                .summary("Current device state")
                .description(
                    "The simulated fermentation chamber: temperature, setpoint and ambient \
                     temperature in °C, whether the heater and cooler run, the device id and \
                     when the state last changed (RFC 3339).",
                ),
            get_state,
        )?;
        api.route(
            Route::put("/device/setpoint")
                .summary("Change the setpoint")
                .description(
                    "The controller reacts at once; the answer is the new state. A missing, \
                     mistyped or out-of-range setpoint is a 400 whose JSON body names the field.",
                )
                .status(StatusCode::OK, "The new state"),
            put_setpoint,
        )?;
        api.add_feature("device", get_state)?;

        let targets = Targets {
            service: routing.clone(),
            amqp: amqp_target(ctx, &exchange, &routing)?,
            mqtt: mqtt_targets(ctx, &routing)?,
        };
        let destinations = describe(&targets);
        let (updates, receiver) = watch::channel(None);
        if interval.is_some() {
            ctx.spawn("device publisher", publish_states(targets, receiver));
        }
        ctx.repeat(
            "device simulation",
            Simulation {
                device,
                interval,
                last: Instant::now(),
                updates,
            },
        );

        match interval {
            Some(interval) => tracing::info!(
                "Device {id} simulating, updating every {:.3} s, publishing to {}",
                interval.as_secs_f64(),
                destinations
            ),
            None => tracing::info!("Device {id} ready, updates disabled"),
        }
        Ok(())
    }

    async fn handover(&self, _ctx: &Context) -> Result<Option<Handover>> {
        let Some(device) = self.device.get() else {
            return Ok(None);
        };
        let handed = HandedChamber::of(&device.lock().chamber);
        Handover::json(STATE_VERSION, &handed).map(Some)
    }
}

/// Where the states go, for the start's log line: only the eventbuses in use.
fn describe(targets: &Targets) -> String {
    let mut parts = Vec::new();
    if let Some((exchange, _)) = &targets.amqp {
        parts.push(format!(
            "AMQP exchange \"{exchange}\" with routing key \"{}\"",
            targets.service
        ));
    }
    if let Some(mqtt) = &targets.mqtt {
        parts.push(format!(
            "MQTT topics \"{}\" and \"{}\"",
            mqtt.topics.history, mqtt.topics.state
        ));
    }
    if parts.is_empty() {
        "no eventbus (none in use)".to_owned()
    } else {
        parts.join(" and ")
    }
}

/// The AMQP state's publisher when the service uses AMQP: exchange `exchange`, routing key
/// `routing` (the service name).
fn amqp_target(
    ctx: &Context,
    exchange: &str,
    routing: &str,
) -> Result<Option<(String, Publisher<DeviceState>)>> {
    if ctx.config().amqp().is_none() {
        return Ok(None);
    }
    let publisher = ctx.publisher::<DeviceState>(
        Publishes::amqp(exchange, routing)
            .summary("The device state on every update, as brewblox services broadcast"),
    )?;
    Ok(Some((exchange.to_owned(), publisher)))
}

/// The MQTT topics and their publishers when the service uses MQTT, with the will (the
/// state with `data: null`, retained) set: announced by the broker if the service dies,
/// published by the host at a clean stop.
fn mqtt_targets(ctx: &Context, service: &str) -> Result<Option<MqttTargets>> {
    let Some(mqtt) = ctx.config().mqtt() else {
        return Ok(None);
    };
    let topics = events::Topics::new(&mqtt.history_topic, &mqtt.state_topic, service);
    let history = ctx.publisher::<events::HistoryEvent>(
        Publishes::mqtt(&topics.history, QoS::AtMostOnce, false)
            .summary("A history event on every update (the readings, units in the names)"),
    )?;
    let state = ctx.publisher::<events::StateEvent>(
        Publishes::mqtt(&topics.state, QoS::AtLeastOnce, true).summary(
            "The state on every update, retained; also the will (data null) when the service \
             is gone",
        ),
    )?;
    state.set_will(&events::state(service, None))?;
    Ok(Some(MqttTargets {
        topics,
        history,
        state,
    }))
}

export_plugin!(DevicePlugin);

#[cfg(test)]
mod plugin_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_parsing() {
        assert_eq!(update_interval(0.0).unwrap(), None);
        assert_eq!(update_interval(-1.0).unwrap(), None);
        assert_eq!(update_interval(f64::NEG_INFINITY).unwrap(), None);
        assert_eq!(
            update_interval(2.5).unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(update_interval(1e-9).unwrap(), Some(MIN_UPDATE_INTERVAL));
        assert!(update_interval(f64::NAN).is_err());
        assert!(update_interval(f64::INFINITY).is_err());
        assert!(update_interval(1e300).is_err());
    }

    #[test]
    fn state_json_shape() {
        let device = Device::new("fermenter-7".into());
        let value = serde_json::to_value(device.state()).unwrap();
        let object = value.as_object().unwrap();
        let mut keys: Vec<_> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "ambient",
                "cooler",
                "device_id",
                "heater",
                "setpoint",
                "temperature",
                "updated"
            ]
        );
        assert_eq!(value["device_id"], "fermenter-7");
        assert_eq!(value["setpoint"], chamber::DEFAULT_SETPOINT);
    }

    #[test]
    fn setpoint_errors_name_the_field() {
        let device = Device::new("d".into());
        for bad in [f64::NAN, 500.0, -100.0] {
            let err = device.set_setpoint(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert_eq!(err.field_name(), Some("setpoint"));
        }
        let state = device.set_setpoint(21.5).unwrap();
        assert_eq!(state.setpoint, 21.5);
        assert!(state.heater);
        assert_eq!(device.state().setpoint, 21.5);
    }

    #[test]
    fn advancing_changes_the_state() {
        let device = Device::new("d".into());
        let before = device.state();
        let after = device.advance(Duration::from_secs(10));
        assert!(after.temperature < before.temperature, "the cooler runs");
        assert_eq!(after.setpoint, before.setpoint);
    }
}
