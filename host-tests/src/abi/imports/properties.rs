//! Properties: `proxy_get_property` (the few paths each host answers here) and
//! `proxy_set_property` (accepted, ignored).

use super::super::memory::{read, return_bytes};
use super::super::profile::Profile;
use super::super::state::HostState;
use super::super::status;
use super::{check, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// Adds the property functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_get_property",
        |mut c: Caller<'_, HostState>, pp: i32, pl: i32, ret_ptr: i32, ret_len: i32| {
            to_status(get_property(&mut c, pp, pl, ret_ptr, ret_len))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_property",
        |_c: Caller<'_, HostState>, _a: i32, _b: i32, _d: i32, _e: i32| -> i32 { status::OK },
    )?;
    Ok(())
}

/// The value of a property path, as the profile's host answers it; `None` when it has none.
fn property(state: &HostState, path: &[String]) -> Option<Vec<u8>> {
    let profile = state.world.borrow().profile;
    let joined: Vec<&str> = path.iter().map(String::as_str).collect();
    match (profile, joined.as_slice()) {
        (Profile::Envoy, ["source", "address"]) => Some(state.stream.peer.clone().into_bytes()),
        (Profile::Envoy, ["plugin_root_id"]) => Some(b"aforo".to_vec()),
        // Envoy 1.40 answers its node as `xds.node` in every context (not `node`); the id is
        // empty without --service-node. Kong has neither (NotFound).
        (Profile::Envoy, ["xds", "node", "id"]) => Some(Vec::new()),
        // Any nginx variable reads as a property in ngx_wasm_module (inside a request).
        (Profile::Kong, ["ngx", "pid"]) => Some(b"4242".to_vec()),
        (Profile::Kong, ["ngx", "remote_addr"]) => {
            let ip = aforo_core::keys::parse_peer(&state.stream.peer)?;
            Some(ip.to_string().into_bytes())
        }
        _ => None,
    }
}

/// Copies a property's value into a guest allocation; the path is NUL-separated segments.
fn get_property(
    c: &mut Caller<'_, HostState>,
    pp: i32,
    pl: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let raw = read(c, pp, pl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let mut path: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    // Envoy stops at a NUL that ends the path; Kong reads every NUL as a dot, so a trailing
    // one names another property (`ngx.pid.`), which it does not have.
    if c.data().world.borrow().profile == Profile::Envoy
        && path.len() > 1
        && path.last().is_some_and(String::is_empty)
    {
        path.pop();
    }
    let v = property(c.data(), &path).or_status(status::NOT_FOUND)?;
    check(return_bytes(c, &v, ret_ptr, ret_len)?)
}
