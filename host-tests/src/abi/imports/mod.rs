//! The `env::proxy_*` host functions of ABI 0.2.1, one file per area of the ABI.
//!
//! Each host function's body returns a [`HostResult`]: `Ok` is the `OK` status, and `?` stops it
//! with another status ([`OrStatus::or_status`] on a failed lookup or guest-memory access) or with
//! a trap; [`to_status`] turns that into what wasmtime hands back to the guest.

mod buffers;
mod context;
mod foreign;
mod headers;
mod http_call;
mod logging;
mod metrics;
mod properties;
mod shared_data;
mod shared_queues;
mod stream;
mod timers;

use super::profile::Profile;
use super::state::HostState;
use super::status;
use wasmtime::{Caller, Linker, Result};

/// The import module every host function is registered under.
const M: &str = "env";

/// Adds every `env::proxy_*` function the filter and the SDK use.
pub fn add(linker: &mut Linker<HostState>) -> Result<()> {
    logging::add(linker)?;
    timers::add(linker)?;
    context::add(linker)?;
    buffers::add(linker)?;
    headers::add(linker)?;
    stream::add(linker)?;
    http_call::add(linker)?;
    shared_data::add(linker)?;
    shared_queues::add(linker)?;
    metrics::add(linker)?;
    properties::add(linker)?;
    foreign::add(linker)?;
    Ok(())
}

/// Why a host function ends without `OK`.
enum Fail {
    /// The proxy-wasm status the function returns.
    Status(i32),
    /// A trap (the guest's call does not return).
    Trap(wasmtime::Error),
}

impl From<wasmtime::Error> for Fail {
    fn from(e: wasmtime::Error) -> Self {
        Fail::Trap(e)
    }
}

/// What a host function's body returns: `Ok` is the `OK` status.
type HostResult<T = ()> = std::result::Result<T, Fail>;

/// The status a host function returns to the guest, or its trap.
fn to_status(r: HostResult) -> Result<i32> {
    match r {
        Ok(()) => Ok(status::OK),
        Err(Fail::Status(code)) => Ok(code),
        Err(Fail::Trap(e)) => Err(e),
    }
}

/// A status code (from a helper that returns one) as a [`HostResult`].
fn check(code: i32) -> HostResult {
    if code == status::OK {
        Ok(())
    } else {
        Err(Fail::Status(code))
    }
}

/// A failed lookup or guest-memory access (`None`, `false`) as the status to return.
trait OrStatus<T> {
    /// `Ok` with the value, or `Err` with the status `code`.
    fn or_status(self, code: i32) -> HostResult<T>;
}

impl<T> OrStatus<T> for Option<T> {
    fn or_status(self, code: i32) -> HostResult<T> {
        self.ok_or(Fail::Status(code))
    }
}

impl OrStatus<()> for bool {
    fn or_status(self, code: i32) -> HostResult {
        if self {
            Ok(())
        } else {
            Err(Fail::Status(code))
        }
    }
}

/// The host profile of the caller's world.
pub(super) fn profile(c: &Caller<'_, HostState>) -> Profile {
    c.data().world.borrow().profile
}

/// A trap for functions ngx_wasm_module has not implemented (calling them traps there too).
fn kong_nyi(c: &Caller<'_, HostState>, name: &str) -> Result<()> {
    if profile(c) == Profile::Kong {
        return Err(wasmtime::Error::msg(format!(
            "host trap (function not yet implemented): {name}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_results_become_statuses_or_traps() {
        let code = |r: HostResult| to_status(r).unwrap();
        assert_eq!(code(Ok(())), status::OK);
        assert_eq!(code(Some(()).or_status(status::NOT_FOUND)), status::OK);
        assert_eq!(code(None.or_status(status::NOT_FOUND)), status::NOT_FOUND);
        assert_eq!(code(true.or_status(status::BAD_ARGUMENT)), status::OK);
        assert_eq!(
            code(false.or_status(status::INVALID_MEMORY_ACCESS)),
            status::INVALID_MEMORY_ACCESS
        );
        assert_eq!(code(check(status::OK)), status::OK);
        assert_eq!(code(check(status::CAS_MISMATCH)), status::CAS_MISMATCH);
        let trap = to_status(Err(wasmtime::Error::msg("trap").into())).unwrap_err();
        assert_eq!(trap.to_string(), "trap");
    }
}
