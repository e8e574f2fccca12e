//! [`Services`]: the services one store is made of, bundled so that every
//! front-end (daemon socket, imports, gRPC, HTTP view, mount, command line)
//! takes the same value.

use std::sync::Arc;

use storefs_castore::{BlobService, DirectoryService};

use crate::nar::NarCalculator;
use crate::{NarCalculationService, PathInfoService};

/// The services of one store. Cheap to clone: every field is an `Arc`.
#[derive(Clone)]
pub struct Services {
    /// File contents (blobs and their chunks).
    pub blob: Arc<dyn BlobService>,
    /// Directories.
    pub directory: Arc<dyn DirectoryService>,
    /// What is known of each store path.
    pub path_info: Arc<dyn PathInfoService>,
    /// NAR sizes and hashes of castore nodes. A remote store answers them
    /// itself; a local one renders the NAR from `blob` and `directory`.
    pub nar_calculation: Arc<dyn NarCalculationService>,
}

impl Services {
    /// Bundle the three stores; NAR sizes and hashes are computed locally
    /// from `blob` and `directory` ([`NarCalculator`]).
    pub fn new(
        blob: Arc<dyn BlobService>,
        directory: Arc<dyn DirectoryService>,
        path_info: Arc<dyn PathInfoService>,
    ) -> Self {
        let nar_calculation = Arc::new(NarCalculator::new(blob.clone(), directory.clone()));
        Self {
            blob,
            directory,
            path_info,
            nar_calculation,
        }
    }

    /// Fresh empty in-memory services, for tests and scratch work.
    pub fn memory() -> Self {
        Self::new(
            Arc::new(storefs_castore::MemoryBlobService::new()),
            Arc::new(storefs_castore::MemoryDirectoryService::new()),
            Arc::new(crate::MemoryPathInfoService::new()),
        )
    }
}
