//! Runs the Kong 3.10+ Lua plugin of `deploy-examples/kong/lua` for real under LuaJIT, with a
//! small PDK shim (`spec/pdk_shim.lua`), against the agent: the plugin's own `handler.lua` makes
//! the HTTP calls.

use super::Outcome;
use std::path::Path;
use std::process::Command;

/// Whether LuaJIT with LuaSocket and lua-cjson is installed (scripts/setup.sh installs them).
pub fn luajit_ready() -> Result<(), String> {
    let out = Command::new("luajit")
        .args(["-e", "require('socket.http'); require('cjson.safe')"])
        .output()
        .map_err(|e| format!("luajit: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// Runs `spec/<script>` under LuaJIT with `args`; what it printed, as JSON.
fn run_spec(root: &Path, script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    if let Err(e) = luajit_ready() {
        panic!(
            "the Kong contract needs LuaJIT, LuaSocket and lua-cjson (apt-get install luajit lua-socket lua-cjson; scripts/setup.sh does): {e}"
        );
    }
    let out = Command::new("luajit")
        .arg(root.join("lua/spec").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs every case of the table through the plugin; outcomes in case order.
pub fn run_table(root: &Path, table: &Path, agent_url: &str, gateway_key: &str) -> Vec<Outcome> {
    let v = run_spec(
        root,
        "contract.lua",
        &[table.as_os_str(), agent_url.as_ref(), gateway_key.as_ref()],
    );
    if let Some(logs) = v["logs"].as_array() {
        assert!(logs.is_empty(), "the plugin logged problems: {logs:?}");
    }
    v["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| Outcome {
            status: o["status"].as_u64().unwrap() as u16,
            decision: o["code"].as_str().unwrap_or("").to_string(),
            retry_after: o["retry_after"].as_str().map(str::to_string),
        })
        .collect()
}

/// Runs `requests` (`spec/requests.lua`: header values in hex, so any bytes) through the plugin
/// configured with `conf` over the defaults; its outcomes, the bodies it sent and its logs.
pub fn run_requests(
    root: &Path,
    agent_url: &str,
    gateway_key: &str,
    conf: serde_json::Value,
    requests: Vec<serde_json::Value>,
) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!(
        "aforo-kong-requests-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("requests.json");
    std::fs::write(
        &file,
        serde_json::json!({"conf": conf, "requests": requests}).to_string(),
    )
    .unwrap();
    let v = run_spec(
        root,
        "requests.lua",
        &[file.as_os_str(), agent_url.as_ref(), gateway_key.as_ref()],
    );
    let _ = std::fs::remove_dir_all(&dir);
    v
}
