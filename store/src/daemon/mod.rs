//! The Nix daemon ("worker") protocol, as a server on a unix socket beside
//! the mount and as a client of a running nix-daemon. PROTOCOL.md beside
//! DESIGN.md is the reference.
//!
//! # Layout
//! - [`wire`]: the primitives, with no I/O of their own, and the limits.
//! - [`protocol`]: magics, op numbers, STDERR codes, versions.

pub mod protocol;
pub mod wire;
