//! Side-by-side figures for the mount against local disk (not a timed
//! test): warm re-read of a large file, cold read, a `stat` walk and a full
//! read of a tree, each as a ratio to the same work on local disk. The
//! services are the in-memory ones, so "cold" measures the mount's own
//! cost (chunk verification included), not a network.
//!
//! `cargo run --release -p storefs-fuse --example mount_bench [FILES]`

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storefs_castore::{B3Digest, Directory, Node, PathComponent};
use storefs_castore::{BlobService, MemoryBlobService};
use storefs_castore::{DirectoryService, MemoryDirectoryService};
use storefs_store::PathInfo;
use storefs_store::StorePath;
use storefs_store::{MemoryPathInfoService, PathInfoService};
use storefs_testkit::pseudo_random;
use tokio::io::AsyncWriteExt;

async fn put_blob(blobs: &MemoryBlobService, data: &[u8]) -> B3Digest {
    let mut w = blobs.open_write().await;
    w.write_all(data).await.unwrap();
    w.close().await.unwrap()
}

fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn read_all(path: &Path) -> u64 {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn walk_stat(root: &Path) -> usize {
    let mut n = 0;
    for e in walkdir::WalkDir::new(root) {
        e.unwrap().metadata().unwrap();
        n += 1;
    }
    n
}

fn walk_read(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| read_all(e.path()))
        .sum()
}

