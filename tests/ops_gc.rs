//! `storefs delete`, `storefs gc` and `storefs verify` as real processes
//! on a real redb store filled from a real Nix: paths A, B (B refers to
//! A and shares file contents with it) and C (sharing contents with A);
//! deleting C and collecting frees exactly what only C held, A and B
//! still dump byte for byte as `nix-store --dump`, a fresh upload is kept
//! by the grace period, a dry run deletes nothing, a sweep stopped
//! half-way leaves a whole store that a second run finishes, and so does
//! a gc killed with SIGKILL while it deletes.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use storefs_testkit::{
    Garage, Serve, nix::NixStore, ok, ok_str, pseudo_random, storefs, storefs_bin, try_run,
    wait_for,
};

/// The three paths, in a scratch Nix store (and C's source directory).
struct Paths {
    c_src: std::path::PathBuf,
    store: NixStore,
    a: String,
    b: String,
    c: String,
}

fn make_paths() -> Paths {
    let store = NixStore::new();
    let src = store.dir().join("src");
    let shared = pseudo_random(1 << 20, 1);
    let (a_dir, b_own, c_dir) = (src.join("a"), src.join("b-own"), src.join("c"));
    std::fs::create_dir_all(a_dir.join("sub")).unwrap();
    std::fs::create_dir_all(c_dir.join("deep/er")).unwrap();
    std::fs::write(a_dir.join("shared"), &shared).unwrap();
    std::fs::write(a_dir.join("sub/only-a"), pseudo_random(512 << 10, 2)).unwrap();
    std::fs::write(&b_own, pseudo_random(300 << 10, 3)).unwrap();
    std::fs::write(c_dir.join("shared-copy"), &shared).unwrap();
    std::fs::write(c_dir.join("deep/er/only-c"), pseudo_random(700 << 10, 4)).unwrap();
    std::fs::write(c_dir.join("deep/small"), b"c's own small file\n").unwrap();
    let a = store.add(&a_dir);
    let c = store.add(&c_dir);
    let b = store.build(&format!(
        r#"let a = builtins.storePath "{a}";
           own = builtins.path {{ path = {own}; name = "b-own"; }};
in derivation {{
  name = "b";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  args = [ "-c" "mkdir $out; cp ${{a}}/shared $out/shared; cp ${{own}} $out/own; echo ${{a}} > $out/ref" ];
}}
"#,
        own = b_own.display()
    ));
    assert!(store.references(&b).contains(&a), "B must refer to A");
    Paths {
        c_src: c_dir,
        store,
        a,
        b,
        c,
    }
}

/// Import `paths` (with their closures) into the embedded store `data`.
fn import(p: &Paths, data: &Path, label: &str, paths: &[&str]) {
    let cache = p.store.copy_to_cache(label, "none", None, paths);
    ok(storefs!(data)
        .args(["import", "--no-check-sigs", "--from"])
        .arg(format!("file://{}", cache.display()))
        .args(paths));
}

/// `storefs gc ARGS --json`, parsed.
fn gc(data: &Path, args: &[&str]) -> Value {
    let out = ok_str(storefs!(data).args(["gc", "--json"]).args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("gc printed {out:?}: {e}"))
}

fn count(r: &Value, kind: &str, what: &str) -> u64 {
    r[kind][what]
        .as_u64()
        .unwrap_or_else(|| panic!("no {kind}.{what} in {r}"))
}

const KINDS: [&str; 3] = ["directories", "chunk_lists", "chunks"];

/// Every path still in the store dumps exactly as Nix dumps it.
fn assert_byte_exact(p: &Paths, data: &Path, paths: &[&str]) {
    for path in paths {
        let ours = ok(storefs!(data).args(["nar", path]));
        assert!(
            ours == p.store.dump(path),
            "storefs nar {path} differs from nix-store --dump"
        );
    }
    ok(storefs!(data).arg("verify"));
}

