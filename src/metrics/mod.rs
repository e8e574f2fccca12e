//! Prometheus metrics: one [`Registry`] per process, served in the
//! Prometheus (OpenMetrics) text format at `GET /metrics` on `--metrics
//! ADDR`. Every command that runs for long uses it the same way: register
//! what it measures, then [`serve`] the registry.
//!
//! - `services`: [`ServiceMetrics`], requests, errors, latency and bytes of
//!   the store services, by front end (`serve`: gRPC, HTTP, daemon).
//! - `mount`: [`MountCollector`], a mount's figures read from its stats at
//!   each scrape (the same counters `user.storefs.stats` shows).
//! - `peers`: [`PeerCollector`], a mount's peer figures (docs/peers.md).
//! - `endpoint`: the HTTP endpoint.
//!
//! The names, labels and meanings are listed in docs/operations.md.

mod endpoint;
mod mount;
mod peers;
mod per_endpoint;
mod services;

pub use endpoint::serve;
pub use mount::MountCollector;
pub use peers::PeerCollector;
pub use prometheus_client::registry::Registry;
pub use services::ServiceMetrics;

/// The prefix of every metric name.
pub const PREFIX: &str = "storefs";

/// A new registry whose metrics are all named `storefs_…`.
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}
