//! Reading and writing guest memory, and the proxy-wasm map wire format.

use super::state::HostState;
use super::status;
use wasmtime::{Caller, Result};

/// Reads `len` bytes at `ptr`; `None` when out of bounds.
pub fn read(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = caller.data().memory?;
    let data = mem.data(caller);
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    data.get(start..end).map(<[u8]>::to_vec)
}

/// Reads a UTF-8 string (lossy) at `ptr`.
pub fn read_str(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Option<String> {
    // Valid UTF-8 (what a filter passes) keeps the bytes read; only invalid text is copied.
    read(caller, ptr, len).map(|b| {
        String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    })
}

/// Writes bytes at `ptr`; `false` when out of bounds.
pub fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(mem) = caller.data().memory else {
        return false;
    };
    mem.write(caller, ptr as u32 as usize, bytes).is_ok()
}

/// Writes a little-endian u32 at `ptr`.
pub fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, v: u32) -> bool {
    write(caller, ptr, &v.to_le_bytes())
}

/// Copies `bytes` into a fresh guest allocation and stores its address and size at the
/// return pointers; returns a proxy-wasm status.
pub fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    let Some(alloc) = caller.data().alloc.clone() else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let addr = alloc.call(&mut *caller, bytes.len() as i32)?;
    if !write(caller, addr, bytes)
        || !write_u32(caller, ret_ptr, addr as u32)
        || !write_u32(caller, ret_len, bytes.len() as u32)
    {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    Ok(status::OK)
}

/// Serialises pairs: `u32 count`, `count × (u32 key_len, u32 val_len)`, then `key\0value\0`.
pub fn serialize_map(pairs: &[(String, String)]) -> Vec<u8> {
    let mut size = 4;
    for (k, v) in pairs {
        size += 8 + k.len() + v.len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses the map wire format; `None` when malformed.
pub fn deserialize_map(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() || bytes == [0] {
        return Some(Vec::new());
    }
    let u32_at = |i: usize| -> Option<usize> {
        let b = bytes.get(i..i + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = u32_at(0)?;
    let mut sizes = Vec::with_capacity(n.min(1024));
    let mut at = 4;
    for _ in 0..n {
        sizes.push((u32_at(at)?, u32_at(at + 4)?));
        at += 8;
    }
    let mut out = Vec::with_capacity(sizes.len());
    for (kl, vl) in sizes {
        let k = bytes.get(at..at + kl)?;
        at += kl + 1;
        let v = bytes.get(at..at + vl)?;
        at += vl + 1;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip() {
        let m = vec![
            (":path".to_string(), "/a".to_string()),
            ("x".to_string(), String::new()),
        ];
        assert_eq!(deserialize_map(&serialize_map(&m)).unwrap(), m);
        assert_eq!(deserialize_map(&[]).unwrap(), vec![]);
        assert!(deserialize_map(&[5, 0, 0, 0]).is_none());
    }
}
