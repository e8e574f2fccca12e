//! Store URLs: one syntax for every flag that names a store.
//!
//! ```text
//! memory:                      a fresh in-memory store (gone at exit)
//! redb:///abs/path/to/dir      the embedded store; the database is
//!                              dir/store.redb (the directory is created)
//! grpc://host:port             a remote store service over gRPC (HTTP/2)
//! grpc+http://host:port        the same
//! grpc+unix:///path/to.sock    a store service on a unix socket
//! grpc+unix:/path/to.sock      the same
//! s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT&region=R
//!                              an S3 bucket (path-style), objects under PREFIX
//! file:///abs/path/to/dir      a local directory as an object store
//! ```
//!
//! Paths are absolute and percent-decoded. Queries are refused except the
//! `endpoint` and `region` of an `s3:` URL, and fragments always, so that
//! a typo is not silently ignored. This module parses all of them, and
//! [`open_castore`] opens the local ones (`memory:`, `redb:`); gRPC
//! clients are built by the grpc crate from [`StoreUrl::Grpc`], object
//! stores by [`crate::objectstore::open_object_store`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use url::Url;

use crate::objectstore::{DEFAULT_REGION, ObjectStoreLocation};
use crate::{
    ChunkStore, MemoryBlobService, MemoryDirectoryService, PartialDirectoryStore, RedbStore,
};

/// The schemes [`StoreUrl`] knows, for error messages.
pub const KNOWN_SCHEMES: &str = "memory:, redb:///path, grpc://host:port, grpc+http://host:port, \
                                 grpc+unix:///path, s3://bucket[/prefix]?endpoint=URL&region=R, \
                                 file:///path";

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory:`: a store in process memory.
    Memory,
    /// `redb:///dir`: the embedded store in directory `dir`.
    Redb {
        /// The store directory (absolute); the database is
        /// `dir/`[`crate::STORE_FILE_NAME`].
        dir: PathBuf,
    },
    /// `grpc…`: a remote store service.
    Grpc {
        /// Where it listens.
        endpoint: GrpcEndpoint,
    },
    /// `s3://…` or `file:///…`: an object store (`docs/object-store.md`).
    ObjectStore {
        /// Which.
        location: ObjectStoreLocation,
    },
}

/// Where a gRPC store service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcEndpoint {
    /// TCP, plain HTTP/2.
    Tcp {
        /// Host name or IP address (IPv6 in brackets, as in URLs).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A unix domain socket.
    Unix {
        /// The socket's absolute path.
        path: PathBuf,
    },
}

impl GrpcEndpoint {
    /// The `http://host:port` URI a TCP endpoint is dialled at (for
    /// `tonic::transport::Endpoint`); `None` for a unix socket.
    pub fn http_uri(&self) -> Option<String> {
        match self {
            Self::Tcp { host, port } => Some(format!("http://{host}:{port}")),
            Self::Unix { .. } => None,
        }
    }
}

