//! The host's counters as the core's `CounterBackend`.

use crate::bindings::aforo::metering::counters;
use aforo_core::entitlement::CounterBackend;
use aforo_core::host::SharedSetError;

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
}
