//! The routes of the binary cache view and the server loop.
//!
//! | request | answer |
//! |---|---|
//! | `GET/HEAD /nix-cache-info` | `StoreDir`, `WantMassQuery: 1`, `Priority` |
//! | `GET/HEAD /<hashpart>.narinfo` | the path's narinfo, `Compression: none`, signed on the fly |
//! | `GET/HEAD /nar/<hashpart>-<narhash>.nar` | the NAR, streamed; one `Range` honoured |
//! | `GET/HEAD /<hashpart>.ls` | the listing, version 1, with `narOffset` |
//!
//! | `PUT /nar/…`, `PUT /<hashpart>.narinfo` | uploads, with the write token (see [`crate::upload`]) |
//!
//! Every read needs the read token when one is set (see [`crate::auth`]).
//!
//! A path not in the store is 404, a request we cannot parse is 400, another
//! method is 405; a store failure is 500 with the error's text. Nothing a
//! client sends can make a handler panic.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use storefs_store::PathInfo;
use storefs_store::SecretKey;
use storefs_store::Services;
use storefs_store::narinfo::NarInfo;
use storefs_store::nixbase32;
use storefs_store::{DIGEST_LEN, HASH_PART_LEN, StoreDir, parse_hash_part};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::HttpAuth;
use crate::failure::Failure;
use crate::limits::HttpLimits;
use crate::listing::listing;
use crate::nar::{ByteRange, Tree, nar_stream};
use crate::range::{RangeRequest, parse_range};
use crate::upload::{Pending, discard, put_nar, put_narinfo};

/// Requests handled at once; more wait for a slot. Each holds at most a
/// path's directories and one chunk in memory.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// How the view presents itself.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The store directory, sent as `StoreDir` and used in narinfos;
    /// clients with another store directory refuse the cache.
    pub store_dir: StoreDir,
    /// `Priority` in `nix-cache-info`; lower is preferred by clients.
    pub priority: u64,
    /// Signs every narinfo on the fly, beside the signatures recorded with
    /// the path, so clients that trust this key accept our paths.
    pub sign_key: Option<SecretKey>,
    /// The read and write tokens (see [`HttpAuth`]); by default reads
    /// are open and the view is read-only.
    pub auth: HttpAuth,
    /// Timeouts and connection limits of the server loop.
    pub limits: HttpLimits,
    /// Serve the Guix flavour (`guix publish`'s layout and signatures)
    /// instead of Nix's; see [`crate::guix`].
    pub guix: Option<crate::guix::GuixHttpConfig>,
}

impl HttpConfig {
    /// A config for `store_dir` with priority 40 and no signing key.
    pub fn new(store_dir: StoreDir) -> Self {
        Self {
            store_dir,
            priority: 40,
            sign_key: None,
            auth: HttpAuth::default(),
            limits: HttpLimits::default(),
            guix: None,
        }
    }
}

struct AppState {
    services: Services,
    config: HttpConfig,
    slots: Arc<Semaphore>,
    /// NARs uploaded whose narinfo has not come yet.
    pending: Pending,
}

/// The routes, for embedding in another server or for tests.
pub fn router(services: Services, config: HttpConfig) -> Router {
    if let Some(guix) = config.guix.clone() {
        return crate::guix::router(services, config, guix);
    }
    let state = Arc::new(AppState {
        services,
        config,
        slots: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        pending: Pending::default(),
    });
    Router::new().fallback(handle).with_state(state)
}

/// Serve the binary cache view on `listener` until `shutdown` completes,
/// then finish the requests in flight, under `config.limits` (see
/// [`HttpLimits`]).
pub async fn serve_http(
    listener: TcpListener,
    services: Services,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = config.limits.clone();
    crate::listen::serve(listener, router(services, config), limits, shutdown).await
}

fn not_found(what: impl Into<String>) -> Failure {
    Failure::not_found(what)
}

