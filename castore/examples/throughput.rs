//! Rough throughput figures for the chunker and the local backends:
//! `cargo run --release -p storefs-castore --example throughput [MiB]`.
//! Not a benchmark suite (those belong in `benches/` with criterion); a
//! quick way to see the order of magnitude on a machine.

use std::time::Instant;

use storefs_castore::{BlobService, Chunker, ChunkerConfig, MemoryBlobService, RedbStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn noise(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"throughput")
        .finalize_xof()
        .fill(&mut v);
    v
}

fn rate(what: &str, bytes: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what:<28} {:>8.1} MiB/s ({:.3} s)",
        bytes as f64 / (1024.0 * 1024.0) / secs,
        secs
    );
}

async fn write(svc: &dyn BlobService, data: &[u8]) -> storefs_castore::B3Digest {
    let mut w = svc.open_write().await;
    for piece in data.chunks(1 << 16) {
        w.write_all(piece).await.expect("write");
    }
    w.close().await.expect("close")
}

async fn read(svc: &dyn BlobService, d: &storefs_castore::B3Digest) -> usize {
    let mut r = svc.open_read(d).await.expect("open").expect("present");
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0;
    loop {
        let k = r.read(&mut buf).await.expect("read");
        if k == 0 {
            return n;
        }
        n += k;
    }
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let data = noise(mib << 20);
    let half_zero: Vec<u8> = data
        .iter()
        .enumerate()
        .map(|(i, b)| if (i >> 16) % 2 == 0 { 0 } else { *b })
        .collect();
    println!("{mib} MiB of random data");

    let start = Instant::now();
    let mut chunker = Chunker::new(ChunkerConfig::default()).expect("config");
    let mut out = Vec::new();
    for piece in data.chunks(1 << 16) {
        chunker.push(piece, &mut out);
        out.clear();
    }
    chunker.finish(&mut out);
    rate("chunker alone", data.len(), start);

    let start = Instant::now();
    let _ = blake3::hash(&data);
    rate("blake3 alone (1 thread)", data.len(), start);

    let mem = MemoryBlobService::new();
    let start = Instant::now();
    let d = write(&mem, &data).await;
    rate("memory write", data.len(), start);
    let start = Instant::now();
    assert_eq!(read(&mem, &d).await, data.len());
    rate("memory read", data.len(), start);

    let tmp = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_dir(tmp.path()).expect("open");
    let redb = store.blob_service();
    for (what, bytes) in [("random", &data), ("half zero", &half_zero)] {
        let before = std::fs::metadata(store.path()).expect("stat").len();
        let start = Instant::now();
        let d = write(&redb, bytes).await;
        rate(&format!("redb write ({what})"), bytes.len(), start);
        let start = Instant::now();
        assert_eq!(read(&redb, &d).await, bytes.len());
        rate(&format!("redb read ({what})"), bytes.len(), start);
        let after = std::fs::metadata(store.path()).expect("stat").len();
        println!(
            "redb file grew by {:.1} MiB",
            (after - before) as f64 / (1024.0 * 1024.0)
        );
    }
    let meta = std::fs::metadata(store.path()).expect("stat");
    // st_blocks counts 512-byte units actually allocated.
    let used = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    println!(
        "redb file: {:.1} MiB long, {:.1} MiB allocated",
        meta.len() as f64 / (1024.0 * 1024.0),
        used as f64 / (1024.0 * 1024.0)
    );
}
