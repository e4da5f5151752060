//! The other side of the eventbus for tests (an independent lapin client, `rabbitmqctl`,
//! bounded waits). The code lives with the host's own bus tests, which cannot depend on this
//! crate (it is the layer above); it is compiled here once more for the integration tests.

#[path = "../../host/tests/bus_support/amqp.rs"]
mod shared;

pub use shared::*;
