//! Repeaters under the kit: kept, not looped, so a test runs them one step at a time.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex,
    },
};

use abi_stable::sabi_trait::TD_Opaque;

use crate::{
    abi::{self, error_code, FfiError},
    Error, Plugin, Repeat, Repeater, Result, TaskHandle,
};

use super::{guarded, host::lock, wrong_phase, TestHost};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A [`Repeater`] with its type erased.
trait Steppable: Send {
    fn prepare(&mut self) -> BoxFuture<'_, Result<Repeat>>;
    fn run(&mut self) -> BoxFuture<'_, Result<Repeat>>;
}

impl<R: Repeater> Steppable for R {
    fn prepare(&mut self) -> BoxFuture<'_, Result<Repeat>> {
        Box::pin(Repeater::prepare(self))
    }

    fn run(&mut self) -> BoxFuture<'_, Result<Repeat>> {
        Box::pin(Repeater::run(self))
    }
}

/// Where a repeater is in its life.
const NEW: u8 = 0;
const PREPARED: u8 = 1;
const STOPPED: u8 = 2;
const FAILED: u8 = 3;
const CANCELLED: u8 = 4;

struct Slot {
    name: String,
    phase: AtomicU8,
    repeater: tokio::sync::Mutex<Box<dyn Steppable>>,
}

impl Slot {
    fn ended(&self) -> Option<&'static str> {
        match self.phase.load(Ordering::SeqCst) {
            STOPPED => Some("has stopped"),
            FAILED => Some("failed during setup"),
            CANCELLED => Some("was cancelled"),
            _ => None,
        }
    }
}

/// The repeaters a plugin started with `Context::repeat` under the kit.
#[derive(Clone, Default)]
pub(crate) struct Repeaters {
    slots: Arc<Mutex<Vec<Arc<Slot>>>>,
}

impl Repeaters {
    /// Keeps `repeater` for the test; the handle cancels it as a task handle would.
    pub(crate) fn add<R: Repeater>(&self, name: &str, repeater: R) -> TaskHandle {
        let slot = Arc::new(Slot {
            name: name.to_owned(),
            phase: AtomicU8::new(NEW),
            repeater: tokio::sync::Mutex::new(Box::new(repeater)),
        });
        lock(&self.slots).push(Arc::clone(&slot));
        TaskHandle::new(abi::TaskHandle_TO::from_value(Handle(slot), TD_Opaque))
    }

    pub(super) fn cancel_all(&self) {
        for slot in lock(&self.slots).iter() {
            slot.phase.store(CANCELLED, Ordering::SeqCst);
        }
    }

    /// The latest repeater of that name: a plugin that restarts one replaces it.
    fn find(&self, name: &str) -> Result<Arc<Slot>> {
        let slots = lock(&self.slots);
        match slots.iter().rev().find(|slot| slot.name == name) {
            Some(slot) => Ok(Arc::clone(slot)),
            None => {
                let names: Vec<&str> = slots.iter().map(|slot| slot.name.as_str()).collect();
                let message = format!("no repeater \"{name}\" (there are: {names:?})");
                Err(Error::from_ffi(FfiError::new(
                    error_code::NOT_FOUND,
                    message,
                )))
            }
        }
    }

    fn names(&self) -> Vec<String> {
        lock(&self.slots)
            .iter()
            .map(|slot| slot.name.clone())
            .collect()
    }

