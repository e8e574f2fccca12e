//! Prefetch with real processes: a mount records what a run read
//! (`--record-trace`), a cold mount replays it (`--prefetch-list`) and
//! the same run then fetches nothing more; demand reads complete while a
//! large replay runs; `storefs prefetch --cache` fills a cache a later
//! mount reads without fetching, `--mount` reads through a mount; a
//! malformed list is refused naming its line.

use std::path::Path;
use std::time::Duration;

use storefs_testkit::{
    Signal, TestMount, TestServer, ok_str, pseudo_random, storefs, storefs_bin, try_run, wait_for,
};

/// A store path with files `a` (1 MiB), `b` (600 KiB), `c` (2 MiB) and
/// `big` (`big` bytes), served over gRPC.
fn served(tmp: &Path, big: usize) -> (TestServer, String) {
    let data = tmp.join("data");
    let dir = tmp.join("tree");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a"), pseudo_random(1 << 20, 1)).unwrap();
    std::fs::write(dir.join("sub/b"), pseudo_random(600 << 10, 2)).unwrap();
    std::fs::write(dir.join("c"), pseudo_random(2 << 20, 3)).unwrap();
    std::fs::write(dir.join("big"), pseudo_random(big, 4)).unwrap();
    let path = ok_str(storefs!(&data).arg("add").arg(&dir));
    let base = path.rsplit('/').next().unwrap().to_owned();
    let server = TestServer::start(&storefs_bin!(), &data, &tmp.join("grpc.sock"));
    (server, base)
}

fn mount(tmp: &Path, server: &TestServer, name: &str, extra: &[&str]) -> TestMount {
    TestMount::start(
        &storefs_bin!(),
        &server.url(),
        &tmp.join(format!("mnt-{name}")),
        &tmp.join(format!("cache-{name}")),
        extra,
    )
}

fn fetched(m: &TestMount) -> u64 {
    m.stats()["bytes_fetched"].as_u64().unwrap()
}

/// The run: read `a` and `sub/b` whole.
fn run(m: &TestMount, base: &str) -> usize {
    let a = std::fs::read(m.at.join(base).join("a")).unwrap();
    let b = std::fs::read(m.at.join(base).join("sub/b")).unwrap();
    assert_eq!(a, pseudo_random(1 << 20, 1));
    assert_eq!(b, pseudo_random(600 << 10, 2));
    a.len() + b.len()
}

#[test]
fn a_replayed_trace_leaves_the_run_nothing_to_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, base) = served(tmp.path(), 1);
    let trace = tmp.path().join("trace");

    // Record one run on a cold mount.
    let mut first = mount(
        tmp.path(),
        &server,
        "rec",
        &["--record-trace", trace.to_str().unwrap()],
    );
    let read = run(&first, &base);
    assert_eq!(fetched(&first), read as u64);
    assert_eq!(first.stop_with(Signal::TERM), Some(0));
    let text = std::fs::read_to_string(&trace).unwrap();
    for kind in ["P ", "D ", "C "] {
        assert!(
            text.lines().any(|l| l.starts_with(kind)),
            "no {kind:?} in\n{text}"
        );
    }

    // A cold mount replays it before the run: exactly the run's bytes.
    let second = mount(
        tmp.path(),
        &server,
        "replay",
        &["--prefetch-list", trace.to_str().unwrap()],
    );
    wait_for(Duration::from_secs(60), "the replay to finish", || {
        second.stats()["prefetch"]["finished"] == true
    });
    let stats = second.stats();
    assert_eq!(stats["prefetch"]["failed"], 0, "{stats}");
    assert_eq!(
        fetched(&second),
        read as u64,
        "the replay fetched what the run read: {stats}"
    );
    // The run itself asks the remote for nothing.
    run(&second, &base);
    let after = second.stats();
    assert_eq!(
        fetched(&second),
        read as u64,
        "the run fetched more: {after}"
    );
    // Served from the local caches: the redb near store, or the memory
    // chunk cache when the replay's chunks are still there (which of the
    // two depends on timing, so the test counts both).
    let local = |s: &serde_json::Value| {
        s["cache_hit_chunks"].as_u64().unwrap() + s["chunk_cache_hits"].as_u64().unwrap()
    };
    assert!(
        local(&after) > local(&stats),
        "before {stats}\nafter {after}"
    );
    let status = ok_str(storefs!(tmp.path().join("d")).arg("status").arg(&second.at));
    assert!(status.contains("(finished)"), "{status}");
}

#[test]
fn demand_reads_complete_while_a_large_replay_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let big = 48 << 20;
    let (server, base) = served(tmp.path(), big);
    let trace = tmp.path().join("trace");
    let mut first = mount(
        tmp.path(),
        &server,
        "rec",
        &["--record-trace", trace.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(first.at.join(&base).join("big"))
            .unwrap()
            .len(),
        big
    );
    first.stop_with(Signal::TERM);

    let second = mount(
        tmp.path(),
        &server,
        "replay",
        &["--prefetch-list", trace.to_str().unwrap()],
    );
    // While the replay of the large file goes on, demand reads of other
    // files complete, with the right bytes.
    let c = std::fs::read(second.at.join(&base).join("c")).unwrap();
    assert_eq!(c, pseudo_random(2 << 20, 3));
    run(&second, &base);
    wait_for(Duration::from_secs(120), "the replay to finish", || {
        second.stats()["prefetch"]["finished"] == true
    });
    let stats = second.stats();
    assert_eq!(stats["prefetch"]["failed"], 0, "{stats}");
    let want = (big + (2 << 20) + (1 << 20) + (600 << 10)) as u64;
    assert_eq!(fetched(&second), want, "each byte fetched once: {stats}");
}

#[test]
fn prefetch_fills_a_cache_or_reads_through_a_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, base) = served(tmp.path(), 300 << 10);
    let total = ((1 << 20) + (600 << 10) + (2 << 20) + (300 << 10)) as u64;
    let data = tmp.path().join("data-client");

    // Into a cache directory, no mount: a mount on it then fetches nothing.
    let out = ok_str(
        storefs!(&data)
            .args(["--store", &server.url(), "prefetch", "--cache"])
            .arg(tmp.path().join("cache-warm"))
            .arg(&base),
    );
    assert!(out.contains(&format!("{total} bytes fetched")), "{out}");
    let warm = mount(tmp.path(), &server, "warm", &[]);
    run(&warm, &base);
    assert_eq!(
        std::fs::read(warm.at.join(&base).join("c")).unwrap().len(),
        2 << 20
    );
    assert_eq!(fetched(&warm), 0, "{}", warm.stats());
    drop(warm);

    // Through a mount: every file read once.
    let cold = mount(tmp.path(), &server, "cold", &[]);
    let out = ok_str(
        storefs!(&data)
            .args(["prefetch", "--mount"])
            .arg(&cold.at)
            .arg(&base),
    );
    assert_eq!(
        out,
        format!("prefetched 4 files, {total} bytes through the mount")
    );
    assert_eq!(fetched(&cold), total);

    // A malformed list is refused before mounting, naming the line.
    let bad = tmp.path().join("bad");
    std::fs::write(&bad, "# a list\nC 00zz\n").unwrap();
    let at = tmp.path().join("mnt-bad");
    std::fs::create_dir_all(&at).unwrap();
    let (okay, _, err) = try_run(
        storefs!(&data)
            .args(["--store", &server.url(), "mount"])
            .arg(&at)
            .arg("--prefetch-list")
            .arg(&bad),
    );
    assert!(!okay && err.contains("line 2"), "{err}");
}