fn bad_request(what: impl Into<String>) -> Failure {
    Failure::bad_request(what)
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::internal(e)
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    if (head || req.method() == Method::GET || req.method() == Method::PUT)
        && let Err(refused) = state.config.auth.check(req.method(), req.headers())
    {
        return *refused;
    }
    if req.method() == Method::PUT {
        return match upload(&state, req).await {
            Ok(()) => StatusCode::OK.into_response(),
            Err(f) => f.into_response(),
        };
    }
    if !head && req.method() != Method::GET {
        return Failure(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not supported", req.method()),
        )
        .into_response();
    }
    // Closed only if the semaphore is closed, which it never is.
    let Ok(permit) = state.slots.clone().acquire_owned().await else {
        return internal("server is shutting down").into_response();
    };
    let path = req.uri().path().to_owned();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let result = route(&state, &path, range.as_deref()).await;
    let mut resp = match result {
        Ok(Answer::Text { content_type, body }) => text_response(content_type, body),
        Ok(Answer::Nar {
            status,
            headers,
            body,
        }) => {
            let mut r = Response::new(body.map_or_else(Body::empty, |b| b(permit)));
            *r.status_mut() = status;
            *r.headers_mut() = headers;
            r
        }
        Err(f) => f.into_response(),
    };
    if head {
        *resp.body_mut() = Body::empty();
    }
    resp
}

type NarBody = Box<dyn FnOnce(tokio::sync::OwnedSemaphorePermit) -> Body + Send>;

enum Answer {
    Text {
        content_type: &'static str,
        body: String,
    },
    Nar {
        status: StatusCode,
        headers: HeaderMap,
        /// Makes the body; absent for an empty answer (416).
        body: Option<NarBody>,
    },
}

fn text_response(content_type: &'static str, body: String) -> Response {
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

async fn route(state: &AppState, path: &str, range: Option<&str>) -> Result<Answer, Failure> {
    let Some(rel) = path.strip_prefix('/') else {
        return Err(bad_request(format!("bad request path {path:?}")));
    };
    if rel == "nix-cache-info" {
        return Ok(Answer::Text {
            content_type: "text/x-nix-cache-info",
            body: format!(
                "StoreDir: {}\nWantMassQuery: 1\nPriority: {}\n",
                state.config.store_dir, state.config.priority
            ),
        });
    }
    if let Some(hash) = rel.strip_suffix(".narinfo") {
        let info = lookup(state, hash).await?;
        return Ok(Answer::Text {
            content_type: "text/x-nix-narinfo",
            body: render_narinfo(&state.config, info).map_err(internal)?,
        });
    }
    if let Some(hash) = rel.strip_suffix(".ls") {
        let info = lookup(state, hash).await?;
        let tree = Tree::load(state.services.directory.as_ref(), &info.node)
            .await
            .map_err(internal)?;
        let root = info.node.clone();
        let body = tokio::task::spawn_blocking(move || listing(&tree, &root))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        return Ok(Answer::Text {
            content_type: "application/json",
            body,
        });
    }
    if let Some(file) = rel.strip_prefix("nar/") {
        return nar(state, file, range).await;
    }
    Err(not_found(format!("no such file: {path}")))
}

/// A `PUT` (its token already checked): store what it carries.
async fn upload(state: &AppState, req: Request) -> Result<(), Failure> {
    let _permit = state
        .slots
        .acquire()
        .await
        .map_err(|_| internal("server is shutting down"))?;
    let path = req.uri().path().to_owned();
    let body = req.into_body();
    let rel = path.strip_prefix('/').unwrap_or(&path);
    if let Some(file) = rel.strip_prefix("nar/") {
        return put_nar(&state.services, &state.pending, file, body).await;
    }
    if let Some(hash) = rel.strip_suffix(".narinfo") {
        digest_of(hash)?;
        return put_narinfo(
            &state.services,
            &state.config.store_dir,
            &state.pending,
            hash,
            body,
        )
        .await;
    }
    if rel.ends_with(".ls") || rel.starts_with("log/") || rel.starts_with("realisations/") {
        // Listings are made on demand and logs are not kept: accept, drop.
        return discard(body).await;
    }
    Err(not_found(format!("cannot upload to {path}")))
}

/// The path info for a hash part in a URL.
async fn lookup(state: &AppState, hash: &str) -> Result<PathInfo, Failure> {
    let digest = digest_of(hash)?;
    state
        .services
        .path_info
        .get(digest)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("no store path with hash {hash}")))
}

