//! Just enough URL parsing for ingest and sync endpoints: scheme, host, port and path.

use std::fmt;

/// An `http`/`https` endpoint split into what a proxy-wasm call needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `true` for https.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port, defaulted from the scheme.
    pub port: u16,
    /// Path without a trailing slash (`""` for the root).
    pub path: String,
}

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(pub &'static str);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (expected http://host[:port][/path] or https://…)",
            self.0
        )
    }
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/path]`; query strings and fragments are refused.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(UrlError("the scheme must be http or https"));
        };
        if rest.contains(['?', '#']) {
            return Err(UrlError("query strings and fragments are not allowed"));
        }
        if rest.contains('@') {
            return Err(UrlError(
                "credentials in the URL are not allowed; use the API key",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(p) => p,
            None if tls => 443,
            None => 80,
        };
        Ok(Endpoint {
            tls,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `host` or `host:port` when the port is not the scheme's default (an HTTP `:authority`).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `host:port` always, the upstream form Kong's dispatch expects.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path of `suffix` under this endpoint, unless the endpoint already ends with it.
    pub fn path_with(&self, suffix: &str) -> String {
        if self.path.ends_with(suffix) {
            self.path.clone()
        } else {
            format!("{}{}", self.path, suffix)
        }
    }

    /// The endpoint written back as a URL.
    pub fn to_url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.authority(),
            self.path
        )
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), UrlError> {
    if authority.is_empty() {
        return Err(UrlError("the host is missing"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or(UrlError("an IPv6 literal lacks its ']'"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UrlError("unexpected text after the IPv6 literal")),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err(UrlError("the host has characters that are not allowed"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(UrlError("the port must be 1..=65535")),
        },
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let e = Endpoint::parse("https://ingest.aforo.ai").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path.as_str()),
            (true, "ingest.aforo.ai", 443, "")
        );
        assert_eq!(e.authority(), "ingest.aforo.ai");
        assert_eq!(e.host_port(), "ingest.aforo.ai:443");
        assert_eq!(e.path_with("/v1/events"), "/v1/events");

        let e = Endpoint::parse("http://127.0.0.1:8787/base/").unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8787");
        assert_eq!(e.path_with("/v1/events"), "/base/v1/events");

        let e = Endpoint::parse("http://agent:8787/v1/events").unwrap();
        assert_eq!(e.path_with("/v1/events"), "/v1/events");

        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.authority(), "[::1]:9000");
    }

    #[test]
    fn refuses_what_cannot_be_dispatched() {
        for bad in [
            "ftp://x",
            "ingest.aforo.ai",
            "http://",
            "http://host:0",
            "http://host:99999",
            "http://host/path?q=1",
            "http://user:pw@host",
            "http://ho st",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
