//! Eventbus metrics.

use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub struct BusMetrics {}

impl BusMetrics {
    pub fn register(_registry: &mut Registry) -> BusMetrics {
        BusMetrics {}
    }
}
