//! The host's counters as the core's `CounterBackend`.

use crate::bindings::aforo::metering::counters;
use aforo_core::entitlement::{CounterBackend, Leased};
use aforo_core::host::SharedSetError;
use aforo_core::Timestamp;

/// Counters imported from the host.
pub struct ImportedCounters;

impl CounterBackend for ImportedCounters {
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        counters::read(key)
    }

    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        if counters::write(key, value, cas) {
            Ok(())
        } else {
            Err(SharedSetError::CasMismatch)
        }
    }

    fn warn(&self, _message: &str) {}

    fn take_leased(
        &mut self,
        key: &str,
        (start, end): (Timestamp, Timestamp),
        quota: u64,
        cost: u64,
        now: Timestamp,
    ) -> Option<Leased> {
        counters::take(
            key,
            start.unix_nanos(),
            end.unix_nanos(),
            quota,
            cost,
            now.unix_nanos(),
        )
        .map(|l| match l {
            counters::Leased::Admitted(remaining) => Leased::Admitted { remaining },
            counters::Leased::Refused((remaining, at)) => Leased::Refused {
                remaining,
                retry_at: Timestamp::from_unix_nanos(at),
            },
        })
    }

    fn give_leased(&mut self, key: &str, window_start: Timestamp, units: u64) {
        counters::give_back(key, window_start.unix_nanos(), units);
    }
}