/// Why a store URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// The scheme is none of ours.
    #[error("unknown store URL scheme {scheme:?} in {url:?}; known: {known}", known = KNOWN_SCHEMES)]
    UnknownScheme {
        /// The scheme found.
        scheme: String,
        /// The whole URL.
        url: String,
    },
    /// The scheme is known but the rest does not fit it.
    #[error("invalid store URL {url:?}: {reason}")]
    Invalid {
        /// The whole URL.
        url: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

impl StoreUrl {
    /// Parse a store URL.
    pub fn parse(s: &str) -> Result<Self, StoreUrlError> {
        let invalid = |reason: &str| StoreUrlError::Invalid {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(s).map_err(|e| {
            if !s.contains(':') {
                invalid(&format!("not a URL ({e}); expected one of {KNOWN_SCHEMES}"))
            } else {
                invalid(&e.to_string())
            }
        })?;
        if url.fragment().is_some() {
            return Err(invalid("store URLs take no fragment (#…)"));
        }
        if url.scheme() == "s3" {
            return parse_s3(&url).map_err(|reason| invalid(&reason));
        }
        if url.query().is_some() {
            return Err(invalid(
                "store URLs take no query (?…), except endpoint= and region= of s3://",
            ));
        }
        match url.scheme() {
            "memory" => {
                if url.has_host() || !url.path().is_empty() || !url.username().is_empty() {
                    return Err(invalid("a memory store URL is just \"memory:\""));
                }
                Ok(Self::Memory)
            }
            "redb" => Ok(Self::Redb {
                dir: local_path(&url).ok_or_else(|| {
                    invalid("expected redb:///absolute/path/to/dir (three slashes, no host)")
                })?,
            }),
            "grpc" | "grpc+http" => {
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| invalid("expected grpc://host:port"))?;
                let port = url
                    .port()
                    .ok_or_else(|| invalid("a gRPC URL needs a port: grpc://host:port"))?;
                if !matches!(url.path(), "" | "/") || !url.username().is_empty() {
                    return Err(invalid("expected grpc://host:port, with no path or user"));
                }
                Ok(Self::Grpc {
                    endpoint: GrpcEndpoint::Tcp {
                        host: host.to_string(),
                        port,
                    },
                })
            }
            "grpc+unix" => Ok(Self::Grpc {
                endpoint: GrpcEndpoint::Unix {
                    path: local_path(&url).ok_or_else(|| {
                        invalid("expected grpc+unix:///absolute/path/to.sock or grpc+unix:/path")
                    })?,
                },
            }),
            "file" => Ok(Self::ObjectStore {
                location: ObjectStoreLocation::File {
                    dir: local_path(&url).ok_or_else(|| {
                        invalid("expected file:///absolute/path/to/dir (three slashes, no host)")
                    })?,
                },
            }),
            other => Err(StoreUrlError::UnknownScheme {
                scheme: other.to_string(),
                url: s.to_string(),
            }),
        }
    }
}

/// An `s3://BUCKET[/PREFIX]?endpoint=…&region=…` URL; the error says
/// what is wrong.
fn parse_s3(url: &Url) -> Result<StoreUrl, String> {
    const FORM: &str = "expected s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT&region=R";
    let bucket = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("no bucket; {FORM}"))?;
    if url.port().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the bucket takes no port or user (the endpoint goes in endpoint=); {FORM}"
        ));
    }
    let prefix = url.path().trim_matches('/');
    if prefix.split('/').any(|p| p.is_empty()) && !prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        || prefix.split('/').any(|p| p == "." || p == "..")
    {
        return Err(format!(
            "prefix {prefix:?}: use segments of letters, digits, '.', '_' and '-' separated by \
             single '/'"
        ));
    }
    let (mut endpoint, mut region) = (None, None);
    for (k, v) in url.query_pairs() {
        let slot = match k.as_ref() {
            "endpoint" => &mut endpoint,
            "region" => &mut region,
            other => {
                return Err(format!(
                    "unknown query key {other:?} (s3 URLs take endpoint= and region=)"
                ));
            }
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(format!("{k}= given twice"));
        }
    }
    if let Some(e) = &endpoint {
        let parsed = Url::parse(e).map_err(|err| format!("endpoint={e}: {err}"))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none_or(str::is_empty)
            || !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
        {
            return Err(format!(
                "endpoint={e}: expected http://HOST:PORT or https://HOST[:PORT]"
            ));
        }
        endpoint = Some(e.trim_end_matches('/').to_owned());
    }
    let region = region.unwrap_or_else(|| DEFAULT_REGION.to_owned());
    if region.is_empty() {
        return Err("region= is empty".into());
    }
    Ok(StoreUrl::ObjectStore {
        location: ObjectStoreLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint,
            region,
        },
    })
}

