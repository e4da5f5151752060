//! Plugin metrics: each live plugin's state (with its version and build id), its running
//! tasks, failed tasks and repeater runs, and reloads.
//!
//! A plugin's state and tasks are read at scrape time from the generations that are alive
//! ([`PluginMetrics::track`]): a generation's series go away when it has stopped, so reloads
//! never pile up old plugins' series. The counters (task and repeater failures, reloads) are
//! per plugin name and live as long as the process.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::Counter, family::Family, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::sync::Unpoisoned;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    pub outcome: &'static str,
}

/// What the metrics read of a running plugin. Implemented by the plugins layer, which
/// depends on the metrics and not the other way round.
pub trait PluginView: Send + Sync {
    fn name(&self) -> &str;
    fn version(&self) -> &str;
    /// `loaded`, `running`, `failed`, `stopping` or `stopped`.
    fn state_name(&self) -> &'static str;
    /// Its background tasks (and repeaters) running now.
    fn running_tasks(&self) -> usize;
}

/// A plugin of a live generation, as the collector reads it.
struct Tracked {
    generation: u64,
    build: String,
    state: Arc<dyn PluginView>,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("plugin", &self.state.name())
            .field("generation", &self.generation)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Live {
    plugins: Mutex<Vec<Tracked>>,
}

/// The plugin families of the registry.
#[derive(Debug)]
pub struct PluginMetrics {
    live: Arc<Live>,
    next_generation: AtomicU64,
    task_failures: Family<PluginLabel, Counter>,
    repeater_failures: Family<PluginLabel, Counter>,
    reloads: Family<ReloadLabel, Counter>,
}

impl PluginMetrics {
    pub fn register(registry: &mut Registry) -> PluginMetrics {
        let metrics = PluginMetrics {
            live: Arc::default(),
            next_generation: AtomicU64::new(1),
            task_failures: Family::default(),
            repeater_failures: Family::default(),
            reloads: Family::default(),
        };
        for outcome in ["ok", "refused"] {
            drop(metrics.reloads.get_or_create(&ReloadLabel { outcome }));
        }
        registry.register_collector(Box::new(LiveCollector(Arc::clone(&metrics.live))));
        registry.register(
            "brewblox_plugin_task_failures",
            "Plugin background tasks that ended with an error or a panic",
            metrics.task_failures.clone(),
        );
        registry.register(
            "brewblox_plugin_repeater_failures",
            "Failed runs of plugin repeaters (each one is retried after a pause)",
            metrics.repeater_failures.clone(),
        );
        registry.register(
            "brewblox_reloads",
            "Reloads of the plugins folder, by outcome (ok: swapped; refused: the old set goes on)",
            metrics.reloads.clone(),
        );
        metrics
    }

    /// Shows the plugins of a new generation until the returned guard is dropped.
    /// `plugins`: each plugin's state and build id.
    pub fn track(&self, plugins: Vec<(Arc<dyn PluginView>, Option<String>)>) -> Tracking {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut live = self.live.plugins.locked();
        live.extend(plugins.into_iter().map(|(state, build)| Tracked {
            generation,
            build: build.unwrap_or_else(|| "unknown".to_owned()),
            state,
        }));
        Tracking {
            live: Arc::clone(&self.live),
            generation,
        }
    }

    pub fn task_failed(&self, plugin: &str) {
        self.task_failures
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    pub fn repeater_failed(&self, plugin: &str) {
        self.repeater_failures
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    pub fn reloaded(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&ReloadLabel { outcome }).inc();
    }
}

/// Removes a generation's series when dropped.
#[derive(Debug)]
pub struct Tracking {
    live: Arc<Live>,
    generation: u64,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        let mut live = self.live.plugins.locked();
        live.retain(|p| p.generation != self.generation);
    }
}

#[derive(Debug)]
struct LiveCollector(Arc<Live>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    plugin: String,
    version: String,
    build: String,
    generation: u64,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    plugin: String,
    generation: u64,
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let live = self.0.plugins.locked();
        let mut states = encoder.encode_descriptor(
            "brewblox_plugin_state",
            "1 for each plugin of a live generation, its state, version and build id as labels",
            None,
            MetricType::Gauge,
        )?;
        for plugin in live.iter() {
            let labels = StateLabels {
                plugin: plugin.state.name().to_owned(),
                version: plugin.state.version().to_owned(),
                build: plugin.build.clone(),
                generation: plugin.generation,
                state: plugin.state.state_name(),
            };
            ConstGauge::new(1i64).encode(states.encode_family(&labels)?)?;
        }
        let mut tasks = encoder.encode_descriptor(
            "brewblox_plugin_tasks",
            "Background tasks (and repeaters) each plugin has running",
            None,
            MetricType::Gauge,
        )?;
        for plugin in live.iter() {
            let labels = TaskLabels {
                plugin: plugin.state.name().to_owned(),
                generation: plugin.generation,
            };
            let running = plugin.state.running_tasks() as i64;
            ConstGauge::new(running).encode(tasks.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
