//! The Redis state backend: quota counters, rate-limit buckets and the dedup window shared by
//! every agent of a deployment, in one Redis primary or a Redis Cluster. This file holds the
//! link (connections, timeouts, the outage state, the key layout); `counters.rs` the counter store, `claims.rs` the atomic dedup-and-count of events,
//! `leases.rs` quota leases.

pub mod claims;
pub mod counters;
pub mod leases;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{Cmd, Connection, ConnectionLike, RedisError, RedisResult, Value};
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
pub(crate) const CAS_SCRIPT: &str =
    concat!(include_str!("counter_value.lua"), include_str!("cas.lua"));

/// A quota lease's renewal and give-back (see `lease.lua` for KEYS and ARGV).
pub(crate) const LEASE_SCRIPT: &str =
    concat!(include_str!("counter_value.lua"), include_str!("lease.lua"));

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

/// Where the keys live.
enum Client {
    /// One primary (a managed Redis with failover behind one address is one too).
    Single(redis::Client),
    /// A Redis Cluster: keys carry hash tags, the client follows MOVED/ASK and failovers.
    Cluster(ClusterClient),
}

/// A connection to either.
pub enum Conn {
    /// To one primary.
    Single(Connection),
    /// To a cluster (a connection per node, routed by key).
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    /// Commands of single keys each, sent together: one pipeline to one primary, one per node
    /// in a cluster (a plain pipeline there goes where its first key lives).
    pub fn pipeline(&mut self, cmds: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd);
                }
                p.query(c)
            }
            Conn::Cluster(c) => {
                let mut p = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    p.add_command(cmd);
                }
                p.query(c)
            }
        }
    }

    /// Runs a script by its SHA-1 (`cmd` is its `EVALSHA`); a node that does not have it (a
    /// restarted one, a replica just promoted) is sent the script itself (`EVAL`, which also
    /// keeps it), on the node that holds the keys.
    pub fn script<T: redis::FromRedisValue>(&mut self, source: &str, cmd: &Cmd) -> RedisResult<T> {
        match cmd.query(self) {
            Err(e) if is_no_script(&e) => with_source(cmd, source).query(self),
            other => other,
        }
    }
}