    /// `prepare`, then `run` once if `run` is set and `prepare` said to go on.
    async fn step(&self, name: &str, run: bool) -> Result<Repeat> {
        let slot = self.find(name)?;
        let mut repeater = slot.repeater.lock().await;
        if let Some(ended) = slot.ended() {
            return Err(wrong_phase(&format!("repeater \"{name}\" {ended}")));
        }
        if slot.phase.load(Ordering::SeqCst) == NEW {
            let prepared = guarded(repeater.prepare()).await;
            let phase = match &prepared {
                Ok(Repeat::Continue) => PREPARED,
                Ok(Repeat::Stop) => STOPPED,
                Err(_) => FAILED,
            };
            slot.phase.store(phase, Ordering::SeqCst);
            if !run || phase != PREPARED {
                return prepared;
            }
        } else if !run {
            return Err(wrong_phase(&format!(
                "repeater \"{name}\" is prepared already"
            )));
        }
        let ran = guarded(repeater.run()).await;
        if matches!(ran, Ok(Repeat::Stop)) {
            slot.phase.store(STOPPED, Ordering::SeqCst);
        }
        ran
    }
}

/// The task handle `Context::repeat` returns under the kit.
struct Handle(Arc<Slot>);

impl abi::TaskHandle for Handle {
    fn cancel(&self) {
        let _ = self
            .0
            .phase
            .compare_exchange(NEW, CANCELLED, Ordering::SeqCst, Ordering::SeqCst);
        let _ =
            self.0
                .phase
                .compare_exchange(PREPARED, CANCELLED, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn is_finished(&self) -> bool {
        self.0.ended().is_some()
    }
}

impl<P: Plugin> TestHost<P> {
    /// The names of the repeaters the plugin started, in the order started.
    pub fn repeaters(&self) -> Vec<String> {
        self.repeaters.names()
    }

    /// Runs one step of the repeater `name` (the latest of that name): its `prepare` first
    /// if that has not run, then its `run` once, unless `prepare` said
    /// [`Repeat::Stop`] or failed. Returns what the last call returned; a panic is an error.
    /// A failed `run` may be stepped again (the host would retry after a pause). Stepping a
    /// repeater that stopped, failed in `prepare` or was cancelled is a `WrongPhase` error,
    /// an unknown name `NotFound`.
    ///
    /// ```
    /// use plugin_api::{testing::TestHost, Context, Plugin, Repeat, Repeater, Result};
    /// use std::sync::{atomic::{AtomicU32, Ordering}, Arc};
    ///
    /// struct Count(Arc<AtomicU32>);
    /// impl Repeater for Count {
    ///     async fn run(&mut self) -> Result<Repeat> {
    ///         let done = self.0.fetch_add(1, Ordering::SeqCst) + 1;
    ///         Ok(if done == 2 { Repeat::Stop } else { Repeat::Continue })
    ///     }
    /// }
    ///
    /// #[derive(Default)]
    /// struct Counter(Arc<AtomicU32>);
    /// impl Plugin for Counter {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.repeat("count", Count(self.0.clone()));
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Counter::default()).await?;
    /// assert_eq!(host.plugin().0.load(Ordering::SeqCst), 0, "nothing runs on its own");
    /// assert_eq!(host.step("count").await?, Repeat::Continue);
    /// assert_eq!(host.step("count").await?, Repeat::Stop);
    /// assert!(host.step("count").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn step(&self, name: &str) -> Result<Repeat> {
        self.repeaters.step(name, true).await
    }

    /// Runs only the `prepare` of the repeater `name`; an error if it ran already.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Repeat, Repeater, Result};
    /// struct Disabled;
    /// impl Repeater for Disabled {
    ///     async fn prepare(&mut self) -> Result<Repeat> {
    ///         Ok(Repeat::Stop)
    ///     }
    ///     async fn run(&mut self) -> Result<Repeat> {
    ///         unreachable!()
    ///     }
    /// }
    /// # #[derive(Default)] struct P;
    /// # impl Plugin for P {
    /// #     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> { ctx.repeat("poll", Disabled); Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// # let host = TestHost::start(P).await?;
    /// assert_eq!(host.prepare("poll").await?, Repeat::Stop);
    /// # Ok(()) }
    /// ```
    pub async fn prepare(&self, name: &str) -> Result<Repeat> {
        self.repeaters.step(name, false).await
    }
}
