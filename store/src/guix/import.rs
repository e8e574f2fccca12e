//! A `guix publish` server (or a directory laid out like one) as an
//! [`ImportSource`] for the one closure-import engine
//! ([`crate::import::import_closure`]):
//! - `<hashpart>.narinfo` in Guix's flavour, parsed strictly and its
//!   signature verified against the authorized keys
//!   ([`super::narinfo::ParsedNarInfo::verify`]) before anything of it is
//!   used: every path the source returns is trusted;
//! - the download is chosen by [`choose_offer`]: the smallest known
//!   `FileSize` among the compressions storefs decodes (none, gzip, zstd,
//!   xz, bzip2; not lzip), else the best-compressing one;
//! - the NAR is streamed through the decompressor into the strict NAR
//!   reader and its `FileSize` checked; the engine checks `NarSize` and
//!   `NarHash` and records the path info (without signatures: Guix's sign
//!   the narinfo, not the path) once every reference is recorded.

use std::sync::Arc;

use async_trait::async_trait;
use storefs_castore::{B3Digest, Node};

use super::key::Acl;
use super::narinfo::{GuixNarInfo, NarOffer, uri_decode};
use crate::PathInfo;
use crate::Services;
use crate::import::{
    CacheSource, Found, ImportError, ImportOptions, ImportProgress, ImportReport, ImportSource,
    NarSink, PathImportError, Wanted, import_closure, list_cache, narinfo_file, open_cache,
    read_nar_file,
};
use crate::nar::NarIngested;
use crate::{StoreDir, StorePath};

/// A `guix publish` server, checked and ready to import from.
#[derive(Debug)]
pub struct GuixSource {
    cache: CacheSource,
    acl: Acl,
    store_dir: StoreDir,
}

impl GuixSource {
    /// Open the server at `url`: read its `nix-cache-info` and check its
    /// store directory is `options.store_dir`. Narinfos must be signed by
    /// a key of `acl` (`--authorized-keys`), which must not be empty.
    pub async fn open(url: &str, acl: Acl, options: &ImportOptions) -> Result<Self, ImportError> {
        if acl.keys().is_empty() {
            return Err(ImportError::NoAuthorizedKeys);
        }
        let cache = open_cache(url, &options.store_dir).await?;
        Ok(Self {
            cache,
            acl,
            store_dir: options.store_dir.clone(),
        })
    }
}

#[async_trait]
impl ImportSource for GuixSource {
    type Entry = NarOffer;

    fn concurrency(&self) -> usize {
        usize::MAX
    }

    async fn list(&self) -> Result<Vec<Wanted>, ImportError> {
        list_cache(&self.cache).await
    }

    async fn lookup(&self, wanted: &Wanted) -> Result<Found<NarOffer>, PathImportError> {
        let (file, bytes) = narinfo_file(&self.cache, wanted).await?;
        let refused = |source| PathImportError::RefusedGuixNarInfo {
            file: file.clone(),
            source,
        };
        let parsed = GuixNarInfo::parse(&bytes, &self.store_dir).map_err(refused)?;
        parsed.verify(&self.acl).map_err(refused)?;
        let offer = choose_offer(&parsed.info.offers).cloned().ok_or_else(|| {
            let offered: Vec<&str> = parsed
                .info
                .offers
                .iter()
                .map(|o| o.compression.as_str())
                .collect();
            PathImportError::NoUsableOffer(if offered.is_empty() {
                "nothing".into()
            } else {
                offered.join(", ")
            })
        })?;
        let GuixNarInfo {
            store_path,
            nar_sha256,
            nar_size,
            mut references,
            deriver,
            ..
        } = parsed.info;
        references.sort_by_cached_key(StorePath::base_name);
        references.dedup();
        let info = PathInfo {
            store_path,
            // A placeholder until the NAR is read.
            node: Node::File {
                digest: B3Digest::of(b""),
                size: 0,
                executable: false,
            },
            references,
            nar_size,
            nar_sha256,
            signatures: Vec::new(),
            deriver,
            ca: None,
        };
        Ok(Found { info, entry: offer })
    }

