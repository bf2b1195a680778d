//! Stream operations: `proxy_continue_stream`, `proxy_close_stream`, `proxy_get_status` and
//! `proxy_send_local_response`.

use super::super::memory::{deserialize_map, read};
use super::super::state::{HostState, LocalReply};
use super::super::status;
use super::{kong_nyi, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// Adds the stream functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_continue_stream",
        |_c: Caller<'_, HostState>, _kind: i32| -> i32 { status::OK },
    )?;
    linker.func_wrap(
        M,
        "proxy_close_stream",
        |c: Caller<'_, HostState>, _kind: i32| -> Result<i32> {
            kong_nyi(&c, "proxy_close_stream")?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_status",
        |c: Caller<'_, HostState>, _a: i32, _b: i32, _d: i32| -> Result<i32> {
            kong_nyi(&c, "proxy_get_status")?;
            Ok(status::NOT_FOUND)
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_send_local_response",
        |mut c: Caller<'_, HostState>,
         code: i32,
         _dp: i32,
         _dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc: i32| to_status(send_local_response(&mut c, code, bp, bl, hp, hl)),
    )?;
    Ok(())
}

/// Records the stream's local reply (the details and gRPC status are ignored).
fn send_local_response(
    c: &mut Caller<'_, HostState>,
    code: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
) -> HostResult {
    let body = read(c, bp, bl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let headers = read(c, hp, hl)
        .and_then(|b| deserialize_map(&b))
        .or_status(status::BAD_ARGUMENT)?;
    c.data_mut().local_reply = Some(LocalReply {
        status: code as u16,
        headers,
        body,
    });
    Ok(())
}
