//! Blobs and directories in an object store (S3, or a local directory
//! through the same code), with the `object_store` crate.
//!
//! The layout is snix's, so a bucket written by one is readable by the
//! other (`layout.rs`, `docs/object-store.md`). Every object read is
//! checked before use; an object that fails is an error naming its key,
//! and is logged. Writes are content-addressed, so two writers of the
//! same content at once are harmless.
//!
//! - [`ObjectStoreLocation`]: where (parsed from `s3://…` and `file:///…`
//!   store URLs in `url.rs`); [`S3Credentials`]: the keys.
//! - [`open_object_store`]: build the store, check at startup that it
//!   answers (reachable, credentials good, bucket there), and return the
//!   services over it.
//! - [`ObjectStoreBlobService`], [`ObjectStoreDirectoryService`] over one
//!   [`Bucket`]; path infos live in the store crate, over the same bucket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use error::chain;

mod blob;
mod bucket;
mod directory;
mod error;
pub mod layout;

pub use blob::ObjectStoreBlobService;
pub use bucket::{Bucket, RequestCounts, RequestCountsSnapshot};
pub use directory::ObjectStoreDirectoryService;

/// Where an object store is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectStoreLocation {
    /// An S3 (or S3-compatible) bucket, addressed path-style.
    S3 {
        /// The bucket's name.
        bucket: String,
        /// The key prefix every object sits under (no leading or trailing
        /// `/`; empty for the bucket's root).
        prefix: String,
        /// The service's base URL (`http://host:port`); `None`: AWS.
        endpoint: Option<String>,
        /// The region requests are signed for.
        region: String,
    },
    /// A local directory, one file per object.
    File {
        /// The directory (absolute; created if missing).
        dir: PathBuf,
    },
}

/// The region used when a URL names none (AWS's default; Garage's
/// default is `garage`).
pub const DEFAULT_REGION: &str = "us-east-1";

/// S3 credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// Parse a credentials file: `key = value` lines, as in AWS's shared
    /// credentials file (`aws_access_key_id`, `aws_secret_access_key`,
    /// optionally `aws_session_token`; the `AWS_…` environment names are
    /// accepted too). `[section]` headers, blank lines and `#`/`;`
    /// comments are skipped; only the first section with keys counts.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let (mut id, mut secret, mut token) = (None, None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                if id.is_some() || secret.is_some() {
                    break;
                }
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(CredentialsError {
                    reason: format!("line {}: expected key = value", n + 1),
                });
            };
            let v = v.trim().to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                other => {
                    return Err(CredentialsError {
                        reason: format!("line {}: unknown key {other:?}", n + 1),
                    });
                }
            }
        }
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key))
                if !access_key_id.is_empty() && !secret_access_key.is_empty() =>
            {
                Ok(Self {
                    access_key_id,
                    secret_access_key,
                    session_token: token.filter(|t| !t.is_empty()),
                })
            }
            _ => Err(CredentialsError {
                reason: "needs both aws_access_key_id and aws_secret_access_key".into(),
            }),
        }
    }
}

/// Why a credentials file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("S3 credentials: {reason}")]
#[non_exhaustive]
pub struct CredentialsError {
    /// What is wrong, and where.
    pub reason: String,
}

/// How requests to the object store are bounded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ObjectStoreOptions {
    /// Credentials (S3 only; required there).
    pub credentials: Option<S3Credentials>,
    /// The longest one request may take, retries included.
    pub request_timeout: Duration,
    /// The longest a connection may take to open.
    pub connect_timeout: Duration,
    /// Retries of a request that failed in a way worth retrying.
    pub max_retries: usize,
}

impl Default for ObjectStoreOptions {
    fn default() -> Self {
        Self {
            credentials: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
        }
    }
}

/// Why [`open_object_store`] failed: each says what to fix, on one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenObjectStoreError {
    /// No credentials for an S3 store.
    #[error(
        "no S3 credentials for bucket {bucket}: set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or pass --s3-credentials-file"
    )]
    NoCredentials {
        /// The bucket.
        bucket: String,
    },
    /// The endpoint did not answer.
    #[error(
        "cannot reach the object store at {endpoint}: {reason} (check endpoint= in the store \
         URL and that the service is up)"
    )]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What happened.
        reason: String,
    },
    /// The service refused the credentials.
    #[error(
        "the object store at {endpoint} refused the credentials for bucket {bucket}: {reason} \
         (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --s3-credentials-file, and the \
         key's access to the bucket)"
    )]
    Credentials {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What the service said.
        reason: String,
    },
    /// The bucket does not exist.
    #[error(
        "bucket {bucket} does not exist at {endpoint} (create it, or fix the bucket name in \
         the store URL)"
    )]
    NoSuchBucket {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
    },
    /// The store could not be configured or answered strangely.
    #[error("object store {location}: {reason}")]
    Other {
        /// Which store.
        location: String,
        /// What failed.
        reason: String,
    },
}

/// The blob and directory services over one object store, and its bucket
/// (the store crate keeps path infos in the same bucket).
#[derive(Clone)]
pub struct ObjectCastore {
    /// Blobs.
    pub blobs: Arc<ObjectStoreBlobService>,
    /// Directories.
    pub directories: Arc<ObjectStoreDirectoryService>,
    /// The bucket and prefix.
    pub bucket: Bucket,
}

