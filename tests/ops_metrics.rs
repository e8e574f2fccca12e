//! `--metrics` on `storefs serve` and `storefs mount`, and `storefs
//! status`, as real processes: each scrape is a real HTTP GET, parsed by a
//! Prometheus text parser, and the counters must move by exactly what a
//! known workload does (bytes written, bytes read, calls per front end).

use std::net::SocketAddr;

use prometheus_parse::{Sample, Scrape, Value};
use serde_json::Value as Json;
use storefs_testkit::{
    Serve, TestMount, TestServer, free_port, http, ok, ok_str, pseudo_random, storefs, storefs_bin,
};

/// One scrape of `addr`'s `/metrics`, parsed.
fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let a = http::get(addr, "/metrics");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let ct = a.header_values("content-type").join(",");
    assert!(ct.contains("openmetrics-text"), "{ct}");
    let text = String::from_utf8(a.body).expect("utf-8 metrics");
    assert!(text.ends_with("# EOF\n"), "not a whole exposition:\n{text}");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).expect("Prometheus text").samples
}

/// The value of the sample `name` whose labels include `labels` (0 when
/// there is none yet: a labelled counter appears at its first use).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a number: {other:?}"),
        })
        .unwrap_or(0.0)
}

fn hash_part(store_path: &str) -> &str {
    let base = store_path.rsplit('/').next().unwrap_or(store_path);
    &base[..32]
}

#[test]
fn serve_counts_calls_and_bytes_by_front_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let socket = tmp.path().join("grpc.sock");
    let daemon = tmp.path().join("daemon.sock");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let serve = Serve::start(
        &storefs_bin!(),
        &data,
        &[
            "--listen",
            &format!("unix:{}", socket.display()),
            "--http",
            "127.0.0.1:0",
            "--daemon-socket",
            daemon.to_str().unwrap(),
            "--metrics",
            &metrics.to_string(),
        ],
        4,
    );
    let url = format!("grpc+unix://{}", socket.display());
    let before = scrape(metrics);
    assert_eq!(
        value(
            &before,
            "storefs_bytes_in_bytes_total",
            &[("frontend", "grpc")]
        ),
        0.0
    );

    // One file of known size in through gRPC.
    let n = 3 * 1024 * 1024 + 17;
    let file = tmp.path().join("payload");
    std::fs::write(&file, pseudo_random(n, 7)).unwrap();
    let path = ok_str(storefs!(&data).args(["--store", &url, "add"]).arg(&file));
    let after_add = scrape(metrics);
    let grpc = |op| [("frontend", "grpc"), ("op", op)];
    assert_eq!(
        value(
            &after_add,
            "storefs_bytes_in_bytes_total",
            &[("frontend", "grpc")]
        ),
        n as f64
    );
    assert_eq!(
        value(&after_add, "storefs_requests_total", &grpc("blob.write")),
        1.0
    );
    assert_eq!(
        value(&after_add, "storefs_requests_total", &grpc("path_info.put")),
        1.0
    );
    assert_eq!(
        value(
            &after_add,
            "storefs_request_duration_seconds_count",
            &grpc("path_info.put")
        ),
        1.0
    );
    assert_eq!(
        value(
            &after_add,
            "storefs_request_errors_total",
            &grpc("path_info.put")
        ),
        0.0
    );

    // Its NAR out through gRPC: every byte of the file once.
    let nar = ok(storefs!(&data).args(["--store", &url, "nar", &path]));
    assert!(nar.len() > n);
    let after_nar = scrape(metrics);
    assert_eq!(
        value(
            &after_nar,
            "storefs_bytes_out_bytes_total",
            &[("frontend", "grpc")]
        ) - value(
            &after_add,
            "storefs_bytes_out_bytes_total",
            &[("frontend", "grpc")]
        ),
        n as f64
    );

    // One narinfo over HTTP: one path info lookup on the HTTP front end.
    let answer = http::get(serve.http(), &format!("/{}.narinfo", hash_part(&path)));
    assert_eq!(answer.status, 200);
    let after_http = scrape(metrics);
    let http_get = [("frontend", "http"), ("op", "path_info.get")];
    assert_eq!(
        value(&after_http, "storefs_requests_total", &http_get)
            - value(&after_nar, "storefs_requests_total", &http_get),
        1.0
    );
    // Nothing the HTTP view did shows on the gRPC front end.
    assert_eq!(
        value(
            &after_http,
            "storefs_requests_total",
            &grpc("path_info.get")
        ),
        value(&after_nar, "storefs_requests_total", &grpc("path_info.get"))
    );

    // Nix asks the daemon socket: counted there.
    ok(std::process::Command::new("nix-store")
        .arg("--store")
        .arg(format!("unix://{}", daemon.display()))
        .args(["-q", "--hash", &path]));
    let after_daemon = scrape(metrics);
    assert!(
        value(
            &after_daemon,
            "storefs_requests_total",
            &[("frontend", "daemon"), ("op", "path_info.get")]
        ) >= 1.0
    );
}