/// Whether a node answered that it does not have the script.
fn is_no_script(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// An `EVALSHA` as `EVAL` with the script's source (the same keys and arguments).
fn with_source(evalsha: &Cmd, source: &str) -> Cmd {
    let mut eval = redis::cmd("EVAL");
    eval.arg(source);
    for arg in evalsha.args_iter().skip(2) {
        if let redis::Arg::Simple(a) = arg {
            eval.arg(a);
        }
    }
    eval
}

impl Conn {
    /// `script`, then `WAIT` on the same node for `replicas` of its replicas to have the
    /// script's writes: whether they did within `timeout_ms` (always true with 0 replicas). A
    /// write no replica has is lost if its primary fails over, so callers count it only once
    /// acknowledged.
    pub fn script_acked<T: redis::FromRedisValue>(
        &mut self,
        source: &str,
        cmd: &Cmd,
        replicas: u8,
        timeout_ms: u64,
    ) -> RedisResult<(T, bool)> {
        if replicas == 0 {
            return self.script(source, cmd).map(|v| (v, true));
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        let mut p = redis::pipe();
        p.add_command(cmd.clone()).add_command(wait.clone());
        // A plain pipeline goes where its first command's key lives: WAIT asks that node.
        let (v, acks): (T, i64) = match p.query(self) {
            Err(e) if is_no_script(&e) => {
                let mut p = redis::pipe();
                p.add_command(with_source(cmd, source)).add_command(wait);
                p.query(self)?
            }
            other => other?,
        };
        Ok((v, acks >= i64::from(replicas)))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Single(c) => c.check_connection(),
            Conn::Cluster(c) => c.check_connection(),
        }
    }
    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
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
    client: Client,
    pool: Mutex<Vec<Conn>>,
    timeout: Duration,
    prefix: String,
    node_id: String,
    /// Replicas that must have a claim or a lease before it counts (`WAIT`).
    wait_replicas: u8,
    scripts: Scripts,
    down: AtomicBool,
    next_attempt: Mutex<Option<Instant>>,
    last_error: Mutex<String>,
    /// Where Redis is (host:port, never the password), for logs.
    pub display: String,
}

impl RedisLink {
    /// A link to `url` (`redis://[user:password@]host:port[/db]`, `rediss://…` for TLS; with
    /// `cluster`, the comma-separated addresses of some of the cluster's nodes).
    /// Nothing is contacted yet: an agent starts even when Redis is down.
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        prefix: &str,
        timeout: Duration,
        node_id: &str,
        cluster: bool,
        wait_replicas: u8,
    ) -> Result<RedisLink, String> {
        let bad_url = |e: RedisError| {
            format!(
                "state: {e} (expected redis://[user:password@]host:port[/db] or rediss://… for TLS; a Redis Cluster's nodes comma-separated with redis_cluster set; percent-encode a password's special characters)"
            )
        };
        let pem = match ca_file {
            None => None,
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("redis_ca_file {}: {e}", path.display()))?,
            ),
        };
        let certs = |pem: Vec<u8>| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        let (client, display) = if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            let mut b = ClusterClientBuilder::new(seeds.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // A failover is waited out by the reconciler, not by the request at hand.
                .retries(1)
                .min_retry_wait(10)
                .max_retry_wait(timeout.as_millis().try_into().unwrap_or(u64::MAX));
            if let Some(pem) = pem {
                b = b.certs(certs(pem));
            }
            let client = b.build().map_err(bad_url)?;
            let shown: Vec<String> = seeds
                .iter()
                .map(|s| {
                    redis::Client::open(*s)
                        .map(|c| address(&c))
                        .unwrap_or_else(|_| "redis".into())
                })
                .collect();
            (
                Client::Cluster(client),
                format!("the cluster of {}", shown.join(", ")),
            )
        } else {
            let client = match pem {
                None => redis::Client::open(url).map_err(bad_url)?,
                Some(pem) => redis::Client::build_with_tls(url, certs(pem))
                    .map_err(|e| format!("redis_ca_file: {e}"))?,
            };
            let display = address(&client);
            (Client::Single(client), display)
        };
        Ok(RedisLink {
            client,
            pool: Mutex::new(Vec::new()),
            timeout,
            prefix: prefix.to_string(),
            node_id: node_id.to_string(),
            wait_replicas,
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

    /// The Redis key of a name that a script uses with others of `tag` (one customer's counters
    /// and event ids): in a cluster `{tag}` follows the prefix, so they share a hash slot; with
    /// one primary the key is the name alone, the layout deployments already have.
    pub fn key_in(&self, tag: &str, name: &str) -> String {
        if !self.is_cluster() {
            return self.key(name);
        }
        let mut k = String::with_capacity(self.prefix.len() + tag.len() + name.len() + 2);
        k.push_str(&self.prefix);
        k.push('{');
        k.push_str(tag);
        k.push('}');
        k.push_str(name);
        k
    }

    /// Replicas that must acknowledge a claim or a lease, and how long to wait for them (ms):
    /// half the call timeout, so the answer comes back before the connection's read gives up.
    pub fn wait_replicas(&self) -> (u8, u64) {
        let ms: u64 = self.timeout.as_millis().try_into().unwrap_or(u64::MAX);
        (self.wait_replicas, (ms / 2).max(1))
    }

    /// Whether the keys live in a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.client, Client::Cluster(_))
    }

    /// This agent's id, the owner recorded with each event it claims.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether the last attempt failed (and the next one is not due yet).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn connect(&self) -> Result<Conn, RedisError> {
        let mut c = match &self.client {
            Client::Single(client) => {
                let c = client.get_connection_with_timeout(self.timeout)?;
                c.set_read_timeout(Some(self.timeout))?;
                c.set_write_timeout(Some(self.timeout))?;
                Conn::Single(c)
            }
            Client::Cluster(client) => Conn::Cluster(Box::new(client.get_connection()?)),
        };
        // A cluster's nodes are given a script on first use (`Conn::script`).
        let sources: &[&str] = match c {
            Conn::Single(_) => &[CAS_SCRIPT, claims::CLAIM_SCRIPT, LEASE_SCRIPT],
            Conn::Cluster(_) => &[],
        };
        for src in sources {
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
        f: impl Fn(&mut Conn, &Scripts) -> Result<T, RedisError>,
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
        let was_pooled = pooled.is_some();
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
        let mut answer = f(&mut conn, &self.scripts);
        if let (Err(e), Conn::Cluster(_), true) = (&answer, &conn, was_pooled) {
            if is_unreachable(e) {
                // A pooled cluster connection knows the slots as they were: after a failover
                // its map still names the dead primary. Every pooled one does, so they go, and
                // the call is made once more on a fresh connection, which asks the live nodes
                // where the slots are now. (A resent script errs towards under-admission: a
                // claim is found as this agent's own, a CAS sees its own write and re-reads, a
                // lease granted twice leaves one unspent.)
                if let Ok(mut p) = self.pool.lock() {
                    p.clear();
                }
                if let Ok(c) = self.connect() {
                    conn = c;
                    answer = f(&mut conn, &self.scripts);
                }
            }
        }
        match answer {
            Ok(v) => {
                self.mark_up();
                if let Ok(mut p) = self.pool.lock() {
                    if p.len() < POOL {
                        p.push(conn);
                    }
                }
                Ok(v)
            }
            // In a cluster one node is unreachable (failing over, or gone) even to a fresh
            // connection: the calls for its slots fail, the others go on.
            Err(e) if is_unreachable(&e) && matches!(conn, Conn::Cluster(_)) => {
                Err(StateError::Down(e.to_string()))
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

/// Where a client connects (host:port, never the password), for logs.
fn address(client: &redis::Client) -> String {
    match &client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(h, p) => format!("redis://{h}:{p}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        redis::ConnectionAddr::Unix(path) => format!("redis+unix://{}", path.display()),
        _ => "redis".to_string(),
    }
}

fn is_unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.to_string().contains("LOADING")
}
