//! The Redis state backend: quota counters, rate-limit buckets and the dedup window shared by
//! every agent of a deployment. This file holds the link (connections, timeouts, the outage
//! state); `counters.rs` the counter store, `claims.rs` the atomic dedup-and-count of events,
//! `leases.rs` quota leases.

pub mod claims;
pub mod counters;
pub mod leases;

use redis::{Connection, RedisError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an unreachable Redis is left alone before the next attempt (requests in between
/// fall back at once instead of each waiting for a connect timeout).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Connections kept open for reuse.
const POOL: usize = 16;

/// The compare-and-swap write of one counter (the component's `counters` import contract).
/// KEYS[1] counter hash; ARGV value, expected token, expiry (ms since the epoch) for a new
/// window. A value of an older window than the stored one is refused (an agent whose clock lags
/// at a window's end must not reset the new window). Within a window the expiry is left alone:
/// the claims set quota counters' to the window's real reset. Tokens stay below 2^31 (the local
/// copy's carry the top bit).
const CAS_SCRIPT: &str = include_str!("cas.lua");

/// A quota lease's renewal and give-back (see `lease.lua` for KEYS and ARGV).
const LEASE_SCRIPT: &str = include_str!("lease.lua");

/// Why Redis could not be used.
#[derive(Debug)]
pub enum StateError {
    /// Unreachable (down, timed out, refused): decisions fall back to local state.
    Down(String),
    /// Reachable but the command failed (a script error, wrong type, out of memory).
    Failed(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Down(m) => write!(f, "Redis unreachable: {m}"),
            StateError::Failed(m) => write!(f, "Redis refused a command: {m}"),
        }
    }
}

/// The scripts loaded on every new connection, by their SHA-1 (for `EVALSHA`).
pub struct Scripts {
    /// The counter compare-and-swap.
    pub cas: String,
    /// The event claim.
    pub claim: String,
    /// The quota lease.
    pub lease: String,
}

/// One Redis deployment: a client, a pool of connections, and whether it is reachable.
pub struct RedisLink {
    client: redis::Client,
    pool: Mutex<Vec<Connection>>,
    timeout: Duration,
    prefix: String,
    node_id: String,
    scripts: Scripts,
    down: AtomicBool,
    next_attempt: Mutex<Option<Instant>>,
    last_error: Mutex<String>,
    /// Where Redis is (host:port, never the password), for logs.
    pub display: String,
}

impl RedisLink {
    /// A link to `url` (`redis://[user:password@]host:port[/db]`, `rediss://…` for TLS).
    /// Nothing is contacted yet: an agent starts even when Redis is down.
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        prefix: &str,
        timeout: Duration,
        node_id: &str,
    ) -> Result<RedisLink, String> {
        let bad_url = |e: RedisError| {
            format!(
                "state: {e} (expected redis://[user:password@]host:port[/db] or rediss://… for TLS)"
            )
        };
        let client = match ca_file {
            None => redis::Client::open(url).map_err(bad_url)?,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("redis_ca_file {}: {e}", path.display()))?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
                .map_err(|e| format!("redis_ca_file {}: {e}", path.display()))?
            }
        };
        let display = match &client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(h, p) => format!("redis://{h}:{p}"),
            redis::ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
            redis::ConnectionAddr::Unix(path) => format!("redis+unix://{}", path.display()),
            _ => "redis".to_string(),
        };
        Ok(RedisLink {
            client,
            pool: Mutex::new(Vec::new()),
            timeout,
            prefix: prefix.to_string(),
            node_id: node_id.to_string(),
            scripts: Scripts {
                cas: redis::Script::new(CAS_SCRIPT).get_hash().to_string(),
                claim: redis::Script::new(claims::CLAIM_SCRIPT)
                    .get_hash()
                    .to_string(),
                lease: redis::Script::new(LEASE_SCRIPT).get_hash().to_string(),
            },
            down: AtomicBool::new(false),
            next_attempt: Mutex::new(None),
            last_error: Mutex::new(String::new()),
            display,
        })
    }

    /// The Redis key of a name (the configured prefix in front).
    pub fn key(&self, name: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + name.len());
        k.push_str(&self.prefix);
        k.push_str(name);
        k
    }

    /// This agent's id, the owner recorded with each event it claims.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether the last attempt failed (and the next one is not due yet).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        let mut c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        for src in [CAS_SCRIPT, claims::CLAIM_SCRIPT, LEASE_SCRIPT] {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(src)
                .query::<String>(&mut c)?;
        }
        Ok(c)
    }

    fn mark_down(&self, why: &str) {
        if let Ok(mut n) = self.next_attempt.lock() {
            *n = Some(Instant::now() + RETRY_AFTER);
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = why.to_string();
        }
        if !self.down.swap(true, Ordering::SeqCst) {
            eprintln!(
                "aforo-agent: Redis at {} unreachable ({why}); deciding on local state, events kept for reconciliation",
                self.display
            );
        }
        if let Ok(mut p) = self.pool.lock() {
            p.clear();
        }
    }

    fn mark_up(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            eprintln!(
                "aforo-agent: Redis at {} reachable again; reconciling",
                self.display
            );
        }
    }

    /// Runs `f` on a connection. An unreachable Redis answers `Down` at once until the next
    /// attempt is due, so an outage costs a request no connect timeout.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection, &Scripts) -> Result<T, RedisError>,
    ) -> Result<T, StateError> {
        if self.is_down() {
            let due = self
                .next_attempt
                .lock()
                .map(|n| n.is_none_or(|t| Instant::now() >= t))
                .unwrap_or(true);
            if !due {
                let last = self
                    .last_error
                    .lock()
                    .map(|e| e.clone())
                    .unwrap_or_default();
                return Err(StateError::Down(format!(
                    "{} at {} (retried every second)",
                    last, self.display
                )));
            }
        }
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    self.mark_down(&e.to_string());
                    return Err(StateError::Down(e.to_string()));
                }
            },
        };
        match f(&mut conn, &self.scripts) {
            Ok(v) => {
                self.mark_up();
                if let Ok(mut p) = self.pool.lock() {
                    if p.len() < POOL {
                        p.push(conn);
                    }
                }
                Ok(v)
            }
            Err(e) if is_unreachable(&e) => {
                self.mark_down(&e.to_string());
                Err(StateError::Down(e.to_string()))
            }
            // A restarted Redis forgets loaded scripts: this connection is dropped, the next
            // one loads them again.
            Err(e) => Err(StateError::Failed(e.to_string())),
        }
    }
}

fn is_unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.to_string().contains("LOADING")
}
