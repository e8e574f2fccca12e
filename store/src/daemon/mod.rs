//! The Nix daemon ("worker") protocol, as a server on a unix socket beside
//! the mount and as a client of a running nix-daemon. docs/daemon-protocol.md
//! is the reference.
//!
//! # Layout
//! - [`wire`]: the primitives, with no I/O of their own, and the limits.
//! - [`protocol`]: magics, op numbers, STDERR codes, versions.
//! - `handshake`: both sides of the handshake.
//! - `conn`, `ops`: one server connection and the per-op handlers.
//! - `server`: the socket, its tasks and its configuration.
//! - `peer`, `admission`, `gate`: who may connect and upload (peer
//!   credentials, trusted and allowed users), connection limits, timeouts.
//! - `client`: [`DaemonClient`], the same protocol from the other end.
//! - `import`: [`DaemonSource`], a daemon as a source of closure imports.
//!
//! # Serving
//! ```no_run
//! # async fn run(services: storefs_store::Services) -> std::io::Result<()> {
//! use storefs_store::daemon::{bind_socket, serve_daemon, DaemonConfig, DEFAULT_SOCKET_MODE};
//! let listener = bind_socket("/run/storefs/daemon.sock".as_ref(), DEFAULT_SOCKET_MODE).await?;
//! serve_daemon(listener, services, DaemonConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod admission;
mod client;
mod conn;
mod context;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod handshake;
mod import;
mod ops;
mod path_info;
mod peer;
pub mod protocol;
mod server;
mod stderr;
pub mod wire;

pub use admission::DaemonLimits;
pub use client::DaemonClient;
pub use context::{DaemonConfig, TrustPolicy};
pub use error::{ConnectionError, OpError};
pub use handshake::{Dialect, Negotiated, TrustLevel};
pub use import::{DaemonSource, import_from_daemon};
pub use path_info::RawPathInfo;
pub use peer::{Access, Peer, UserList, UserSpec, UserSpecError, classify};
pub use server::{DEFAULT_SOCKET_MODE, bind_socket, serve_daemon, serve_stream};
