//! Creating plugins and running their hooks: startup in load order; before_shutdown on all;
//! then tasks cancelled and shutdown in reverse order (the original ran cleanup in
//! construction order, quirk 12 in `docs/brewblox-service-0.20.0.md`; reverse order lets a
//! plugin rely on the ones
//! loaded before it until it is gone).

use std::{collections::HashMap, sync::Arc, time::Duration};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RString},
};
use plugin_abi::FfiFuture;
use plugin_abi::{FfiHandover, HostContext_TO, PluginInstanceBox, MAX_HANDOVER_BYTES};

use super::{
    context::{HostServices, PluginContext, PluginState, PluginStatus},
    handover::HandoverReport,
    loader::LoadedPlugin,
    logger,
};

/// Why a plugin could not be created, or one of its hooks did not succeed. The plugin's own
/// words (its error, its panic's report) are kept as it gave them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HookError {
    #[error("plugin {plugin} could not be created: {err}")]
    NotCreated { plugin: String, err: String },
    #[error(
        "plugin {plugin}: {hook} did not finish within {:.1} s and was abandoned",
        .limit.as_secs_f64()
    )]
    TimedOut {
        plugin: String,
        hook: &'static str,
        limit: Duration,
    },
    #[error("plugin {plugin}: {hook} failed: {err}")]
    Failed {
        plugin: String,
        hook: &'static str,
        err: String,
    },
    /// `report` says that it panicked, and where.
    #[error("plugin {plugin}: {hook} {report}")]
    Panicked {
        plugin: String,
        hook: &'static str,
        report: String,
    },
}

/// Why a plugin's state was not handed to its next generation (which then starts empty).
#[derive(Debug, Clone, thiserror::Error)]
enum HandoverError {
    #[error("handover did not finish within {:.1} s", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("handover {0}")]
    Panicked(String),
    #[error("handover failed: {0}")]
    Failed(String),
    #[error("handover of {0} bytes is larger than the limit of {MAX_HANDOVER_BYTES} bytes")]
    TooLarge(usize),
}

/// A created plugin.
pub struct RunningPlugin {
    pub state: Arc<PluginState>,
    instance: PluginInstanceBox,
}

/// Hands each plugin its logger and context and creates its instance.
pub fn create_all(
    loaded: &[LoadedPlugin],
    host: &Arc<HostServices>,
) -> Result<Vec<RunningPlugin>, HookError> {
    let mut running = Vec::with_capacity(loaded.len());
    for plugin in loaded {
        (plugin.module.init_logging())(logger::for_plugin(&plugin.name));
        let state = Arc::new(PluginState::new(&plugin.name, &plugin.version));
        let context = HostContext_TO::from_ptr(
            RArc::new(PluginContext {
                host: Arc::clone(host),
                plugin: Arc::clone(&state),
            }),
            TD_Opaque,
        );
        match (plugin.module.create())(context) {
            RResult::ROk(instance) => running.push(RunningPlugin { state, instance }),
            RResult::RErr(err) => {
                return Err(HookError::NotCreated {
                    plugin: plugin.name.clone(),
                    err: err.to_string(),
                })
            }
        }
    }
    Ok(running)
}

/// Awaits one hook, containing panics and bounding its time.
async fn run_hook(
    plugin: &str,
    hook: &'static str,
    future: FfiFuture<RResult<(), RString>>,
    timeout: Option<Duration>,
) -> Result<(), HookError> {
    let plugin = plugin.to_owned();
    let guarded = plugin_abi::panics::catch_future(future);
    let outcome = match timeout {
        Some(limit) => match tokio::time::timeout(limit, guarded).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(HookError::TimedOut {
                    plugin,
                    hook,
                    limit,
                })
            }
        },
        None => guarded.await,
    };
    match outcome {
        Ok(RResult::ROk(())) => Ok(()),
        Ok(RResult::RErr(err)) => Err(HookError::Failed {
            plugin,
            hook,
            err: err.into(),
        }),
        Err(report) => Err(HookError::Panicked {
            plugin,
            hook,
            report,
        }),
    }
}