#[test]
fn gc_frees_exactly_what_only_a_deleted_path_held() {
    let p = make_paths();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // A and B alone: what they need.
    import(&p, &data, "ab", &[&p.b]);
    let before_c = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    import(&p, &data, "c", &[&p.c]);
    let with_c = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    for k in KINDS {
        assert_eq!(count(&with_c, k, "deleted"), 0, "{with_c}");
        assert_eq!(count(&before_c, k, "deleted"), 0, "{before_c}");
    }
    let added_chunks =
        count(&with_c, "chunks", "reachable") - count(&before_c, "chunks", "reachable");
    assert!(added_chunks > 0, "C added no chunks: {with_c}");

    // A is needed by B: refused. C is not: deleted.
    let (okay, _, err) = try_run(storefs!(&data).args(["delete", &p.a]));
    assert!(!okay && err.contains("referenced by"), "{err}");
    assert_eq!(ok_str(storefs!(&data).args(["delete", &p.c])), p.c);
    let (okay, _, err) = try_run(storefs!(&data).args(["nar", &p.c]));
    assert!(!okay && err.contains("not in the store"), "{err}");

    // Everything is fresh: the default grace period (1h) keeps it all.
    let fresh = gc(&data, &[]);
    for k in KINDS {
        assert_eq!(count(&fresh, k, "deleted"), 0, "{fresh}");
    }
    assert!(count(&fresh, "chunks", "young") >= added_chunks, "{fresh}");

    // A dry run without grace says what would go, and deletes nothing.
    let dry = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    let dry_again = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    assert_eq!(dry, dry_again, "a dry run changed the store");
    for k in KINDS {
        assert_eq!(
            count(&dry, k, "deleted"),
            count(&with_c, k, "reachable") - count(&before_c, k, "reachable"),
            "{k}: the records only C reached: {dry}"
        );
        assert_eq!(
            count(&dry, k, "reachable"),
            count(&before_c, k, "reachable")
        );
    }
    assert_byte_exact(&p, &data, &[&p.a, &p.b]);

    // Stopped after two deletions: still whole; the next run finishes.
    let part = gc(&data, &["--keep-since", "0s", "--max-deletions", "2"]);
    assert_eq!(part["deleted"], 2, "{part}");
    assert_eq!(part["stopped_early"], true, "{part}");
    assert_byte_exact(&p, &data, &[&p.a, &p.b]);
    let rest = gc(&data, &["--keep-since", "0s"]);
    assert_eq!(rest["stopped_early"], false, "{rest}");
    assert_eq!(
        2 + rest["deleted"].as_u64().unwrap(),
        dry["deleted"].as_u64().unwrap(),
        "the two runs deleted what the dry run announced: {rest}"
    );
    assert!(rest["bytes_freed"].as_u64().unwrap() > 700 << 10, "{rest}");
    assert!(
        rest["file_bytes_after"].as_u64() < rest["file_bytes_before"].as_u64(),
        "the store file did not shrink: {rest}"
    );
    assert_byte_exact(&p, &data, &[&p.a, &p.b]);

    // Nothing left to collect; what remains is what A and B need.
    let after = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    for k in KINDS {
        assert_eq!(count(&after, k, "deleted"), 0, "{after}");
        assert_eq!(
            count(&after, k, "reachable"),
            count(&before_c, k, "reachable")
        );
    }

    // C comes back whole when imported again (its reused chunks included).
    import(&p, &data, "c-again", &[&p.c]);
    assert_byte_exact(&p, &data, &[&p.a, &p.b, &p.c]);
    // --recursive deletes A with B, which refers to it.
    let gone = ok_str(storefs!(&data).args(["delete", "--recursive", &p.a]));
    let mut gone: Vec<&str> = gone.lines().collect();
    gone.sort();
    let mut want = vec![p.a.as_str(), p.b.as_str()];
    want.sort();
    assert_eq!(gone, want);
    gc(&data, &["--keep-since", "0s"]);
    assert_byte_exact(&p, &data, &[&p.c]);
}

