//! Peers: mounts that share the chunks they have cached with each other.
//!
//! Every chunk is named by its BLAKE3 digest, so a chunk may come from any
//! other worker without trusting it: bytes that do not hash to their name
//! are thrown away. Two halves:
//!
//! - [`PeerFirstBlobService`] sits between a mount's local cache and its
//!   store service: a chunk the cache misses is asked of the peers first
//!   (a few, the likeliest first, within one short budget), then of the
//!   service. Chunk lists, blob reads and writes go to the service only: a
//!   chunk list cannot be checked on its own, and path infos never pass
//!   through here. A peer that sends bytes that fail their check is logged
//!   and shunned for long; one that is down or slow is skipped for a while
//!   and probed again ([`PeerSet`]).
//! - [`peer_services`] is what a mount serves to its peers
//!   (`--peer-listen`): the chunks and chunk lists its local cache holds,
//!   read-only, a bounded number of reads at a time, `NOT_FOUND` for
//!   everything else (path infos, directories, chunks it lacks). It never
//!   fetches anything on a peer's behalf; a chunk the mount is fetching
//!   from its service right now ([`InFlight`]) is handed over when it
//!   arrives.
//!
//! # Layout
//! - `list`: parsing a list of peer URLs (a `--peers-file`).
//! - `peer`: one peer: its client, health and figures.
//! - `set`: the peers of a mount, their order, and the shared figures.
//! - `first`: the peer-first blob service.
//! - `inflight`: the chunks being fetched from the service now.
//! - `serve`: the cache-only services a mount serves to its peers.

mod first;
mod inflight;
mod list;
mod peer;
mod serve;
mod set;

pub use first::PeerFirstBlobService;
pub use inflight::InFlight;
pub use list::{PeerListError, parse_peer_list};
pub use peer::PeerFigures;
pub use serve::{PeerServerFigures, PeerServing, peer_services};
pub use set::{PeerConfig, PeerSet, PeersFigures};
