//! HTTP calls: `proxy_http_call`, with each host's checks (Envoy: known cluster and pseudo
//! headers; Kong: phase, pseudo headers, and a host:port upstream).

use super::super::memory::{deserialize_map, read, read_str, write_u32};
use super::super::profile::Profile;
use super::super::state::{CallRequest, HostState, Phase};
use super::super::status;
use super::{profile, to_status, HostResult, OrStatus, M};
use wasmtime::{Caller, Linker, Result};

/// Adds `proxy_http_call`.
pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
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
         ret: i32| {
            to_status(http_call(
                &mut c,
                (up, ul),
                (hp, hl),
                (bp, bl),
                timeout,
                ret,
            ))
        },
    )?;
    Ok(())
}

/// Queues the call for the driver and writes its token; the upstream, headers and body come as
/// (pointer, length) pairs (trailers are ignored).
fn http_call(
    c: &mut Caller<'_, HostState>,
    (up, ul): (i32, i32),
    (hp, hl): (i32, i32),
    (bp, bl): (i32, i32),
    timeout: i32,
    ret: i32,
) -> HostResult {
    let upstream = read_str(c, up, ul).or_status(status::INVALID_MEMORY_ACCESS)?;
    let headers = read(c, hp, hl)
        .and_then(|b| deserialize_map(&b))
        .or_status(status::BAD_ARGUMENT)?;
    let body = read(c, bp, bl).or_status(status::INVALID_MEMORY_ACCESS)?;
    let has = |n: &str| headers.iter().any(|(k, _)| k == n);
    let fails_at_host = match profile(c) {
        Profile::Envoy => {
            (has(":method") && has(":path") && has(":authority"))
                .or_status(status::BAD_ARGUMENT)?;
            let known = c
                .data()
                .world
                .borrow()
                .clusters
                .as_ref()
                .is_none_or(|cs| cs.contains(&upstream));
            known.or_status(status::BAD_ARGUMENT)?;
            false
        }
        Profile::Kong => {
            // ngx_wasm_module traps a dispatch from any other step ("can only send HTTP
            // dispatch during on_request_headers, on_request_body, on_dispatch_response,
            // on_tick": ngx_proxy_wasm_host.c, every commit Kong 3.4–3.9 pins).
            if !matches!(
                c.data().phase,
                Phase::Request | Phase::Tick | Phase::CallResponse
            ) {
                return Err(wasmtime::Error::msg(
                    "host trap (can only send HTTP dispatch during on_request_headers, on_request_body, on_dispatch_response, on_tick)",
                )
                .into());
            }
            (has(":method") && has(":path")).or_status(status::BAD_ARGUMENT)?;
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
    write_u32(c, ret, token).or_status(status::INVALID_MEMORY_ACCESS)
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
