//! Building services from store URLs: the embedded default, `memory:`,
//! `redb://`, remote gRPC stores, and object stores (`s3://`, `file://`).
//! This is the one place that knows which backend a URL means.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use storefs_castore::objectstore::{
    ObjectStoreLocation, ObjectStoreOptions, S3Credentials, open_object_store,
};
use storefs_castore::{StoreUrl, open_castore};
use storefs_grpc::{ClientConfig, Token};
use storefs_store::StoreDir;
use storefs_store::{
    MemoryPathInfoService, ObjectStorePathInfoService, PathInfoService, RedbPathInfoService,
};

pub use storefs_store::Services;

use crate::cli::GlobalArgs;

/// The resolved global flags.
pub struct Globals {
    /// Which store.
    pub url: StoreUrl,
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
        let url = match &args.store {
            Some(s) => StoreUrl::parse(s).with_context(|| format!("--store {s}"))?,
            None => StoreUrl::Redb {
                dir: default_data_dir(),
            },
        };
        let store_dir = StoreDir::new(&args.store_dir)
            .with_context(|| format!("--store-dir {}", args.store_dir))?;
        let token = read_token(args.token_file.as_deref())?;
        Ok(Self {
            url,
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

/// Open the services of the store the global flags name. Must run inside
/// a tokio runtime.
pub async fn open(globals: &Globals) -> anyhow::Result<Services> {
    let (url, token) = (&globals.url, globals.token.clone());
    match url {
        StoreUrl::ObjectStore { location } => {
            let credentials = match location {
                ObjectStoreLocation::S3 { .. } => {
                    s3_credentials(globals.s3_credentials_file.as_deref())?
                }
                _ => None,
            };
            let mut options = ObjectStoreOptions::default();
            options.credentials = credentials;
            let objects = open_object_store(location, &options).await?;
            let path_info = Arc::new(ObjectStorePathInfoService::new(objects.bucket.clone()));
            Ok(Services::new(objects.blobs, objects.directories, path_info))
        }
        StoreUrl::Grpc { endpoint } => {
            let config = ClientConfig {
                token,
                ..ClientConfig::default()
            };
            let remote = storefs_grpc::connect_endpoint(endpoint, config)
                .with_context(|| format!("connecting to {url}"))?;
            Ok(remote.into())
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
            Ok(Services::new(local.blobs, local.directories, path_info))
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
