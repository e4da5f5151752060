//! Background tasks run for plugins on the host runtime (the original's scheduler):
//! tracked per plugin, logged with the plugin's name when they fail, cancelled at the
//! plugin's shutdown.

use std::sync::{Arc, Mutex};

use crate::metrics::Metrics;
use crate::sync::Unpoisoned;
use abi_stable::std_types::{RResult, RString};
use plugin_abi::FfiFuture;
use plugin_abi::{panics, TaskHandle, TaskHandleBox, TaskHandle_TO};
use tokio::{runtime::Handle, task::AbortHandle};

/// The tasks of one plugin.
#[derive(Default)]
pub struct TaskSet {
    tasks: Mutex<Vec<(String, AbortHandle)>>,
}

impl TaskSet {
    /// Spawns `task` on `runtime` (never on the caller's thread, which may be a plugin's
    /// own runtime thread where the host's tokio context does not exist). A failure is
    /// counted in `metrics`.
    pub fn spawn(
        &self,
        runtime: &Handle,
        metrics: &Arc<Metrics>,
        plugin: &str,
        name: &str,
        task: FfiFuture<RResult<(), RString>>,
    ) -> TaskHandleBox {
        let (plugin_name, task_name) = (plugin.to_owned(), name.to_owned());
        let metrics = Arc::clone(metrics);
        let join = runtime.spawn(async move {
            match panics::catch_future(task).await {
                Ok(RResult::ROk(())) => {
                    tracing::debug!("plugin {plugin_name}: task {task_name} finished")
                }
                Ok(RResult::RErr(err)) => {
                    metrics.plugins.task_failed(&plugin_name);
                    // A plugin's error may span lines (a panic's is folded already).
                    let err = panics::fold_lines(&err);
                    tracing::error!("plugin {plugin_name}: task {task_name} failed: {err}")
                }
                Err(report) => {
                    metrics.plugins.task_failed(&plugin_name);
                    tracing::error!("plugin {plugin_name}: task {task_name} {report}")
                }
            }
        });
        let abort = join.abort_handle();
        let mut tasks = self.tasks.locked();
        tasks.retain(|(_, handle)| !handle.is_finished());
        tasks.push((name.to_owned(), abort.clone()));
        TaskHandle_TO::from_value(
            Task {
                abort: Arc::new(abort),
            },
            abi_stable::sabi_trait::TD_Opaque,
        )
    }

    /// Cancels every task; returns how many were still running.
    pub fn cancel_all(&self) -> usize {
        let tasks = std::mem::take(&mut *self.tasks.locked());
        tasks
            .into_iter()
            .filter(|(_, handle)| !handle.is_finished())
            .map(|(_, handle)| handle.abort())
            .count()
    }

    /// Names of the tasks still running.
    pub fn running(&self) -> Vec<String> {
        let tasks = self.tasks.locked();
        tasks
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(n, _)| n.clone())
            .collect()
    }
}

struct Task {
    abort: Arc<AbortHandle>,
}

impl TaskHandle for Task {
    fn cancel(&self) {
        self.abort.abort();
    }

    fn is_finished(&self) -> bool {
        self.abort.is_finished()
    }
}
