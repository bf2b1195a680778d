//! Running the real aforo-agent binary in tests: free port, temporary data directory, always
//! killed on drop (also when an assertion fails).

#![allow(dead_code)]

pub mod gateway;
pub mod node;
pub mod redis_cluster;
pub mod redis_server;
pub mod table;

use aforo_host_tests::envoy::free_port;
use aforo_host_tests::http1::{Client, Response};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "adm_test_0123456789abcdef";
pub const SANDBOX: &str = "sk_test_agent_tests";
pub const LIVE: &str = "sk_live_agent_tests";

pub struct Agent {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    own_dir: bool,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("aforo-agent-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn catalog() -> Value {
    serde_json::json!({
        "customers": {
            "acme": {"features": {"search": {"metric": "api_calls", "quota": 5}, "export": {"allowed": false}}},
            "globex": {"features": {"search": {"metric": "api_calls", "quota": 1000}}}
        },
        "consumer_keys": [{"key_id": "acme-static", "key": "ck_static_acme_key", "customer_id": "acme"}],
        "plan": {"currency": "USD", "charges": [{"id": "calls", "metric": "api_calls", "model": "unit", "unit_amount": "0.01"}]}
    })
}

impl Agent {
    /// Starts the agent with `extra` flags, a catalog, in a fresh data directory.
    pub fn start(tag: &str, catalog: &Value, extra: &[&str]) -> Agent {
        let dir = temp_dir(tag);
        let cat = dir.join("catalog.json");
        std::fs::write(&cat, catalog.to_string()).unwrap();
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--catalog".into(),
            cat.display().to_string(),
            "--admin-key".into(),
            ADMIN.into(),
            "--component".into(),
            aforo_host_tests::artifacts::policy_component()
                .unwrap()
                .display()
                .to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut a = Agent {
            child: None,
            port,
            dir,
            args,
            own_dir: true,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_aforo-agent"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("agent.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = Client::new(&self.addr())
                .with_timeout(Duration::from_secs(2))
                .request("GET", "/healthz", &[], &[])
            {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    panic!("the agent exited ({s}): {}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// SIGKILL, no shutdown.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sets `flag` to `value` (or removes it, with `None`) for the next start.
    pub fn set_flag(&mut self, flag: &str, value: Option<&str>) {
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            self.args.drain(i..(i + 2).min(self.args.len()));
        }
        if let Some(v) = value {
            self.args.push(flag.to_string());
            self.args.push(v.to_string());
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn call(&self, method: &str, path: &str, key: &str, body: &Value) -> Response {
        let h = vec![
            ("authorization".to_string(), format!("Bearer {key}")),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        let b = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        Client::new(&self.addr())
            .request(method, path, &h, &b)
            .unwrap()
    }

    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Client::new(&self.addr())
            .request(method, path, &h, body)
            .unwrap()
    }
}

pub fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

pub fn code(r: &Response) -> String {
    body(r)["error"]["code"].as_str().unwrap_or("").to_string()
}

/// The field an error names (`null` when it names none).
#[allow(dead_code)]
pub fn field(r: &Response) -> Value {
    body(r)["error"]["field"].clone()
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
