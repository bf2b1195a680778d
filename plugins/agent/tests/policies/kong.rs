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

/// Runs every case of the table through the plugin; outcomes in case order.
pub fn run_table(root: &Path, table: &Path, agent_url: &str, gateway_key: &str) -> Vec<Outcome> {
    if let Err(e) = luajit_ready() {
        panic!(
            "the Kong contract needs LuaJIT, LuaSocket and lua-cjson (apt-get install luajit lua-socket lua-cjson; scripts/setup.sh does): {e}"
        );
    }
    let out = Command::new("luajit")
        .arg(root.join("lua/spec/contract.lua"))
        .arg(table)
        .arg(agent_url)
        .arg(gateway_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "contract.lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "contract.lua printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
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
