//! The other side of the eventbus for tests (an independent lapin client, `rabbitmqctl`,
//! bounded waits). The code lives with the host's own bus tests, which cannot depend on this
//! crate (it is the layer above); it is compiled here once more for the integration tests.

#[path = "../../host/tests/bus_support/amqp.rs"]
mod shared;

pub use shared::*;

/// Deletes a durable queue (a shared or durable subscription's, which outlives its consumers)
/// when dropped, also when the test fails.
pub struct QueueGuard(pub String);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            ctl_blocking(&["delete_queue".to_owned(), self.0.clone()]);
        });
    }
}
