//! The running service: the first generation of plugins, the HTTP server, the eventbus, and
//! the loop that answers signals — SIGHUP (or, with `--watch`, a changed plugins folder)
//! reloads, SIGINT/SIGTERM stops.
//!
//! A reload never takes the service down: the new plugin set is loaded, checked and started
//! beside the old one, which keeps serving; only once the new set has started and its
//! eventbus subscriptions are bound does the server switch to it, and the old set stops
//! after its in-flight requests. If anything about the new set fails, it is stopped again,
//! the old set goes on, and `/_service/health` shows the failed reload. Same process, same
//! listening socket, same eventbus connections throughout.

pub mod generation;

pub mod watch;

use std::{ffi::OsString, future::Future, process::ExitCode, sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use tokio::{net::TcpListener, sync::mpsc};

use crate::plugins::handover::{GenerationLife, HandoverReport};
use crate::reloads::ReloadLog;
use crate::{
    boot::{self, EXIT_FAILURE},
    bus::EventBus,
    cli::Settings,
    http::{
        conn_timeout::Limits,
        server::{Current, Server, ServerConfig},
    },
    mqtt::MqttBus,
    shutdown::{Received, Signals},
};
use generation::{Generation, Lasting};

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The MQTT options' TLS files, as the MQTT eventbus words what is wrong with them.
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::TlsError),
    #[error("cannot listen on {address}: {err}")]
    Listen {
        address: String,
        err: std::io::Error,
    },
}

/// Why a reload did not happen; the running plugins go on.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error("loading panicked: {0}")]
    Panicked(tokio::task::JoinError),
    /// The command line, the argument files or the plugins folder.
    #[error(transparent)]
    Refused(boot::PrepareError),
    /// A new plugin could not be created or started.
    #[error(transparent)]
    Failed(crate::plugins::lifecycle::HookError),
    #[error("abandoned: the service is stopping")]
    Abandoned,
}

/// What the process has when the service starts.
pub struct Boot {
    pub settings: Settings,
    pub loaded: crate::plugins::loader::LoadedSet,
    /// The arguments as given (before `@file` expansion): a reload reads them, and the
    /// files they name, again.
    pub args: Vec<OsString>,
    /// When the process's `main` began: the start-up log line says how long serving took.
    pub began: Instant,
}

/// Signals that came while something else was going on, answered after it.
#[derive(Debug, Default)]
struct Pending {
    reload: bool,
    stop: Option<&'static str>,
}

/// Runs `work` while receiving signals: SIGHUP is kept for a reload after it; a first
/// SIGINT/SIGTERM is kept for a stop after it; another one while a stop is kept ends the
/// wait at once (`None`): the operator asked twice. With `abandon_on_stop` (a reload) a
/// first SIGINT/SIGTERM already ends the wait (`None`, the stop kept): whatever the new
/// plugins are doing, the stop must not wait for them.
async fn answering<F: Future>(
    work: F,
    signals: &mut Signals,
    pending: &mut Pending,
    during: &str,
    abandon_on_stop: bool,
) -> Option<F::Output> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return Some(output),
            received = signals.next() => match (received, pending.stop) {
                (Received::Reload, Some(_)) => {
                    tracing::info!("Received SIGHUP while stopping; ignored");
                }
                (Received::Reload, None) => {
                    tracing::info!("Received SIGHUP during {during}; reloading after it");
                    pending.reload = true;
                }
                (Received::Stop(name), None) if abandon_on_stop => {
                    tracing::warn!("Received {name} during {during}; abandoning it and stopping");
                    pending.stop = Some(name);
                    return None;
                }
                (Received::Stop(name), None) => {
                    tracing::info!("Received {name} during {during}; stopping after it");
                    pending.stop = Some(name);
                }
                (Received::Stop(name), Some(_)) => {
                    tracing::warn!("Received {name} again during {during}; stopping at once");
                    return None;
                }
            },
        }
    }
}

fn server_config(settings: &Settings) -> ServerConfig {
    ServerConfig {
        limits: Limits {
            header: settings.http_header_timeout,
            idle: settings.http_idle_timeout,
        },
        record_peer: settings.debug,
    }
}

