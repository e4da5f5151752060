//! Background tasks the host runs and cancels for a plugin.

use std::fmt;

use crate::abi::TaskHandleBox;

/// What a spawned task may return: `()` or a `Result` whose error the host logs.
///
/// ```
/// fn assert_output<T: plugin_api::TaskOutput>() {}
/// assert_output::<()>();
/// assert_output::<plugin_api::Result<()>>();
/// ```
pub trait TaskOutput: Send + 'static {
    /// `Err` with a one-line reason for the log.
    fn into_task_result(self) -> Result<(), String>;
}

impl TaskOutput for () {
    fn into_task_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> TaskOutput for Result<(), E> {
    fn into_task_result(self) -> Result<(), String> {
        self.map_err(|err| err.to_string())
    }
}

/// A handle to a task started with [`Context::spawn`](crate::Context::spawn) or
/// [`Context::repeat`](crate::Context::repeat).
///
/// Dropping it does not stop the task; the host cancels every task of a plugin when the
/// plugin shuts down.
///
/// ```no_run
/// # async fn demo(ctx: plugin_api::Context) {
/// let task = ctx.spawn("ticker", async {
///     for _ in 0..60 {
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     }
/// });
/// task.cancel();
/// # }
/// ```
pub struct TaskHandle {
    inner: TaskHandleBox,
}

impl TaskHandle {
    pub(crate) fn new(inner: TaskHandleBox) -> Self {
        TaskHandle { inner }
    }

    /// Stops the task at its next await point; a no-op if it has finished.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// let task = ctx.spawn("once", async { tokio::time::sleep(std::time::Duration::from_secs(60)).await });
    /// task.cancel();
    /// # }
    /// ```
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether the task has ended (finished, failed or cancelled).
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// let task = ctx.spawn("quick", async {});
    /// let _done = task.is_finished();
    /// # }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
