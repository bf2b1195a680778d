//! Running the Node.js drivers of the AWS Lambda package (the core through wasm-bindgen).

use serde_json::Value;

/// Runs a driver of `plugins/aws-lambda/test/drive` with `input` on stdin; its JSON answer.
pub fn driver(script: &str, input: &Value, env: &[(&str, &str)]) -> Value {
    use std::io::Write;
    let dir = aforo_host_tests::artifacts::repo_root().join("plugins/aws-lambda");
    assert!(
        dir.join("pkg/aforo_lambda.js").is_file(),
        "plugins/aws-lambda/pkg is missing: run scripts/build-lambda.sh (scripts/setup.sh does)"
    );
    let mut child = std::process::Command::new("node")
        .arg(dir.join("test/drive").join(script))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node is required (scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
