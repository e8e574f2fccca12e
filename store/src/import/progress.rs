//! Progress of a long import, reported to whoever draws it (the CLI's
//! progress bar). The library never draws anything itself.

use crate::StorePath;

/// Receives an import's progress. Every method has an empty default, so an
/// implementation picks what it shows. Calls come from several tasks at
/// once; implementations must be cheap and must not block.
pub trait ImportProgress: Send + Sync {
    /// The closure is known: `paths` to copy, whose NARs total `nar_bytes`.
    /// Paths already present are not counted.
    fn planned(&self, paths: u64, nar_bytes: u64) {
        let _ = (paths, nar_bytes);
    }

    /// `n` more NAR bytes (uncompressed) were ingested.
    fn nar_bytes(&self, n: u64) {
        let _ = n;
    }

    /// One path finished; `error` says why it failed, if it did.
    fn path_done(&self, path: &StorePath, error: Option<&str>) {
        let _ = (path, error);
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ImportProgress for NoProgress {}
