//! storefs-virtiofs: the lazy store served to virtual machines over
//! virtio-fs, as a vhost-user-fs backend.
//!
//! A VM host runs one backend per socket; QEMU connects to it
//! (`-chardev socket,path=SOCK -device vhost-user-fs-pci,chardev=…,tag=store`,
//! with shared guest memory) and the guest mounts the store with
//! `mount -t virtiofs store /nix/store`. The guest then sees what a FUSE
//! mount of the same store shows, fetched lazily the same way, from the
//! same local cache: both are thin transports over one filesystem core,
//! [`storefs_fuse::core::Core`].
//!
//! # Layout
//! - `serve`: [`VirtiofsConfig`], [`VirtiofsServer`] (the socket, guests one
//!   after another), [`Stopper`].
//! - `backend`: the vhost-user-fs device for `vhost-user-backend`: queues,
//!   features, guest memory, and the workers that feed requests to
//!   fuse-backend-rs's FUSE server, several at once.
//! - `fs`: fuse-backend-rs's `FileSystem` trait over the core.
//!
//! The choice of crates and their versions: docs/virtiofs.md.
//!
//! ```no_run
//! use storefs_virtiofs::{VirtiofsConfig, VirtiofsServer};
//!
//! fn serve(
//!     services: &storefs_store::Services,
//!     runtime: tokio::runtime::Handle,
//! ) -> Result<(), storefs_virtiofs::VirtiofsError> {
//!     let server = VirtiofsServer::bind(&VirtiofsConfig::new("/run/storefs-vm.sock"), services, runtime)?;
//!     // Elsewhere, to stop between guests: server.stopper().stop()
//!     server.run(|figures| println!("a guest left; {} bytes fetched", figures.bytes_fetched))
//! }
//! ```
#![deny(missing_docs)]

mod backend;
mod fs;
mod serve;

pub use serve::{Stopper, VirtiofsConfig, VirtiofsError, VirtiofsServer};
