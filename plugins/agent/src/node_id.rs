//! The agent's node id: the name written with each event it claims in Redis, so an operator can
//! tell which agent holds an event. Unless configured it is generated once and kept in the data
//! directory. (Whether a claim is this agent's own is decided by the claim's token, which also
//! holds the time the event was stored, so a new name or a shared one is safe.)

use std::path::Path;

/// The configured id, or the one kept in `data_dir/node-id` (created on first start).
pub fn load_or_create(data_dir: &Path, configured: Option<&str>) -> Result<String, String> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    let file = data_dir.join("node-id");
    match std::fs::read_to_string(&file) {
        Ok(s) if aforo_core::config::is_name(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) => {
            return Err(format!(
                "{}: not a node id (letters, digits, _-.: only); delete it to generate a new one, or set node_id",
                file.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", file.display())),
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| aforo_core::config::is_name(h) && h.len() <= 64)
        .unwrap_or_else(|| "agent".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!(
        "{host}:{nanos}:{}:{}",
        std::process::id(),
        data_dir.display()
    );
    let digest = aforo_core::keys::hash_key(&seed).to_text();
    let tail: String = digest
        .chars()
        .filter(char::is_ascii_hexdigit)
        .rev()
        .take(12)
        .collect();
    let id = format!("{host}-{tail}");
    std::fs::write(&file, format!("{id}\n")).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(id)
}
