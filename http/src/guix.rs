//! The Guix flavour of the view: the URL layout and narinfos of `guix
//! publish` (guix/scripts/publish.scm), so a Guix machine substitutes from
//! storefs with `--substitute-urls=http://…` once it has authorized the
//! key (`guix archive --authorize < signing-key.pub`).
//!
//! | request | answer |
//! |---|---|
//! | `GET/HEAD /nix-cache-info` | `StoreDir`, `WantMassQuery: 0`, `Priority: 100` |
//! | `GET/HEAD /<hashpart>.narinfo` | Guix narinfo, signed on the fly, one URL group per offered compression |
//! | `GET/HEAD /nar/<base name>` | the NAR, uncompressed, with its length |
//! | `GET/HEAD /nar/<compression>/<base name>` | the NAR compressed on the fly (`zstd`, `gzip`) |
//! | `GET/HEAD /signing-key.pub` | the public key, as `guix archive` writes it |
//!
//! Base names in URLs are percent-encoded as Guile encodes them. A path not
//! in the store is 404, like an unknown file; another method is 405.

use std::sync::Arc;

use async_compression::Level;
use async_compression::tokio::bufread::{GzipEncoder, ZstdEncoder};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use storefs_store::PathInfo;
use storefs_store::guix::SecretKey;
use storefs_store::guix::{GuixNarInfo, NarOffer, nar_url, uri_decode};
use storefs_store::{HASH_PART_LEN, StorePath, parse_hash_part};
use tokio::sync::Semaphore;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::failure::Failure;
use crate::nar::{ByteRange, Tree, nar_stream};
use crate::server::{HttpConfig, MAX_CONCURRENT_REQUESTS};
use storefs_store::Services;

/// A compression the Guix view offers NARs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuixCompression {
    /// The NAR as is, at `nar/<base name>`, with its `FileSize`.
    None,
    /// zstd, at `nar/zstd/<base name>`.
    Zstd,
    /// gzip, at `nar/gzip/<base name>` (what Guix clients before 1.1 know).
    Gzip,
}

impl GuixCompression {
    /// The name in narinfos and URLs.
    pub fn name(self) -> &'static str {
        match self {
            GuixCompression::None => "none",
            GuixCompression::Zstd => "zstd",
            GuixCompression::Gzip => "gzip",
        }
    }

    /// The compression named `s`, if the view can make it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(GuixCompression::None),
            "zstd" => Some(GuixCompression::Zstd),
            "gzip" => Some(GuixCompression::Gzip),
            _ => None,
        }
    }
}

/// How the Guix flavour signs and what it offers.
#[derive(Debug, Clone)]
pub struct GuixHttpConfig {
    /// Signs every narinfo; without it narinfos are unsigned, which Guix
    /// clients refuse.
    pub sign_key: Option<SecretKey>,
    /// The host name in `Signature: 1;<host>;…` (Guix puts the server's).
    pub host_name: String,
    /// The compressions offered, in narinfo order.
    pub compressions: Vec<GuixCompression>,
}

impl GuixHttpConfig {
    /// Offer zstd, gzip and uncompressed NARs, signed by `sign_key` as
    /// `host_name`.
    pub fn new(sign_key: Option<SecretKey>, host_name: impl Into<String>) -> Self {
        Self {
            sign_key,
            host_name: host_name.into(),
            compressions: vec![
                GuixCompression::Zstd,
                GuixCompression::Gzip,
                GuixCompression::None,
            ],
        }
    }
}

struct GuixState {
    services: Services,
    config: HttpConfig,
    guix: GuixHttpConfig,
    slots: Arc<Semaphore>,
}

/// The routes of the Guix flavour.
pub(crate) fn router(services: Services, config: HttpConfig, guix: GuixHttpConfig) -> Router {
    let state = Arc::new(GuixState {
        services,
        config,
        guix,
        slots: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
    });
    Router::new().fallback(handle).with_state(state)
}

fn not_found(what: impl Into<String>) -> Failure {
    Failure::not_found(what)
}

fn text(content_type: &'static str, body: String) -> Response {
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

async fn handle(State(state): State<Arc<GuixState>>, req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    if !head && req.method() != Method::GET {
        return Failure(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not supported", req.method()),
        )
        .into_response();
    }
    // The same read token as the Nix flavour (see `HttpAuth`).
    if let Err(refused) = state.config.auth.check(req.method(), req.headers()) {
        return *refused;
    }
    // Closed only if the semaphore is closed, which it never is.
    let Ok(permit) = state.slots.clone().acquire_owned().await else {
        return Failure::internal("server is shutting down").into_response();
    };
    let path = req.uri().path().to_owned();
    let mut resp = match route(&state, &path, permit).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    };
    if head {
        *resp.body_mut() = Body::empty();
    }
    resp
}

