//! The product's metrics defined once per VM through `proxy_define_metric`.

use crate::abi::{self, MetricKind};
use aforo_core::host::Metric;

/// Host metric ids, in the order of `Metric::ALL`; 0 where the host refused a definition.
#[derive(Clone, Debug, Default)]
pub struct MetricIds(Vec<u32>);

impl MetricIds {
    /// Defines every metric (Envoy exposes them as `wasmcustom.<name>`, Kong as `pw:<filter>:<name>`).
    pub fn define() -> Self {
        MetricIds(
            Metric::ALL
                .iter()
                .map(|m| {
                    let kind = if m.is_gauge() {
                        MetricKind::Gauge
                    } else {
                        MetricKind::Counter
                    };
                    abi::define_metric(kind, m.name()).unwrap_or(0)
                })
                .collect(),
        )
    }

    /// The host id of `m`, if it was defined.
    pub fn id(&self, m: Metric) -> Option<u32> {
        let i = Metric::ALL.iter().position(|x| *x == m)?;
        self.0.get(i).copied().filter(|id| *id != 0)
    }
}
