//! The service's life: parse, load, start, serve, stop.

use std::{
    ffi::OsString,
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::net::TcpListener;

use axum::{
    extract::Request,
    routing::{get, post},
    ServiceExt,
};

use crate::{
    bus::{BusConfig, EventBus},
    cli::{self, PluginArgSpec, Settings},
    http::{self, health::HealthSources, AppSpec},
    logging,
    plugins::{
        bus_bridge::BusBridge,
        context::HostServices,
        features::FeatureRegistry,
        lifecycle,
        loader::{self, LoadedSet},
        routes::RouteTable,
    },
    shutdown::{self, Stop},
};

/// Exit code for a service that could not start (bad plugin, port taken, …).
const EXIT_FAILURE: u8 = 1;

/// Runs the service with the process's arguments; the return value is the exit code.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let args = match cli::expand_argfiles(args) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };

    let explicit_dir = cli::prescan_plugins(&args);
    let plugins_dir = explicit_dir
        .clone()
        .unwrap_or_else(|| cli::DEFAULT_PLUGINS.into());
    let loaded = match loader::load_dir(&plugins_dir, explicit_dir.is_none()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            let detail = cli::prescan_debug(&args);
            eprintln!(
                "error: {} plugin file(s) refused; the service will not start:",
                errors.len()
            );
            for err in &errors {
                eprintln!("error: {err}");
                if let (true, Some(detail)) = (detail, &err.detail) {
                    eprintln!("{detail}");
                }
            }
            return ExitCode::from(EXIT_FAILURE);
        }
    };

    let plugin_args = match plugin_arg_specs(&loaded) {
        Ok(specs) => specs,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let settings = match cli::parse(&args, &plugin_args) {
        Ok(settings) => settings,
        Err(err) => err.exit(),
    };

    let log_settings = logging::LogSettings {
        debug: settings.debug,
        output: settings.output.as_deref(),
        rust_log: std::env::var("RUST_LOG").ok(),
    };
    if let Err(err) = logging::init(&log_settings) {
        eprintln!("error: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcome = runtime.block_on(run(settings, loaded));
    // Plugin runtimes and abandoned hooks must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Outcome::Exit(code) => code,
        Outcome::Reload => {
            // The original arguments, before @file expansion: files are read again too.
            let original: Vec<OsString> = std::env::args_os().collect();
            let err = shutdown::reexec(&original);
            eprintln!("error: cannot restart for SIGHUP: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// How a run ended.
enum Outcome {
    Exit(ExitCode),
    /// SIGHUP: start again with the same arguments.
    Reload,
}

/// Every plugin argument, refusing clashes with the host's or another plugin's.
fn plugin_arg_specs(loaded: &LoadedSet) -> Result<Vec<PluginArgSpec>, String> {
    let builtin = cli::builtin_names();
    let mut specs: Vec<PluginArgSpec> = Vec::new();
    for plugin in &loaded.plugins {
        for arg in &plugin.args {
            let name = arg.name();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{}: plugin {} declares an invalid argument name \"{name}\"",
                    plugin.file.display(),
                    plugin.name
                ));
            }
            if builtin.iter().any(|b| b == name) || name == "help" {
                return Err(format!(
                    "{}: plugin {} declares --{name}, which the host already has",
                    plugin.file.display(),
                    plugin.name
                ));
            }
            if let Some(other) = specs.iter().find(|s| s.arg.name() == name) {
                return Err(format!(
                    "{}: plugin {} declares --{name}, which plugin {} declares too",
                    plugin.file.display(),
                    plugin.name,
                    other.plugin
                ));
            }
            specs.push(PluginArgSpec {
                plugin: plugin.name.clone(),
                arg: arg.clone(),
            });
        }
    }
    Ok(specs)
}

fn bus_config(settings: &Settings) -> BusConfig {
    BusConfig {
        host: settings.eventbus_host.clone(),
        port: settings.eventbus_port,
        user: settings.eventbus_user.clone(),
        password: settings.eventbus_password.clone(),
        vhost: settings.eventbus_vhost.clone(),
        url: settings.eventbus_url.clone(),
        reconnect_interval: settings.eventbus_reconnect_interval,
        heartbeat: settings.eventbus_heartbeat,
        prefetch: settings.eventbus_prefetch,
        connection_name: format!("brewblox-host:{}", settings.name),
        publish_timeout: settings.eventbus_publish_timeout,
        max_message_size: settings.eventbus_max_message_size,
        ..BusConfig::default()
    }
}

async fn run(settings: Settings, loaded: LoadedSet) -> Outcome {
    match serve(settings, loaded).await {
        Ok(Stop::Reload) => Outcome::Reload,
        Ok(_) => Outcome::Exit(ExitCode::SUCCESS),
        Err(code) => Outcome::Exit(code),
    }
}

/// Runs the service until a signal; `Err` is the exit code of a failed start.
async fn serve(settings: Settings, loaded: LoadedSet) -> Result<Stop, ExitCode> {
    tracing::info!(target: "brewblox_host::service", "Creating [{}] application", settings.name);
    tracing::info!(
        target: "brewblox_host::service",
        "Service info: {}",
        std::env::var("SERVICE_INFO").unwrap_or_else(|_| "UNKNOWN".into())
    );
    for plugin in &loaded.plugins {
        tracing::info!(
            "Loaded plugin {} {} from {}",
            plugin.name,
            plugin.version,
            plugin.file.display()
        );
    }

    let bus = EventBus::new(bus_config(&settings));
    let host = Arc::new(HostServices {
        runtime: tokio::runtime::Handle::current(),
        config_json: serde_json::Value::Object(settings.config.clone()).to_string(),
        routes: Mutex::new(RouteTable::default()),
        features: FeatureRegistry::default(),
        bus: BusBridge::new(bus.clone()),
    });

    let plugins = match lifecycle::create_all(&loaded.plugins, &host) {
        Ok(plugins) => plugins,
        Err(err) => {
            tracing::error!("{err}");
            return Err(ExitCode::from(EXIT_FAILURE));
        }
    };
    if let Err(err) = lifecycle::startup_all(&plugins, settings.hook_timeout).await {
        tracing::error!("Service not started: {err}");
        bus.shutdown(settings.hook_timeout).await;
        return Err(ExitCode::from(EXIT_FAILURE));
    }

    let plugin_routes = host
        .routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .freeze();
    for route in &plugin_routes {
        tracing::debug!(
            "Endpoint [{}] /{}{} (plugin {})",
            route.method,
            settings.name,
            route.path,
            route.plugin
        );
    }
    for (name, owner) in host.features.list() {
        tracing::debug!("Feature [{name}] (plugin {owner})");
    }
    let health = Arc::new(HealthSources {
        name: settings.name.clone(),
        host: Arc::clone(&host),
        plugins: plugins.iter().map(|p| Arc::clone(&p.state)).collect(),
    });
    let (publish_bus, subscribe_bus) = (bus.clone(), bus.clone());
    let mut extra = vec![
        (
            "/_service/health".to_owned(),
            get(move || http::health::health(Arc::clone(&health))),
        ),
        (
            "/_debug/publish".to_owned(),
            post(move |body| http::debug::publish(publish_bus.clone(), body)),
        ),
        (
            "/_debug/subscribe".to_owned(),
            post(move |body| http::debug::subscribe(subscribe_bus.clone(), body)),
        ),
    ];
    // Routes are frozen: the API documentation is built once and served as bytes.
    let plugin_versions: Vec<(String, String)> = loaded
        .plugins
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    let api_doc = http::openapi::document(
        &http::openapi::DocInfo {
            name: &settings.name,
            version: env!("CARGO_PKG_VERSION"),
            plugins: &plugin_versions,
        },
        &plugin_routes,
    );
    extra.extend(http::swagger_ui::routes(&settings.name, &api_doc));
    let app = http::app(AppSpec {
        name: settings.name.clone(),
        max_body_size: settings.max_body_size,
        debug: settings.debug,
        plugin_routes,
        extra,
    });

    let address = format!("{}:{}", settings.host, settings.port);
    let listener = match TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!("cannot listen on {address}: {err}");
            bus.shutdown(settings.hook_timeout).await;
            lifecycle::shutdown_all(&plugins, settings.hook_timeout).await;
            return Err(ExitCode::from(EXIT_FAILURE));
        }
    };
    // The original's banner, on stdout, once the socket is bound.
    println!("======== Running on http://{address} ========\n(Press CTRL+C to quit)");

    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    // The peer address is only for the access log (`--debug`); recording it costs every
    // request an extensions map.
    let mut server = if settings.debug {
        let server = axum::serve(
            listener,
            ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
        )
        .with_graceful_shutdown(stopped);
        tokio::spawn(async move { server.await })
    } else {
        let server = axum::serve(listener, ServiceExt::<Request>::into_make_service(app))
            .with_graceful_shutdown(stopped);
        tokio::spawn(async move { server.await })
    };

    let stop = tokio::select! {
        stop = shutdown::signal() => {
            match stop {
                Stop::Reload => tracing::info!("Received SIGHUP, stopping to reload"),
                Stop::Exit(name) => tracing::info!("Received {name}, shutting down"),
            }
            stop
        }
        result = &mut server => {
            tracing::error!("HTTP server stopped unexpectedly: {result:?}");
            bus.shutdown(settings.hook_timeout).await;
            lifecycle::shutdown_all(&plugins, settings.hook_timeout).await;
            return Err(ExitCode::from(EXIT_FAILURE));
        }
    };

    // Stop accepting, then before_shutdown while in-flight requests drain.
    let _ = stop_accepting.send(());
    lifecycle::before_shutdown_all(&plugins, settings.hook_timeout).await;
    match tokio::time::timeout(settings.shutdown_timeout, &mut server).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(
                "In-flight requests did not finish within {:.1} s; closing them",
                settings.shutdown_timeout.as_secs_f64()
            );
            server.abort();
        }
    }
    // Consumers stop and in-flight message handlers finish before plugins shut down, so no
    // message reaches a plugin that is gone.
    bus.shutdown(settings.hook_timeout).await;
    lifecycle::shutdown_all(&plugins, settings.hook_timeout).await;
    tracing::info!("Service stopped");
    Ok(stop)
}
