//! Plugin metrics.

use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub struct PluginMetrics {}

impl PluginMetrics {
    pub fn register(_registry: &mut Registry) -> PluginMetrics {
        PluginMetrics {}
    }
}