/// A gc killed with SIGKILL half-way through its sweep: the store is
/// whole (every kept path's closure present, A and B dump as Nix dumps
/// them), and a second run deletes the rest. The doomed path holds many
/// small files (a record each), so the sweep commits many batches; the
/// kill follows the first committed batch of chunks (a debug log line
/// written after that commit), not a sleep.
#[test]
fn gc_killed_mid_sweep_leaves_a_whole_store_and_a_rerun_finishes() {
    const FILES: u64 = 20_000;
    let p = make_paths();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    import(&p, &data, "ab", &[&p.b]);
    let before = gc(&data, &["--dry-run", "--keep-since", "0s"]);

    let many = tmp.path().join("many");
    for i in 0..FILES {
        let d = many.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&d).unwrap();
        }
        let len = 64 + (i % 512) as usize;
        std::fs::write(
            d.join(format!("f{:03}", i % 100)),
            pseudo_random(len, 1000 + i),
        )
        .unwrap();
    }
    let doomed = ok_str(storefs!(&data).arg("add").arg(&many));
    ok(storefs!(&data).args(["delete", &doomed]));
    let dry = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    assert!(count(&dry, "chunks", "deleted") >= FILES, "{dry}");

    let mut child = storefs!(&data)
        .args(["gc", "--json", "--keep-since", "0s"])
        .env("RUST_LOG", "warn,storefs_castore::gc=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn storefs gc");
    let stderr = BufReader::new(child.stderr.take().expect("gc's stderr"));
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.expect("gc's stderr");
        let hit = line.contains("gc: deleted a batch of chunks");
        seen.push(line);
        if hit {
            break;
        }
    }
    child.kill().expect("SIGKILL gc");
    let status = child.wait().expect("wait for gc");
    eprintln!(
        "gc killed after: {}",
        seen.last().map_or("", String::as_str)
    );
    assert!(
        seen.last().is_some_and(|l| l.contains("batch of chunks")),
        "gc ended without deleting a batch of chunks: {status}\n{}",
        seen.join("\n")
    );
    assert_eq!(
        status.signal(),
        Some(9),
        "gc finished before SIGKILL reached it: {status}"
    );

    // Whole after the crash: every kept closure present, A and B exact.
    assert_byte_exact(&p, &data, &[&p.a, &p.b]);
    // The rerun finishes the job the killed run began.
    let rest = gc(&data, &["--keep-since", "0s"]);
    eprintln!("the rerun: {rest}");
    assert_eq!(rest["stopped_early"], false, "{rest}");
    let (rest_deleted, all) = (
        rest["deleted"].as_u64().unwrap(),
        dry["deleted"].as_u64().unwrap(),
    );
    assert!(
        rest_deleted > 0 && rest_deleted < all,
        "the killed run should have deleted part of the {all} records, the rerun the rest: {rest}"
    );
    let after = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    for k in KINDS {
        assert_eq!(count(&after, k, "deleted"), 0, "{after}");
        assert_eq!(
            count(&after, k, "reachable"),
            count(&before, k, "reachable"),
            "{k}: {after}"
        );
    }
    assert_byte_exact(&p, &data, &[&p.a, &p.b]);
    let (okay, _, err) = try_run(storefs!(&data).args(["nar", &doomed]));
    assert!(!okay && err.contains("not in the store"), "{err}");
}

