//! A Nix binary cache (`file://`, `http(s)://`) as an [`ImportSource`]:
//! `<hashpart>.narinfo` says what a path is, its `URL` where the NAR is.
//!
//! A NAR file is streamed from its `URL`, its compressed bytes hashed
//! (`FileHash`, `FileSize`) and decompressed by `Compression` (none, xz,
//! zstd, bzip2, gzip) straight into the strict NAR reader. Paths are trusted when
//! signed by a trusted key; a content address alone does not make a
//! narinfo trusted here (stricter than Nix).

use std::sync::Arc;

use async_trait::async_trait;
use storefs_castore::{B3Digest, Node};

use super::cache_info::CacheInfo;
use super::engine::{
    Found, ImportOptions, ImportReport, ImportSource, NarSink, Wanted, import_closure,
};
use super::error::{ImportError, PathImportError};
use super::nar_file::read_nar_file;
use super::progress::ImportProgress;
use super::source::CacheSource;
use crate::Services;
use crate::StoreDir;
use crate::TrustedKeys;
use crate::nar::NarIngested;
use crate::narinfo::NarInfo;
use crate::nixbase32;
use crate::{HashAlgo, PathInfo};

/// A binary cache, checked and ready to import from.
#[derive(Debug)]
pub struct BinaryCacheSource {
    cache: CacheSource,
    keys: TrustedKeys,
    store_dir: StoreDir,
}

/// Where a path's NAR file is, from its narinfo.
#[derive(Debug, Clone)]
pub struct NarFile {
    /// `URL`, relative to the cache.
    pub url: String,
    /// `Compression`.
    pub compression: String,
    /// `FileSize`, if given.
    pub file_size: Option<u64>,
    /// `FileHash`, if given.
    pub file_hash: Option<crate::NixHash>,
}

impl BinaryCacheSource {
    /// Open the cache at `url`: read its `nix-cache-info`, check its store
    /// directory is `options.store_dir`, and parse `options.trusted_keys`
    /// (`name:base64`).
    pub async fn open(url: &str, options: &ImportOptions) -> Result<Self, ImportError> {
        let cache = open_cache(url, &options.store_dir).await?;
        let keys = options.nix_keys()?;
        Ok(Self {
            cache,
            keys,
            store_dir: options.store_dir.clone(),
        })
    }
}

/// Open the binary cache at `url` and check, by its `nix-cache-info`, that
/// it holds paths of `store_dir`.
pub(crate) async fn open_cache(
    url: &str,
    store_dir: &StoreDir,
) -> Result<CacheSource, ImportError> {
    let cache = CacheSource::parse(url)?;
    let name = cache.describe();
    let info_bytes = cache
        .get_small("nix-cache-info")
        .await?
        .ok_or_else(|| ImportError::NoCacheInfo(name.clone()))?;
    let info = CacheInfo::parse(&info_bytes).map_err(|source| ImportError::CacheInfo {
        cache: name.clone(),
        source,
    })?;
    if info.store_dir != store_dir.as_str() {
        return Err(ImportError::StoreDirMismatch {
            cache: name,
            theirs: info.store_dir,
            ours: store_dir.as_str().to_owned(),
        });
    }
    Ok(cache)
}

/// The narinfo of `wanted` in `cache`: its file name and bytes.
pub(crate) async fn narinfo_file(
    cache: &CacheSource,
    wanted: &Wanted,
) -> Result<(String, Vec<u8>), PathImportError> {
    let hash = nixbase32::encode(&wanted.digest);
    let file = format!("{hash}.narinfo");
    let bytes = cache
        .get_small(&file)
        .await?
        .ok_or(PathImportError::NotInCache(hash))?;
    Ok((file, bytes))
}

/// Every path whose narinfo `cache` lists.
pub(crate) async fn list_cache(cache: &CacheSource) -> Result<Vec<Wanted>, ImportError> {
    Ok(cache
        .list_narinfos()
        .await?
        .into_iter()
        // A stray file name that is no hash part is not a narinfo.
        .filter_map(|hash| crate::parse_hash_part(&hash).ok())
        .map(|digest| Wanted { digest, path: None })
        .collect())
}

#[async_trait]
impl ImportSource for BinaryCacheSource {
    type Entry = NarFile;

    fn concurrency(&self) -> usize {
        usize::MAX
    }

    async fn list(&self) -> Result<Vec<Wanted>, ImportError> {
        list_cache(&self.cache).await
    }

    async fn lookup(&self, wanted: &Wanted) -> Result<Found<NarFile>, PathImportError> {
        let (file, bytes) = narinfo_file(&self.cache, wanted).await?;
        let narinfo = NarInfo::parse_bytes(&bytes, &self.store_dir)
            .map_err(|source| PathImportError::BadNarInfo { file, source })?;
        // The node is a placeholder until the NAR is read.
        let placeholder = Node::File {
            digest: B3Digest::of(b""),
            size: 0,
            executable: false,
        };
        let info = PathInfo::from_narinfo(&narinfo, placeholder);
        let NarInfo {
            url,
            compression,
            file_size,
            file_hash,
            ..
        } = narinfo;
        Ok(Found {
            info,
            entry: NarFile {
                url,
                compression,
                file_size,
                file_hash,
            },
        })
    }

    fn is_trusted(&self, found: &Found<NarFile>, store_dir: &StoreDir) -> bool {
        found
            .info
            .count_valid_signatures(&self.keys, store_dir)
            .is_ok_and(|n| n > 0)
    }

    async fn fetch_nar(
        &self,
        found: &Found<NarFile>,
        sink: NarSink<'_>,
    ) -> Result<NarIngested, PathImportError> {
        let NarFile {
            url,
            compression,
            file_size,
            file_hash,
        } = &found.entry;
        let read = read_nar_file(&self.cache, url, url, compression, *file_size, sink).await?;
        // Nix writes sha256 file hashes; another algorithm is left unchecked
        // (the NAR hash still covers the contents).
        if let Some(expected) = file_hash
            && expected.algo() == HashAlgo::Sha256
            && *expected.digest() != read.file_sha256
        {
            return Err(PathImportError::FileHash {
                url: url.clone(),
                expected: nixbase32::encode(expected.digest()),
                actual: nixbase32::encode(&read.file_sha256),
            });
        }
        Ok(read.ingested)
    }
}

/// Copy `paths` (full store paths or base names; none: every path the
/// cache lists) and their closures from the binary cache at `source_url`
/// into `services`: [`BinaryCacheSource::open`], then [`import_closure`].
///
/// Returns `Err` only when nothing could be tried (bad URL, unreachable
/// cache, wrong store directory, bad key or path argument); failures of
/// single paths are in [`ImportReport::failed`].
pub async fn import_from_binary_cache(
    source_url: &str,
    paths: &[String],
    options: ImportOptions,
    services: Services,
    progress: Arc<dyn ImportProgress>,
) -> Result<ImportReport, ImportError> {
    let source = BinaryCacheSource::open(source_url, &options).await?;
    import_closure(Arc::new(source), paths, options, services, progress).await
}