    /// [`GuixSource::lookup`] verified the signature already.
    fn is_trusted(&self, _found: &Found<NarOffer>, _store_dir: &StoreDir) -> bool {
        true
    }

    async fn fetch_nar(
        &self,
        found: &Found<NarOffer>,
        sink: NarSink<'_>,
    ) -> Result<NarIngested, PathImportError> {
        let offer = &found.entry;
        // A directory laid out like a server keeps the decoded names.
        let rel = match &self.cache {
            CacheSource::File(_) => uri_decode(&offer.url).unwrap_or_else(|| offer.url.clone()),
            _ => offer.url.clone(),
        };
        let read = read_nar_file(
            &self.cache,
            &rel,
            &offer.url,
            &offer.compression,
            offer.file_size,
            sink,
        )
        .await?;
        Ok(read.ingested)
    }
}

/// Copy `paths` (full store paths or base names; none: every narinfo of a
/// `file://` source) and their closures from the Guix server at
/// `source_url`, every narinfo signed by a key of `acl`:
/// [`GuixSource::open`], then [`import_closure`]. `Err` only when nothing
/// could be tried; failures of single paths are in the report.
pub async fn import_from_guix(
    source_url: &str,
    paths: &[String],
    acl: Acl,
    options: ImportOptions,
    services: Services,
    progress: Arc<dyn ImportProgress>,
) -> Result<ImportReport, ImportError> {
    let source = GuixSource::open(source_url, acl, &options).await?;
    import_closure(Arc::new(source), paths, options, services, progress).await
}

/// Compressions storefs decodes, best-compressing first (Guix's own
/// ranking: xz, zstd, bzip2 above gzip above none).
const DECODABLE: &[&str] = &["zstd", "xz", "bzip2", "gzip", "none"];

fn compression_rank(c: &str) -> Option<usize> {
    match c {
        "zstd" | "xz" | "bzip2" => Some(0),
        "gzip" => Some(1),
        "none" => Some(2),
        _ => None,
    }
}

/// The offer to download: among the decodable ones, the smallest known
/// `FileSize`; offers without one rank by compression, after those with
/// one (as `guix substitute` sorts them).
pub fn choose_offer(offers: &[NarOffer]) -> Option<&NarOffer> {
    offers
        .iter()
        .filter(|o| DECODABLE.contains(&o.compression.as_str()))
        .min_by_key(|o| {
            (
                o.file_size.is_none(),
                o.file_size.unwrap_or(0),
                compression_rank(&o.compression).unwrap_or(usize::MAX),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(c: &str, size: Option<u64>) -> NarOffer {
        NarOffer {
            url: format!("nar/{c}/x"),
            compression: c.into(),
            file_size: size,
        }
    }

    #[test]
    fn offers_are_chosen_as_guix_substitute_does() {
        // Known sizes win, smallest first.
        let o = [
            offer("zstd", Some(50)),
            offer("gzip", Some(40)),
            offer("none", Some(100)),
        ];
        assert_eq!(choose_offer(&o).unwrap().compression, "gzip");
        // guix publish without a cache: only "none" has a size.
        let o = [
            offer("zstd", None),
            offer("gzip", None),
            offer("none", Some(100)),
        ];
        assert_eq!(choose_offer(&o).unwrap().compression, "none");
        // No sizes: the better compression.
        let o = [
            offer("none", None),
            offer("gzip", None),
            offer("zstd", None),
        ];
        assert_eq!(choose_offer(&o).unwrap().compression, "zstd");
        // lzip is not decodable.
        let o = [offer("lzip", Some(1)), offer("gzip", None)];
        assert_eq!(choose_offer(&o).unwrap().compression, "gzip");
        assert!(choose_offer(&[offer("lzip", Some(1))]).is_none());
    }
}
