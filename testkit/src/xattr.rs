//! Extended attributes of files in a mount.

use std::path::Path;

/// The value of xattr `name` of `path`, or the errno.
pub fn get(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::getxattr(path, name, &mut buf[..]).map_err(|e| e.raw_os_error())?;
    buf.truncate(n);
    Ok(buf)
}

/// The xattr names of `path`.
pub fn list(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::listxattr(path, &mut buf[..])
        .unwrap_or_else(|e| panic!("listxattr {}: {e}", path.display()));
    buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A mount's figures: the JSON of its root's `user.storefs.stats` xattr.
pub fn stats(root: &Path) -> serde_json::Value {
    let raw = get(root, storefs_fuse::xattr::STATS)
        .unwrap_or_else(|e| panic!("stats xattr of {}: errno {e}", root.display()));
    serde_json::from_slice(&raw).expect("stats JSON")
}
