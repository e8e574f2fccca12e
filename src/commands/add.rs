//! `storefs add`: ingest local files or trees as store paths, named as
//! `nix-store --add` names them.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use storefs_castore::{IngestOptions, IngestStats, PathComponent, ingest_path_with};
use storefs_store::nar::nar_hash_of_path;
use storefs_store::{ContentAddress, HashAlgo, NixHash, PathInfo};
use storefs_store::{StoreDir, StorePath, make_source_path};

use crate::services::Services;

/// Add each path; print one store path a line.
pub async fn run(
    services: &Services,
    store_dir: &StoreDir,
    name: Option<&str>,
    paths: &[PathBuf],
) -> anyhow::Result<()> {
    for path in paths {
        let store_path = add_one(services, store_dir, name, path)
            .await
            .with_context(|| format!("adding {}", path.display()))?;
        println!("{}", store_path.to_absolute(store_dir));
    }
    Ok(())
}

/// Ingest one path and record its path info; returns its store path.
pub async fn add_one(
    services: &Services,
    store_dir: &StoreDir,
    name: Option<&str>,
    path: &Path,
) -> anyhow::Result<StorePath> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => base_name(path)?,
    };
    storefs_store::validate_name(&name)?;
    let options = IngestOptions {
        name: Some(PathComponent::try_from(name.as_str())?),
        ..IngestOptions::default()
    };
    // The NAR hash comes from the file system, computed while the same
    // tree is ingested: one more read of each file, from the page cache,
    // rather than a second pass over the store (or over the network, with
    // a gRPC store) once the ingest is done.
    let started = std::time::Instant::now();
    let nar_path = path.to_owned();
    let nar = async move {
        tokio::task::spawn_blocking(move || nar_hash_of_path(&nar_path))
            .await
            .context("the NAR hashing task failed")?
            .context("computing the NAR hash")
    };
    let ingest = async {
        let ingested = ingest_path_with(
            services.blob.clone(),
            services.directory.as_ref(),
            path,
            &options,
        )
        .await?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), stats = ?ingested.stats, "ingested");
        anyhow::Ok(ingested)
    };
    let (ingested, nar) = tokio::try_join!(ingest, nar)?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        nar_size = nar.nar_size,
        "ingested and NAR hashed"
    );
    // Both passes read the tree on their own: if it changed meanwhile, the
    // NAR hash may not describe what was stored. Counts catch most changes
    // (files added, removed or resized); like `nix-store --add`, this
    // expects a tree that is not being written to.
    let seen = IngestStats {
        files: nar.stats.files,
        bytes: nar.stats.bytes,
        directories: nar.stats.directories,
        symlinks: nar.stats.symlinks,
    };
    if seen != ingested.stats {
        bail!(
            "{} changed while it was added (ingest saw {:?}, the NAR hash {:?})",
            path.display(),
            ingested.stats,
            seen
        );
    }
    let node = ingested.entry.node;
    let (nar_size, nar_sha256) = (nar.nar_size, nar.nar_sha256);
    let store_path = make_source_path(&name, &nar_sha256, &[], false, store_dir)?;
    let hash = NixHash::new(HashAlgo::Sha256, &nar_sha256)
        .ok_or_else(|| anyhow!("a sha256 digest is 32 bytes"))?;
    let started = std::time::Instant::now();
    let info = PathInfo {
        store_path: store_path.clone(),
        node,
        references: Vec::new(),
        nar_size,
        nar_sha256,
        signatures: Vec::new(),
        deriver: None,
        ca: Some(ContentAddress::Recursive(hash)),
    };
    services
        .path_info
        .put(info)
        .await
        .context("recording the path info")?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "path info recorded"
    );
    Ok(store_path)
}

/// The name `nix-store --add` gives: the last component of the path made
/// absolute, with `.` and `..` resolved lexically (symlinks not followed),
/// as Nix's `canonPath` does.
fn base_name(path: &Path) -> anyhow::Result<String> {
    use std::path::Component;
    let abs = std::path::absolute(path)?;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
        .last()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("cannot name a store path after {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_dots_like_nix() {
        assert_eq!(base_name(Path::new("/a/b/tree")).unwrap(), "tree");
        assert_eq!(base_name(Path::new("/a/b/tree/")).unwrap(), "tree");
        assert_eq!(base_name(Path::new("/a/b/tree/.")).unwrap(), "tree");
        assert_eq!(base_name(Path::new("/a/b/tree/..")).unwrap(), "b");
        assert!(base_name(Path::new("/")).is_err());
    }
}
