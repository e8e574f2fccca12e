//! A FUSE mount in the test process, over any services.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use storefs_castore::{BlobService, DirectoryService};
use storefs_fuse::{MountConfig, MountHandle, StatsSnapshot};
use storefs_store::PathInfoService;
use storefs_store::StorePath;

/// A mount in a temporary directory, with the runtime its tasks run on.
/// Dropping it unmounts, even when the test fails.
pub struct FuseMount {
    /// The mount; taken by [`Drop`].
    pub handle: Option<MountHandle>,
    /// The mountpoint.
    pub dir: tempfile::TempDir,
    /// The runtime the mount's fetches run on.
    pub rt: tokio::runtime::Runtime,
}

impl FuseMount {
    /// Mount `blobs`, `dirs`, `infos` at a new temporary directory, with
    /// `tweak` applied to the default config, on `rt`.
    pub fn start(
        rt: tokio::runtime::Runtime,
        blobs: Arc<dyn BlobService>,
        dirs: Arc<dyn DirectoryService>,
        infos: Arc<dyn PathInfoService>,
        tweak: impl FnOnce(&mut MountConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = MountConfig::new(dir.path());
        tweak(&mut config);
        let services = storefs_store::Services::new(blobs, dirs, infos);
        let handle = storefs_fuse::mount(config, &services, rt.handle().clone()).expect("mount");
        FuseMount {
            handle: Some(handle),
            dir,
            rt,
        }
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A store path's location in the mount.
    pub fn store_path(&self, p: &StorePath) -> PathBuf {
        self.dir.path().join(p.base_name())
    }

    /// The mount's figures now.
    pub fn stats(&self) -> StatsSnapshot {
        self.handle.as_ref().expect("mounted").stats().snapshot()
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take()
            && let Err(e) = h.unmount()
            && !std::thread::panicking()
        {
            panic!("unmount failed: {e}");
        }
    }
}

/// A multi-threaded runtime for a mount (4 workers).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}
