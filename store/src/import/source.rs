//! Where a binary cache lives: a local directory (`file://DIR`) or an HTTP
//! server (`http://`, `https://`), and how its files are fetched.
//!
//! Small files (`nix-cache-info`, narinfos) are read whole up to
//! [`MAX_SMALL_FILE`]; NARs are opened as streams and never held whole.
//! Paths inside the cache are relative to its root and may not climb out
//! of it (`..`, absolute paths), whatever a narinfo's `URL` says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use url::Url;

/// Largest `nix-cache-info` or narinfo read; real ones are well under 64 KiB.
pub const MAX_SMALL_FILE: u64 = 1 << 20;

/// Longest wait for a TCP connection to an HTTP cache.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest silence while reading a response; a stalled server fails the
/// path instead of hanging the import.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A stream of one file of the cache.
pub type CacheReader = Box<dyn AsyncRead + Send + Unpin>;

/// Why a cache file could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The URL is not one of `file://DIR`, `http(s)://HOST/...`.
    #[error("unsupported binary cache URL {0:?}: expected file://DIR or http(s)://HOST/...")]
    UnsupportedUrl(String),
    /// A path inside the cache that would leave it.
    #[error("refusing cache file {0:?}: not a relative path inside the cache")]
    BadRelativePath(String),
    /// Reading a local file failed.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// An HTTP request failed or answered with an error status.
    #[error("fetching {url}: {message}")]
    Http {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A small file larger than [`MAX_SMALL_FILE`].
    #[error("{0} is larger than {MAX_SMALL_FILE} bytes")]
    TooLarge(String),
    /// The cache cannot list its narinfos (HTTP has no directory listing).
    #[error("the binary cache {0} cannot be listed; name the store paths to import")]
    NoListing(String),
}

/// A binary cache to read from.
#[derive(Debug, Clone)]
pub enum CacheSource {
    /// A directory on this machine, as `nix copy --to file://DIR` writes it.
    File(PathBuf),
    /// An HTTP(S) server; `base` ends with `/`.
    Http {
        /// The cache root; files are joined onto it.
        base: Url,
        /// The client, shared by every request of an import.
        client: reqwest::Client,
    },
}

