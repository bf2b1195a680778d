//! Context lifecycle: `proxy_set_effective_context` and `proxy_done`.

use super::super::state::HostState;
use super::super::status;
use super::{kong_nyi, M};
use wasmtime::{Caller, Linker, Result};

/// Adds the context lifecycle functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_set_effective_context",
        |mut c: Caller<'_, HostState>, ctx: i32| -> i32 {
            c.data_mut().effective_context = ctx as u32;
            status::OK
        },
    )?;
    linker.func_wrap(M, "proxy_done", |c: Caller<'_, HostState>| -> Result<i32> {
        kong_nyi(&c, "proxy_done")?;
        Ok(status::OK)
    })?;
    Ok(())
}
