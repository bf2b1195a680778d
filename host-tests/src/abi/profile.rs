//! Host profiles: where Envoy and Kong's ngx_wasm_module behave differently.

/// Which proxy the harness imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Envoy (and Istio, MuleSoft Flex): clusters, `cas = 0` overwrites, `None` stores empty.
    Envoy,
    /// Kong with proxy-wasm (ngx_wasm_module; the example runs on 3.7–3.9): `host:port` dispatch, `cas = 0` means "must not exist",
    /// `None` deletes, CRC32 key identity, NYI functions trap, dispatch only in some phases.
    Kong,
}

impl Profile {
    /// Parses `envoy` or `kong`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "envoy" => Some(Profile::Envoy),
            "kong" => Some(Profile::Kong),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Envoy => "envoy",
            Profile::Kong => "kong",
        }
    }
}

/// CRC32 (IEEE), the only key identity ngx_wasm_module's shared KV uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_known_vector() {
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
    }
}