impl CacheSource {
    /// Parse `file:///dir` or `http(s)://host[:port]/prefix`.
    pub fn parse(url: &str) -> Result<Self, SourceError> {
        let bad = || SourceError::UnsupportedUrl(url.to_owned());
        let parsed = Url::parse(url).map_err(|_| bad())?;
        match parsed.scheme() {
            "file" => {
                let path = parsed.to_file_path().map_err(|_| bad())?;
                Ok(CacheSource::File(path))
            }
            "http" | "https" => {
                let mut base = parsed;
                base.set_query(None);
                base.set_fragment(None);
                if !base.path().ends_with('/') {
                    let p = format!("{}/", base.path());
                    base.set_path(&p);
                }
                let client = reqwest::Client::builder()
                    .user_agent(concat!("storefs/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build()
                    .map_err(|e| SourceError::Http {
                        url: url.to_owned(),
                        message: e.to_string(),
                    })?;
                Ok(CacheSource::Http { base, client })
            }
            _ => Err(bad()),
        }
    }

    /// The cache as a URL, for messages.
    pub fn describe(&self) -> String {
        match self {
            CacheSource::File(p) => format!("file://{}", p.display()),
            CacheSource::Http { base, .. } => base.to_string(),
        }
    }

    /// Read a small file whole; `None` if the cache has no such file.
    pub async fn get_small(&self, rel: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(reader) = self.open(rel).await? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        let n = reader
            .take(MAX_SMALL_FILE + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| SourceError::Io {
                path: self.location(rel),
                source: e,
            })?;
        if n as u64 > MAX_SMALL_FILE {
            return Err(SourceError::TooLarge(self.location(rel)));
        }
        Ok(Some(buf))
    }

    /// Open a file of the cache as a stream; `None` if there is no such file.
    /// Over HTTP the name may carry a query (`nar/x.nar?hash=…`, as harmonia
    /// writes NAR URLs); a local cache has no queries.
    pub async fn open(&self, rel: &str) -> Result<Option<CacheReader>, SourceError> {
        match self {
            CacheSource::File(dir) => {
                let rel = check_relative(rel)?;
                let path = dir.join(rel);
                match tokio::fs::File::open(&path).await {
                    Ok(f) => Ok(Some(Box::new(f))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(SourceError::Io {
                        path: path.display().to_string(),
                        source: e,
                    }),
                }
            }
            CacheSource::Http { base, client } => {
                let (path, query) = match rel.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (rel, None),
                };
                check_relative(path)?;
                if query.is_some_and(|q| q.contains(['#', '\\', '\0'])) {
                    return Err(SourceError::BadRelativePath(rel.to_owned()));
                }
                let url = base
                    .join(rel)
                    .map_err(|_| SourceError::BadRelativePath(rel.to_owned()))?;
                let http_err = |message: String| SourceError::Http {
                    url: url.to_string(),
                    message,
                };
                let resp = client
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| http_err(error_chain(&e)))?;
                let status = resp.status();
                // Nix treats 403 like 404 too (S3 answers 403 for absent keys).
                if status == reqwest::StatusCode::NOT_FOUND
                    || status == reqwest::StatusCode::FORBIDDEN
                {
                    return Ok(None);
                }
                if !status.is_success() {
                    return Err(http_err(format!("HTTP status {status}")));
                }
                let stream = resp.bytes_stream().map_err(std::io::Error::other);
                Ok(Some(Box::new(tokio_util::io::StreamReader::new(stream))))
            }
        }
    }

    /// The hash parts of every narinfo in the cache. Only a `file://`
    /// cache can be listed.
    pub async fn list_narinfos(&self) -> Result<Vec<String>, SourceError> {
        let dir = match self {
            CacheSource::File(dir) => dir.clone(),
            CacheSource::Http { .. } => return Err(SourceError::NoListing(self.describe())),
        };
        let io_err = |e| SourceError::Io {
            path: dir.display().to_string(),
            source: e,
        };
        let mut rd = tokio::fs::read_dir(&dir).await.map_err(io_err)?;
        let mut out = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(io_err)? {
            let name = entry.file_name();
            if let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(".narinfo")) {
                out.push(hash.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn location(&self, rel: &str) -> String {
        match self {
            CacheSource::File(dir) => dir.join(rel).display().to_string(),
            CacheSource::Http { base, .. } => base
                .join(rel)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| rel.to_owned()),
        }
    }
}

/// A cache-relative path: no leading `/`, no `..`, no `.`, no empty
/// components, no backslashes, no query or scheme tricks.
fn check_relative(rel: &str) -> Result<&str, SourceError> {
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && !rel.contains(['\\', '?', '#', ':', '\0'])
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok && !Path::new(rel).is_absolute() {
        Ok(rel)
    } else {
        Err(SourceError::BadRelativePath(rel.to_owned()))
    }
}

/// A reqwest error with its causes, which hold the useful part
/// ("connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert!(matches!(
            CacheSource::parse("file:///tmp/c").unwrap(),
            CacheSource::File(p) if p == Path::new("/tmp/c")
        ));
        match CacheSource::parse("http://127.0.0.1:8080/cache?priority=3").unwrap() {
            CacheSource::Http { base, .. } => {
                assert_eq!(base.as_str(), "http://127.0.0.1:8080/cache/");
                assert_eq!(
                    base.join("x.narinfo").unwrap().as_str(),
                    "http://127.0.0.1:8080/cache/x.narinfo"
                );
            }
            other => panic!("not http: {other:?}"),
        }
        assert!(matches!(
            CacheSource::parse("s3://bucket"),
            Err(SourceError::UnsupportedUrl(_))
        ));
        assert!(matches!(
            CacheSource::parse("/tmp/c"),
            Err(SourceError::UnsupportedUrl(_))
        ));
    }

    #[test]
    fn refuses_escaping_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "nar/../../x",
            "a//b",
            "http://evil/x",
            "a\\b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
        assert!(check_relative("nar/0abc.nar.xz").is_ok());
    }

    #[tokio::test]
    async fn file_cache_reads_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
        std::fs::write(dir.path().join("abc.narinfo"), "x").unwrap();
        std::fs::write(dir.path().join("other"), "y").unwrap();
        let src = CacheSource::File(dir.path().to_owned());
        assert_eq!(
            src.get_small("nix-cache-info").await.unwrap().unwrap(),
            b"StoreDir: /nix/store\n"
        );
        assert!(src.get_small("missing").await.unwrap().is_none());
        assert_eq!(src.list_narinfos().await.unwrap(), vec!["abc".to_owned()]);
    }
}
