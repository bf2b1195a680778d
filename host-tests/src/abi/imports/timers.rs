//! Clocks and timers: `proxy_get_current_time_nanoseconds` (the virtual clock) and
//! `proxy_set_tick_period_milliseconds`.

use super::super::memory::write;
use super::super::profile::Profile;
use super::super::state::HostState;
use super::super::status;
use super::{profile, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// Adds the clock and timer functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, HostState>, ret: i32| to_status(get_current_time(&mut c, ret)),
    )?;
    linker.func_wrap(
        M,
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, HostState>, ms: i32| -> Result<i32> {
            // ngx_wasm_module traps a second period once one is set ("tick_period already
            // set", src/common/proxy_wasm/ngx_proxy_wasm_host.c: any second call in Kong
            // 3.4–3.7's commits, a second non-zero one in 3.8–3.9's); Envoy takes any number.
            let ms = ms as u32 as u64;
            if profile(&c) == Profile::Kong && c.data().tick_period_ms != 0 {
                return Err(wasmtime::Error::msg("host trap (tick_period already set)"));
            }
            c.data_mut().tick_period_ms = ms;
            Ok(status::OK)
        },
    )?;
    Ok(())
}

/// Writes the virtual clock's time, in nanoseconds since the epoch.
fn get_current_time(c: &mut Caller<'_, HostState>, ret: i32) -> HostResult {
    let now = c.data().now_nanos as u64;
    write(c, ret, &now.to_le_bytes()).or_status(status::INVALID_MEMORY_ACCESS)
}