async fn route(
    state: &GuixState,
    path: &str,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response, Failure> {
    let rel = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["nix-cache-info"] => Ok(text(
            "text/plain",
            format!(
                "StoreDir: {}\nWantMassQuery: 0\nPriority: 100\n",
                state.config.store_dir
            ),
        )),
        ["signing-key.pub"] => match &state.guix.sign_key {
            Some(k) => Ok(text(
                "text/plain; charset=utf-8",
                k.public().to_file_text(),
            )),
            None => Err(not_found("this server has no signing key")),
        },
        [file] if file.ends_with(".narinfo") => {
            let hash = file.trim_end_matches(".narinfo");
            let info = by_hash(state, hash).await?;
            Ok(text("application/x-nix-narinfo", render(state, info)))
        }
        ["nar", base] => nar(state, base, GuixCompression::None, permit).await,
        ["nar", comp, base] => {
            let c = GuixCompression::parse(comp)
                .ok_or_else(|| not_found(format!("no such compression {comp:?}")))?;
            nar(state, base, c, permit).await
        }
        [""] | ["index.html"] => Ok(text(
            "text/plain; charset=utf-8",
            "storefs: a Guix substitute server (guix publish layout); its key is at /signing-key.pub\n"
                .to_owned(),
        )),
        _ => Err(not_found(format!("Resource not found: {path}"))),
    }
}

async fn by_hash(state: &GuixState, hash: &str) -> Result<PathInfo, Failure> {
    if hash.len() != HASH_PART_LEN {
        return Err(not_found(format!("Resource not found: {hash}.narinfo")));
    }
    let digest = parse_hash_part(hash)
        .map_err(|_| not_found(format!("Resource not found: {hash}.narinfo")))?;
    state
        .services
        .path_info
        .get(digest)
        .await
        .map_err(Failure::internal)?
        .ok_or_else(|| not_found(format!("no store path with hash {hash}")))
}

/// The narinfo `guix publish` would write for `info`.
fn render(state: &GuixState, info: PathInfo) -> String {
    let base = info.store_path.base_name();
    let mut references = info.references;
    references.sort_by_cached_key(StorePath::base_name);
    references.dedup();
    let narinfo = GuixNarInfo {
        offers: state
            .guix
            .compressions
            .iter()
            .map(|c| NarOffer {
                url: nar_url(c.name(), &base),
                compression: c.name().to_owned(),
                file_size: (*c == GuixCompression::None).then_some(info.nar_size),
            })
            .collect(),
        store_path: info.store_path,
        nar_sha256: info.nar_sha256,
        nar_size: info.nar_size,
        references,
        deriver: info.deriver,
        system: None,
        signature: None,
    };
    let key = state
        .guix
        .sign_key
        .as_ref()
        .map(|k| (k, state.guix.host_name.as_str()));
    narinfo.render(&state.config.store_dir, key)
}

async fn nar(
    state: &GuixState,
    encoded: &str,
    compression: GuixCompression,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response, Failure> {
    let missing = || not_found(format!("Resource not found: nar/{encoded}"));
    let base = uri_decode(encoded).ok_or_else(missing)?;
    let wanted = StorePath::from_base_name(&base).map_err(|_| missing())?;
    let info = by_hash(state, &wanted.hash_part()).await?;
    if info.store_path != wanted {
        return Err(missing());
    }
    let tree = Arc::new(
        Tree::load(state.services.directory.as_ref(), &info.node)
            .await
            .map_err(Failure::internal)?,
    );
    let total = info.nar_size;
    let stream = nar_stream(
        state.services.blob.clone(),
        tree,
        info.node,
        ByteRange {
            start: 0,
            end: total,
        },
    )
    .map_err(|e| {
        tracing::warn!(error = %storefs_castore::Report(&e), "NAR body failed");
        std::io::Error::other(e)
    });
    let body = match compression {
        GuixCompression::None => Body::from_stream(stream.inspect_ok(move |_| {
            // The permit lives as long as the body is being sent.
            let _held = &permit;
        })),
        GuixCompression::Zstd => {
            let enc = ZstdEncoder::with_quality(StreamReader::new(stream), Level::Default);
            Body::from_stream(ReaderStream::new(enc).inspect_ok(move |_| {
                let _held = &permit;
            }))
        }
        GuixCompression::Gzip => {
            let enc = GzipEncoder::with_quality(StreamReader::new(stream), Level::Precise(3));
            Body::from_stream(ReaderStream::new(enc).inspect_ok(move |_| {
                let _held = &permit;
            }))
        }
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-nix-archive"),
    );
    if compression == GuixCompression::None {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    Ok(r)
}
