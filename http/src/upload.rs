//! Uploads: `nix copy --to http://…` into storefs, token-protected.
//!
//! Nix's HTTP binary cache store uploads each path as two `PUT`s, NAR
//! first, narinfo last (and possibly a `.ls` listing and logs, which we
//! accept and drop):
//! 1. `PUT /nar/<name>.nar[.xz|.zst|.bz2]`: the body is decompressed by its
//!    suffix and read by the strict NAR reader straight into castore; the
//!    resulting root, NAR size and sha256 wait, under the URL, for
//! 2. `PUT /<hashpart>.narinfo`: parsed; its `URL` must name a NAR uploaded
//!    before whose size and hash match `NarSize`/`NarHash`, every reference
//!    but itself must be present, and only then is the path info recorded.
//!
//! Credentials are checked before a `PUT` gets here (see [`crate::auth`]):
//! the write token, as Bearer or as a Basic password (what Nix sends from a
//! `netrc-file` entry). Without a configured write token every `PUT` is
//! refused.

use std::collections::{HashMap, VecDeque};

use axum::body::Body;
use futures::TryStreamExt;
use parking_lot::Mutex;
use storefs_castore::Node;
use storefs_store::PathInfo;
use storefs_store::narinfo::NarInfo;
use storefs_store::nixbase32;
use storefs_store::parse_hash_part;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use crate::failure::Failure;
use storefs_store::Services;

/// Uploaded NARs whose narinfo has not come yet, at most this many; the
/// oldest is forgotten first (its blobs stay in castore, unnamed).
pub const MAX_PENDING_NARS: usize = 4096;

/// Largest narinfo accepted.
pub const MAX_NARINFO: usize = 1 << 20;

/// A NAR uploaded and stored, waiting for its narinfo.
#[derive(Debug, Clone)]
struct PendingNar {
    root: Node,
    nar_size: u64,
    nar_sha256: [u8; 32],
}

/// NARs uploaded and not yet named by a narinfo, by URL.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    // std-style lock (parking_lot): held only to insert or take an entry,
    // never across an await.
    inner: Mutex<(HashMap<String, PendingNar>, VecDeque<String>)>,
}

impl Pending {
    fn insert(&self, url: String, nar: PendingNar) {
        let mut g = self.inner.lock();
        let (map, order) = &mut *g;
        if map.insert(url.clone(), nar).is_none() {
            order.push_back(url);
        }
        while map.len() > MAX_PENDING_NARS {
            let Some(old) = order.pop_front() else { break };
            map.remove(&old);
        }
    }

    fn take(&self, url: &str) -> Option<PendingNar> {
        let mut g = self.inner.lock();
        let (map, order) = &mut *g;
        let nar = map.remove(url)?;
        order.retain(|u| u != url);
        Some(nar)
    }
}

fn body_reader(body: Body) -> impl AsyncRead + Send + Unpin {
    tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other))
}

/// `PUT /nar/<file>`: store the NAR, remember it under `nar/<file>`.
pub(crate) async fn put_nar(
    services: &Services,
    pending: &Pending,
    file: &str,
    body: Body,
) -> Result<(), Failure> {
    let url = format!("nar/{file}");
    let raw = BufReader::new(body_reader(body));
    let decoded: Box<dyn AsyncRead + Send + Unpin> = if file.ends_with(".nar") {
        Box::new(raw)
    } else if file.ends_with(".nar.xz") {
        Box::new(async_compression::tokio::bufread::XzDecoder::new(raw))
    } else if file.ends_with(".nar.zst") {
        Box::new(async_compression::tokio::bufread::ZstdDecoder::new(raw))
    } else if file.ends_with(".nar.bz2") {
        Box::new(async_compression::tokio::bufread::BzDecoder::new(raw))
    } else {
        return Err(Failure::bad_request(format!(
            "cannot upload {url}: expected .nar, .nar.xz, .nar.zst or .nar.bz2"
        )));
    };
    let mut reader = BufReader::new(decoded);
    let ingested = storefs_store::nar::read_nar_to_end(
        &mut reader,
        services.blob.as_ref(),
        services.directory.as_ref(),
    )
    .await
    .map_err(|e| Failure::bad_request(format!("refusing {url}: {e}")))?;
    pending.insert(
        url,
        PendingNar {
            root: ingested.root,
            nar_size: ingested.nar_size,
            nar_sha256: ingested.nar_sha256,
        },
    );
    Ok(())
}

/// `PUT /<hash>.narinfo`: check it against its uploaded NAR and record it.
pub(crate) async fn put_narinfo(
    services: &Services,
    config_store_dir: &storefs_store::StoreDir,
    pending: &Pending,
    hash: &str,
    body: Body,
) -> Result<(), Failure> {
    let digest = parse_hash_part(hash).map_err(|e| Failure::bad_request(e.to_string()))?;
    let mut text = Vec::new();
    body_reader(body)
        .take(MAX_NARINFO as u64 + 1)
        .read_to_end(&mut text)
        .await
        .map_err(|e| Failure::bad_request(format!("reading narinfo: {e}")))?;
    if text.len() > MAX_NARINFO {
        return Err(Failure::bad_request("narinfo too large"));
    }
    let narinfo = NarInfo::parse_bytes(&text, config_store_dir)
        .map_err(|e| Failure::bad_request(format!("refusing {hash}.narinfo: {e}")))?;
    if *narinfo.store_path.digest() != digest {
        return Err(Failure::bad_request(format!(
            "{hash}.narinfo describes {}",
            narinfo.store_path
        )));
    }
    for r in &narinfo.references {
        if r.digest() == narinfo.store_path.digest() {
            continue;
        }
        let present = services
            .path_info
            .get(*r.digest())
            .await
            .map_err(Failure::internal)?
            .is_some();
        if !present {
            return Err(Failure::bad_request(format!(
                "refusing {}: its reference {r} is not in the store; upload it first",
                narinfo.store_path
            )));
        }
    }
    let nar = pending.take(&narinfo.url).ok_or_else(|| {
        Failure::bad_request(format!(
            "refusing {}: its NAR {} was not uploaded",
            narinfo.store_path, narinfo.url
        ))
    })?;
    if nar.nar_size != narinfo.nar_size || nar.nar_sha256 != narinfo.nar_sha256 {
        return Err(Failure::bad_request(format!(
            "refusing {}: the uploaded NAR has size {} and hash sha256:{}, the narinfo says {} and sha256:{}",
            narinfo.store_path,
            nar.nar_size,
            nixbase32::encode(&nar.nar_sha256),
            narinfo.nar_size,
            nixbase32::encode(&narinfo.nar_sha256)
        )));
    }
    services
        .path_info
        .put(PathInfo::from_narinfo(&narinfo, nar.root))
        .await
        .map_err(Failure::internal)?;
    Ok(())
}

/// Drain and drop a body we accept but do not keep (listings, logs).
pub(crate) async fn discard(body: Body) -> Result<(), Failure> {
    tokio::io::copy(&mut body_reader(body), &mut tokio::io::sink())
        .await
        .map_err(|e| Failure::bad_request(format!("reading upload: {e}")))?;
    Ok(())
}
