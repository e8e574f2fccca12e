//! `storefs add`, `nar` and `info` against a real Nix: for every fixture
//! Nix made, storefs computes the same store path, NAR bytes and NAR hash.

use storefs_testkit::{
    TestServer, nix::Fixtures, nix::NixStore, nix::nix_sha256, nix::write_odd_tree, ok, ok_str,
    storefs, storefs_bin,
};

#[test]
fn add_gives_the_path_nix_store_add_gives() {
    let nix = NixStore::new();
    let data = tempfile::tempdir().unwrap();
    let src = nix.dir().join("odd");
    std::fs::create_dir_all(&src).unwrap();
    write_odd_tree(&src);
    let single = nix.dir().join("hello.txt");
    std::fs::write(&single, b"Hello World!").unwrap();
    let exe = nix.dir().join("run.sh");
    std::fs::write(&exe, b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let link = nix.dir().join("link");
    std::os::unix::fs::symlink("hello.txt", &link).unwrap();

    for path in [&src, &single, &exe, &link] {
        let ours = ok_str(storefs!(data.path()).arg("add").arg(path));
        let theirs = nix.add(path);
        assert_eq!(ours, theirs, "store path of {}", path.display());
        // docs/nix-formats.md, worked example: this one is pinned.
        if path == &single {
            assert_eq!(
                ours,
                "/nix/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt"
            );
        }
        let nar = ok(storefs!(data.path()).arg("nar").arg(&ours));
        assert_eq!(nar, nix.dump(&theirs), "NAR of {}", path.display());
        assert_eq!(nix_sha256(&nar), nix.hash(&theirs));
    }

    // --name, and several paths at once, one line each.
    let out = ok_str(
        storefs!(data.path())
            .args(["add", "--name", "renamed"])
            .arg(&single),
    );
    assert!(out.ends_with("-renamed"), "{out}");
    let two = ok_str(storefs!(data.path()).arg("add").arg(&single).arg(&src));
    assert_eq!(two.lines().count(), 2);
}

/// With a gRPC store the NAR hash is computed on the client, from the
/// files: the path, the NAR the service renders and the hash it records
/// still agree with Nix's.
#[test]
fn add_over_grpc_gives_the_path_nix_store_add_gives() {
    let nix = NixStore::new();
    let served = tempfile::tempdir().unwrap();
    let service = TestServer::start(
        &storefs_bin!(),
        served.path(),
        &served.path().join("grpc.sock"),
    );
    let client = tempfile::tempdir().unwrap();
    let grpc = |cmd: &str| {
        let mut c = storefs!(client.path());
        c.args(["--store", &service.url(), cmd]);
        c
    };
    let src = nix.dir().join("odd");
    std::fs::create_dir_all(&src).unwrap();
    write_odd_tree(&src);
    let single = nix.dir().join("hello.txt");
    std::fs::write(&single, b"Hello World!").unwrap();
    for path in [&src, &single] {
        let ours = ok_str(grpc("add").arg(path));
        let theirs = nix.add(path);
        assert_eq!(ours, theirs, "store path of {}", path.display());
        let nar = ok(grpc("nar").arg(&ours));
        assert_eq!(nar, nix.dump(&theirs), "NAR of {}", path.display());
        let info = ok_str(grpc("info").arg(&ours));
        let want = format!("NarHash: {}", nix.hash(&theirs));
        assert!(info.lines().any(|l| l == want), "{want} not in:\n{info}");
    }
}

#[test]
fn nar_and_info_of_every_fixture_match_nix() {
    let fx = Fixtures::build();
    let data = tempfile::tempdir().unwrap();
    // Nix-added paths are source paths: adding their files gives the same path.
    for p in [&fx.tree, &fx.single, &fx.small] {
        let real = fx.store.real_path(p);
        let name = p.rsplit_once('-').map(|(h, _)| &p[h.len() + 1..]).unwrap();
        let ours = ok_str(
            storefs!(data.path())
                .args(["add", "--name", name])
                .arg(&real),
        );
        assert_eq!(&ours, p);
        let nar = ok(storefs!(data.path()).arg("nar").arg(p));
        assert_eq!(nar, fx.store.dump(p));
        let info: serde_json::Value =
            serde_json::from_slice(&ok(storefs!(data.path()).args(["info", "--json"]).arg(p)))
                .unwrap();
        assert_eq!(info[0]["path"], p.as_str());
        assert_eq!(info[0]["narHash"], fx.store.hash(p).as_str());
        assert_eq!(info[0]["narSize"], fx.store.size(p));
        assert!(
            info[0]["ca"]
                .as_str()
                .unwrap()
                .starts_with("fixed:r:sha256:")
        );
        let text = ok_str(storefs!(data.path()).arg("info").arg(p));
        assert!(
            text.contains(&format!("NarHash: {}", fx.store.hash(p))),
            "{text}"
        );
    }
}

#[test]
fn unknown_paths_and_bad_input_fail_in_one_line() {
    let data = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "info",
            "/nix/store/00000000000000000000000000000000-nothing",
        ],
        vec!["nar", "00000000000000000000000000000000-nothing"],
        vec!["info", "/nix/store/not-a-store-path"],
        vec!["info", "/gnu/store/00000000000000000000000000000000-x"],
        vec!["add", "/does/not/exist"],
    ] {
        let out = storefs!(data.path()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("storefs: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = storefs!(data.path())
        .args(["--store", "nope://x", "info", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown store URL scheme"));
}

#[test]
fn adding_under_gnu_store_gives_a_different_path_and_the_same_nar() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hello.txt");
    std::fs::write(&f, b"Hello World!").unwrap();
    let nix_path = ok_str(storefs!(data.path()).arg("add").arg(&f));
    let gnu = tempfile::tempdir().unwrap();
    let gnu_path = ok_str(
        storefs!(gnu.path())
            .args(["--store-dir", "/gnu/store", "add"])
            .arg(&f),
    );
    assert!(gnu_path.starts_with("/gnu/store/"));
    assert_ne!(&gnu_path[11..43], &nix_path[11..43]);
    let a = ok(storefs!(data.path()).arg("nar").arg(&nix_path));
    let b = ok(storefs!(gnu.path())
        .args(["--store-dir", "/gnu/store", "nar"])
        .arg(&gnu_path));
    assert_eq!(a, b);
}
