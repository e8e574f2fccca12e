//! Building services from store URLs: the embedded default, `memory:`,
//! `redb://`, and remote gRPC stores.

use std::path::PathBuf;

/// The embedded store's directory: `$STOREFS_DATA`, else
/// `$XDG_DATA_HOME/storefs`, else `~/.local/share/storefs`.
#[allow(dead_code)] // used once the commands are wired
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STOREFS_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("storefs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".local/share/storefs")
}