/// This process's resident set, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let files: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let blobs = MemoryBlobService::new();
    let dirs = MemoryDirectoryService::new();
    let infos = MemoryPathInfoService::new();
    let local = tempfile::tempdir().unwrap();

    // One large file and a tree of `files` small files in dirs of 100.
    let big = pseudo_random(256 * 1024 * 1024, 1);
    let per_dir = 100;
    let ndirs = files.div_ceil(per_dir);
    let root_node = rt.block_on(async {
        let mut top = Directory::new();
        let d = put_blob(&blobs, &big).await;
        top.add(
            PathComponent::try_from("big.bin").unwrap(),
            Node::File {
                digest: d,
                size: big.len() as u64,
                executable: false,
            },
        )
        .unwrap();
        std::fs::write(local.path().join("big.bin"), &big).unwrap();
        let tree = local.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let mut treedir = Directory::new();
        for i in 0..ndirs {
            let mut dir = Directory::new();
            let ldir = tree.join(format!("d{i}"));
            std::fs::create_dir(&ldir).unwrap();
            for j in 0..per_dir {
                let data = pseudo_random(1000 + (j * 97) % 4000, (i * per_dir + j) as u64 + 10);
                let digest = put_blob(&blobs, &data).await;
                std::fs::write(ldir.join(format!("f{j}")), &data).unwrap();
                dir.add(
                    PathComponent::try_from(format!("f{j}").as_str()).unwrap(),
                    Node::File {
                        digest,
                        size: data.len() as u64,
                        executable: false,
                    },
                )
                .unwrap();
            }
            let size = dir.size();
            let digest = dirs.put(dir).await.unwrap();
            treedir
                .add(
                    PathComponent::try_from(format!("d{i}").as_str()).unwrap(),
                    Node::Directory { digest, size },
                )
                .unwrap();
        }
        let size = treedir.size();
        let digest = dirs.put(treedir).await.unwrap();
        top.add(
            PathComponent::try_from("tree").unwrap(),
            Node::Directory { digest, size },
        )
        .unwrap();
        let size = top.size();
        let digest = dirs.put(top).await.unwrap();
        Node::Directory { digest, size }
    });
    let sp = StorePath::from_parts([7; 20], "bench").unwrap();
    rt.block_on(infos.put(PathInfo {
        store_path: sp.clone(),
        node: root_node,
        references: vec![],
        nar_size: 0,
        nar_sha256: [0; 32],
        signatures: vec![],
        deriver: None,
        ca: None,
    }))
    .unwrap();

    let mnt = tempfile::tempdir().unwrap();
    let handle = storefs_fuse::mount(
        storefs_fuse::MountConfig::new(mnt.path()),
        &storefs_store::Services::new(Arc::new(blobs), Arc::new(dirs), Arc::new(infos)),
        rt.handle().clone(),
    )
    .unwrap();
    let m = mnt.path().join(sp.base_name());
    let lbig = local.path().join("big.bin");
    let mbig = m.join("big.bin");

    println!("case,local_s,mount_s,ratio(local/mount time)");
    drop_caches();
    let (_, lcold) = timed(|| read_all(&lbig));
    let (_, mcold) = timed(|| read_all(&mbig));
    println!(
        "cold read 256 MiB,{:.3},{:.3},{:.2} ({:.0} vs {:.0} MB/s)",
        lcold.as_secs_f64(),
        mcold.as_secs_f64(),
        lcold.as_secs_f64() / mcold.as_secs_f64(),
        mbps(big.len() as u64, lcold),
        mbps(big.len() as u64, mcold)
    );
    let (_, lwarm) = timed(|| read_all(&lbig));
    let (_, mwarm) = timed(|| read_all(&mbig));
    println!(
        "warm re-read 256 MiB,{:.3},{:.3},{:.2} ({:.0} vs {:.0} MB/s)",
        lwarm.as_secs_f64(),
        mwarm.as_secs_f64(),
        lwarm.as_secs_f64() / mwarm.as_secs_f64(),
        mbps(big.len() as u64, lwarm),
        mbps(big.len() as u64, mwarm)
    );
    let (n1, lstat_cold) = timed(|| walk_stat(&local.path().join("tree")));
    let rss_before = rss_mb();
    let (n2, mstat_cold) = timed(|| walk_stat(&m.join("tree")));
    println!(
        "  RSS grew by {:.1} MB over the first walk ({} inodes held)",
        rss_mb() - rss_before,
        handle.stats().snapshot().inodes
    );
    assert_eq!(n1, n2);
    println!(
        "stat walk {n1} entries (first),{:.3},{:.3},{:.2}",
        lstat_cold.as_secs_f64(),
        mstat_cold.as_secs_f64(),
        lstat_cold.as_secs_f64() / mstat_cold.as_secs_f64()
    );
    let (_, lstat) = timed(|| walk_stat(&local.path().join("tree")));
    let (_, mstat) = timed(|| walk_stat(&m.join("tree")));
    println!(
        "stat walk {n1} entries (warm),{:.3},{:.3},{:.2}",
        lstat.as_secs_f64(),
        mstat.as_secs_f64(),
        lstat.as_secs_f64() / mstat.as_secs_f64()
    );
    let (b1, lread_cold) = timed(|| walk_read(&local.path().join("tree")));
    let (b2, mread_cold) = timed(|| walk_read(&m.join("tree")));
    assert_eq!(b1, b2);
    println!(
        "read tree {files} files (first),{:.3},{:.3},{:.2}",
        lread_cold.as_secs_f64(),
        mread_cold.as_secs_f64(),
        lread_cold.as_secs_f64() / mread_cold.as_secs_f64()
    );
    let (_, lread) = timed(|| walk_read(&local.path().join("tree")));
    println!(
        "  after first tree read: {}",
        handle.stats().snapshot().to_json()
    );
    let before = handle.stats().snapshot();
    let (_, mread) = timed(|| walk_read(&m.join("tree")));
    let after = handle.stats().snapshot();
    println!(
        "  warm tree read reached the mount for {} chunk reads",
        (after.chunk_cache_hits + after.chunk_cache_misses)
            - (before.chunk_cache_hits + before.chunk_cache_misses)
    );
    println!(
        "read tree {files} files (warm),{:.3},{:.3},{:.2}",
        lread.as_secs_f64(),
        mread.as_secs_f64(),
        lread.as_secs_f64() / mread.as_secs_f64()
    );
    if let Some(secs) = std::env::var("BENCH_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("holding the mount at {} for {secs} s", m.display());
        std::thread::sleep(Duration::from_secs(secs));
    }
    let s = handle.stats().snapshot();
    println!("stats: {}", s.to_json());
    handle.unmount().unwrap();
}
