//! Tasks the plugin spawns, run on the test's runtime and cancelled when it stops.

use std::sync::{Arc, Mutex};

use crate::abi::FfiFuture;
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RString},
};
use tokio::{runtime::Handle, task::AbortHandle};

use crate::abi::{TaskHandle, TaskHandleBox, TaskHandle_TO};

use super::host::lock;

struct Entry {
    name: String,
    abort: AbortHandle,
}

/// The plugin's tasks, and the failures the host would log.
#[derive(Default)]
pub(super) struct Tasks {
    running: Mutex<Vec<Entry>>,
    failures: Arc<Mutex<Vec<(String, String)>>>,
}

impl Tasks {
    pub fn spawn(
        &self,
        runtime: &Handle,
        name: &str,
        task: FfiFuture<RResult<(), RString>>,
    ) -> TaskHandleBox {
        let (failures, owned) = (Arc::clone(&self.failures), name.to_owned());
        // The SDK's future catches the task's panics itself (`Guarded`).
        let join = runtime.spawn(async move {
            if let RResult::RErr(reason) = task.await {
                lock(&failures).push((owned, reason.into_string()));
            }
        });
        let abort = join.abort_handle();
        let mut running = lock(&self.running);
        running.retain(|entry| !entry.abort.is_finished());
        running.push(Entry {
            name: name.to_owned(),
            abort: abort.clone(),
        });
        TaskHandle_TO::from_value(Task(abort), TD_Opaque)
    }

    pub fn cancel_all(&self) {
        for entry in std::mem::take(&mut *lock(&self.running)) {
            entry.abort.abort();
        }
    }

    pub fn running(&self) -> Vec<String> {
        let running = lock(&self.running);
        let live = running.iter().filter(|entry| !entry.abort.is_finished());
        live.map(|entry| entry.name.clone()).collect()
    }

    pub fn failures(&self) -> Vec<(String, String)> {
        lock(&self.failures).clone()
    }
}

struct Task(AbortHandle);

impl TaskHandle for Task {
    fn cancel(&self) {
        self.0.abort();
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}
