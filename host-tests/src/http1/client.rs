//! A keep-alive HTTP/1.1 client for one host.

use super::wire::{read_body, read_head, write_message, Response};
use std::io::{self, BufReader};
use std::net::TcpStream;
use std::time::Duration;

/// A connection to `host:port`, reopened when the server closes it.
pub struct Client {
    addr: String,
    authority: String,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

impl Client {
    /// A client for `host:port`.
    pub fn new(addr: &str) -> Self {
        Client {
            addr: addr.to_string(),
            authority: addr.to_string(),
            conn: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Sets the read timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn connect(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            self.conn = Some(BufReader::new(s));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))
    }

    /// Sends one request; retries once on a fresh connection if a reused one was closed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> io::Result<Response> {
        let reused = self.conn.is_some();
        match self.try_request(method, path, headers, body) {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.conn = None;
                self.try_request(method, path, headers, body)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut all = Vec::with_capacity(headers.len() + 1);
        if !headers.iter().any(|(k, _)| k == "host") {
            all.push(("host".to_string(), self.authority.clone()));
        }
        all.extend(headers.iter().cloned());
        let start = format!("{method} {path} HTTP/1.1");
        let conn = self.connect()?;
        write_message(conn.get_mut(), &start, &all, body)?;
        let (status_line, headers) = read_head(conn)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(conn, &headers, close)?
        };
        if close {
            self.conn = None;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
