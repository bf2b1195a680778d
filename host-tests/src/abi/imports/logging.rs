//! Logging: `proxy_log` and `proxy_get_log_level`.

use super::super::memory::{read_str, write_u32};
use super::super::state::HostState;
use super::super::status;
use super::{kong_nyi, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// The log level the host reports (`info`): the module logs everything at or above it.
const LOG_LEVEL: u32 = 2;

/// Adds the logging functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_log",
        |c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            to_status(log(&c, level, ptr, len))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_log_level",
        |mut c: Caller<'_, HostState>, ret: i32| to_status(get_log_level(&mut c, ret)),
    )?;
    Ok(())
}

/// Appends the message to the world's log.
fn log(c: &Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> HostResult {
    let msg = read_str(c, ptr, len).or_status(status::INVALID_MEMORY_ACCESS)?;
    c.data().world.borrow_mut().log(level, msg);
    Ok(())
}

/// Writes the host's log level (traps on Kong, where it is not implemented).
fn get_log_level(c: &mut Caller<'_, HostState>, ret: i32) -> HostResult {
    kong_nyi(c, "proxy_get_log_level")?;
    write_u32(c, ret, LOG_LEVEL).or_status(status::INVALID_MEMORY_ACCESS)
}