/// Starts every plugin in load order, each `startup` bounded by `startup_timeout` if given
/// (a reload: one past it is abandoned and the reload refused). On a failure, the plugins
/// already started are shut down again and the error names the plugin.
pub async fn startup_all(
    plugins: &[RunningPlugin],
    hook_timeout: Duration,
    startup_timeout: Option<Duration>,
) -> Result<(), HookError> {
    for (index, plugin) in plugins.iter().enumerate() {
        let name = &plugin.state.name;
        tracing::debug!("--> startup {name}");
        let started = run_hook(name, "startup", plugin.instance.startup(), startup_timeout);
        if let Err(err) = started.await {
            plugin
                .state
                .set_status(PluginStatus::Failed(err.to_string()));
            plugin.state.tasks.cancel_all();
            shutdown_all(&plugins[..index], hook_timeout).await;
            return Err(err);
        }
        plugin.state.set_status(PluginStatus::Running);
        tracing::debug!("<-- startup {name}");
    }
    Ok(())
}

/// Calls every plugin's `before_shutdown`, concurrently, each bounded by `timeout`.
pub async fn before_shutdown_all(plugins: &[RunningPlugin], timeout: Duration) {
    let hooks = plugins.iter().map(|plugin| async move {
        plugin.state.set_status(PluginStatus::Stopping);
        if let Err(err) = run_hook(
            &plugin.state.name,
            "before_shutdown",
            plugin.instance.before_shutdown(),
            Some(timeout),
        )
        .await
        {
            tracing::error!("{err}");
        }
    });
    futures::future::join_all(hooks).await;
}

/// Asks every plugin for the state to hand to its next generation (concurrently, each
/// bounded by `timeout` and by [`MAX_HANDOVER_BYTES`]): the states by plugin name, and a
/// report for each one that failed (the next generation of that plugin starts empty).
pub async fn handover_all(
    plugins: &[RunningPlugin],
    timeout: Duration,
) -> (HashMap<String, FfiHandover>, Vec<HandoverReport>) {
    let hooks = plugins.iter().map(|plugin| async move {
        let name = plugin.state.name.clone();
        let future = plugin.instance.handover();
        let guarded = plugin_abi::panics::catch_future(future);
        let outcome = match tokio::time::timeout(timeout, guarded).await {
            Err(_) => Err(HandoverError::TimedOut(timeout)),
            Ok(Err(report)) => Err(HandoverError::Panicked(report)),
            Ok(Ok(RResult::RErr(err))) => Err(HandoverError::Failed(err.into())),
            Ok(Ok(RResult::ROk(ROption::RNone))) => Ok(None),
            Ok(Ok(RResult::ROk(ROption::RSome(state))))
                if state.data.len() > MAX_HANDOVER_BYTES =>
            {
                Err(HandoverError::TooLarge(state.data.len()))
            }
            Ok(Ok(RResult::ROk(ROption::RSome(state)))) => Ok(Some(state)),
        };
        (name, outcome)
    });
    let mut states = HashMap::new();
    let mut failed = Vec::new();
    for (name, outcome) in futures::future::join_all(hooks).await {
        match outcome {
            Ok(Some(state)) => {
                tracing::debug!(
                    "plugin {name}: handed over {} bytes (state version {})",
                    state.data.len(),
                    state.version
                );
                states.insert(name, state);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!("plugin {name}: {err}; its next generation starts empty");
                failed.push(HandoverReport {
                    plugin: name,
                    outcome: "failed",
                    detail: Some(err.to_string()),
                });
            }
        }
    }
    (states, failed)
}

/// Cancels each plugin's tasks and calls its `shutdown`, in reverse load order.
pub async fn shutdown_all(plugins: &[RunningPlugin], timeout: Duration) {
    for plugin in plugins.iter().rev() {
        let name = &plugin.state.name;
        let cancelled = plugin.state.tasks.cancel_all();
        if cancelled > 0 {
            tracing::debug!("plugin {name}: cancelled {cancelled} task(s)");
        }
        match run_hook(name, "shutdown", plugin.instance.shutdown(), Some(timeout)).await {
            Ok(()) => plugin.state.set_status(PluginStatus::Stopped),
            Err(err) => {
                tracing::error!("{err}");
                plugin
                    .state
                    .set_status(PluginStatus::Failed(err.to_string()));
            }
        }
    }
}