/// The mount's figures through `--metrics`, and `storefs status`, after a
/// cold read of one file: exactly its bytes fetched.
#[test]
fn mount_metrics_and_status_follow_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = tmp.path().join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 2 * 1024 * 1024 + 5;
    std::fs::write(dir.join("big"), pseudo_random(n, 9)).unwrap();
    std::fs::write(dir.join("small"), b"small\n").unwrap();
    let path = ok_str(storefs!(&data).arg("add").arg(&dir));
    let base = path.rsplit('/').next().unwrap().to_owned();

    let socket = tmp.path().join("grpc.sock");
    let server = TestServer::start(&storefs_bin!(), &data, &socket);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let at = tmp.path().join("mnt");
    let mount = TestMount::start(
        &storefs_bin!(),
        &server.url(),
        &at,
        &tmp.path().join("cache"),
        &["--metrics", &metrics.to_string(), "--cache-size", "64M"],
    );
    let before = scrape(metrics);
    assert_eq!(
        value(&before, "storefs_mount_fetched_bytes_total", &[]),
        0.0
    );
    assert!(value(&before, "storefs_mount_cache_quota_bytes", &[]) > 0.0);

    let read = std::fs::read(at.join(&base).join("big")).unwrap();
    assert_eq!(read.len(), n);
    let after = scrape(metrics);
    assert_eq!(
        value(&after, "storefs_mount_fetched_bytes_total", &[]),
        n as f64
    );
    assert_eq!(
        value(&after, "storefs_mount_read_bytes_total", &[]),
        n as f64
    );
    assert_eq!(
        value(&after, "storefs_mount_cache_hit_chunks_total", &[]),
        0.0
    );
    assert_eq!(value(&after, "storefs_mount_remote_up", &[]), 1.0);
    assert_eq!(
        value(&after, "storefs_mount_remote_fetches_in_flight", &[]),
        0.0
    );
    assert!(value(&after, "storefs_mount_fetched_chunks_total", &[]) >= 2.0);
    // Each chunk fetched was looked up in the (empty) disk cache first.
    assert!(
        value(&after, "storefs_mount_cache_lookups_total", &[])
            >= value(&after, "storefs_mount_fetched_chunks_total", &[])
    );
    // A cold file's bytes reach the kernel through the mount's reads.
    assert!(value(&after, "storefs_mount_reads_total", &[]) >= 1.0);
    // The cache is filled behind the reader: its figure follows the write.
    storefs_testkit::wait_for(
        std::time::Duration::from_secs(20),
        "the cache fill to show in the figures",
        || value(&scrape(metrics), "storefs_mount_cache_used_bytes", &[]) > 0.0,
    );
    // The one replica of the gRPC store, labelled with its endpoint.
    let endpoint = [("endpoint", server.url())];
    let endpoint: Vec<(&str, &str)> = endpoint.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        value(
            &after,
            "storefs_mount_replica_fetched_bytes_total",
            &endpoint
        ),
        n as f64
    );
    assert!(value(&after, "storefs_mount_replica_requests_total", &endpoint) >= 1.0);
    assert_eq!(
        value(&after, "storefs_mount_replica_failures_total", &endpoint),
        0.0
    );
    assert_eq!(value(&after, "storefs_mount_replica_up", &endpoint), 1.0);

    // The same figures through the mount itself.
    let status: Json =
        serde_json::from_str(&ok_str(storefs!(&data).args(["status", "--json"]).arg(&at))).unwrap();
    assert_eq!(status["bytes_fetched"], n as u64, "{status}");
    assert_eq!(status["remote"], server.url(), "{status}");
    assert_eq!(status["remote_health"]["up"], true, "{status}");
    assert!(status["cache_quota_bytes"].as_u64() > Some(0), "{status}");
    assert!(
        !status["slowest_fetches"].as_array().unwrap().is_empty(),
        "{status}"
    );
    assert_eq!(status["cache_hit_rate"], 0.0, "{status}");
    let text = ok_str(storefs!(&data).arg("status").arg(&at));
    for want in [
        format!("storefs mount at {}", at.display()),
        format!("{}: up", server.url()),
        "hit rate:".to_owned(),
        "slowest recent fetches:".to_owned(),
    ] {
        assert!(text.contains(&want), "no {want:?} in\n{text}");
    }
    // The xattr carries the same (and stays).
    let x = storefs_testkit::xattr::stats(&at);
    assert_eq!(x["bytes_fetched"], n as u64);
    drop(mount);
    // Not a mount: a clear error.
    let (okay, _, err) = storefs_testkit::try_run(storefs!(&data).arg("status").arg(tmp.path()));
    assert!(!okay && err.contains("not a storefs mount"), "{err}");
}
