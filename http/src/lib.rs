//! storefs-http: a storefs store seen as a Nix HTTP binary cache.
//!
//! storefs keeps store paths as castore blobs and directories, not as NAR
//! files, so everything a binary cache serves is made on demand:
//! `nix-cache-info`, `<hashpart>.narinfo` (signed on the fly when a key is
//! configured), `nar/<hashpart>-<narhash>.nar` (rendered from castore,
//! streamed, with HTTP `Range` support) and the `<hashpart>.ls` listing.
//! Any Nix can then `nix copy --from http://…` or substitute from it.
//!
//! # Layout
//! - [`serve_http`], [`router`]: the server and its routes (`server`).
//! - [`nar`]: NAR layout and streaming, whole or by range.
//! - [`listing`]: the `.ls` listing with `narOffset`s.
//! - [`guix`]: the Guix flavour (`guix publish` layout, Guix signatures),
//!   chosen by [`HttpConfig::guix`].
//! - [`range`]: the `Range` header.
//! - `upload`: `PUT`s from `nix copy --to http://…`, with a write token.
//! - [`HttpAuth`] (`auth`): the read and write tokens, Bearer or netrc Basic.
//! - [`HttpLimits`] (`limits`, `listen`): header and idle timeouts, per-address
//!   connection limits, the accept loop.
//!
//! ```no_run
//! # async fn run(services: storefs_store::Services) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = storefs_http::HttpConfig::new(Default::default());
//! storefs_http::serve_http(listener, services, config, std::future::pending()).await
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod dataloss;
mod failure;
pub mod guix;
mod limits;
mod listen;
pub mod listing;
pub mod nar;
pub mod range;
mod server;
mod upload;

pub use auth::HttpAuth;
pub use limits::HttpLimits;
pub use server::{HttpConfig, router, serve_http};
