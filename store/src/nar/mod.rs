//! NAR (Nix ARchive): the writer that renders castore nodes as NARs, the
//! strict streaming reader that stores NARs in castore, and NAR hashing.
//!
//! # Layout
//! - [`wire`]: the grammar and its tokens (no I/O), shared by both sides.
//! - [`limits`]: the bounds the reader applies and the writer respects.
//! - [`write_nar`], [`nar_hash_and_size`], [`NarCalculator`]: castore → NAR.
//! - [`read_nar`], [`read_nar_to_end`]: NAR → castore.
//! - `local`: a local path → NAR (`nix-store --dump`) and its hash,
//!   without castore.

mod calculate;
pub mod limits;
mod local;
mod reader;
pub mod wire;
mod writer;

pub use calculate::{HashingSink, NarCalculator, nar_hash_and_size};
pub use local::{LocalNarError, LocalNarHash, LocalNarStats, dump_path, nar_hash_of_path};
pub use reader::{NarIngested, NarReadError, read_nar, read_nar_to_end};
pub use writer::{NarWriteError, write_nar};

#[cfg(test)]
mod test_support;
