//! HTTP fields: the `proxy_*_header_map_*` functions (size, get and set pairs, get, add, replace
//! and remove a value) on the request, response and call-answer headers.

use super::super::memory::{
    deserialize_map, read, read_str, return_bytes, serialize_map, write_u32,
};
use super::super::state::HostState;
use super::super::status;
use super::{check, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

// Map types.
const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;
const CALL_RESPONSE_HEADERS: i32 = 6;

/// Adds the header map functions.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_get_header_map_size",
        |mut c: Caller<'_, HostState>, map: i32, ret: i32| {
            to_status(get_header_map_size(&mut c, map, ret))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ret_ptr: i32, ret_len: i32| {
            to_status(get_header_map_pairs(&mut c, map, ret_ptr, ret_len))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ptr: i32, len: i32| {
            to_status(set_header_map_pairs(&mut c, map, ptr, len))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_header_map_value",
        |mut c: Caller<'_, HostState>,
         map: i32,
         kptr: i32,
         klen: i32,
         ret_ptr: i32,
         ret_len: i32| {
            to_status(get_header_map_value(
                &mut c, map, kptr, klen, ret_ptr, ret_len,
            ))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_add_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| {
            to_status(add_header_map_value(&mut c, map, kptr, klen, vptr, vlen))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| {
            to_status(replace_header_map_value(
                &mut c, map, kptr, klen, vptr, vlen,
            ))
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kptr: i32, klen: i32| {
            to_status(remove_header_map_value(&mut c, map, kptr, klen))
        },
    )?;
    Ok(())
}

/// The pairs of a map type, to change; `None` for a type the host does not have.
fn map_mut(state: &mut HostState, map: i32) -> Option<&mut Vec<(String, String)>> {
    match map {
        REQUEST_HEADERS => Some(&mut state.stream.request_headers),
        RESPONSE_HEADERS => Some(&mut state.stream.response_headers),
        CALL_RESPONSE_HEADERS => Some(&mut state.stream.call_headers),
        _ => None,
    }
}

/// The pairs of a map type; `None` for a type the host does not have.
fn map_ref(state: &HostState, map: i32) -> Option<&Vec<(String, String)>> {
    match map {
        REQUEST_HEADERS => Some(&state.stream.request_headers),
        RESPONSE_HEADERS => Some(&state.stream.response_headers),
        CALL_RESPONSE_HEADERS => Some(&state.stream.call_headers),
        _ => None,
    }
}

/// Writes the size of the map's wire format.
fn get_header_map_size(c: &mut Caller<'_, HostState>, map: i32, ret: i32) -> HostResult {
    let m = map_ref(c.data(), map).or_status(status::BAD_ARGUMENT)?;
    let size = serialize_map(m).len() as u32;
    write_u32(c, ret, size).or_status(status::INVALID_MEMORY_ACCESS)
}

/// Copies the map, in its wire format, into a guest allocation.
fn get_header_map_pairs(
    c: &mut Caller<'_, HostState>,
    map: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let m = map_ref(c.data(), map).or_status(status::BAD_ARGUMENT)?;
    let bytes = serialize_map(m);
    check(return_bytes(c, &bytes, ret_ptr, ret_len)?)
}

/// Replaces the whole map (unreadable or malformed pairs are a bad argument).
fn set_header_map_pairs(c: &mut Caller<'_, HostState>, map: i32, ptr: i32, len: i32) -> HostResult {
    let pairs = read(c, ptr, len)
        .and_then(|b| deserialize_map(&b))
        .or_status(status::BAD_ARGUMENT)?;
    *map_mut(c.data_mut(), map).or_status(status::BAD_ARGUMENT)? = pairs;
    Ok(())
}

/// Copies the first value of a key (case-insensitive) into a guest allocation.
fn get_header_map_value(
    c: &mut Caller<'_, HostState>,
    map: i32,
    kptr: i32,
    klen: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    // Find the value without copying the key out of guest memory.
    let mem = c.data().memory.or_status(status::INTERNAL_FAILURE)?;
    let found = {
        let data = mem.data(&*c);
        let (start, len) = (kptr as u32 as usize, klen as u32 as usize);
        let key = data
            .get(start..start + len)
            .or_status(status::INVALID_MEMORY_ACCESS)?;
        let m = map_ref(c.data(), map).or_status(status::BAD_ARGUMENT)?;
        m.iter()
            .position(|(k, _)| k.as_bytes().eq_ignore_ascii_case(key))
    };
    let i = found.or_status(status::NOT_FOUND)?;
    let len = map_ref(c.data(), map)
        .and_then(|m| m.get(i))
        .map_or(0, |(_, v)| v.len());
    let alloc = c.data().alloc.clone().or_status(status::INTERNAL_FAILURE)?;
    let addr = alloc.call(&mut *c, len as i32)?;
    let (data, state) = mem.data_and_store_mut(&mut *c);
    let value = map_ref(state, map)
        .and_then(|m| m.get(i))
        .map_or(&[][..], |(_, v)| v.as_bytes());
    let at = addr as u32 as usize;
    data.get_mut(at..at + value.len())
        .or_status(status::INVALID_MEMORY_ACCESS)?
        .copy_from_slice(value);
    (write_u32(c, ret_ptr, addr as u32) && write_u32(c, ret_len, len as u32))
        .or_status(status::INVALID_MEMORY_ACCESS)
}

/// Appends a pair (the key lower-cased), keeping any with the same key.
fn add_header_map_value(
    c: &mut Caller<'_, HostState>,
    map: i32,
    kptr: i32,
    klen: i32,
    vptr: i32,
    vlen: i32,
) -> HostResult {
    let k = read_str(c, kptr, klen).or_status(status::INVALID_MEMORY_ACCESS)?;
    let v = read_str(c, vptr, vlen).or_status(status::INVALID_MEMORY_ACCESS)?;
    let m = map_mut(c.data_mut(), map).or_status(status::BAD_ARGUMENT)?;
    m.push((k.to_ascii_lowercase(), v));
    Ok(())
}

/// Removes every pair with the key (lower-cased) and appends the new one.
fn replace_header_map_value(
    c: &mut Caller<'_, HostState>,
    map: i32,
    kptr: i32,
    klen: i32,
    vptr: i32,
    vlen: i32,
) -> HostResult {
    let k = read_str(c, kptr, klen).or_status(status::INVALID_MEMORY_ACCESS)?;
    let v = read_str(c, vptr, vlen).or_status(status::INVALID_MEMORY_ACCESS)?;
    let k = k.to_ascii_lowercase();
    let m = map_mut(c.data_mut(), map).or_status(status::BAD_ARGUMENT)?;
    m.retain(|(name, _)| *name != k);
    m.push((k, v));
    Ok(())
}

/// Removes every pair with the key (lower-cased); `OK` when there was none.
fn remove_header_map_value(
    c: &mut Caller<'_, HostState>,
    map: i32,
    kptr: i32,
    klen: i32,
) -> HostResult {
    let k = read_str(c, kptr, klen).or_status(status::INVALID_MEMORY_ACCESS)?;
    let k = k.to_ascii_lowercase();
    let m = map_mut(c.data_mut(), map).or_status(status::BAD_ARGUMENT)?;
    m.retain(|(name, _)| *name != k);
    Ok(())
}
