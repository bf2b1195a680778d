//! Buffers: `proxy_get_buffer_bytes`, `proxy_get_buffer_status` and `proxy_set_buffer_bytes`
//! (request and response bodies, the call answer's body, the VM and plugin configurations).

use super::super::memory::{read, return_bytes, write_u32};
use super::super::state::HostState;
use super::super::status;
use super::{check, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

// Buffer types.
const REQUEST_BODY: i32 = 0;
const RESPONSE_BODY: i32 = 1;
const CALL_RESPONSE_BODY: i32 = 4;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

/// Adds the buffer functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_len: i32| {
            to_status(get_buffer_bytes(&mut c, kind, start, max, ret_ptr, ret_len))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_buffer_status",
        |mut c: Caller<'_, HostState>, kind: i32, ret_size: i32, ret_flags: i32| {
            to_status(get_buffer_status(&mut c, kind, ret_size, ret_flags))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, HostState>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| {
            to_status(set_buffer_bytes(&mut c, kind, start, size, ptr, len))
        },
    )?;
    Ok(())
}

/// The buffer of a buffer type; `None` for a type the host does not have.
fn buffer(state: &HostState, kind: i32) -> Option<&[u8]> {
    match kind {
        REQUEST_BODY => Some(&state.stream.request_body),
        RESPONSE_BODY => Some(&state.stream.response_body),
        CALL_RESPONSE_BODY => Some(&state.stream.call_body),
        VM_CONFIGURATION => Some(&state.vm_config),
        PLUGIN_CONFIGURATION => Some(&state.plugin_config),
        _ => None,
    }
}

/// Copies up to `max` bytes from `start` into a guest allocation; `NOT_FOUND` when none are
/// left.
fn get_buffer_bytes(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let buf = buffer(c.data(), kind).or_status(status::BAD_ARGUMENT)?;
    let start = (start as u32 as usize).min(buf.len());
    let end = start.saturating_add(max as u32 as usize).min(buf.len());
    (start != end).or_status(status::NOT_FOUND)?;
    let bytes = buf[start..end].to_vec();
    check(return_bytes(c, &bytes, ret_ptr, ret_len)?)
}

/// Writes the buffer's size (and zero flags).
fn get_buffer_status(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    ret_size: i32,
    ret_flags: i32,
) -> HostResult {
    let len = buffer(c.data(), kind)
        .map(<[u8]>::len)
        .or_status(status::BAD_ARGUMENT)?;
    (write_u32(c, ret_size, len as u32) && write_u32(c, ret_flags, 0))
        .or_status(status::INVALID_MEMORY_ACCESS)
}

/// Replaces `size` bytes from `start` of a body with the guest's bytes.
fn set_buffer_bytes(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> HostResult {
    let bytes = read(c, ptr, len).or_status(status::INVALID_MEMORY_ACCESS)?;
    let state = c.data_mut();
    let buf = match kind {
        REQUEST_BODY => Some(&mut state.stream.request_body),
        RESPONSE_BODY => Some(&mut state.stream.response_body),
        _ => None,
    }
    .or_status(status::BAD_ARGUMENT)?;
    let start = (start as u32 as usize).min(buf.len());
    let end = start.saturating_add(size as u32 as usize).min(buf.len());
    buf.splice(start..end, bytes);
    Ok(())
}
