//! A real redis-server (the Debian package; `scripts/setup.sh` installs it) started with the
//! deploy example's `redis.conf` (append-only file, no eviction, the `aforo` ACL user the
//! agents log in as) on a free loopback port, optionally with TLS only. Killed on drop.

use aforo_host_tests::envoy::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the example's `aforo` user.
pub const AFORO_PASSWORD: &str = "change-me-to-a-long-random-secret";
pub const ADMIN: &str = "admin-of-the-test";

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    /// With TLS: the CA file agents must trust.
    pub ca: Option<PathBuf>,
    /// More `redis-server` arguments (cluster mode).
    extra: Vec<String>,
}

/// Where a test's agents keep their shared state: one redis-server, or a Redis Cluster.
pub trait SharedState {
    /// The agent flags that point it there.
    fn agent_flags(&self) -> Vec<String>;
    /// The count a customer's quota counter holds (this month's; 0 when absent).
    fn quota_used(&self, customer: &str, feature: &str) -> u64;
}

impl SharedState for RedisServer {
    fn agent_flags(&self) -> Vec<String> {
        let mut f = vec!["--state".to_string(), self.url()];
        if let Some(ca) = &self.ca {
            f.extend(["--redis-ca-file".to_string(), ca.display().to_string()]);
        }
        f
    }
    fn quota_used(&self, customer: &str, feature: &str) -> u64 {
        let mut con = self.connection().unwrap();
        let v: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(format!("aforo:q:sandbox:{customer}:{feature}"))
            .arg("v")
            .query(&mut con)
            .unwrap();
        v.map(|b| u64::from_le_bytes(b[8..16].try_into().unwrap()))
            .unwrap_or(0)
    }
}

pub fn example(file: &str) -> PathBuf {
    aforo_host_tests::artifacts::repo_root()
        .join("deploy-examples/multi-node")
        .join(file)
}

impl RedisServer {
    pub fn start(tag: &str) -> RedisServer {
        let dir = super::temp_dir(&format!("redis-{tag}"));
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir,
            ca: None,
            extra: Vec::new(),
        };
        r.spawn();
        r
    }

    /// With more `redis-server` arguments, made from the server's port.
    pub fn start_with(tag: &str, extra: impl FnOnce(u16) -> Vec<String>) -> RedisServer {
        let dir = super::temp_dir(&format!("redis-{tag}"));
        let port = free_port();
        let mut r = RedisServer {
            child: None,
            port,
            dir,
            ca: None,
            extra: extra(port),
        };
        r.spawn();
        r
    }

    /// TLS only (no plain port), with a CA and a certificate for 127.0.0.1 made by openssl.
    pub fn start_tls(tag: &str) -> RedisServer {
        let dir = super::temp_dir(&format!("redis-{tag}"));
        let sh = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("openssl: {e} (scripts/setup.sh installs it)"));
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=aforo test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        sh(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
        sh(&[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "redis.crt",
        ]);
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            ca: Some(dir.join("ca.crt")),
            dir,
            extra: Vec::new(),
        };
        r.spawn();
        r
    }

    /// The URL agents use (the example's `aforo` user).
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://aforo:{AFORO_PASSWORD}@127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("redis-server");
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let conf = example("redis.conf").display().to_string();
        let mut args: Vec<String> = vec![conf];
        let mut set = |line: &[&str]| args.extend(line.iter().map(|s| s.to_string()));
        set(&["--bind", "127.0.0.1", "--dir", &dir, "--daemonize", "no"]);
        // The test's own user, for inspecting keys (the example has no anonymous user).
        set(&[
            "--user",
            "admin",
            "on",
            &format!(">{ADMIN}"),
            "~*",
            "&*",
            "+@all",
        ]);
        match &self.ca {
            None => set(&["--port", &port]),
            Some(_) => set(&[
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                "redis.crt",
                "--tls-key-file",
                "redis.key",
                "--tls-ca-cert-file",
                "ca.crt",
                "--tls-auth-clients",
                "no",
            ]),
        }
        args.extend(self.extra.iter().cloned());
        let child = Command::new(bin)
            .args(&args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(
                std::fs::File::create(self.dir.join("redis.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): run scripts/setup.sh, which installs it")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Ours, not another test's server that got the same port first.
            if let Some(mut c) = self.connection() {
                let dir: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("dir")
                    .query(&mut c)
                    .unwrap_or_default();
                let ours = dir.get(1).map(std::path::PathBuf::from)
                    == std::fs::canonicalize(&self.dir).ok();
                assert!(
                    ours,
                    "port {} is another redis-server's ({dir:?})",
                    self.port
                );
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "redis-server exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start: {}",
                std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A connection as the test's admin user.
    pub fn connection(&self) -> Option<redis::Connection> {
        let url = self.url().replace(
            &format!("aforo:{AFORO_PASSWORD}"),
            &format!("admin:{ADMIN}"),
        );
        let c = match &self.ca {
            None => redis::Client::open(url).ok()?,
            Some(ca) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca).ok()?),
                },
            )
            .ok()?,
        };
        let mut con = c.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
        redis::cmd("PING").query::<String>(&mut con).ok()?;
        Some(con)
    }

    /// SIGKILL: the process dies mid-write, as a crashed machine's would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (Redis finishes its append-only file) and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
