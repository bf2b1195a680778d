//! Foreign functions: `proxy_call_foreign_function`, which finds none.

use super::super::state::HostState;
use super::super::status;
use super::M;
use wasmtime::{Caller, Linker, Result};

/// Adds `proxy_call_foreign_function`.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_call_foreign_function",
        |_c: Caller<'_, HostState>, _a: i32, _b: i32, _d: i32, _e: i32, _f: i32, _g: i32| -> i32 {
            status::NOT_FOUND
        },
    )?;
    Ok(())
}
