//! One store served by several replicas: the castore and store traits over
//! a list of gRPC endpoints, with failover.
//!
//! Every request goes to the first healthy replica in the order given; a
//! request that fails there because the replica is down, broken or slow
//! (unreachable, a broken connection, no answer within the call deadline,
//! an internal error) is sent to the next one, and the failed replica is
//! skipped for a while, then tried again ([`remotes`]). A batch of chunks
//! moves entry by entry: what one replica delivered stands, the rest is
//! asked of the next. A closure stream that breaks resumes on the next
//! replica, skipping what was already delivered. So a read in progress
//! moves to another replica without an error reaching the reader.
//!
//! Writes are content-addressed and a path info is written last, so a put
//! that failed is sent whole to the next replica. A blob upload is
//! streamed to one replica and is not moved (the bytes are not kept): its
//! failure is the caller's, who uploads again.

mod blob;
mod directory;
mod pathinfo;
mod remotes;

use std::sync::Arc;

use storefs_castore::{GrpcEndpoint, StoreUrl};
use storefs_store::Services;

pub use remotes::RemoteFigures;
use remotes::{Remote, Remotes};

use super::{ClientConfig, ConnectError, connect_endpoint};

/// The services of a store with several replicas, and a handle on their
/// health and figures.
#[derive(Clone)]
pub struct ReplicatedServices {
    /// The bundle every front-end takes; each call fails over.
    pub services: Services,
    /// The replicas' figures.
    pub replicas: Replicas,
}

impl From<ReplicatedServices> for Services {
    fn from(r: ReplicatedServices) -> Services {
        r.services
    }
}

/// A view of the replicas behind a [`ReplicatedServices`]: their health and
/// figures, for `user.storefs.stats` and logs. Cheap to clone.
#[derive(Clone)]
pub struct Replicas(Arc<Remotes>);

impl Replicas {
    /// Each replica's figures, in the order given.
    pub fn figures(&self) -> Vec<RemoteFigures> {
        self.0.figures()
    }
}

/// The trait implementations over the replicas.
#[derive(Clone)]
pub(crate) struct Failover {
    remotes: Arc<Remotes>,
}

/// Clients of one store served at each of `endpoints` (one or more), each
/// request failing over from one to the next. `config` applies to each;
/// its `retries` are rounds over all replicas (with the backoff between
/// rounds), not attempts on one.
///
/// You must call it inside a tokio runtime. Nothing is sent until a
/// service is used.
pub fn connect_replicas(
    endpoints: &[GrpcEndpoint],
    config: ClientConfig,
) -> Result<ReplicatedServices, ConnectError> {
    if endpoints.is_empty() {
        return Err(ConnectError::NoEndpoint);
    }
    // Each replica's client tries once; the rounds are ours.
    let single = ClientConfig {
        retries: 0,
        ..config.clone()
    };
    let list = endpoints
        .iter()
        .map(|e| {
            let name = StoreUrl::Grpc {
                endpoint: e.clone(),
            }
            .to_string();
            connect_endpoint(e, single.clone()).map(|s| Arc::new(Remote::new(name.into(), s)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let remotes = Arc::new(Remotes {
        list,
        config: Arc::new(config),
    });
    let failover = Arc::new(Failover {
        remotes: remotes.clone(),
    });
    Ok(ReplicatedServices {
        services: Services {
            blob: failover.clone(),
            directory: failover.clone(),
            path_info: failover.clone(),
            nar_calculation: failover,
        },
        replicas: Replicas(remotes),
    })
}

/// Parse `--store` for several replicas: gRPC URLs joined by commas, where
/// each after the first may leave out the scheme and take the first one's
/// (`grpc://a:7070,b:7070`, `grpc://a:7070,grpc+unix:///run/b.sock`).
/// `None` if `spec` holds no comma (one URL, parsed as usual).
pub fn parse_replicas(spec: &str) -> Option<Result<Vec<GrpcEndpoint>, ConnectError>> {
    if !spec.contains(',') {
        return None;
    }
    let mut parts = spec.split(',').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let scheme = first.split_once("://").map(|(s, _)| s).unwrap_or_default();
    let mut out = Vec::new();
    for (i, part) in std::iter::once(first).chain(parts).enumerate() {
        if part.is_empty() {
            return Some(Err(ConnectError::Replica {
                index: i + 1,
                reason: "empty".into(),
            }));
        }
        let url = if part.contains("://") || i == 0 {
            part.to_owned()
        } else {
            format!("{scheme}://{part}")
        };
        match StoreUrl::parse(&url) {
            Ok(StoreUrl::Grpc { endpoint }) => out.push(endpoint),
            Ok(_) => {
                return Some(Err(ConnectError::Replica {
                    index: i + 1,
                    reason: format!(
                        "{url} is not a gRPC store URL; only gRPC stores have replicas"
                    ),
                }));
            }
            Err(e) => {
                return Some(Err(ConnectError::Replica {
                    index: i + 1,
                    reason: storefs_castore::Report(&e).to_string(),
                }));
            }
        }
    }
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_lists() {
        let got = parse_replicas("grpc://127.0.0.1:7070,127.0.0.2:7071")
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            StoreUrl::Grpc {
                endpoint: got[1].clone()
            }
            .to_string(),
            "grpc://127.0.0.2:7071"
        );
        let got = parse_replicas("grpc://a.example:1, grpc+unix:///run/b.sock")
            .unwrap()
            .unwrap();
        assert!(matches!(got[1], GrpcEndpoint::Unix { .. }));
        assert!(parse_replicas("grpc://a:1").is_none());
        for bad in [
            "grpc://a:1,",
            "grpc://a:1,,b:2",
            "grpc://a:1,memory:",
            "redb:///x,grpc://a:1",
            "grpc://a:1,b",
        ] {
            let r = parse_replicas(bad).unwrap();
            assert!(
                matches!(r, Err(ConnectError::Replica { .. })),
                "{bad}: {:?}",
                r.map(|v| v.len())
            );
        }
    }

    #[tokio::test]
    async fn no_endpoint_is_an_error() {
        assert!(matches!(
            connect_replicas(&[], ClientConfig::default()),
            Err(ConnectError::NoEndpoint)
        ));
    }
}
