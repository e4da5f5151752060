//! What one generation of plugins knows about its own life: its phase (starting, serving,
//! retiring, stopped), which plugins see through `HostContext::phase`, and the states the
//! previous generation handed over at a hot swap, which each plugin takes once at startup.
//!
//! The handover is taken from the outgoing generation just before the next one starts (the
//! outgoing one is `RETIRING` from then on, so that its repeaters stop publishing); what it
//! changes during the overlap is not carried over. If the next generation fails to start,
//! the outgoing one goes back to `SERVING` and keeps its state.

use std::collections::HashMap;
use std::sync::Mutex;

use plugin_abi::{handover_outcome, phase, FfiHandover};
use serde::Serialize;
use tokio::sync::watch;

use crate::sync::Unpoisoned;

/// What became of one plugin's handover, as the reload's health shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct HandoverReport {
    pub plugin: String,
    /// `accepted`, `refused` (by the new generation; `detail` says why), `failed` (the old
    /// generation's hook failed or its state was too large), or `unread` (handed over, but
    /// the new generation never asked for it).
    pub outcome: &'static str,
    pub detail: Option<String>,
}

/// One generation's phase and the handovers it was given.
pub struct GenerationLife {
    phase: watch::Sender<u8>,
    handed: Mutex<HashMap<String, FfiHandover>>,
    reports: Mutex<Vec<HandoverReport>>,
}

impl Default for GenerationLife {
    fn default() -> Self {
        Self::new(HashMap::new(), Vec::new())
    }
}

impl GenerationLife {
    /// A starting generation given `handed` (by plugin name) and the reports of handovers
    /// that already failed on the outgoing side.
    pub fn new(handed: HashMap<String, FfiHandover>, failed: Vec<HandoverReport>) -> Self {
        GenerationLife {
            phase: watch::channel(phase::STARTING).0,
            handed: Mutex::new(handed),
            reports: Mutex::new(failed),
        }
    }

    pub fn phase(&self) -> u8 {
        *self.phase.borrow()
    }

    pub fn set_phase(&self, next: u8) {
        self.phase.send_if_modified(|now| {
            let changed = *now != next && *now != phase::STOPPED;
            if changed {
                *now = next;
            }
            changed
        });
    }

    /// Resolves with the phase once it is not `seen` (at once if it is not now).
    pub fn changed(&self, seen: u8) -> impl std::future::Future<Output = u8> + Send + 'static {
        let mut rx = self.phase.subscribe();
        async move {
            match rx.wait_for(|now| *now != seen).await {
                Ok(now) => *now,
                Err(_) => phase::STOPPED,
            }
        }
    }

    /// The state handed to `plugin`, once.
    pub fn take(&self, plugin: &str) -> Option<FfiHandover> {
        self.handed.locked().remove(plugin)
    }

    /// Records what `plugin` made of its handover, and logs it.
    pub fn report(&self, plugin: &str, outcome: u8, detail: &str) {
        let (name, detail) = match outcome {
            handover_outcome::ACCEPTED => ("accepted", None),
            _ => ("refused", Some(detail.to_owned())),
        };
        match &detail {
            None => tracing::info!("plugin {plugin}: took over the previous generation's state"),
            Some(why) => tracing::warn!(
                "plugin {plugin}: refused the previous generation's state, starting empty: {why}"
            ),
        }
        let mut reports = self.reports.locked();
        reports.retain(|r| r.plugin != plugin);
        reports.push(HandoverReport {
            plugin: plugin.to_owned(),
            outcome: name,
            detail,
        });
    }

    /// Every outcome, after startup: handovers no plugin asked for count as `unread`.
    pub fn reports(&self) -> Vec<HandoverReport> {
        let mut reports = self.reports.locked().clone();
        let mut unread: Vec<String> = self.handed.locked().keys().cloned().collect();
        unread.sort();
        for plugin in unread {
            reports.push(HandoverReport {
                plugin,
                outcome: "unread",
                detail: None,
            });
        }
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handover_is_taken_once_and_its_outcome_reported() {
        let handed = HashMap::from([(
            "p".to_owned(),
            FfiHandover {
                version: 3,
                data: b"{}".to_vec().into(),
            },
        )]);
        let life = GenerationLife::new(handed, Vec::new());
        assert_eq!(life.reports()[0].outcome, "unread");
        assert_eq!(life.take("p").map(|h| h.version), Some(3));
        assert!(life.take("p").is_none());
        life.report("p", handover_outcome::REFUSED, "version 3, I read 4");
        let reports = life.reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].outcome, "refused");
        assert_eq!(reports[0].detail.as_deref(), Some("version 3, I read 4"));
    }

    #[tokio::test]
    async fn the_phase_moves_on_but_never_back_from_stopped() {
        let life = GenerationLife::default();
        let serving = life.changed(phase::STARTING);
        life.set_phase(phase::SERVING);
        assert_eq!(serving.await, phase::SERVING);
        life.set_phase(phase::STOPPED);
        life.set_phase(phase::SERVING);
        assert_eq!(life.phase(), phase::STOPPED);
    }
}
