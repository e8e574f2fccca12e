//! Test support for storefs, shared by every crate's tests (a
//! dev-dependency only, never published).
//!
//! - [`pseudo_random`]: the one deterministic byte generator.
//! - [`free_port`], and the pollers [`wait_for`], [`eventually`],
//!   [`wait_until`]: wait on observable state, never sleep to synchronise.
//! - [`nix`]: a scratch Nix store, the fixtures a real Nix makes in it, a real
//!   `nix-daemon` ([`nix::NixDaemon`]) and a static HTTP server for binary
//!   caches ([`nix::HttpDir`]).
//! - Guards that clean up on drop, even when the test panics:
//!   [`TestServer`] and [`TestMount`] (`storefs serve` / `storefs mount`
//!   processes), [`GrpcServer`] (a gRPC server in the test's runtime),
//!   [`TestDaemon`] (the daemon socket in the test's runtime), [`FuseMount`]
//!   (an in-process mount), and [`Serve`] (`storefs serve` that announced
//!   its listeners), with [`http`], a client that shows the raw answer.
//! - [`suites`]: the conformance suites every blob, directory and path info
//!   service passes, whatever its backend (memory, redb, cache, gRPC).
//!
//! Tests may panic freely here: a failed helper is a failed test.

mod bytes;
mod cmd;
pub mod daemon;
pub mod fuse;
pub mod garage;
pub mod grpc;
pub mod http;
mod net;
pub mod nix;
mod process;
mod serve;
pub mod suites;
mod wait;
pub mod xattr;

pub use bytes::pseudo_random;
pub use cmd::{ok, ok_str, storefs_cmd, try_run};
pub use daemon::TestDaemon;
pub use fuse::FuseMount;
pub use garage::Garage;
pub use grpc::GrpcServer;
pub use net::free_port;
pub use process::{TestMount, TestServer, is_mounted, signal};
pub use rustix::process::Signal;
pub use serve::Serve;
pub use wait::{eventually, wait_for, wait_until};

/// The `storefs` binary cargo built for the calling test (only the root
/// package's integration tests have one).
#[macro_export]
macro_rules! storefs_bin {
    () => {
        ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_storefs"))
    };
}

/// A `storefs` command (see [`storefs_cmd`]) of the calling test's binary
/// on the embedded store in `data`.
#[macro_export]
macro_rules! storefs {
    ($data:expr) => {
        $crate::storefs_cmd(
            &$crate::storefs_bin!(),
            ::std::convert::AsRef::<::std::path::Path>::as_ref(&$data),
        )
    };
}
