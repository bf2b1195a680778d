//! The product's metrics defined once per configuration as Envoy stats (Envoy exposes them as
//! `<metrics_namespace>.<name>`; the namespace is `dynamicmodulescustom` unless the
//! configuration's `dynamic_module_config.metrics_namespace` says otherwise).

use crate::abi::Config;
use aforo_core::host::Metric;

/// Envoy's metric ids, in the order of `Metric::ALL`; `None` where Envoy refused a definition.
#[derive(Clone, Debug, Default)]
pub struct MetricIds(Vec<Option<usize>>);

impl MetricIds {
    /// Defines every metric on `config` (during `on_http_filter_config_new`).
    pub fn define(config: Config) -> Self {
        MetricIds(
            Metric::ALL
                .iter()
                .map(|m| {
                    if m.is_gauge() {
                        config.define_gauge(m.name())
                    } else {
                        config.define_counter(m.name())
                    }
                })
                .collect(),
        )
    }

    /// Envoy's id of `m`, if it was defined.
    pub fn id(&self, m: Metric) -> Option<usize> {
        let i = Metric::ALL.iter().position(|x| *x == m)?;
        self.0.get(i).copied().flatten()
    }
}
