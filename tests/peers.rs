//! Mounts sharing chunks with each other (docs/peers.md): real `storefs
//! serve` and `storefs mount` processes on unix sockets. A mount reads
//! chunks from its peers first, checks each against its digest, and falls
//! back to the service for what they lack, lie about, or cannot deliver; a
//! peer serves only what its cache holds.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use storefs_castore::{
    B3Digest, BlobReader, BlobService, BlobWriter, ChunkMeta, MemoryBlobService, Result,
};
use storefs_grpc::ServerConfig;
use storefs_testkit::grpc::{Kind, memory_services, quick_config};
use storefs_testkit::{
    GrpcServer, Signal, TestMount, TestServer, free_port, http, ok_str, pseudo_random, storefs,
    storefs_bin,
};
use tokio::io::AsyncWriteExt;

/// A tree of a few large files (many chunks each) and many small ones;
/// returns its files' relative paths and contents.
fn tree(dir: &Path, seed: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for (i, len) in [3usize << 20, 5 << 20, 1 << 20].into_iter().enumerate() {
        files.push((
            PathBuf::from(format!("big{i}")),
            pseudo_random(len, seed * 100 + i as u64),
        ));
    }
    for i in 0..40 {
        files.push((
            PathBuf::from(format!("small/f{i:02}")),
            pseudo_random(2000 + i * 300, seed * 100 + 50 + i as u64),
        ));
    }
    for (rel, data) in &files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files
}

/// Read every file of `files` under `root` through a mount; panics on the
/// first byte that differs. Returns the bytes read.
fn read_all(root: &Path, files: &[(PathBuf, Vec<u8>)]) -> u64 {
    let mut n = 0;
    for (rel, want) in files {
        let got = std::fs::read(root.join(rel))
            .unwrap_or_else(|e| panic!("{}: {e}", root.join(rel).display()));
        assert!(got == *want, "{} differs", root.join(rel).display());
        n += got.len() as u64;
    }
    n
}

