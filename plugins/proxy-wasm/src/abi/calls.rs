//! Safe calls over the host's functions: buffers the host allocates are taken back here, maps
//! are (de)serialized here, and every status is returned, never trapped on.

use super::exports::register_callout;
use super::raw;
use std::ptr::{null, null_mut};

/// A status the host answered with (proxy-wasm's `WasmResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// The host refused an argument (an unknown cluster, a malformed `host:port` on Kong).
    pub const BAD_ARGUMENT: Status = Status(2);
    /// Shared data changed since it was read.
    pub const CAS_MISMATCH: Status = Status(8);

    /// The host's name for the status, for messages.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "Ok",
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            5 => "BadExpression",
            6 => "InvalidMemoryAccess",
            7 => "Empty",
            8 => "CasMismatch",
            9 => "ResultMismatch",
            10 => "InternalFailure",
            11 => "BrokenConnection",
            12 => "Unimplemented",
            _ => "unknown status",
        }
    }

    fn result(code: u32) -> Result<(), Status> {
        match code {
            0 => Ok(()),
            other => Err(Status(other)),
        }
    }
}

/// What a callback tells the host to do with the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue = 0,
    /// Stop until resumed (or answered).
    Pause = 1,
}

/// The header maps this filter reads and writes.
#[derive(Clone, Copy, Debug)]
pub enum HeaderMap {
    /// The request's headers.
    Request = 0,
    /// The response's headers.
    Response = 2,
    /// The headers of an answer to `http_call`.
    CallResponse = 6,
}

/// The buffers this filter reads.
#[derive(Clone, Copy, Debug)]
pub enum Buffer {
    /// The request body chunk of the current callback.
    RequestBody = 0,
    /// The response body chunk of the current callback.
    ResponseBody = 1,
    /// The body of an answer to `http_call`.
    CallResponseBody = 4,
    /// The plugin's configuration.
    PluginConfiguration = 7,
}

/// The kinds of metric this filter defines.
#[derive(Clone, Copy, Debug)]
pub enum MetricKind {
    /// Only grows.
    Counter = 0,
    /// Set to a value.
    Gauge = 1,
}

/// Takes back a buffer the host allocated through `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host allocated exactly `size` bytes with `proxy_on_memory_allocate` (a
    // boxed slice of that length from this module's allocator), filled them, and hands them
    // over: nothing else holds the pointer.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Writes a log line.
pub fn log(level: u32, message: &str) {
    // SAFETY: a pointer and length of a live string, read by the host during the call.
    unsafe { raw::proxy_log(level, message.as_ptr(), message.len()) };
}

/// The host's clock, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> Option<u64> {
    let mut t = 0u64;
    // SAFETY: the host writes one u64 to a live local.
    let code = unsafe { raw::proxy_get_current_time_nanoseconds(&mut t) };
    (code == 0).then_some(t)
}

/// Asks for `proxy_on_tick` every `ms` milliseconds.
pub fn set_tick_period(ms: u64) {
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    unsafe { raw::proxy_set_tick_period_milliseconds(ms) };
}

/// Up to `max` bytes of a buffer from `start` (empty when the host has none).
pub fn buffer(kind: Buffer, start: usize, max: usize) -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes a pointer and a length to live locals.
    let code =
        unsafe { raw::proxy_get_buffer_bytes(kind as u32, start, max, &mut data, &mut size) };
    if code != 0 {
        return Vec::new();
    }
    owned(data, size)
}

/// All pairs of a header map in one call, kept as the host's bytes and read in place (one
/// buffer instead of two allocations per header).
pub fn header_pairs(map: HeaderMap) -> HeaderPairs {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes a pointer and a length to live locals.
    let code = unsafe { raw::proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if code != 0 {
        return HeaderPairs(Vec::new());
    }
    HeaderPairs(owned(data, size))
}

/// A header map in proxy-wasm's encoding: `u32 count`, `count × (u32 name_len, u32 value_len)`,
/// then `name\0value\0` each. A truncated map yields the pairs before the cut.
pub struct HeaderPairs(Vec<u8>);

impl HeaderPairs {
    /// The pairs as bytes, in the host's order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let bytes = self.0.as_slice();
        let word = move |at: usize| -> Option<usize> {
            let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
            Some(u32::from_le_bytes(b) as usize)
        };
        let count = word(0).unwrap_or(0);
        // Past the end when the count lies: nothing is read then.
        let mut data = count.saturating_mul(8).saturating_add(4);
        let mut i = 0;
        std::iter::from_fn(move || {
            if i >= count {
                return None;
            }
            let (k, v) = (word(4 + i * 8)?, word(8 + i * 8)?);
            let slice = |from: usize, len: usize| bytes.get(from..from.checked_add(len)?);
            // The name first: once it is inside the bytes, `data + k + 1` cannot overflow.
            let name = slice(data, k)?;
            let value = slice(data + k + 1, v)?;
            data += k + v + 2;
            i += 1;
            Some((name, value))
        })
    }

    /// The first value of `name` (ASCII case ignored; a name that is not UTF-8 never matches
    /// one looked for, since names looked for are tokens).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// One header's value as bytes; `None` when absent.
pub fn header(map: HeaderMap, name: &str) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the name is read during the call; the host writes a pointer and a length.
    let code = unsafe {
        raw::proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    (code == 0).then(|| owned(data, size))
}

/// Sets a header, replacing any value it had.
pub fn set_header(map: HeaderMap, name: &str, value: &str) {
    // SAFETY: both strings are read during the call.
    unsafe {
        raw::proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
}

/// A host property by path (`["source", "address"]`); `None` when the host has none.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    get_property(path).ok().flatten()
}

/// Whether the host answers a property (an empty value included), rather than refusing it.
pub fn property_answered(path: &[&str]) -> bool {
    get_property(path).is_ok()
}

/// A property as the host answered it: its value (`None` when answered without one), or the
/// status it was refused with.
fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let p = property_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the path is read during the call; the host writes a pointer and a length.
    let code = unsafe { raw::proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) };
    Status::result(code)?;
    Ok((!data.is_null()).then(|| owned(data, size)))
}

