//! Every command against a store service: `storefs serve` as a process,
//! `add`/`nar`/`info`/`import` from other processes through
//! `--store grpc+unix://` and `grpc://`, and the data still there after the
//! service restarts.

use storefs_testkit::{
    TestServer, free_port, nix::NixStore, nix::write_odd_tree, ok, ok_str, storefs, storefs_bin,
};

#[test]
fn commands_work_through_a_service_and_survive_its_restart() {
    let nix = NixStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    std::fs::create_dir_all(&src).unwrap();
    write_odd_tree(&src);
    let data = tmp.path().join("service");
    let client_data = tmp.path().join("client-unused");
    let socket = tmp.path().join("grpc.sock");
    let mut service = TestServer::start(&storefs_bin!(), &data, &socket);
    let url = service.url();

    // One process adds through the service...
    let path = ok_str(
        storefs!(&client_data)
            .args(["--store", &url, "add"])
            .arg(&src),
    );
    assert_eq!(path, nix.add(&src));
    // ...another reads it back, byte for byte what Nix dumps.
    let want = nix.dump(&path);
    assert_eq!(
        ok(storefs!(&client_data)
            .args(["--store", &url, "nar"])
            .arg(&path)),
        want
    );
    let info = ok_str(
        storefs!(&client_data)
            .args(["--store", &url, "info"])
            .arg(&path),
    );
    assert!(
        info.contains(&format!("NarHash: {}", nix.hash(&path))),
        "{info}"
    );

    // Restart the service on the same store: still there.
    service.stop();
    let service = TestServer::start(&storefs_bin!(), &data, &socket);
    assert_eq!(
        ok(storefs!(&client_data)
            .args(["--store", &service.url(), "nar"])
            .arg(&path)),
        want
    );
    drop(service);

    // Over TCP too, with a write token: writes without it are refused,
    // reads are open.
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let port = free_port();
    let mut cmd = storefs!(&data);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--write-token-file")
        .arg(&token);
    let _tcp = TestServer::spawn(&mut cmd, &[], &[port]);
    let tcp = format!("grpc://127.0.0.1:{port}");
    assert_eq!(
        ok(storefs!(&client_data)
            .args(["--store", &tcp, "nar"])
            .arg(&path)),
        want
    );
    let single = tmp.path().join("single.txt");
    std::fs::write(&single, b"Hello World!").unwrap();
    let out = storefs!(&client_data)
        .args(["--store", &tcp, "add"])
        .arg(&single)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token"), "{err}");
    let added = ok_str(
        storefs!(&client_data)
            .args(["--store", &tcp, "--token-file"])
            .arg(&token)
            .arg("add")
            .arg(&single),
    );
    assert_eq!(added, nix.add(&single));
}
