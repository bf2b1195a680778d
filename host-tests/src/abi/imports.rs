//! The `env::proxy_*` host functions of ABI 0.2.1.

use super::memory::{
    deserialize_map, read, read_str, return_bytes, serialize_map, write, write_u32,
};
use super::profile::Profile;
use super::state::{CallRequest, HostState, LocalReply, Phase};
use super::status;
use wasmtime::{Caller, Linker, Result};

const M: &str = "env";

// Map types.
const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;
const CALL_RESPONSE_HEADERS: i32 = 6;

// Buffer types.
const REQUEST_BODY: i32 = 0;
const RESPONSE_BODY: i32 = 1;
const CALL_RESPONSE_BODY: i32 = 4;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

fn profile(c: &Caller<'_, HostState>) -> Profile {
    c.data().world.borrow().profile
}

/// A trap for functions ngx_wasm_module has not implemented (calling them traps there too).
fn kong_nyi(c: &Caller<'_, HostState>, name: &str) -> Result<()> {
    if profile(c) == Profile::Kong {
        return Err(wasmtime::Error::msg(format!(
            "host trap (function not yet implemented): {name}"
        )));
    }
    Ok(())
}

fn map_mut(state: &mut HostState, map: i32) -> Option<&mut Vec<(String, String)>> {
    match map {
        REQUEST_HEADERS => Some(&mut state.stream.request_headers),
        RESPONSE_HEADERS => Some(&mut state.stream.response_headers),
        CALL_RESPONSE_HEADERS => Some(&mut state.stream.call_headers),
        _ => None,
    }
}

fn map_ref(state: &HostState, map: i32) -> Option<&Vec<(String, String)>> {
    match map {
        REQUEST_HEADERS => Some(&state.stream.request_headers),
        RESPONSE_HEADERS => Some(&state.stream.response_headers),
        CALL_RESPONSE_HEADERS => Some(&state.stream.call_headers),
        _ => None,
    }
}

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

fn property(state: &HostState, path: &[String]) -> Option<Vec<u8>> {
    let profile = state.world.borrow().profile;
    let joined: Vec<&str> = path.iter().map(String::as_str).collect();
    match (profile, joined.as_slice()) {
        (Profile::Envoy, ["source", "address"]) => Some(state.stream.peer.clone().into_bytes()),
        (Profile::Envoy, ["plugin_root_id"]) => Some(b"aforo".to_vec()),
        // Any nginx variable reads as a property in ngx_wasm_module (inside a request).
        (Profile::Kong, ["ngx", "pid"]) => Some(b"4242".to_vec()),
        (Profile::Kong, ["ngx", "remote_addr"]) => {
            let ip = aforo_core::keys::parse_peer(&state.stream.peer)?;
            Some(ip.to_string().into_bytes())
        }
        _ => None,
    }
}