/// Runs the service until it is stopped; the exit code.
pub async fn run(boot: Boot, signals: &mut Signals) -> ExitCode {
    let Boot {
        settings,
        loaded,
        args,
        began,
    } = boot;
    tracing::info!(target: "brewblox_host::service", "Creating [{}] application", settings.name);
    tracing::info!(
        target: "brewblox_host::service",
        "Service info: {}",
        std::env::var("SERVICE_INFO").unwrap_or_else(|_| "UNKNOWN".into())
    );
    // The operator page's window counts the uptime from here.
    crate::window::global();
    if let Some(address) = settings.embedded_broker {
        if let Err(err) = crate::broker::start(address) {
            tracing::error!("Service not started: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    // The service's registry: everything that records metrics is handed it from here.
    let metrics = crate::metrics::service_registry();
    let bus = EventBus::new(settings.bus_config(), metrics.bus.clone());
    let mqtt = match start_mqtt(&settings, &metrics) {
        Ok(mqtt) => mqtt,
        Err(err) => {
            tracing::error!("Service not started: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let lasting = Lasting {
        reloads: Arc::new(ReloadLog::new(Arc::clone(&metrics))),
        metrics,
    };
    let mut pending = Pending::default();
    let hook_timeout = settings.hook_timeout;
    let start = Generation::start(
        settings,
        loaded,
        &bus,
        mqtt.as_ref(),
        &lasting,
        GenerationLife::default(),
        None,
    );
    let generation = match answering(start, signals, &mut pending, "startup", false).await {
        Some(Ok(generation)) => generation,
        Some(Err(err)) => {
            tracing::error!("Service not started: {err}");
            bus.shutdown(hook_timeout).await;
            return ExitCode::from(EXIT_FAILURE);
        }
        None => return ExitCode::SUCCESS,
    };
    // Connected once the plugins' startup has run, so that the first connection subscribes
    // to everything at once; the wills they declared get their own connections.
    if let Some(mqtt) = &mqtt {
        mqtt.start();
        hold_wills(mqtt, &generation).await;
    }
    let listener = match bind(&generation.settings).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!("{err}");
            bus.shutdown(hook_timeout).await;
            if let Some(mqtt) = &mqtt {
                mqtt.shutdown(hook_timeout).await;
            }
            generation.stop_plugins().await;
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let current: Current = Arc::new(ArcSwap::new(Arc::clone(&generation.served)));
    let server = Server::start(
        listener,
        Arc::clone(&current),
        server_config(&generation.settings),
    );
    generation.serving();
    tracing::debug!(
        "Serving {:.2} ms after the process began ({:.2} ms of CPU time, all threads)",
        began.elapsed().as_secs_f64() * 1e3,
        crate::phases::process_cpu().as_secs_f64() * 1e3
    );
    let watcher = generation.settings.watch.then(|| {
        watch::spawn(
            generation.settings.plugins.clone(),
            Arc::clone(&lasting.reloads),
        )
    });
    let service = Service {
        generation,
        bus,
        mqtt,
        current,
        lasting,
        args,
    };
    service.serve(server, watcher, signals, pending).await
}

/// The MQTT bus when the options selected it (not connected yet), and the start log line
/// naming the buses in use.
fn start_mqtt(
    settings: &Settings,
    metrics: &crate::metrics::Metrics,
) -> Result<Option<MqttBus>, StartError> {
    let fleet = settings.fleet;
    let mut buses = Vec::new();
    if fleet.amqp {
        buses.push(format!("AMQP ({})", settings.bus_config().endpoint()));
    }
    let mqtt = if fleet.mqtt {
        let bus = MqttBus::new(settings.mqtt_config(), metrics.bus.clone())?;
        buses.push(format!("MQTT ({})", bus.config().endpoint()));
        Some(bus)
    } else {
        None
    };
    tracing::info!(target: "brewblox_host::service", "Eventbus: {}", buses.join(" and "));
    Ok(mqtt)
}

/// Binds the listening socket and prints the original's banner with the real address
/// (`--port 0` binds a free port).
async fn bind(settings: &Settings) -> Result<TcpListener, StartError> {
    let address = format!("{}:{}", settings.host, settings.port);
    let listener = match TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(err) => return Err(StartError::Listen { address, err }),
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(address);
    tracing::info!("Listening on http://{bound}");
    println!("======== Running on http://{bound} ========\n(Press CTRL+C to quit)");
    Ok(listener)
}

/// The service between its start and its stop.
struct Service {
    generation: Generation,
    bus: EventBus,
    mqtt: Option<MqttBus>,
    current: Current,
    lasting: Lasting,
    args: Vec<OsString>,
}

impl Service {
    async fn serve(
        mut self,
        mut server: Server,
        mut watcher: Option<mpsc::Receiver<()>>,
        signals: &mut Signals,
        mut pending: Pending,
    ) -> ExitCode {
        loop {
            if let Some(name) = pending.stop {
                tracing::info!("Received {name}, shutting down");
                return self.stop(server, signals, pending).await;
            }
            if std::mem::take(&mut pending.reload) {
                let reload = self.reload();
                match answering(reload, signals, &mut pending, "a reload", true).await {
                    Some(outcome) => self.lasting.reloads.record(outcome),
                    // Abandoned for a stop: the new plugins are dropped unstarted (the bus
                    // shutdown cancels what they subscribed), the running ones stop as usual.
                    None => self.lasting.reloads.record(Err(ReloadError::Abandoned)),
                }
                continue;
            }
            tokio::select! {
                received = signals.next() => match received {
                    Received::Reload => {
                        tracing::info!("Received SIGHUP, reloading");
                        pending.reload = true;
                    }
                    Received::Stop(name) => pending.stop = Some(name),
                },
                Some(()) = next_change(&mut watcher) => {
                    tracing::info!("Plugins folder changed, reloading");
                    pending.reload = true;
                }
                () = server.stopped() => {
                    tracing::error!("HTTP server stopped unexpectedly");
                    self.bus.shutdown(self.generation.settings.hook_timeout).await;
                    if let Some(mqtt) = &self.mqtt {
                        mqtt.shutdown(self.generation.settings.hook_timeout).await;
                    }
                    self.generation.stop_plugins().await;
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
    }

    /// Starts the folder's plugins beside the current ones and switches to them; on any
    /// failure the current ones go on. `Err` says why, for the log and health.
    async fn reload(&mut self) -> Result<Vec<HandoverReport>, ReloadError> {
        let args = self.args.clone();
        let prepared = tokio::task::spawn_blocking(move || boot::prepare(args))
            .await
            .map_err(ReloadError::Panicked)?
            .map_err(|err| {
                tracing::error!("Reload refused; the running plugins go on: {err}");
                ReloadError::Refused(err)
            })?;
        warn_restart_only(&self.generation.settings, &prepared.settings);
        let handed = self.generation.hand_over().await;
        let next = Generation::start(
            prepared.settings,
            prepared.loaded,
            &self.bus,
            self.mqtt.as_ref(),
            &self.lasting,
            handed,
            // A plugin's startup during a reload is bounded like the other hooks: the
            // running plugins serve meanwhile, and a reload must end.
            Some(self.generation.settings.hook_timeout),
        )
        .await
        .map_err(|err| {
            tracing::error!("Reload failed; the running plugins go on: {err}");
            self.generation.serving();
            ReloadError::Failed(err)
        })?;
        next.wait_subscriptions_bound(next.settings.hook_timeout)
            .await;
        if let Some(mqtt) = &self.mqtt {
            hold_wills(mqtt, &next).await;
            if mqtt.is_connected() && !mqtt.wills_held(next.settings.hook_timeout).await {
                tracing::warn!(
                    "Reload: the broker did not acknowledge every new MQTT will in time; going on"
                );
            }
        }
        self.current.store(Arc::clone(&next.served));
        next.serving();
        let handovers = next.handover_reports();
        let previous = std::mem::replace(&mut self.generation, next);
        retire(previous).await;
        if let Some(mqtt) = &self.mqtt {
            mqtt.release_wills(&self.generation.mqtt_wills()).await;
        }
        tracing::info!("Reloaded");
        Ok(handovers)
    }

    /// Stop accepting, `before_shutdown` while in-flight requests drain, the bus, then the
    /// plugins. A second SIGINT/SIGTERM meanwhile stops at once.
    async fn stop(self, server: Server, signals: &mut Signals, mut pending: Pending) -> ExitCode {
        let Service {
            generation,
            bus,
            mqtt,
            ..
        } = self;
        let settings = generation.settings.clone();
        let drain = async {
            let drained = server.stop(settings.shutdown_timeout);
            let (_, drained) = tokio::join!(generation.before_shutdown(), drained);
            if !drained {
                tracing::warn!(
                    "In-flight requests did not finish within {:.1} s; closing them",
                    settings.shutdown_timeout.as_secs_f64()
                );
            }
            // Consumers stop and in-flight message handlers finish before plugins shut
            // down, so no message reaches a plugin that is gone.
            // The MQTT will is published and the connection closed while the plugins
            // still run, so that no message reaches a plugin that is gone.
            let mqtt_closed = async {
                if let Some(mqtt) = &mqtt {
                    mqtt.shutdown(settings.hook_timeout).await;
                }
            };
            tokio::join!(bus.shutdown(settings.hook_timeout), mqtt_closed);
            generation.stop_plugins().await;
        };
        if answering(drain, signals, &mut pending, "the shutdown", false)
            .await
            .is_some()
        {
            tracing::info!("Service stopped");
        }
        ExitCode::SUCCESS
    }
}

/// The old generation after the switch: `before_shutdown` while its in-flight requests
/// finish (bounded by `--shutdown-timeout`), then its subscriptions and plugins stop.
async fn retire(previous: Generation) {
    let timeout = previous.settings.shutdown_timeout;
    let (_, drained) = tokio::join!(
        previous.before_shutdown(),
        previous.served.in_flight.wait_idle(timeout)
    );
    if !drained {
        tracing::warn!(
            "{} request(s) still running on the previous plugins after {:.1} s; stopping them anyway",
            previous.served.in_flight.count(),
            timeout.as_secs_f64()
        );
    }
    previous.stop().await;
}

/// Gives the broker the wills `generation` declared (each on its own connection).
async fn hold_wills(mqtt: &MqttBus, generation: &Generation) {
    if let Err(err) = mqtt.hold_wills(&generation.mqtt_wills()).await {
        tracing::error!("MQTT wills not given to the broker: {err}");
    }
}

async fn next_change(watcher: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match watcher {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Settings a reload cannot change: they belong to the socket, the eventbus connections or
/// the log, which live as long as the process.
fn warn_restart_only(running: &Settings, next: &Settings) {
    let changed: Vec<&str> = [
        ("--host", running.host != next.host),
        ("--port", running.port != next.port),
        ("--output", running.output != next.output),
        ("--debug", running.debug != next.debug),
        ("--watch", running.watch != next.watch),
        (
            "--http-header-timeout/--http-idle-timeout",
            running.http_header_timeout != next.http_header_timeout
                || running.http_idle_timeout != next.http_idle_timeout,
        ),
        (
            "--eventbus-*",
            (
                &running.eventbus_host,
                running.eventbus_port,
                &running.eventbus_user,
                &running.eventbus_password,
                &running.eventbus_vhost,
                &running.eventbus_url,
            ) != (
                &next.eventbus_host,
                next.eventbus_port,
                &next.eventbus_user,
                &next.eventbus_password,
                &next.eventbus_vhost,
                &next.eventbus_url,
            ),
        ),
        (
            "--mqtt-*",
            running.fleet != next.fleet || running.mqtt_config() != next.mqtt_config(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    if !changed.is_empty() {
        tracing::warn!(
            "Reload: {} changed; a reload keeps the running value, restart to apply it",
            changed.join(", ")
        );
    }
}