/// The percent-decoded absolute path of a `scheme:///path` or
/// `scheme:/path` URL, `None` if it has a host or no absolute path.
fn local_path(url: &Url) -> Option<PathBuf> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || url.port().is_some() {
        return None;
    }
    if !url.path().starts_with('/') || url.path() == "/" {
        return None;
    }
    url.to_file_path().ok()
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for StoreUrl {
    /// The canonical spelling, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path_url = |scheme: &str, path: &PathBuf| {
            Url::from_file_path(path)
                .map(|u| format!("{scheme}{}", &u.as_str()["file".len()..]))
                .unwrap_or_else(|()| format!("{scheme}://{}", path.display()))
        };
        match self {
            Self::Memory => f.write_str("memory:"),
            Self::Redb { dir } => f.write_str(&path_url("redb", dir)),
            Self::Grpc {
                endpoint: GrpcEndpoint::Tcp { host, port },
            } => write!(f, "grpc://{host}:{port}"),
            Self::Grpc {
                endpoint: GrpcEndpoint::Unix { path },
            } => f.write_str(&path_url("grpc+unix", path)),
            Self::ObjectStore {
                location: ObjectStoreLocation::File { dir },
            } => f.write_str(&path_url("file", dir)),
            Self::ObjectStore {
                location:
                    ObjectStoreLocation::S3 {
                        bucket,
                        prefix,
                        endpoint,
                        region,
                    },
            } => {
                write!(f, "s3://{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                if let Some(e) = endpoint {
                    query.append_pair("endpoint", e);
                }
                query.append_pair("region", region);
                write!(f, "?{}", query.finish())
            }
            #[allow(unreachable_patterns)] // a location added later
            Self::ObjectStore { location } => write!(f, "{location:?}"),
        }
    }
}

/// The services of a local castore, opened from a URL. The fields are the
/// cache-capable traits, so the store can also serve as a cache's near
/// side; use them as plain `Arc<dyn BlobService>` / `Arc<dyn
/// DirectoryService>` by coercion.
#[derive(Clone)]
pub struct LocalCastore {
    /// The blob service.
    pub blobs: Arc<dyn ChunkStore>,
    /// The directory service.
    pub directories: Arc<dyn PartialDirectoryStore>,
    /// The database handle for `redb:` stores, which other crates share
    /// (the store crate keeps its path infos in the same file).
    pub redb: Option<RedbStore>,
}

/// Why [`open_castore`] could not open a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// The URL names a remote store (gRPC, an object store), which is
    /// opened by its own client.
    #[error("{0} is a remote store: it is opened by its own client, not as a local castore")]
    NotLocal(StoreUrl),
    /// Opening the local store failed.
    #[error("opening store {url}")]
    Open {
        /// The store.
        url: StoreUrl,
        /// What failed.
        source: crate::Error,
    },
}

