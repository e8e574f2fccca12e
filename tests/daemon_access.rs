//! The daemon socket's front door, as a real `storefs serve` process and a
//! real Nix: peer credentials decide who may connect and who may upload
//! (`nobody`, through `setpriv`, may query but not add; a user not allowed
//! is refused at the handshake), the socket's mode and group are set as
//! asked, silent connections cannot lock clients out, and each uid has a
//! share of the connections. Also: one startup line per listener.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use storefs_testkit::{Serve, nix::NixStore, nix::require_nix, ok_str, storefs_bin};

/// A scratch directory every user can traverse (the socket and the files
/// `nobody` adds live in it).
fn open_tmp() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// A small tree anyone may read, and the store path Nix gives it.
fn source(tmp: &Path) -> (PathBuf, String) {
    let src = tmp.join("greeting");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello from the daemon access test\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        src.join("hello.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let scratch = NixStore::new();
    let path = scratch.add(&src);
    (src, path)
}

/// `nix-store --store unix://SOCKET ARGS`, as root or (through setpriv) as
/// `nobody`:`nogroup`; bounded, so that a socket that never answers fails
/// the test instead of hanging it.
fn nix_store(socket: &Path, as_nobody: bool, home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("timeout");
    c.arg("120");
    if as_nobody {
        c.args([
            "setpriv",
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ]);
    }
    c.arg("nix-store")
        .arg("--store")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .env("HOME", home)
        .env_remove("NIX_REMOTE");
    c.output().expect("run nix-store")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A home directory `nobody` may write.
fn home(tmp: &Path) -> PathBuf {
    let h = tmp.join("home");
    std::fs::create_dir_all(&h).unwrap();
    std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o777)).unwrap();
    h
}

fn gid_of_nogroup() -> u32 {
    ok_str(Command::new("getent").args(["group", "nogroup"]))
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .expect("nogroup's gid")
}

