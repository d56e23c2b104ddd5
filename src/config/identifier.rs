//! The Plex client identifier streamwarden presents when the config gives none.

use std::path::PathBuf;

/// The client identifier used when the config has none: generated once, then kept in
/// `$XDG_STATE_HOME/streamwarden/client-identifier` (or `~/.local/state/...`). Where no
/// state can be written, it is derived from /etc/machine-id so it still stays stable.
pub fn stable_client_identifier() -> String {
    let dir = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .map(|d| d.join("streamwarden"));
    if let Some(dir) = &dir {
        let file = dir.join("client-identifier");
        if let Ok(id) = std::fs::read_to_string(&file) {
            let id = id.trim();
            if !id.is_empty() {
                return id.to_string();
            }
        }
        let id = format!("streamwarden-{}", uuid::Uuid::new_v4());
        if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&file, &id).is_ok() {
            return id;
        }
    }
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let seed = format!("streamwarden:{}", machine.trim());
    // Deterministic: a name-based UUID of the machine id.
    format!(
        "streamwarden-{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes())
    )
}
