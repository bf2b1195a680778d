//! Bundles the console (`console/dist`, built by `npm run build` in `scripts/setup.sh`) into
//! the binary, so `/console` works offline with no files beside the agent. Without a build,
//! a one-page notice says how to make one: `cargo build` never needs Node.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "woff2" => "font/woff2",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("console").join("dist");
    // Watch dist/ once it exists; until then the console directory, where a build makes it
    // (watching a missing path would rerun this on every build).
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join("console").display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    walk(&dist, &mut files);
    // include_bytes! needs the path as a string: a name that is not UTF-8 cannot be bundled.
    files.retain(|f| f.to_str().is_some());
    let mut code = String::from("/// The console's files: path under `/console/`, content type, bytes.\npub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    let built = files.iter().any(|f| f.ends_with("index.html"));
    if built {
        for f in &files {
            let rel = f
                .strip_prefix(&dist)
                .unwrap_or(f)
                .to_string_lossy()
                .replace('\\', "/");
            let _ = writeln!(
                code,
                "    ({rel:?}, {:?}, include_bytes!({:?})),",
                content_type(f),
                f.display().to_string()
            );
        }
    } else {
        let page = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>aforo console not built</title></head><body><main><h1>The console is not built</h1><p>This agent was built without the console. Run <code>scripts/setup.sh</code> (or <code>npm ci &amp;&amp; npm run build</code> in <code>plugins/agent/console</code>), then build the agent again.</p></main></body></html>";
        let _ = writeln!(
            code,
            "    (\"index.html\", \"text/html; charset=utf-8\", {:?}.as_bytes()),",
            page
        );
    }
    code.push_str("];\n");
    let _ = writeln!(
        code,
        "/// Whether the real console was bundled (not the notice).\npub const BUILT: bool = {built};"
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("console_assets.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
    }
}