fn digest_of(hash: &str) -> Result<[u8; DIGEST_LEN], Failure> {
    if hash.len() != HASH_PART_LEN {
        return Err(bad_request(format!("{hash:?} is not a store path hash")));
    }
    parse_hash_part(hash).map_err(|e| bad_request(e.to_string()))
}

/// The stable NAR URL of a path: its hash part (to find it) and its NAR
/// hash (so a URL never names other bytes than it did).
fn nar_url(info: &PathInfo) -> String {
    format!(
        "nar/{}-{}.nar",
        info.store_path.hash_part(),
        nixbase32::encode(&info.nar_sha256)
    )
}

fn render_narinfo(config: &HttpConfig, info: PathInfo) -> Result<String, String> {
    let mut narinfo = NarInfo {
        url: nar_url(&info),
        compression: "none".to_owned(),
        file_hash: None,
        file_size: None,
        nar_sha256: info.nar_sha256,
        nar_size: info.nar_size,
        references: info.references,
        deriver: info.deriver,
        system: None,
        signatures: info.signatures,
        ca: info.ca,
        store_path: info.store_path,
    };
    if let Some(key) = &config.sign_key {
        let fp = narinfo
            .fingerprint(&config.store_dir)
            .map_err(|e| e.to_string())?;
        narinfo.signatures.push(key.sign(fp.as_bytes()));
    }
    narinfo.normalize();
    Ok(narinfo.render(&config.store_dir))
}

async fn nar(state: &AppState, file: &str, range: Option<&str>) -> Result<Answer, Failure> {
    // Any other name is a file we do not have, not a bad request: Nix asks
    // for `nar/<filehash>.nar.xz` before it uploads one, and must hear 404.
    let malformed = || not_found(format!("no such NAR file {file:?}"));
    let stem = file.strip_suffix(".nar").ok_or_else(malformed)?;
    let (hash, nar_hash) = stem.split_once('-').ok_or_else(malformed)?;
    let nar_sha256 = nixbase32::decode_fixed::<32>(nar_hash.as_bytes()).map_err(|_| malformed())?;
    let info = lookup(state, hash).await?;
    if info.nar_sha256 != nar_sha256 {
        return Err(not_found(format!(
            "{} has another NAR than {file}",
            info.store_path
        )));
    }
    let total = info.nar_size;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-nix-nar"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, byte_range) = match parse_range(range, total) {
        RangeRequest::Full => (
            StatusCode::OK,
            ByteRange {
                start: 0,
                end: total,
            },
        ),
        RangeRequest::Partial(r) => {
            let cr = format!("bytes {}-{}/{total}", r.start, r.end - 1);
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).map_err(internal)?,
            );
            (StatusCode::PARTIAL_CONTENT, r)
        }
        RangeRequest::Unsatisfiable => {
            let cr = format!("bytes */{total}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).map_err(internal)?,
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            return Ok(Answer::Nar {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                body: None,
            });
        }
    };
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(byte_range.end - byte_range.start),
    );
    let tree = Arc::new(
        Tree::load(state.services.directory.as_ref(), &info.node)
            .await
            .map_err(internal)?,
    );
    let blob = state.services.blob.clone();
    let root = info.node;
    let body: NarBody = Box::new(move |permit| {
        let stream = nar_stream(blob, tree, root, byte_range).map(move |r| {
            // The permit lives as long as the body is being sent.
            let _held = &permit;
            r.map_err(|e| {
                crate::dataloss::log_nar_failure(&e);
                std::io::Error::other(e)
            })
        });
        Body::from_stream(stream)
    });
    Ok(Answer::Nar {
        status,
        headers,
        body: Some(body),
    })
}
