//! Building services from store URLs: the embedded default, `memory:`,
//! `redb://`, remote gRPC stores, and object stores (`s3://`, `file://`).
//! This is the one place that knows which backend a URL means.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storefs_castore::objectstore::{
    ObjectStoreLocation, ObjectStoreOptions, RequestCounts, S3Credentials, open_object_store,
};
use storefs_castore::{GrpcEndpoint, StoreUrl, open_castore};
use storefs_grpc::{ClientConfig, Replicas, Token};
use storefs_store::StoreDir;
use storefs_store::{
    MemoryPathInfoService, ObjectStorePathInfoService, PathInfoService, RedbPathInfoService,
};

pub use storefs_store::Services;

use crate::cli::GlobalArgs;

/// The resolved global flags.
pub struct Globals {
    /// Which store (the first replica, when `--store` lists several).
    pub url: StoreUrl,
    /// Every replica of a gRPC store given as a list
    /// (`grpc://a:7070,b:7070`); empty for a single URL.
    pub replicas: Vec<GrpcEndpoint>,
    /// `--store` as given, for messages.
    pub display: String,
    /// The store directory paths are named in.
    pub store_dir: StoreDir,
    /// The bearer token for a gRPC store.
    pub token: Option<Token>,
    /// `--s3-credentials-file`, for an `s3://` store.
    pub s3_credentials_file: Option<PathBuf>,
}

impl Globals {
    /// Check the global flags.
    pub fn from_args(args: &GlobalArgs) -> anyhow::Result<Self> {
        let mut replicas = Vec::new();
        let url = match &args.store {
            Some(s) => match storefs_grpc::parse_replicas(s) {
                Some(list) => {
                    replicas = list.with_context(|| format!("--store {s}"))?;
                    let first = replicas.first().cloned().context("--store: no replica")?;
                    StoreUrl::Grpc { endpoint: first }
                }
                None => StoreUrl::parse(s).with_context(|| format!("--store {s}"))?,
            },
            None => StoreUrl::Redb {
                dir: default_data_dir(),
            },
        };
        let display = args.store.clone().unwrap_or_else(|| url.to_string());
        let store_dir = StoreDir::new(&args.store_dir)
            .with_context(|| format!("--store-dir {}", args.store_dir))?;
        let token = read_token(args.token_file.as_deref())?;
        Ok(Self {
            url,
            replicas,
            display,
            store_dir,
            token,
            s3_credentials_file: args.s3_credentials_file.clone(),
        })
    }
}

/// The token from `--token-file`, else `$STOREFS_TOKEN`, else none.
pub fn read_token(file: Option<&Path>) -> anyhow::Result<Option<Token>> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading token file {}", f.display()))?,
        None => match std::env::var("STOREFS_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t,
            _ => return Ok(None),
        },
    };
    Ok(Some(Token::new(text.trim()).context("the token")?))
}

/// How a command wants its store opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// The longest a request to a remote may take (`--timeout`): an S3
    /// request (retries included), or one attempt at a gRPC replica (a
    /// share of it when there are several, so that the others get their
    /// turn within it). `None`: the defaults (30 s).
    pub timeout: Option<Duration>,
}

/// What [`open_with`] opened.
pub struct Opened {
    /// The services.
    pub services: Services,
    /// The replicas of a gRPC store, for their figures.
    pub replicas: Option<Replicas>,
    /// The requests made to an object store, for figures.
    pub object_requests: Option<Arc<RequestCounts>>,
}

/// Prints the requests made to the object store on one line on stderr
/// when dropped (as `serve` exits), for operators and `bench/run`.
pub struct RequestReport(pub Arc<RequestCounts>);

impl Drop for RequestReport {
    fn drop(&mut self) {
        eprintln!("storefs: {}", self.0.snapshot());
    }
}

/// Open the services of the store the global flags name. Must run inside
/// a tokio runtime.
pub async fn open(globals: &Globals) -> anyhow::Result<Services> {
    Ok(open_with(globals, OpenOptions::default()).await?.services)
}

/// [`open`], with the request bounds of `options`, and the replicas' figures.
pub async fn open_with(globals: &Globals, options: OpenOptions) -> anyhow::Result<Opened> {
    let (url, token) = (&globals.url, globals.token.clone());
    match url {
        StoreUrl::ObjectStore { location } => {
            let credentials = match location {
                ObjectStoreLocation::S3 { .. } => {
                    s3_credentials(globals.s3_credentials_file.as_deref())?
                }
                _ => None,
            };
            let mut object_options = ObjectStoreOptions::default();
            object_options.credentials = credentials;
            if let Some(t) = options.timeout {
                object_options.request_timeout = t;
                object_options.connect_timeout = object_options.connect_timeout.min(t);
            }
            let objects = open_object_store(location, &object_options).await?;
            let path_info = Arc::new(ObjectStorePathInfoService::new(objects.bucket.clone()));
            Ok(Opened {
                object_requests: Some(objects.bucket.counts().clone()),
                services: Services::new(objects.blobs, objects.directories, path_info),
                replicas: None,
            })
        }
        StoreUrl::Grpc { endpoint } => {
            let endpoints = if globals.replicas.is_empty() {
                std::slice::from_ref(endpoint)
            } else {
                &globals.replicas[..]
            };
            let mut config = ClientConfig {
                token,
                ..ClientConfig::default()
            };
            if let Some(t) = options.timeout {
                // Each replica gets a share, so that a silent one leaves the
                // others time to answer within `t`.
                let n = u32::try_from(endpoints.len()).unwrap_or(u32::MAX);
                let share = if n > 1 { t / (n + 1) } else { t };
                let share = share.max(Duration::from_secs(1));
                config.call_timeout = config.call_timeout.min(share);
                config.idle_timeout = config.idle_timeout.min(share);
                config.connect_timeout = config.connect_timeout.min(share);
            }
            let remote = storefs_grpc::connect_replicas(endpoints, config)
                .with_context(|| format!("connecting to {}", globals.display))?;
            Ok(Opened {
                replicas: Some(remote.replicas.clone()),
                services: remote.into(),
                object_requests: None,
            })
        }
        _ => {
            let local = open_castore(url).await?;
            let path_info: Arc<dyn PathInfoService> = match &local.redb {
                Some(redb) => Arc::new(
                    RedbPathInfoService::new(redb.database().clone())
                        .await
                        .context("opening the path info table")?,
                ),
                None => Arc::new(MemoryPathInfoService::new()),
            };
            Ok(Opened {
                services: Services::new(local.blobs, local.directories, path_info),
                replicas: None,
                object_requests: None,
            })
        }
    }
}

/// S3 credentials: `--s3-credentials-file`, else `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`); `None` if neither
/// (opening the store then says what to set).
pub fn s3_credentials(file: Option<&Path>) -> anyhow::Result<Option<S3Credentials>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --s3-credentials-file {}", f.display()))?;
        return S3Credentials::parse(&text)
            .map(Some)
            .with_context(|| format!("--s3-credentials-file {}", f.display()));
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Ok(
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        },
    )
}

/// The embedded store's directory: `$STOREFS_DATA`, else
/// `$XDG_DATA_HOME/storefs`, else `~/.local/share/storefs`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STOREFS_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("storefs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".local/share/storefs")
}
