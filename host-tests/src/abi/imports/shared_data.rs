//! Shared key-value store: `proxy_get_shared_data` and `proxy_set_shared_data` (the CAS rules
//! are the world's, per profile).

use super::super::memory::{read, read_str, return_bytes, write_u32};
use super::super::state::HostState;
use super::super::status;
use super::{check, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// Adds the shared data functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_get_shared_data",
        |mut c: Caller<'_, HostState>,
         kp: i32,
         kl: i32,
         ret_ptr: i32,
         ret_len: i32,
         ret_cas: i32| {
            to_status(get_shared_data(&mut c, kp, kl, ret_ptr, ret_len, ret_cas))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_shared_data",
        |c: Caller<'_, HostState>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| {
            to_status(set_shared_data(&c, kp, kl, vp, vl, cas))
        },
    )?;
    Ok(())
}

/// Copies a key's value into a guest allocation and writes its CAS.
fn get_shared_data(
    c: &mut Caller<'_, HostState>,
    kp: i32,
    kl: i32,
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> HostResult {
    let key = read_str(c, kp, kl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let found = c.data().world.borrow().get_shared(&key);
    let (value, cas) = found.or_status(status::NOT_FOUND)?;
    check(return_bytes(c, &value, ret_ptr, ret_len)?)?;
    write_u32(c, ret_cas, cas).or_status(status::INVALID_MEMORY_ACCESS)
}

/// Sets a key's value (a null value pointer clears it) if `cas` allows, by the profile's rules.
fn set_shared_data(
    c: &Caller<'_, HostState>,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
    cas: i32,
) -> HostResult {
    let key = read_str(c, kp, kl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let value = if vp == 0 {
        None
    } else {
        Some(read(c, vp, vl).or_status(status::INVALID_MEMORY_ACCESS)?)
    };
    let code = c
        .data()
        .world
        .borrow_mut()
        .set_shared(&key, value.as_deref(), cas as u32);
    check(code)
}