#[test]
fn untrusted_users_query_but_cannot_add() {
    require_nix();
    let tmp = open_tmp();
    let home = home(tmp.path());
    let (src, path) = source(tmp.path());
    let socket = tmp.path().join("daemon.sock");
    let grpc = tmp.path().join("grpc.sock");
    let serve = Serve::start(
        &storefs_bin!(),
        &tmp.path().join("data"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &format!("unix:{}", grpc.display()),
            "--http",
            "127.0.0.1:0",
            "--daemon-socket",
            socket.to_str().unwrap(),
            "--daemon-socket-mode",
            "0666",
        ],
        4,
    );
    // One startup line per listener.
    assert!(
        serve.lines[0].starts_with("storefs: gRPC on grpc://127.0.0.1:"),
        "{:?}",
        serve.lines
    );
    assert!(
        serve.lines[1].starts_with("storefs: gRPC on grpc+unix://"),
        "{:?}",
        serve.lines
    );
    assert!(serve.lines[2].starts_with("storefs: HTTP binary cache on http://127.0.0.1:"));
    assert!(serve.lines[3].starts_with(&format!(
        "storefs: Nix daemon socket at {}",
        socket.display()
    )));
    assert!(serve.lines[3].contains("mode 0666"), "{}", serve.lines[3]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o666);

    // nobody may not add: refused with a clear error, nothing stored.
    let src_arg = src.to_str().unwrap();
    let o = nix_store(&socket, true, &home, &["--add", src_arg]);
    assert!(!o.status.success(), "nobody added a path: {}", stdout(&o));
    assert!(
        stderr(&o).contains("is not a trusted user"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nobody"), "{}", stderr(&o));
    let o = nix_store(&socket, false, &home, &["--check-validity", &path]);
    assert!(!o.status.success(), "the refused path is valid");

    // root may.
    let o = nix_store(&socket, false, &home, &["--add", src_arg]);
    assert!(
        o.status.success(),
        "nix-store --add as root: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), path);

    // nobody may query and read it.
    let o = nix_store(&socket, true, &home, &["-q", "--hash", &path]);
    assert!(o.status.success(), "nobody cannot query: {}", stderr(&o));
    let root_hash = stdout(&nix_store(&socket, false, &home, &["-q", "--hash", &path]));
    assert_eq!(stdout(&o), root_hash);
    let o = nix_store(&socket, true, &home, &["-q", "--references", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nix_store(&socket, true, &home, &["--check-validity", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn trusted_groups_may_add_and_strangers_are_refused_at_the_handshake() {
    require_nix();
    let tmp = open_tmp();
    let home = home(tmp.path());
    let (src, path) = source(tmp.path());
    let socket = tmp.path().join("daemon.sock");
    let _serve = Serve::start(
        &storefs_bin!(),
        &tmp.path().join("data"),
        &[
            "--daemon-socket",
            socket.to_str().unwrap(),
            "--daemon-socket-mode",
            "0660",
            "--daemon-socket-group",
            "nogroup",
            "--trusted-users",
            "root,@nogroup",
        ],
        1,
    );
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), gid_of_nogroup());
    // nobody runs with group nogroup, which is trusted: it may add.
    let o = nix_store(&socket, true, &home, &["--add", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), path);
    drop(_serve);

    // Only root allowed: nobody is turned away at the handshake, by name.
    let socket = tmp.path().join("daemon2.sock");
    let _serve = Serve::start(
        &storefs_bin!(),
        &tmp.path().join("data"),
        &[
            "--daemon-socket",
            socket.to_str().unwrap(),
            "--daemon-socket-mode",
            "0666",
            "--allowed-users",
            "root",
        ],
        1,
    );
    let o = nix_store(&socket, true, &home, &["-q", "--hash", &path]);
    assert!(!o.status.success(), "nobody was let in");
    assert!(
        stderr(&o).contains("user 'nobody' (uid 65534) is not allowed to connect"),
        "{}",
        stderr(&o)
    );
    let o = nix_store(&socket, false, &home, &["-q", "--hash", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Read until the server closes the connection; false if it is still open
/// after `limit`.
fn closed_by_server(s: &mut UnixStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn silent_connections_cannot_lock_clients_out() {
    require_nix();
    let tmp = open_tmp();
    let home = home(tmp.path());
    let (src, path) = source(tmp.path());
    let socket = tmp.path().join("daemon.sock");
    let _serve = Serve::start(
        &storefs_bin!(),
        &tmp.path().join("data"),
        &["--daemon-socket", socket.to_str().unwrap()],
        1,
    );
    let o = nix_store(&socket, false, &home, &["--add", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // 300 connections that say nothing (the default handshake timeout,
    // 10 s, is far longer than this test needs).
    let mut silent: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    let o = nix_store(&socket, false, &home, &["-q", "--hash", &path]);
    assert!(o.status.success(), "locked out: {}", stderr(&o));
    assert!(stdout(&o).starts_with("sha256:"));
    // The oldest silent ones made room (64 a user by default).
    let closed = silent
        .iter_mut()
        .take(300 - 64)
        .map(|s| closed_by_server(s, Duration::from_secs(30)))
        .filter(|closed| *closed)
        .count();
    assert_eq!(closed, 300 - 64);
}

/// Connect and run a Nix 2.8 client's handshake (protocol 1.34).
fn greeted(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let u64_le = |s: &mut UnixStream| {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).unwrap();
        u64::from_le_bytes(b)
    };
    s.write_all(&0x6e69_7863u64.to_le_bytes()).unwrap();
    assert_eq!(u64_le(&mut s), 0x6478_696f);
    let _server_version = u64_le(&mut s);
    for w in [0x122u64, 0, 0] {
        s.write_all(&w.to_le_bytes()).unwrap();
    }
    let len = u64_le(&mut s) as usize;
    let mut version = vec![0u8; len.div_ceil(8) * 8];
    s.read_exact(&mut version).unwrap();
    assert_eq!(u64_le(&mut s), 0x616c_7473, "STDERR_LAST");
    s
}

#[test]
fn handshakes_time_out_and_each_user_has_a_share() {
    require_nix();
    let tmp = open_tmp();
    let home = home(tmp.path());
    let (src, path) = source(tmp.path());
    let socket = tmp.path().join("daemon.sock");
    let _serve = Serve::start(
        &storefs_bin!(),
        &tmp.path().join("data"),
        &[
            "--daemon-socket",
            socket.to_str().unwrap(),
            "--daemon-handshake-timeout",
            "1s",
            "--daemon-max-connections-per-user",
            "2",
        ],
        1,
    );
    let o = nix_store(&socket, false, &home, &["--add", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let mut silent = UnixStream::connect(&socket).unwrap();
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(30)),
        "a silent connection outlived the handshake timeout"
    );

    // Two connections past their handshake fill root's share: the next
    // client is told why.
    let mut held = vec![greeted(&socket), greeted(&socket)];
    let o = nix_store(&socket, false, &home, &["-q", "--hash", &path]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("too many connections from uid 0"),
        "{}",
        stderr(&o)
    );
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = nix_store(&socket, false, &home, &["-q", "--hash", &path]);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(50));
    }
}
