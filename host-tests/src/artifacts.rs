//! Where the built artifacts are, for tests and tools: the filter module, the pass-through
//! floor module, the native Envoy module, and the workspace binaries, under the cargo target
//! directory (the Wasm modules from `AFORO_WASM_DIR` instead when set: `scripts/test.sh`
//! points it at the shipped ones).

use std::path::{Path, PathBuf};

/// The cargo target directory this binary was built into (`…/target`), from its own path.
pub fn target_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    exe.ancestors()
        .find(|p| p.join("wasm32-wasip1").exists() || p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
}

fn wasm(name: &str) -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("AFORO_WASM_DIR") {
        return Ok(PathBuf::from(p).join(name));
    }
    let dir = target_dir().ok_or("cannot find the cargo target directory; set CARGO_TARGET_DIR")?;
    let p = dir.join("wasm32-wasip1").join("wasm-release").join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: build it first with `cargo build --target wasm32-wasip1 --profile wasm-release -p aforo-proxy-wasm -p aforo-passthrough` (scripts/test.sh does)",
            p.display()
        ))
    }
}

/// The filter: `aforo_metering.wasm`.
pub fn filter_module() -> Result<PathBuf, String> {
    wasm("aforo_metering.wasm")
}

/// The pass-through floor module: `aforo_passthrough.wasm`.
pub fn passthrough_module() -> Result<PathBuf, String> {
    wasm("aforo_passthrough.wasm")
}

/// The native Envoy module: `libaforo_envoy.so`, from `AFORO_ENVOY_MODULE` or cargo's release
/// build (what users deploy).
pub fn native_module() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("AFORO_ENVOY_MODULE") {
        return Ok(PathBuf::from(p));
    }
    let dir = target_dir().ok_or("cannot find the cargo target directory; set CARGO_TARGET_DIR")?;
    let p = dir.join("release").join("libaforo_envoy.so");
    let rebuild = "`cargo build --release -p aforo-envoy` (scripts/setup.sh does)";
    let built = std::fs::metadata(&p)
        .and_then(|m| m.modified())
        .map_err(|_| format!("{} is missing: build it first with {rebuild}", p.display()))?;
    // `cargo test` does not build it: a module older than one of its sources (the files cargo
    // lists in the `.d` file beside it) would test old code.
    let deps = std::fs::read_to_string(p.with_extension("d")).unwrap_or_default();
    let stale = deps
        .split_once(": ")
        .map(|(_, list)| list.replace("\\ ", "\u{1}"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|f| PathBuf::from(f.replace('\u{1}', " ")))
        .find(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        });
    match stale {
        Some(file) => Err(format!(
            "{} is older than {}: rebuild it with {rebuild}",
            p.display(),
            file.display()
        )),
        None => Ok(p),
    }
}

/// The WASI component the agent hosts: `aforo_policy.wasm` (wasm32-wasip2).
pub fn policy_component() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("AFORO_COMPONENT") {
        return Ok(PathBuf::from(p));
    }
    let dir = target_dir().ok_or("cannot find the cargo target directory; set CARGO_TARGET_DIR")?;
    let p = dir
        .join("wasm32-wasip2")
        .join("wasm-release")
        .join("aforo_policy.wasm");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: build it first with `cargo build --target wasm32-wasip2 --profile wasm-release -p aforo-wasi` (scripts/test.sh does)",
            p.display()
        ))
    }
}

/// A workspace binary built in the same profile as the running test (`aforo-replay`, `aforo-agent`).
pub fn binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for dir in exe.ancestors().skip(1).take(3) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "the {name} binary is not built next to {}; run `cargo build --workspace` first",
        exe.display()
    ))
}

/// The repository root (for scenario and example files): found at run time from the package
/// cargo is testing (or the current directory), so a build cache shared between clones never
/// points a test at another clone's files.
pub fn repo_root() -> PathBuf {
    let is_root =
        |d: &Path| d.join("Cargo.toml").is_file() && d.join("shared/Cargo.toml").is_file();
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
    ];
    for start in starts.into_iter().flatten() {
        if let Some(root) = start.ancestors().find(|d| is_root(d)) {
            return root.to_path_buf();
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}