/// Adds every `env::proxy_*` function the filter and the SDK use.
pub fn add(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        M,
        "proxy_log",
        |c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> i32 {
            let Some(msg) = read_str(&c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            c.data().world.borrow_mut().log(level, msg);
            status::OK
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_log_level",
        |mut c: Caller<'_, HostState>, ret: i32| -> Result<i32> {
            kong_nyi(&c, "proxy_get_log_level")?;
            Ok(if write_u32(&mut c, ret, 2) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, HostState>, ret: i32| -> i32 {
            let now = c.data().now_nanos as u64;
            if write(&mut c, ret, &now.to_le_bytes()) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, HostState>, ms: i32| -> i32 {
            c.data_mut().tick_period_ms = ms as u32 as u64;
            status::OK
        },
    )?;
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

    // Buffers.
    linker.func_wrap(
        M,
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> Result<i32> {
            let Some(buf) = buffer(c.data(), kind) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let start = (start as u32 as usize).min(buf.len());
            let end = start.saturating_add(max as u32 as usize).min(buf.len());
            if start == end {
                return Ok(status::NOT_FOUND);
            }
            let bytes = buf[start..end].to_vec();
            return_bytes(&mut c, &bytes, ret_ptr, ret_len)
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_buffer_status",
        |mut c: Caller<'_, HostState>, kind: i32, ret_size: i32, ret_flags: i32| -> i32 {
            let Some(len) = buffer(c.data(), kind).map(<[u8]>::len) else {
                return status::BAD_ARGUMENT;
            };
            if write_u32(&mut c, ret_size, len as u32) && write_u32(&mut c, ret_flags, 0) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         size: i32,
         ptr: i32,
         len: i32|
         -> i32 {
            let Some(bytes) = read(&c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let state = c.data_mut();
            let buf = match kind {
                REQUEST_BODY => &mut state.stream.request_body,
                RESPONSE_BODY => &mut state.stream.response_body,
                _ => return status::BAD_ARGUMENT,
            };
            let start = (start as u32 as usize).min(buf.len());
            let end = start.saturating_add(size as u32 as usize).min(buf.len());
            buf.splice(start..end, bytes);
            status::OK
        },
    )?;

    // Header maps.
    linker.func_wrap(
        M,
        "proxy_get_header_map_size",
        |mut c: Caller<'_, HostState>, map: i32, ret: i32| -> i32 {
            let Some(m) = map_ref(c.data(), map) else {
                return status::BAD_ARGUMENT;
            };
            let size = serialize_map(m).len() as u32;
            if write_u32(&mut c, ret, size) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let Some(m) = map_ref(c.data(), map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let bytes = serialize_map(m);
            return_bytes(&mut c, &bytes, ret_ptr, ret_len)
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ptr: i32, len: i32| -> i32 {
            let Some(pairs) = read(&c, ptr, len).and_then(|b| deserialize_map(&b)) else {
                return status::BAD_ARGUMENT;
            };
            match map_mut(c.data_mut(), map) {
                Some(m) => {
                    *m = pairs;
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
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
         ret_len: i32|
         -> Result<i32> {
            // Find the value without copying the key out of guest memory.
            let Some(mem) = c.data().memory else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let found = {
                let data = mem.data(&c);
                let (start, len) = (kptr as u32 as usize, klen as u32 as usize);
                let Some(key) = data.get(start..start + len) else {
                    return Ok(status::INVALID_MEMORY_ACCESS);
                };
                let Some(m) = map_ref(c.data(), map) else {
                    return Ok(status::BAD_ARGUMENT);
                };
                m.iter()
                    .position(|(k, _)| k.as_bytes().eq_ignore_ascii_case(key))
            };
            let Some(i) = found else {
                return Ok(status::NOT_FOUND);
            };
            let len = map_ref(c.data(), map)
                .and_then(|m| m.get(i))
                .map_or(0, |(_, v)| v.len());
            let Some(alloc) = c.data().alloc.clone() else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let addr = alloc.call(&mut c, len as i32)?;
            let (data, state) = mem.data_and_store_mut(&mut c);
            let value = map_ref(state, map)
                .and_then(|m| m.get(i))
                .map_or(&[][..], |(_, v)| v.as_bytes());
            let at = addr as u32 as usize;
            let Some(dst) = data.get_mut(at..at + value.len()) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            dst.copy_from_slice(value);
            if !write_u32(&mut c, ret_ptr, addr as u32) || !write_u32(&mut c, ret_len, len as u32) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_add_header_map_value",
        |mut c: Caller<'_, HostState>,
         map: i32,
         kptr: i32,
         klen: i32,
         vptr: i32,
         vlen: i32|
         -> i32 {
            let (Some(k), Some(v)) = (read_str(&c, kptr, klen), read_str(&c, vptr, vlen)) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            match map_mut(c.data_mut(), map) {
                Some(m) => {
                    m.push((k.to_ascii_lowercase(), v));
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, HostState>,
         map: i32,
         kptr: i32,
         klen: i32,
         vptr: i32,
         vlen: i32|
         -> i32 {
            let (Some(k), Some(v)) = (read_str(&c, kptr, klen), read_str(&c, vptr, vlen)) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let k = k.to_ascii_lowercase();
            match map_mut(c.data_mut(), map) {
                Some(m) => {
                    m.retain(|(name, _)| *name != k);
                    m.push((k, v));
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kptr: i32, klen: i32| -> i32 {
            let Some(k) = read_str(&c, kptr, klen) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let k = k.to_ascii_lowercase();
            match map_mut(c.data_mut(), map) {
                Some(m) => {
                    m.retain(|(name, _)| *name != k);
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
        },
    )?;

    // Stream control.
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
         _grpc: i32|
         -> i32 {
            let Some(body) = read(&c, bp, bl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let Some(headers) = read(&c, hp, hl).and_then(|b| deserialize_map(&b)) else {
                return status::BAD_ARGUMENT;
            };
            c.data_mut().local_reply = Some(LocalReply {
                status: code as u16,
                headers,
                body,
            });
            status::OK
        },
    )?;

    // Outbound calls.
    linker.func_wrap(
        M,
        "proxy_http_call",
        |mut c: Caller<'_, HostState>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         _tp: i32,
         _tl: i32,
         timeout: i32,
         ret: i32|
         -> Result<i32> {
            let Some(upstream) = read_str(&c, up, ul) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let Some(headers) = read(&c, hp, hl).and_then(|b| deserialize_map(&b)) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(body) = read(&c, bp, bl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let has = |n: &str| headers.iter().any(|(k, _)| k == n);
            let profile = profile(&c);
            let fails_at_host = match profile {
                Profile::Envoy => {
                    if !has(":method") || !has(":path") || !has(":authority") {
                        return Ok(status::BAD_ARGUMENT);
                    }
                    let known = c
                        .data()
                        .world
                        .borrow()
                        .clusters
                        .as_ref()
                        .is_none_or(|cs| cs.contains(&upstream));
                    if !known {
                        return Ok(status::BAD_ARGUMENT);
                    }
                    false
                }
                Profile::Kong => {
                    if !matches!(
                        c.data().phase,
                        Phase::Request | Phase::Tick | Phase::CallResponse
                    ) {
                        return Ok(status::INTERNAL_FAILURE);
                    }
                    if !has(":method") || !has(":path") {
                        return Ok(status::BAD_ARGUMENT);
                    }
                    // ngx_wasm_module resolves a host name; a cluster name fails at resolve time.
                    !looks_like_host_port(&upstream)
                }
            };
            let state = c.data_mut();
            state.next_token += 1;
            let token = state.next_token;
            state.calls.push(CallRequest {
                token,
                context_id: state.effective_context,
                upstream,
                headers,
                body,
                timeout_ms: timeout as u32 as u64,
                fails_at_host,
            });
            Ok(if write_u32(&mut c, ret, token) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;

    // Shared data.
    linker.func_wrap(
        M,
        "proxy_get_shared_data",
        |mut c: Caller<'_, HostState>,
         kp: i32,
         kl: i32,
         ret_ptr: i32,
         ret_len: i32,
         ret_cas: i32|
         -> Result<i32> {
            let Some(key) = read_str(&c, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let found = c.data().world.borrow().get_shared(&key);
            match found {
                None => Ok(status::NOT_FOUND),
                Some((value, cas)) => {
                    let s = return_bytes(&mut c, &value, ret_ptr, ret_len)?;
                    if s == status::OK && !write_u32(&mut c, ret_cas, cas) {
                        return Ok(status::INVALID_MEMORY_ACCESS);
                    }
                    Ok(s)
                }
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_shared_data",
        |c: Caller<'_, HostState>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> i32 {
            let Some(key) = read_str(&c, kp, kl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let value = if vp == 0 { None } else { read(&c, vp, vl) };
            if vp != 0 && value.is_none() {
                return status::INVALID_MEMORY_ACCESS;
            }
            let s = c
                .data()
                .world
                .borrow_mut()
                .set_shared(&key, value.as_deref(), cas as u32);
            s
        },
    )?;

    // Shared queues.
    linker.func_wrap(
        M,
        "proxy_register_shared_queue",
        |mut c: Caller<'_, HostState>, np: i32, nl: i32, ret: i32| -> i32 {
            let Some(name) = read_str(&c, np, nl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let id = c
                .data()
                .world
                .borrow_mut()
                .queue_id(&name, true)
                .unwrap_or(0);
            if write_u32(&mut c, ret, id) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_resolve_shared_queue",
        |mut c: Caller<'_, HostState>,
         _vp: i32,
         _vl: i32,
         np: i32,
         nl: i32,
         ret: i32|
         -> Result<i32> {
            kong_nyi(&c, "proxy_resolve_shared_queue")?;
            let Some(name) = read_str(&c, np, nl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let id = c.data().world.borrow_mut().queue_id(&name, false);
            Ok(match id {
                Some(id) if write_u32(&mut c, ret, id) => status::OK,
                Some(_) => status::INVALID_MEMORY_ACCESS,
                None => status::NOT_FOUND,
            })
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_enqueue_shared_queue",
        |c: Caller<'_, HostState>, id: i32, vp: i32, vl: i32| -> i32 {
            let Some(v) = read(&c, vp, vl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let mut w = c.data().world.borrow_mut();
            match w.queue(id as u32) {
                Some(q) => {
                    q.push_back(v);
                    status::OK
                }
                None => status::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, HostState>, id: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let item = {
                let mut w = c.data().world.borrow_mut();
                match w.queue(id as u32) {
                    None => return Ok(status::NOT_FOUND),
                    Some(q) => q.pop_front(),
                }
            };
            match item {
                None => Ok(status::EMPTY),
                Some(v) => return_bytes(&mut c, &v, ret_ptr, ret_len),
            }
        },
    )?;

    // Metrics.
    linker.func_wrap(
        M,
        "proxy_define_metric",
        |mut c: Caller<'_, HostState>, _kind: i32, np: i32, nl: i32, ret: i32| -> i32 {
            let Some(name) = read_str(&c, np, nl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let id = c.data().world.borrow_mut().define_metric(&name);
            if write_u32(&mut c, ret, id) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_increment_metric",
        |c: Caller<'_, HostState>, id: i32, delta: i64| -> i32 {
            if c.data()
                .world
                .borrow_mut()
                .increment_metric(id as u32, delta)
            {
                status::OK
            } else {
                status::NOT_FOUND
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_record_metric",
        |c: Caller<'_, HostState>, id: i32, value: i64| -> i32 {
            if c.data()
                .world
                .borrow_mut()
                .record_metric(id as u32, value as u64)
            {
                status::OK
            } else {
                status::NOT_FOUND
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_get_metric",
        |mut c: Caller<'_, HostState>, id: i32, ret: i32| -> i32 {
            let v = c.data().world.borrow().metric_by_id(id as u32);
            match v {
                Some(v) if write(&mut c, ret, &(v as u64).to_le_bytes()) => status::OK,
                Some(_) => status::INVALID_MEMORY_ACCESS,
                None => status::NOT_FOUND,
            }
        },
    )?;

    // Properties.
    linker.func_wrap(
        M,
        "proxy_get_property",
        |mut c: Caller<'_, HostState>,
         pp: i32,
         pl: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> Result<i32> {
            let Some(raw) = read(&c, pp, pl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let path: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            match property(c.data(), &path) {
                Some(v) => return_bytes(&mut c, &v, ret_ptr, ret_len),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_set_property",
        |_c: Caller<'_, HostState>, _a: i32, _b: i32, _d: i32, _e: i32| -> i32 { status::OK },
    )?;
    linker.func_wrap(
        M,
        "proxy_call_foreign_function",
        |_c: Caller<'_, HostState>, _a: i32, _b: i32, _d: i32, _e: i32, _f: i32, _g: i32| -> i32 {
            status::NOT_FOUND
        },
    )?;
    Ok(())
}

/// `host`, `host:port` or `[v6]:port`, as ngx_wasm_module accepts for dispatch.
fn looks_like_host_port(upstream: &str) -> bool {
    let host = match upstream.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => upstream,
    };
    // Kong resolves names through DNS; the harness treats dotted names and IPs as resolvable
    // and bare words (Envoy cluster names such as aforo_ingest_sandbox) as resolver failures.
    !host.is_empty()
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && !host.contains('_')
}