/// Open the local castore `url` names (`memory:` or `redb:`); a gRPC URL
/// gives [`OpenStoreError::NotLocal`].
pub async fn open_castore(url: &StoreUrl) -> Result<LocalCastore, OpenStoreError> {
    match url {
        StoreUrl::Memory => Ok(LocalCastore {
            blobs: Arc::new(MemoryBlobService::new()),
            directories: Arc::new(MemoryDirectoryService::new()),
            redb: None,
        }),
        StoreUrl::Redb { dir } => {
            let dir = dir.clone();
            let store = crate::redb_store::blocking(move || RedbStore::open_dir(dir))
                .await
                .map_err(|source| OpenStoreError::Open {
                    url: url.clone(),
                    source,
                })?;
            Ok(LocalCastore {
                blobs: Arc::new(store.blob_service()),
                directories: Arc::new(store.directory_service()),
                redb: Some(store),
            })
        }
        StoreUrl::Grpc { .. } | StoreUrl::ObjectStore { .. } => {
            Err(OpenStoreError::NotLocal(url.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> StoreUrl {
        StoreUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn local_urls() {
        assert_eq!(ok("memory:"), StoreUrl::Memory);
        assert_eq!(
            ok("redb:///var/lib/storefs"),
            StoreUrl::Redb {
                dir: "/var/lib/storefs".into()
            }
        );
        assert_eq!(
            ok("redb:///tmp/with%20space"),
            StoreUrl::Redb {
                dir: "/tmp/with space".into()
            }
        );
    }

    #[test]
    fn grpc_urls() {
        let tcp = StoreUrl::Grpc {
            endpoint: GrpcEndpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 7070,
            },
        };
        assert_eq!(ok("grpc://127.0.0.1:7070"), tcp);
        assert_eq!(ok("grpc+http://127.0.0.1:7070/"), tcp);
        let StoreUrl::Grpc { endpoint } = &tcp else {
            unreachable!()
        };
        assert_eq!(
            endpoint.http_uri().as_deref(),
            Some("http://127.0.0.1:7070")
        );
        let unix = StoreUrl::Grpc {
            endpoint: GrpcEndpoint::Unix {
                path: "/run/storefs.sock".into(),
            },
        };
        assert_eq!(ok("grpc+unix:///run/storefs.sock"), unix);
        assert_eq!(ok("grpc+unix:/run/storefs.sock"), unix);
        assert_eq!(
            ok("grpc://[::1]:7070"),
            StoreUrl::Grpc {
                endpoint: GrpcEndpoint::Tcp {
                    host: "[::1]".into(),
                    port: 7070
                }
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "memory:",
            "redb:///var/lib/storefs",
            "redb:///tmp/with%20space",
            "grpc://example.org:7070",
            "grpc+unix:///run/storefs.sock",
            "file:///srv/objects",
            "s3://bucket?region=us-east-1",
            "s3://bucket/a/b.c?endpoint=http%3A%2F%2F127.0.0.1%3A3900&region=garage",
        ] {
            let u = ok(s);
            assert_eq!(u.to_string(), s);
            assert_eq!(ok(&u.to_string()), u);
        }
    }

    #[test]
    fn unknown_scheme_names_it_and_the_known_ones() {
        let err = StoreUrl::parse("gs://bucket/x").unwrap_err();
        assert_eq!(
            err,
            StoreUrlError::UnknownScheme {
                scheme: "gs".into(),
                url: "gs://bucket/x".into()
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("\"gs\"") && msg.contains("redb:///path") && msg.contains("s3://"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_urls_are_refused() {
        for s in [
            "redb://relative/dir",
            "redb:relative",
            "redb:///",
            "redb:///x?cache=1",
            "memory:/x",
            "memory://host",
            "grpc://host",
            "grpc://:70",
            "grpc://h:70/path",
            "grpc+unix://host/sock",
            "grpc+unix:relative.sock",
            "/just/a/path",
            "",
            "file://host/dir",
            "file:///dir?x=1",
            "s3://",
            "s3://bucket:9000",
            "s3://user@bucket",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?endpoint=http://h:1/path",
            "s3://bucket?region=",
            "s3://bucket?regoin=x",
            "s3://bucket?region=a&region=b",
            "s3://bucket/a//b",
            "s3://bucket/sp%20ace",
            "s3://bucket#frag",
        ] {
            assert!(
                matches!(StoreUrl::parse(s), Err(StoreUrlError::Invalid { .. })),
                "{s:?} gave {:?}",
                StoreUrl::parse(s)
            );
        }
    }

    #[test]
    fn object_store_urls() {
        assert_eq!(
            ok("s3://b/pre/fix/?endpoint=http://127.0.0.1:3900/&region=garage"),
            StoreUrl::ObjectStore {
                location: ObjectStoreLocation::S3 {
                    bucket: "b".into(),
                    prefix: "pre/fix".into(),
                    endpoint: Some("http://127.0.0.1:3900".into()),
                    region: "garage".into(),
                }
            }
        );
        assert_eq!(
            ok("s3://b"),
            StoreUrl::ObjectStore {
                location: ObjectStoreLocation::S3 {
                    bucket: "b".into(),
                    prefix: String::new(),
                    endpoint: None,
                    region: DEFAULT_REGION.into(),
                }
            }
        );
        assert_eq!(
            ok("file:///srv/objects"),
            StoreUrl::ObjectStore {
                location: ObjectStoreLocation::File {
                    dir: "/srv/objects".into()
                }
            }
        );
    }

    #[tokio::test]
    async fn open_local_stores() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("store");
        let url = StoreUrl::Redb { dir: dir.clone() };
        let opened = open_castore(&url).await.unwrap();
        assert!(dir.join(crate::STORE_FILE_NAME).is_file());
        let redb = opened.redb.as_ref().unwrap();
        assert_eq!(redb.path(), dir.join(crate::STORE_FILE_NAME));
        let d = opened
            .directories
            .put(crate::Directory::new())
            .await
            .unwrap();
        assert!(opened.directories.get(&d).await.unwrap().is_some());
        let mem = open_castore(&StoreUrl::Memory).await.unwrap();
        assert!(mem.redb.is_none());
        assert!(matches!(
            open_castore(&ok("grpc://h:1")).await,
            Err(OpenStoreError::NotLocal(_))
        ));
    }
}
