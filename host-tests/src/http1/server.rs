//! A threaded HTTP/1.1 server on 127.0.0.1 with a free port, stopped when dropped.

use super::wire::{read_body, read_head, reason, write_message, Request, Response};
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Answers one request.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A running server; dropping it stops it.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connection(stream: TcpStream, handler: Handler, stop: Arc<AtomicBool>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while !stop.load(Ordering::Relaxed) {
        let Some((start, headers)) = read_head(&mut reader)? else {
            return Ok(());
        };
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let body = read_body(&mut reader, &headers, false)?;
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let resp = handler(Request {
            method,
            path,
            headers,
            body,
        });
        write_message(
            &mut writer,
            &format!("HTTP/1.1 {} {}", resp.status, reason(resp.status)),
            &resp.headers,
            &resp.body,
        )?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// Serves `handler` on `127.0.0.1:<free port>` (or `port` when not 0).
pub fn serve_on(port: u16, handler: Handler) -> io::Result<Server> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let h = handler.clone();
            let st = s.clone();
            std::thread::spawn(move || {
                let _ = connection(conn, h, st);
            });
        }
    });
    Ok(Server {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// Serves `handler` on a free loopback port.
pub fn serve(handler: Handler) -> io::Result<Server> {
    serve_on(0, handler)
}
