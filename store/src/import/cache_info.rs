//! `nix-cache-info`: the one file every binary cache has at its root.
//!
//! Grammar: lines of `Key: Value`; Nix reads `StoreDir`, `WantMassQuery`
//! (`0`/`1`) and `Priority` (an integer, lower is preferred) and ignores
//! other keys. A file written by `nix copy --to file://` holds only
//! `StoreDir`.

use std::fmt;

/// The facts of a `nix-cache-info` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    /// The store directory the cache's paths belong to (`/nix/store`).
    /// A client with another store directory cannot use the cache.
    pub store_dir: String,
    /// Whether clients may ask for many narinfos at once.
    pub want_mass_query: bool,
    /// Lower is preferred among substituters; `None` when absent.
    pub priority: Option<u64>,
}

/// Why a `nix-cache-info` file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheInfoError {
    /// The file is not UTF-8.
    #[error("nix-cache-info is not UTF-8")]
    NotUtf8,
    /// No `StoreDir` line.
    #[error("nix-cache-info has no StoreDir")]
    MissingStoreDir,
    /// A known key with a value that does not parse.
    #[error("nix-cache-info line {line}: bad value for {key}: {value:?}")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
    },
}

impl CacheInfo {
    /// Parse the file's bytes. Unknown keys and lines without `:` are
    /// ignored, as Nix does.
    pub fn parse(bytes: &[u8]) -> Result<Self, CacheInfoError> {
        let text = std::str::from_utf8(bytes).map_err(|_| CacheInfoError::NotUtf8)?;
        let mut store_dir = None;
        let mut want_mass_query = false;
        let mut priority = None;
        for (i, line) in text.lines().enumerate() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let bad = |key| CacheInfoError::BadValue {
                line: i + 1,
                key,
                value: value.to_owned(),
            };
            match key.trim() {
                "StoreDir" => store_dir = Some(value.to_owned()),
                "WantMassQuery" => {
                    want_mass_query = match value {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad("WantMassQuery")),
                    }
                }
                "Priority" => priority = Some(value.parse().map_err(|_| bad("Priority"))?),
                _ => {}
            }
        }
        Ok(Self {
            store_dir: store_dir.ok_or(CacheInfoError::MissingStoreDir)?,
            want_mass_query,
            priority,
        })
    }
}

impl fmt::Display for CacheInfo {
    /// The file as a server sends it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "StoreDir: {}", self.store_dir)?;
        writeln!(f, "WantMassQuery: {}", u8::from(self.want_mass_query))?;
        if let Some(p) = self.priority {
            writeln!(f, "Priority: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nix_written_and_served_files() {
        let nix = CacheInfo::parse(b"StoreDir: /nix/store\n").unwrap();
        assert_eq!(nix.store_dir, "/nix/store");
        assert!(!nix.want_mass_query);
        assert_eq!(nix.priority, None);

        let served =
            CacheInfo::parse(b"StoreDir: /gnu/store\nWantMassQuery: 1\nPriority: 40\nX: y\n")
                .unwrap();
        assert_eq!(
            served,
            CacheInfo {
                store_dir: "/gnu/store".into(),
                want_mass_query: true,
                priority: Some(40)
            }
        );
        assert_eq!(
            CacheInfo::parse(served.to_string().as_bytes()).unwrap(),
            served
        );
    }

    #[test]
    fn refuses_bad_files() {
        assert_eq!(
            CacheInfo::parse(b"Priority: 1\n"),
            Err(CacheInfoError::MissingStoreDir)
        );
        assert!(matches!(
            CacheInfo::parse(b"StoreDir: /nix/store\nPriority: high\n"),
            Err(CacheInfoError::BadValue {
                line: 2,
                key: "Priority",
                ..
            })
        ));
        assert_eq!(CacheInfo::parse(b"\xff"), Err(CacheInfoError::NotUtf8));
    }
}