/// A property path as hosts read it: the segments separated by NUL bytes, none after the last
/// (Kong reads each NUL as a dot, and `ngx.pid.` is no variable).
fn property_path(path: &[&str]) -> Vec<u8> {
    let mut p = Vec::with_capacity(path.iter().map(|s| s.len() + 1).sum());
    for segment in path {
        p.extend_from_slice(segment.as_bytes());
        p.push(0);
    }
    p.pop();
    p
}

/// A shared-data value and its CAS; `None` when the key is not there or unreadable.
pub fn shared_get(key: &str) -> Option<(Vec<u8>, u32)> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: the key is read during the call; the host writes to live locals.
    let code = unsafe {
        raw::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    };
    if code != 0 || (data.is_null() && cas == 0) {
        return None;
    }
    Some((owned(data, size), cas))
}

/// Writes a shared-data value if its CAS is still `cas` (0: whatever it is).
pub fn shared_set(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: key and value are read during the call.
    Status::result(unsafe {
        raw::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Resumes a request paused in its headers or body.
pub fn continue_request() {
    // SAFETY: no pointers (0 is the HTTP request stream).
    unsafe { raw::proxy_continue_stream(0) };
}

/// Answers the request from the filter.
pub fn send_local_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), Status> {
    let headers = serialize_pairs(headers);
    // SAFETY: body and headers are read during the call.
    Status::result(unsafe {
        raw::proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Sends a call to `upstream` (a cluster in Envoy, `host:port` in Kong); its answer comes to
/// the context that sent it, with the returned token.
pub fn http_call(
    upstream: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_ms: u64,
) -> Result<u32, Status> {
    let headers = serialize_pairs(headers);
    let no_trailers = serialize_pairs(&[]);
    let mut token = 0u32;
    // SAFETY: every buffer is read during the call; the host writes the token to a local.
    let code = unsafe {
        raw::proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            no_trailers.as_ptr(),
            no_trailers.len(),
            u32::try_from(timeout_ms).unwrap_or(u32::MAX),
            &mut token,
        )
    };
    Status::result(code)?;
    register_callout(token);
    Ok(token)
}

/// Makes `context` the one later calls act on (an answer to a call comes to the root).
pub(super) fn set_effective_context(context: u32) {
    // SAFETY: no pointers.
    unsafe { raw::proxy_set_effective_context(context) };
}

/// Defines a metric; `None` when the host refuses.
pub fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: the name is read during the call; the host writes the id to a local.
    let code = unsafe { raw::proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
    (code == 0).then_some(id)
}

/// Adds to a counter.
pub fn increment_metric(id: u32, delta: i64) {
    // SAFETY: no pointers.
    unsafe { raw::proxy_increment_metric(id, delta) };
}

/// Sets a gauge.
pub fn record_metric(id: u32, value: u64) {
    // SAFETY: no pointers.
    unsafe { raw::proxy_record_metric(id, value) };
}

/// proxy-wasm's map encoding: the pair count, each pair's two lengths (u32, little-endian),
/// then each name and value followed by a NUL byte.
fn serialize_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_and_a_truncated_map_keeps_what_came_before_the_cut() {
        let pairs = vec![
            (":status".to_string(), "200".to_string()),
            ("x-v".to_string(), "\",\"key\":\"x".to_string()),
            ("empty".to_string(), String::new()),
        ];
        let bytes = serialize_pairs(&pairs);
        let pairs_of = |b: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
            HeaderPairs(b.to_vec())
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()
        };
        let expect: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(pairs_of(&bytes), expect);
        let map = HeaderPairs(bytes.clone());
        assert_eq!(map.get("X-V"), Some(&b"\",\"key\":\"x"[..]));
        assert_eq!(map.get("empty"), Some(&b""[..]));
        assert_eq!(map.get("x"), None);
        // Cut inside the second value: only the first pair survives.
        let cut = bytes.len() - 10;
        assert_eq!(pairs_of(&bytes[..cut]), expect[..1].to_vec());
        // A count far beyond the bytes neither panics nor allocates for it: the values would
        // start past the end, so nothing is read.
        let mut lying = bytes.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(pairs_of(&lying).is_empty());
        assert!(pairs_of(&[1, 0]).is_empty());
        assert!(pairs_of(&[]).is_empty());
    }

    #[test]
    fn property_paths_separate_segments_and_end_without_a_separator() {
        assert_eq!(property_path(&["ngx", "pid"]), b"ngx\0pid".to_vec());
        assert_eq!(
            property_path(&["xds", "node", "id"]),
            b"xds\0node\0id".to_vec()
        );
        assert_eq!(
            property_path(&["plugin_root_id"]),
            b"plugin_root_id".to_vec()
        );
    }

    #[test]
    fn a_header_value_that_is_not_utf8_is_kept_as_bytes_and_a_bad_name_never_matches() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&[0xff, b'a', 0, 0xe9, b'\r', 0]);
        let map = HeaderPairs(bytes);
        let back: Vec<_> = map.iter().collect();
        assert_eq!(back, vec![(&[0xff, b'a'][..], &[0xe9, b'\r'][..])]);
        // Neither the name with its byte replaced nor the bare tail matches.
        assert_eq!(map.get("\u{fffd}a"), None);
        assert_eq!(map.get("a"), None);
    }
}
