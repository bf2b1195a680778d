//! Stats: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric` and
//! `proxy_get_metric` (metrics are the world's, summed across workers).

use super::super::memory::{read_str, write, write_u32};
use super::super::state::HostState;
use super::super::status;
use super::{to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// Adds the metric functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_define_metric",
        |mut c: Caller<'_, HostState>, _kind: i32, np: i32, nl: i32, ret: i32| {
            to_status(define_metric(&mut c, np, nl, ret))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_increment_metric",
        |c: Caller<'_, HostState>, id: i32, delta: i64| {
            let found = c
                .data()
                .world
                .borrow_mut()
                .increment_metric(id as u32, delta);
            to_status(found.or_status(status::NOT_FOUND))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_record_metric",
        |c: Caller<'_, HostState>, id: i32, value: i64| {
            let found = c
                .data()
                .world
                .borrow_mut()
                .record_metric(id as u32, value as u64);
            to_status(found.or_status(status::NOT_FOUND))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_metric",
        |mut c: Caller<'_, HostState>, id: i32, ret: i32| to_status(get_metric(&mut c, id, ret)),
    )?;
    Ok(())
}

/// Defines (or finds) the named metric, whatever its kind, and writes its id.
fn define_metric(c: &mut Caller<'_, HostState>, np: i32, nl: i32, ret: i32) -> HostResult {
    let name = read_str(c, np, nl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let id = c.data().world.borrow_mut().define_metric(&name);
    write_u32(c, ret, id).or_status(status::INVALID_MEMORY_ACCESS)
}

/// Writes a metric's value, as a u64.
fn get_metric(c: &mut Caller<'_, HostState>, id: i32, ret: i32) -> HostResult {
    let v = c.data().world.borrow().metric_by_id(id as u32);
    let v = v.or_status(status::NOT_FOUND)?;
    write(c, ret, &(v as u64).to_le_bytes()).or_status(status::INVALID_MEMORY_ACCESS)
}