impl ObjectCastore {
    /// The services over `bucket`.
    pub fn new(bucket: Bucket) -> Self {
        Self {
            blobs: Arc::new(ObjectStoreBlobService::new(bucket.clone())),
            directories: Arc::new(ObjectStoreDirectoryService::new(bucket.clone())),
            bucket,
        }
    }
}

/// Open the object store at `location`, check that it answers (one LIST
/// of the prefix), and return the services over it.
pub async fn open_object_store(
    location: &ObjectStoreLocation,
    options: &ObjectStoreOptions,
) -> Result<ObjectCastore, OpenObjectStoreError> {
    let (store, prefix): (Arc<dyn ObjectStore>, Path) = match location {
        ObjectStoreLocation::File { dir } => {
            let other = |reason: String| OpenObjectStoreError::Other {
                location: format!("file://{}", dir.display()),
                reason,
            };
            std::fs::create_dir_all(dir)
                .map_err(|e| other(format!("creating {}: {e}", dir.display())))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| other(chain(&e)))?;
            (Arc::new(fs), Path::default())
        }
        ObjectStoreLocation::S3 {
            bucket,
            prefix,
            endpoint,
            region,
        } => {
            let creds = options.credentials.as_ref().ok_or_else(|| {
                OpenObjectStoreError::NoCredentials {
                    bucket: bucket.clone(),
                }
            })?;
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_access_key_id(&creds.access_key_id)
                .with_secret_access_key(&creds.secret_access_key)
                .with_virtual_hosted_style_request(false)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: options.max_retries,
                    retry_timeout: options.request_timeout,
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_timeout(options.request_timeout)
                        .with_connect_timeout(options.connect_timeout),
                );
            if let Some(token) = &creds.session_token {
                b = b.with_token(token);
            }
            if let Some(e) = endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            let s3 = b.build().map_err(|e| OpenObjectStoreError::Other {
                location: format!("s3://{bucket}"),
                reason: chain(&e),
            })?;
            (Arc::new(s3), Path::from(prefix.as_str()))
        }
    };
    probe(location, store.as_ref(), &prefix).await?;
    Ok(ObjectCastore::new(Bucket::new(store, prefix)))
}

/// One LIST of the prefix: the cheapest request that fails for each of
/// a bad endpoint, bad credentials and a missing bucket.
async fn probe(
    location: &ObjectStoreLocation,
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<(), OpenObjectStoreError> {
    let Err(e) = store.list_with_delimiter(Some(prefix)).await else {
        return Ok(());
    };
    let reason = chain(&e);
    let ObjectStoreLocation::S3 {
        bucket, endpoint, ..
    } = location
    else {
        return Err(OpenObjectStoreError::Other {
            location: format!("{location:?}"),
            reason,
        });
    };
    let endpoint = endpoint
        .clone()
        .unwrap_or_else(|| "the AWS endpoint".to_owned());
    let bucket = bucket.clone();
    Err(classify(endpoint, bucket, reason, &e))
}

/// Which of the startup failures `e` is.
fn classify(
    endpoint: String,
    bucket: String,
    reason: String,
    e: &object_store::Error,
) -> OpenObjectStoreError {
    let has = |s: &str| reason.contains(s);
    if has("NoSuchBucket") {
        return OpenObjectStoreError::NoSuchBucket { endpoint, bucket };
    }
    if matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403 Forbidden",
        "401 Unauthorized",
    ]
    .iter()
    .any(|s| has(s))
    {
        return OpenObjectStoreError::Credentials {
            endpoint,
            bucket,
            reason,
        };
    }
    if [
        "error sending request",
        "connect",
        "dns error",
        "timed out",
        "Connection refused",
    ]
    .iter()
    .any(|s| has(s))
    {
        return OpenObjectStoreError::Unreachable { endpoint, reason };
    }
    OpenObjectStoreError::Other {
        location: format!("s3://{bucket} at {endpoint}"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files() {
        let c = S3Credentials::parse(
            "[default]\n# comment\naws_access_key_id = GK123\naws_secret_access_key=abc\n\n[other]\naws_access_key_id = x\n",
        )
        .unwrap();
        assert_eq!(c.access_key_id, "GK123");
        assert_eq!(c.secret_access_key, "abc");
        assert!(!format!("{c:?}").contains("abc"), "Debug hides the secret");
        let c = S3Credentials::parse("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n").unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("a", "b")
        );
        for bad in ["", "aws_access_key_id = a", "nonsense", "x = y\n"] {
            assert!(S3Credentials::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_local_store_opens_and_a_missing_s3_key_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("objects");
        let opened = open_object_store(
            &ObjectStoreLocation::File { dir: dir.clone() },
            &ObjectStoreOptions::default(),
        )
        .await
        .unwrap();
        assert!(dir.is_dir());
        assert_eq!(opened.bucket.prefix().as_ref(), "");
        let s3 = ObjectStoreLocation::S3 {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: DEFAULT_REGION.into(),
        };
        let err = open_object_store(&s3, &ObjectStoreOptions::default())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, OpenObjectStoreError::NoCredentials { .. }),
            "{err}"
        );
        let options = ObjectStoreOptions {
            credentials: Some(
                S3Credentials::parse("aws_access_key_id=a\naws_secret_access_key=b").unwrap(),
            ),
            max_retries: 0,
            ..ObjectStoreOptions::default()
        };
        let err = open_object_store(&s3, &options).await.err().unwrap();
        assert!(
            matches!(err, OpenObjectStoreError::Unreachable { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
}