/// Uploads running while `serve --gc-interval` collects keep what they
/// write and what they reuse: each upload dedups against the chunks of C,
/// deleted and older than the grace period, at its start, and writes its
/// path info only after a large file of its own, while collections run;
/// a collector that did not see the reuse would take those chunks.
#[test]
fn uploads_during_gc_stay_whole() {
    const GRACE: &str = "20s";
    let p = make_paths();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    import(&p, &data, "c", &[&p.c]);
    ok(storefs!(&data).args(["delete", &p.c]));
    // Wait until C's records are older than the grace period. The grace
    // must exceed the longest upload (first chunk to path info): 2 s was
    // too short for three debug-build uploads on a loaded machine (their
    // own fresh chunks aged past it and were collected).
    wait_for(Duration::from_secs(90), "C's records to age", || {
        let r = gc(&data, &["--dry-run", "--keep-since", GRACE]);
        KINDS.iter().all(|k| count(&r, k, "young") == 0) && r["deleted"].as_u64() > Some(0)
    });

    // Sources that reuse C's large file, each with a file of its own.
    let only_c = std::fs::read(p.c_src.join("deep/er/only-c")).unwrap();
    let sources: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let d = tmp.path().join(format!("up-{i}"));
            std::fs::create_dir_all(d.join("in")).unwrap();
            std::fs::write(d.join("in/reused"), &only_c).unwrap();
            std::fs::write(d.join("own"), pseudo_random(24 << 20, 100 + i)).unwrap();
            d
        })
        .collect();

    let socket = tmp.path().join("grpc.sock");
    let serve = Serve::start(
        &storefs_bin!(),
        &data,
        &[
            "--listen",
            &format!("unix:{}", socket.display()),
            "--gc-interval",
            "300ms",
            "--gc-keep-since",
            GRACE,
        ],
        1,
    );
    let url = format!("grpc+unix://{}", socket.display());
    let data_ref = &data;
    let uploaded: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let url = url.clone();
                s.spawn(move || ok_str(storefs!(data_ref).args(["--store", &url, "add"]).arg(src)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Two more collections after the last upload, then stop the server.
    serve.wait_for_log("gc run", Duration::from_secs(30));
    serve.wait_for_log("gc run", Duration::from_secs(30));
    drop(serve);

    ok(storefs!(&data).arg("verify"));
    for (src, path) in sources.iter().zip(&uploaded) {
        let ours = ok(storefs!(&data).args(["nar", path]));
        let nix = ok(std::process::Command::new("nix-store")
            .arg("--dump")
            .arg(src));
        assert!(
            ours == nix,
            "{path} differs from nix-store --dump of {}",
            src.display()
        );
    }
    // The collector ran meanwhile: what only C held is gone.
    let left = gc(&data, &["--dry-run", "--keep-since", "0s"]);
    assert_eq!(left["deleted"], 0, "{left}");
}

/// A `storefs --store URL` command (with Garage's credentials if any).
fn on(data: &Path, url: &str, garage: Option<&Garage>) -> std::process::Command {
    let mut c = storefs!(data);
    c.args(["--store", url]);
    if let Some(g) = garage {
        g.credentials_env(&mut c);
    }
    c
}

/// The same collection on an object store: C deleted, then exactly what
/// only C held goes, A and B stay byte-exact, a dry run and a stopped
/// sweep keep the store whole.
fn object_store_gc(url: &str, garage: Option<&Garage>) {
    let p = make_paths();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gc_on = |args: &[&str]| -> Value {
        let out = ok_str(on(&data, url, garage).args(["gc", "--json"]).args(args));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("gc printed {out:?}: {e}"))
    };
    let import_on = |label: &str, path: &str| {
        let cache = p.store.copy_to_cache(label, "none", None, &[path]);
        ok(on(&data, url, garage)
            .args(["import", "--no-check-sigs", "--from"])
            .arg(format!("file://{}", cache.display()))
            .arg(path));
    };
    let exact = |paths: &[&str]| {
        for path in paths {
            let ours = ok(on(&data, url, garage).args(["nar", path]));
            assert!(
                ours == p.store.dump(path),
                "storefs nar {path} differs from nix-store --dump"
            );
        }
        ok(on(&data, url, garage).arg("verify"));
    };

    import_on("ab", &p.b);
    let before_c = gc_on(&["--dry-run", "--keep-since", "0s"]);
    import_on("c", &p.c);
    let (okay, _, err) = try_run(on(&data, url, garage).args(["delete", &p.a]));
    assert!(!okay && err.contains("referenced by"), "{err}");
    ok(on(&data, url, garage).args(["delete", &p.c]));
    let fresh = gc_on(&[]);
    assert_eq!(
        fresh["deleted"], 0,
        "the grace period keeps fresh objects: {fresh}"
    );
    let dry = gc_on(&["--dry-run", "--keep-since", "0s"]);
    assert_eq!(
        dry,
        gc_on(&["--dry-run", "--keep-since", "0s"]),
        "a dry run deleted"
    );
    for k in ["chunk_lists", "chunks"] {
        assert_eq!(
            count(&dry, k, "reachable"),
            count(&before_c, k, "reachable"),
            "{k}: {dry}"
        );
    }
    assert!(count(&dry, "chunks", "deleted") > 0, "{dry}");
    let part = gc_on(&["--keep-since", "0s", "--max-deletions", "1"]);
    assert_eq!(part["stopped_early"], true, "{part}");
    exact(&[&p.a, &p.b]);
    let rest = gc_on(&["--keep-since", "0s"]);
    assert_eq!(
        1 + rest["deleted"].as_u64().unwrap(),
        dry["deleted"].as_u64().unwrap(),
        "{rest}"
    );
    exact(&[&p.a, &p.b]);
    let after = gc_on(&["--dry-run", "--keep-since", "0s"]);
    assert_eq!(after["deleted"], 0, "{after}");
    // C again, whole, after its objects went.
    import_on("c-again", &p.c);
    exact(&[&p.a, &p.b, &p.c]);
}

#[test]
fn gc_on_a_file_object_store() {
    let tmp = tempfile::tempdir().unwrap();
    object_store_gc(
        &format!("file://{}", tmp.path().join("bucket").display()),
        None,
    );
}

#[test]
fn gc_on_garage() {
    let g = Garage::start();
    object_store_gc(&g.store_url(&g.bucket, "gc"), Some(&g));
}
