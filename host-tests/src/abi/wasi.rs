//! The WASI preview-1 subset proxy-wasm modules import, answered deterministically:
//! the clock is the virtual clock, randomness is seeded, stdout/stderr are captured.

use super::memory::{read, write, write_u32};
use super::state::HostState;
use wasmtime::{Caller, Linker, Result};

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

fn env_block(state: &HostState) -> Vec<Vec<u8>> {
    state
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect()
}

/// Adds `wasi_snapshot_preview1` functions to the linker.
pub fn add(linker: &mut Linker<HostState>) -> Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "environ_sizes_get",
        |mut c: Caller<'_, HostState>, count_ptr: i32, size_ptr: i32| -> i32 {
            let block = env_block(c.data());
            let size: usize = block.iter().map(Vec::len).sum();
            if write_u32(&mut c, count_ptr, block.len() as u32)
                && write_u32(&mut c, size_ptr, size as u32)
            {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            }
        },
    )?;
    linker.func_wrap(
        M,
        "environ_get",
        |mut c: Caller<'_, HostState>, ptrs: i32, buf: i32| -> i32 {
            let block = env_block(c.data());
            let mut at = buf;
            for (i, e) in block.iter().enumerate() {
                if !write_u32(&mut c, ptrs + 4 * i as i32, at as u32) || !write(&mut c, at, e) {
                    return ERRNO_FAULT;
                }
                at += e.len() as i32;
            }
            ERRNO_SUCCESS
        },
    )?;
    linker.func_wrap(
        M,
        "args_sizes_get",
        |mut c: Caller<'_, HostState>, count_ptr: i32, size_ptr: i32| -> i32 {
            if write_u32(&mut c, count_ptr, 0) && write_u32(&mut c, size_ptr, 0) {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            }
        },
    )?;
    linker.func_wrap(
        M,
        "args_get",
        |_c: Caller<'_, HostState>, _a: i32, _b: i32| -> i32 { ERRNO_SUCCESS },
    )?;
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut c: Caller<'_, HostState>, _id: i32, _precision: i64, ret: i32| -> i32 {
            let now = c.data().now_nanos as u64;
            if write(&mut c, ret, &now.to_le_bytes()) {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            }
        },
    )?;
    linker.func_wrap(
        M,
        "random_get",
        |mut c: Caller<'_, HostState>, buf: i32, len: i32| -> i32 {
            let mut bytes = Vec::with_capacity(len as u32 as usize);
            while bytes.len() < len as u32 as usize {
                let s = &mut c.data_mut().rng;
                *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = *s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
            }
            bytes.truncate(len as u32 as usize);
            if write(&mut c, buf, &bytes) {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            }
        },
    )?;
    linker.func_wrap(
        M,
        "fd_write",
        |mut c: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         written_ptr: i32|
         -> i32 {
            if fd != 1 && fd != 2 {
                return ERRNO_BADF;
            }
            let mut total = 0u32;
            for i in 0..iovs_len {
                let Some(iov) = read(&c, iovs + 8 * i, 8) else {
                    return ERRNO_FAULT;
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let Some(bytes) = read(&c, ptr, len) else {
                    return ERRNO_FAULT;
                };
                total += bytes.len() as u32;
                let out = &mut c.data_mut().stdio;
                if out.len() < 1 << 20 {
                    out.extend_from_slice(&bytes);
                }
            }
            if write_u32(&mut c, written_ptr, total) {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proc_exit",
        |_c: Caller<'_, HostState>, code: i32| -> Result<()> {
            Err(wasmtime::Error::msg(format!(
                "the module called proc_exit({code})"
            )))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_close",
        |_c: Caller<'_, HostState>, _fd: i32| -> i32 { ERRNO_BADF },
    )?;
    linker.func_wrap(
        M,
        "fd_seek",
        |_c: Caller<'_, HostState>, _fd: i32, _o: i64, _w: i32, _r: i32| -> i32 { ERRNO_BADF },
    )?;
    linker.func_wrap(
        M,
        "fd_fdstat_get",
        |_c: Caller<'_, HostState>, _fd: i32, _r: i32| -> i32 { ERRNO_INVAL },
    )?;
    Ok(())
}
