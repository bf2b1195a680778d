//! The docs a newcomer walks: ARCHITECTURE.md names every module of every crate, and every
//! relative link in the repository's Markdown files points at something that exists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_host_tests::artifacts::repo_root;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" && name != "pkg"
            {
                walk(&p, ext, out);
            }
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

#[test]
fn architecture_md_names_every_module() {
    let root = repo_root();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    // Every workspace member, from the root Cargo.toml (a new crate cannot be left out).
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("the workspace lists its members on one line");
    let crates: Vec<&str> = members.split('"').skip(1).step_by(2).collect();
    assert!(
        crates.contains(&"shared") && crates.len() >= 8,
        "{crates:?}"
    );
    let mut missing = Vec::new();
    for c in &crates {
        let section = doc
            .split(&format!("## `{c}`\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md has no section for {c}"));
        let section = section.split("\n## ").next().unwrap_or("");
        let mut files = Vec::new();
        walk(&root.join(c).join("src"), "rs", &mut files);
        for f in files {
            let rel = f.strip_prefix(root.join(c)).unwrap().display().to_string();
            if !section.contains(&format!("- `{rel}`: ")) {
                missing.push(format!("{c}/{rel}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "add to ARCHITECTURE.md (one line each): {missing:?}"
    );
}

/// `[text](target)` links that are not URLs or anchors.
fn relative_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(j) = after.find(')') else { break };
            let target = &after[..j];
            if !target.contains("://") && !target.starts_with('#') && !target.starts_with("mailto:")
            {
                out.push(target.split('#').next().unwrap_or("").to_string());
            }
            rest = &after[j..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let root = repo_root();
    let mut files = Vec::new();
    walk(&root, "md", &mut files);
    assert!(files.len() > 10, "{files:?}");
    let mut broken = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for link in relative_links(&text) {
            if link.is_empty() {
                continue;
            }
            let target = f.parent().unwrap().join(&link);
            if !target.exists() {
                broken.push(format!(
                    "{}: {link}",
                    f.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken relative links: {broken:?}");
}

#[test]
fn the_link_reader_finds_relative_links_only() {
    let links = relative_links(
        "see [a](docs/a.md#x) and [b](https://x.y) [c](#top)\n```\n[d](nope.md)\n```\n[e](../e.md)",
    );
    assert_eq!(links, ["docs/a.md", "../e.md"]);
}
