//! Shared queues: `proxy_register_shared_queue`, `proxy_resolve_shared_queue`,
//! `proxy_enqueue_shared_queue` and `proxy_dequeue_shared_queue`.

use super::super::memory::{read, read_str, return_bytes, write_u32};
use super::super::state::HostState;
use super::super::status;
use super::{check, kong_nyi, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// Adds the shared queue functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_register_shared_queue",
        |mut c: Caller<'_, HostState>, np: i32, nl: i32, ret: i32| {
            to_status(register_shared_queue(&mut c, np, nl, ret))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_resolve_shared_queue",
        |mut c: Caller<'_, HostState>, _vp: i32, _vl: i32, np: i32, nl: i32, ret: i32| {
            to_status(resolve_shared_queue(&mut c, np, nl, ret))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_enqueue_shared_queue",
        |c: Caller<'_, HostState>, id: i32, vp: i32, vl: i32| {
            to_status(enqueue_shared_queue(&c, id, vp, vl))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, HostState>, id: i32, ret_ptr: i32, ret_len: i32| {
            to_status(dequeue_shared_queue(&mut c, id, ret_ptr, ret_len))
        },
    )?;
    Ok(())
}

/// Creates (or finds) the named queue and writes its id.
fn register_shared_queue(c: &mut Caller<'_, HostState>, np: i32, nl: i32, ret: i32) -> HostResult {
    let name = read_str(c, np, nl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let id = c
        .data()
        .world
        .borrow_mut()
        .queue_id(&name, true)
        .unwrap_or(0);
    write_u32(c, ret, id).or_status(status::INVALID_MEMORY_ACCESS)
}

/// Writes the id of an existing named queue (the VM id is ignored; traps on Kong).
fn resolve_shared_queue(c: &mut Caller<'_, HostState>, np: i32, nl: i32, ret: i32) -> HostResult {
    kong_nyi(c, "proxy_resolve_shared_queue")?;
    let name = read_str(c, np, nl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let id = c.data().world.borrow_mut().queue_id(&name, false);
    let id = id.or_status(status::NOT_FOUND)?;
    write_u32(c, ret, id).or_status(status::INVALID_MEMORY_ACCESS)
}

/// Appends the guest's bytes to a queue.
fn enqueue_shared_queue(c: &Caller<'_, HostState>, id: i32, vp: i32, vl: i32) -> HostResult {
    let v = read(c, vp, vl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let mut w = c.data().world.borrow_mut();
    w.queue(id as u32)
        .or_status(status::NOT_FOUND)?
        .push_back(v);
    Ok(())
}

/// Takes the oldest item of a queue into a guest allocation; `EMPTY` when there is none.
fn dequeue_shared_queue(
    c: &mut Caller<'_, HostState>,
    id: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let item = {
        let mut w = c.data().world.borrow_mut();
        w.queue(id as u32).or_status(status::NOT_FOUND)?.pop_front()
    };
    let v = item.or_status(status::EMPTY)?;
    check(return_bytes(c, &v, ret_ptr, ret_len)?)
}