/// The blob bytes `storefs serve` handed to its gRPC clients so far
/// (its `--metrics` endpoint).
fn served(metrics: SocketAddr) -> u64 {
    let a = http::get(metrics, "/metrics");
    assert_eq!(a.status, 200);
    let text = String::from_utf8(a.body).expect("utf-8 metrics");
    text.lines()
        .find(|l| {
            l.starts_with("storefs_bytes_out_bytes_total{") && l.contains("frontend=\"grpc\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().expect("a number") as u64)
        .unwrap_or(0)
}

/// A service with a metrics endpoint over the embedded store in `data`.
fn service(tmp: &Path, data: &Path) -> (TestServer, SocketAddr) {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = TestServer::start_with(
        &storefs_bin!(),
        data,
        &tmp.join("grpc.sock"),
        &["--metrics", &metrics.to_string()],
    );
    (s, metrics)
}

fn base_name(store_path: &str) -> &str {
    store_path.rsplit('/').next().unwrap()
}

fn num(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn mounts_read_a_tree_from_a_peer_and_the_service_serves_little() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tree(&tmp.path().join("src"), 1);
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(tmp.path().join("src")));
    let (_service, metrics) = service(tmp.path(), &data);
    let url = format!("grpc+unix://{}", tmp.path().join("grpc.sock").display());
    let token = tmp.path().join("peer-token");
    std::fs::write(&token, "fleet-secret\n").unwrap();
    let token = token.to_str().unwrap();

    let a_sock = tmp.path().join("a-peer.sock");
    let a = TestMount::start(
        &storefs_bin!(),
        &url,
        &tmp.path().join("a"),
        &tmp.path().join("a-cache"),
        &[
            "--peer-listen",
            &format!("unix:{}", a_sock.display()),
            "--peer-token-file",
            token,
        ],
    );
    let total = read_all(&a.at.join(base_name(&path)), &files);
    let before = served(metrics);
    assert!(
        before >= total,
        "A read {total} bytes, the service served {before}"
    );

    let peer_a = format!("grpc+unix://{}", a_sock.display());
    let mount_peer = |name: &str, more: &[&str]| {
        let mut args = vec![
            "--peer",
            &peer_a,
            "--peer-token-file",
            token,
            // Generous for a loaded test machine: the bound is what is
            // tested, not the speed.
            "--peer-timeout",
            "5000",
        ];
        args.extend_from_slice(more);
        TestMount::start(
            &storefs_bin!(),
            &url,
            &tmp.path().join(name),
            &tmp.path().join(format!("{name}-cache")),
            &args,
        )
    };
    let b_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let b = mount_peer("b", &["--metrics", &b_metrics.to_string()]);
    let c = mount_peer("c", &[]);
    let read_bc = std::thread::scope(|s| {
        let rb = s.spawn(|| read_all(&b.at.join(base_name(&path)), &files));
        let rc = s.spawn(|| read_all(&c.at.join(base_name(&path)), &files));
        rb.join().unwrap() + rc.join().unwrap()
    });
    let service_sent = served(metrics) - before;
    assert!(
        service_sent * 20 <= read_bc,
        "B and C read {read_bc} bytes; the service sent {service_sent} (more than 5%)"
    );
    for m in [&b, &c] {
        let stats = m.stats();
        let peers = &stats["peers"];
        assert!(num(&peers["peer_bytes"]) * 20 >= total * 19, "{stats}");
        assert_eq!(num(&peers["verification_failures"]), 0, "{stats}");
        assert_eq!(peers["list"][0]["endpoint"], peer_a.as_str(), "{stats}");
        assert_eq!(peers["list"][0]["state"], "healthy", "{stats}");
    }
    // The same figures in B's Prometheus metrics.
    let text = String::from_utf8(http::get(b_metrics, "/metrics").body).unwrap();
    let from_peers = text
        .lines()
        .find_map(|l| l.strip_prefix("storefs_mount_peers_fetched_bytes_total "))
        .unwrap_or_else(|| panic!("no peer bytes in\n{text}"));
    assert_eq!(
        from_peers.parse::<u64>().unwrap(),
        num(&b.stats()["peers"]["peer_bytes"])
    );
    let served_by_a = &a.stats()["peer_server"];
    assert!(
        num(&served_by_a["bytes"]) * 20 >= total * 2 * 19,
        "{served_by_a}"
    );
}

#[test]
fn four_mounts_reading_a_tree_at_once_cost_the_service_about_one_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tree(&tmp.path().join("src"), 2);
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(tmp.path().join("src")));
    let (_service, metrics) = service(tmp.path(), &data);
    let url = format!("grpc+unix://{}", tmp.path().join("grpc.sock").display());
    let n = 4;
    let socks: Vec<PathBuf> = (0..n)
        .map(|i| tmp.path().join(format!("peer{i}.sock")))
        .collect();
    let mounts: Vec<TestMount> = (0..n)
        .map(|i| {
            let listen = format!("unix:{}", socks[i].display());
            let others: Vec<String> = (1..n)
                .map(|k| format!("grpc+unix://{}", socks[(i + k) % n].display()))
                .collect();
            // Generous for a loaded test machine: what is tested is the
            // bytes, not the speed.
            let mut args = vec!["--peer-listen", &listen, "--peer-timeout", "5000"];
            for o in &others {
                args.extend_from_slice(&["--peer", o]);
            }
            TestMount::start(
                &storefs_bin!(),
                &url,
                &tmp.path().join(format!("m{i}")),
                &tmp.path().join(format!("m{i}-cache")),
                &args,
            )
        })
        .collect();
    let before = served(metrics);
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let start = std::sync::Barrier::new(n);
    let read: u64 = std::thread::scope(|s| {
        let readers: Vec<_> = mounts
            .iter()
            .map(|m| {
                let (start, files, root) = (&start, &files, m.at.join(base_name(&path)));
                s.spawn(move || {
                    start.wait();
                    read_all(&root, files)
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert_eq!(read, total * n as u64);
    let service_sent = served(metrics) - before;
    // Without peers the service sends the tree once per mount (4×); each
    // chunk fetched by one mount and shared is 1×. Half again is slack
    // for a loaded machine, still far below the sum.
    let stats: Vec<serde_json::Value> = mounts.iter().map(|m| m.stats()).collect();
    eprintln!(
        "{n} mounts at once: the service sent {:.2}× the tree",
        service_sent as f64 / total as f64
    );
    assert!(
        service_sent * 2 <= total * 3,
        "{n} mounts read {total} bytes each at once; the service sent {service_sent}; stats {stats:?}"
    );
    let from_peers: u64 = stats.iter().map(|s| num(&s["peers"]["peer_bytes"])).sum();
    assert!(from_peers * 2 >= total * 5, "{stats:?}");
    for s in &stats {
        assert_eq!(num(&s["peers"]["verification_failures"]), 0, "{s}");
    }
}

/// A peer that answers every chunk read with bytes that are not the chunk.
struct Liar {
    inner: MemoryBlobService,
}

#[async_trait]
impl BlobService for Liar {
    async fn has(&self, _: &B3Digest) -> Result<bool> {
        Ok(true)
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let mut lie = digest.to_bytes().to_vec();
        lie.extend_from_slice(b" is not what you asked for");
        Ok(Some(Bytes::from(lie)))
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        Ok(self
            .read_chunk(digest)
            .await?
            .map(|b| Box::new(std::io::Cursor::new(b)) as BlobReader))
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

#[test]
fn a_lying_peer_costs_a_retry_from_the_service_never_a_wrong_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tree(&tmp.path().join("src"), 2);
    let more = tree(&tmp.path().join("more"), 3);
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(tmp.path().join("src")));
    let path2 = ok_str(storefs!(&data).arg("add").arg(tmp.path().join("more")));
    let (_service, _metrics) = service(tmp.path(), &data);
    let url = format!("grpc+unix://{}", tmp.path().join("grpc.sock").display());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut services = memory_services();
    services.blob = Arc::new(Liar {
        inner: MemoryBlobService::new(),
    });
    let liar = rt.block_on(GrpcServer::start(
        Kind::Unix,
        services,
        ServerConfig::default(),
    ));

    let b = TestMount::start(
        &storefs_bin!(),
        &url,
        &tmp.path().join("b"),
        &tmp.path().join("b-cache"),
        &["--peer", &liar.url],
    );
    let total = read_all(&b.at.join(base_name(&path)), &files);
    let stats = b.stats();
    let peers = &stats["peers"];
    assert!(num(&peers["verification_failures"]) >= 1, "{stats}");
    assert_eq!(num(&peers["peer_bytes"]), 0, "{stats}");
    assert_eq!(num(&peers["service_bytes"]), total, "{stats}");
    let liar_figures = &peers["list"][0];
    assert_eq!(liar_figures["state"], "distrusted", "{stats}");
    let asked = num(&liar_figures["requests"]);

    // Shunned: the next tree is read from the service without asking it.
    let total2 = read_all(&b.at.join(base_name(&path2)), &more);
    let stats = b.stats();
    let peers = &stats["peers"];
    assert_eq!(num(&peers["list"][0]["requests"]), asked, "{stats}");
    assert_eq!(num(&peers["service_bytes"]), total + total2, "{stats}");
    drop(liar);
}

#[test]
fn a_peer_killed_mid_read_leaves_the_rest_to_the_service() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let big = pseudo_random(32 << 20, 7);
    std::fs::write(src.join("big"), &big).unwrap();
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    let (_service, _metrics) = service(tmp.path(), &data);
    let url = format!("grpc+unix://{}", tmp.path().join("grpc.sock").display());

    let a_sock = tmp.path().join("a-peer.sock");
    let mut a = TestMount::start(
        &storefs_bin!(),
        &url,
        &tmp.path().join("a"),
        &tmp.path().join("a-cache"),
        &["--peer-listen", &format!("unix:{}", a_sock.display())],
    );
    assert!(std::fs::read(a.at.join(base_name(&path)).join("big")).unwrap() == big);

    let b = TestMount::start(
        &storefs_bin!(),
        &url,
        &tmp.path().join("b"),
        &tmp.path().join("b-cache"),
        &["--peer", &format!("grpc+unix://{}", a_sock.display())],
    );
    let mut f = std::fs::File::open(b.at.join(base_name(&path)).join("big")).unwrap();
    let mut got = vec![0u8; 2 << 20];
    f.read_exact(&mut got).unwrap();
    let stats = b.stats();
    assert!(num(&stats["peers"]["peer_bytes"]) >= 2 << 20, "{stats}");

    // A dies in the middle of B's read of the file.
    a.stop_with(Signal::KILL);
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all)
        .expect("the read completes from the service");
    assert!(all == big, "the file differs");
    let stats = b.stats();
    let peers = &stats["peers"];
    assert!(num(&peers["service_bytes"]) > 0, "{stats}");
    assert!(num(&peers["list"][0]["failures"]) >= 1, "{stats}");
    assert_eq!(
        num(&peers["peer_bytes"]) + num(&peers["service_bytes"]),
        big.len() as u64,
        "{stats}"
    );
}

#[test]
fn a_peer_serves_only_cached_chunks_and_fetches_nothing_for_the_asker() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let (x, y) = (pseudo_random(5000, 11), pseudo_random(6000, 12));
    // y in a directory of its own: reading x fetches the small files
    // beside it in the same batch.
    std::fs::write(src.join("x"), &x).unwrap();
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/y"), &y).unwrap();
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    let info = ok_str(storefs!(&data).arg("info").arg(&path));
    let root = info
        .lines()
        .find_map(|l| l.strip_prefix("Root: directory "))
        .expect("a directory root");
    let root = B3Digest::from_hex(root.trim()).unwrap();
    let (_service, metrics) = service(tmp.path(), &data);
    let url = format!("grpc+unix://{}", tmp.path().join("grpc.sock").display());

    let token_file = tmp.path().join("peer-token");
    std::fs::write(&token_file, "fleet-secret").unwrap();
    let a_sock = tmp.path().join("a-peer.sock");
    let a = TestMount::start(
        &storefs_bin!(),
        &url,
        &tmp.path().join("a"),
        &tmp.path().join("a-cache"),
        &[
            "--peer-listen",
            &format!("unix:{}", a_sock.display()),
            "--peer-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(a.at.join(base_name(&path)).join("x")).unwrap() == x);
    let served_before = served(metrics);
    let fetched_before = num(&a.stats()["bytes_fetched"]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let peer_url = format!("grpc+unix://{}", a_sock.display());
        let peer = storefs_grpc::connect(
            &peer_url,
            storefs_grpc::ClientConfig {
                token: Some(storefs_grpc::Token::new("fleet-secret").unwrap()),
                ..quick_config()
            },
        )
        .unwrap();
        let (dx, dy) = (B3Digest::of(&x), B3Digest::of(&y));
        assert_eq!(peer.blob.read_chunk(&dx).await.unwrap().unwrap(), x);
        assert!(peer.blob.read_chunk(&dy).await.unwrap().is_none());
        let batch = peer.blob.read_chunk_batch(&[dy, dx]).await;
        assert!(matches!(&batch[0], Ok(None)));
        assert!(matches!(&batch[1], Ok(Some(b)) if *b == x));
        // No path infos, no directories (A holds both in its cache).
        let hash = &base_name(&path)[..32];
        let digest = storefs_store::parse_hash_part(hash).unwrap();
        assert!(peer.path_info.get(digest).await.unwrap().is_none());
        assert!(peer.directory.get(&root).await.unwrap().is_none());
        // Read-only.
        let mut w = peer.blob.open_write().await;
        let _ = w.write_all(b"new data").await;
        assert!(w.close().await.is_err());
        // Without the token, nothing.
        let stranger = storefs_grpc::connect(&peer_url, quick_config()).unwrap();
        assert!(stranger.blob.read_chunk(&dx).await.is_err());
    });

    // Nothing was fetched on the asker's behalf: not by A, not from the service.
    assert_eq!(served(metrics), served_before);
    assert_eq!(num(&a.stats()["bytes_fetched"]), fetched_before);
    assert_eq!(num(&a.stats()["peer_server"]["misses"]), 2);
}

#[test]
fn a_peers_file_is_read_again_when_it_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tree(&tmp.path().join("src"), 4);
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(tmp.path().join("src")));
    let (_service, _metrics) = service(tmp.path(), &data);
    let url = format!("grpc+unix://{}", tmp.path().join("grpc.sock").display());

    let a_sock = tmp.path().join("a-peer.sock");
    let a = TestMount::start(
        &storefs_bin!(),
        &url,
        &tmp.path().join("a"),
        &tmp.path().join("a-cache"),
        &["--peer-listen", &format!("unix:{}", a_sock.display())],
    );
    let total = read_all(&a.at.join(base_name(&path)), &files);

    let list = tmp.path().join("peers");
    std::fs::write(&list, "# no peers yet\n").unwrap();
    let b = TestMount::start(
        &storefs_bin!(),
        &url,
        &tmp.path().join("b"),
        &tmp.path().join("b-cache"),
        &["--peers-file", list.to_str().unwrap()],
    );
    assert_eq!(b.stats()["peers"]["list"], serde_json::json!([]));
    let peer_a = format!("grpc+unix://{}", a_sock.display());
    std::fs::write(&list, format!("# the fleet\n{peer_a}\n")).unwrap();
    storefs_testkit::wait_for(
        std::time::Duration::from_secs(30),
        "the mount to take the new peers file",
        || b.stats()["peers"]["list"][0]["endpoint"] == peer_a.as_str(),
    );
    read_all(&b.at.join(base_name(&path)), &files);
    let stats = b.stats();
    assert_eq!(num(&stats["peers"]["peer_bytes"]), total, "{stats}");
}
