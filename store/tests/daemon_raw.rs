//! Raw-byte conversations with the daemon socket: handshakes at each
//! version family, the replies' layout, and what a misbehaving client
//! costs (its own connection only).

mod daemon_common;

use daemon_common::*;
use storefs_store::daemon::protocol::*;
use storefs_store::daemon::wire;
use storefs_store::daemon::{DaemonConfig, TrustPolicy};

const STDERR_LAST_: u64 = STDERR_LAST;

async fn start() -> TestDaemon {
    let (services, _) = memory_services().await;
    TestDaemon::start(
        services,
        DaemonConfig {
            trust: TrustPolicy::Everyone,
            ..DaemonConfig::default()
        },
    )
    .await
}

/// Connect and shake hands at `version`; returns the client after the
/// handshake's STDERR_LAST, checking each field the server sends.
async fn hello(d: &TestDaemon, version: u64) -> Raw {
    let mut c = Raw::connect(&d.socket).await;
    let mut m = msg();
    wire::put_u64(&mut m, WORKER_MAGIC_1);
    c.send(&m).await;
    assert_eq!(c.u64().await, WORKER_MAGIC_2);
    assert_eq!(c.u64().await, 0x126);
    let mut m = msg();
    wire::put_u64(&mut m, version);
    c.send(&m).await;
    let minor = version & 0xff;
    let guix = minor >= 0x60;
    if !guix && minor >= 38 {
        let mut m = msg();
        wire::put_u64(&mut m, 1);
        wire::put_str(&mut m, "some-future-feature");
        c.send(&m).await;
        assert!(c.strings().await.is_empty(), "we agree to no features");
        let mut m = msg();
        wire::put_u64(&mut m, 0);
        wire::put_u64(&mut m, 0);
        c.send(&m).await;
    } else {
        c.send(&handshake_tail(minor.min(37))).await;
    }
    if !guix && minor >= 33 {
        assert!(c.string().await.starts_with("storefs "));
    }
    if !guix && minor >= 35 {
        assert_eq!(c.u64().await, 1, "trusted");
    }
    assert_eq!(c.u64().await, STDERR_LAST_);
    c
}

fn op(n: Op) -> Vec<u8> {
    let mut m = msg();
    wire::put_u64(&mut m, n.to_wire());
    m
}

async fn set_options(c: &mut Raw, minor: u64) {
    let mut m = op(Op::SetOptions);
    for v in [0, 0, 0, 3, 1, 0, 1, 7, 0, 0, 2, 1] {
        wire::put_u64(&mut m, v);
    }
    if minor >= 12 {
        wire::put_string_map(&mut m, [("store", "unix:///x")]);
    }
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
}

async fn query_path_info(c: &mut Raw, path: &str) {
    let mut m = op(Op::QueryPathInfo);
    wire::put_str(&mut m, path);
    c.send(&m).await;
}

/// The fields of `baz` after the valid flag, up to narSize.
async fn expect_baz_base(c: &mut Raw) {
    assert_eq!(c.string().await, full(HELLO), "deriver");
    assert_eq!(c.string().await, hex::encode([7u8; 32]), "base16 narHash");
    assert_eq!(
        c.strings().await,
        vec![full(HELLO), full(TEXT)],
        "sorted refs"
    );
    assert_eq!(c.u64().await, 0, "registrationTime");
    assert_eq!(c.u64().await, 168, "narSize");
}

#[tokio::test]
async fn handshake_and_queries_at_1_21() {
    let d = start().await;
    let mut c = hello(&d, 0x115).await;
    set_options(&mut c, 21).await;
    query_path_info(&mut c, &full(BAZ)).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 1, "valid flag from 1.17");
    expect_baz_base(&mut c).await;
    assert_eq!(c.u64().await, 0, "ultimate");
    assert!(c.strings().await.is_empty(), "sigs");
    assert_eq!(c.string().await, "", "ca");
    // QueryValidPaths has no substitute flag before 1.27.
    let mut m = op(Op::QueryValidPaths);
    wire::put_strings(&mut m, [full(TEXT), full(BAZ), full(HELLO)]);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.strings().await, vec![full(HELLO), full(BAZ)]);
    // Errors before 1.26: message and exit status.
    let mut m = op(Op::EnsurePath);
    wire::put_str(&mut m, &full(TEXT));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert_eq!(
        c.string().await,
        format!("path '{}' is not valid", full(TEXT))
    );
    assert_eq!(c.u64().await, 1);
    // The connection survives the error.
    let mut m = op(Op::IsValidPath);
    wire::put_str(&mut m, &full(HELLO));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 1);
    d.stop().await;
}

#[tokio::test]
async fn handshake_and_queries_at_1_34() {
    let d = start().await;
    let mut c = hello(&d, 0x122).await;
    set_options(&mut c, 34).await;
    query_path_info(&mut c, &full(HELLO)).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 1);
    assert_eq!(c.string().await, "");
    assert_eq!(c.string().await, HELLO_NAR_SHA256);
    assert!(c.strings().await.is_empty());
    assert_eq!(c.u64().await, 0);
    assert_eq!(c.u64().await, 128);
    assert_eq!(c.u64().await, 0);
    assert!(c.strings().await.is_empty());
    assert_eq!(
        c.string().await,
        "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3"
    );
    // Invalid path: valid = 0 and nothing else, no error.
    query_path_info(&mut c, &full(TEXT)).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 0);
    // QueryValidPaths with the substitute flag (1.27+).
    let mut m = op(Op::QueryValidPaths);
    wire::put_strings(&mut m, [full(TEXT), full(BAZ)]);
    wire::put_u64(&mut m, 0);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.strings().await, vec![full(BAZ)]);
    // Referrers of hello: baz.
    let mut m = op(Op::QueryReferrers);
    wire::put_str(&mut m, &full(HELLO));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.strings().await, vec![full(BAZ)]);
    // Hash part lookup.
    let mut m = op(Op::QueryPathFromHashPart);
    wire::put_str(&mut m, &BAZ[..32]);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.string().await, full(BAZ));
    // QueryMissing: the invalid path is unknown, the valid one is not missing.
    let mut m = op(Op::QueryMissing);
    wire::put_strings(&mut m, [full(TEXT), full(BAZ)]);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert!(c.strings().await.is_empty());
    assert!(c.strings().await.is_empty());
    assert_eq!(c.strings().await, vec![full(TEXT)]);
    assert_eq!(c.u64().await, 0);
    assert_eq!(c.u64().await, 0);
    // BuildPathsWithResults on a valid path: AlreadyValid, with the 1.29 fields.
    let mut m = op(Op::BuildPathsWithResults);
    wire::put_strings(&mut m, [full(BAZ)]);
    wire::put_u64(&mut m, 0);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 1);
    assert_eq!(c.string().await, full(BAZ));
    assert_eq!(c.u64().await, BUILD_STATUS_ALREADY_VALID);
    assert_eq!(c.string().await, "");
    for _ in 0..4 {
        assert_eq!(c.u64().await, 0);
    }
    assert_eq!(c.u64().await, 0, "no builtOutputs");
    // BuildPaths of an invalid path: structured error naming it.
    let mut m = op(Op::BuildPaths);
    wire::put_strings(&mut m, [full(TEXT)]);
    wire::put_u64(&mut m, 0);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    let e = read_structured_error(&mut c).await;
    assert!(e.contains(&full(TEXT)) && e.contains("not valid"), "{e}");
    // Still usable: all valid paths.
    c.send(&op(Op::QueryAllValidPaths)).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.strings().await, vec![full(HELLO), full(BAZ)]);
    d.stop().await;
}

#[tokio::test]
async fn handshake_at_1_38_exchanges_features_and_trust() {
    let d = start().await;
    let mut c = hello(&d, 0x126).await;
    set_options(&mut c, 38).await;
    // BuildPathsWithResults at 1.38 carries cpuUser/cpuSystem.
    let mut m = op(Op::BuildPathsWithResults);
    wire::put_strings(&mut m, [full(HELLO)]);
    wire::put_u64(&mut m, 0);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 1);
    assert_eq!(c.string().await, full(HELLO));
    assert_eq!(c.u64().await, BUILD_STATUS_ALREADY_VALID);
    assert_eq!(c.string().await, "");
    for _ in 0..(4 + 2 + 1) {
        assert_eq!(c.u64().await, 0);
    }
    c.send(&op(Op::FindRoots)).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 0);
    d.stop().await;
}

#[tokio::test]
async fn guix_dialect() {
    let d = start().await;
    let mut c = hello(&d, 0x164).await;
    // Guix sends SetOptions in the layout our announced 1.38 implies.
    set_options(&mut c, 38).await;
    query_path_info(&mut c, &full(BAZ)).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    expect_baz_base(&mut c).await; // no valid flag, ends after narSize
    // QueryValidPaths: no substitute flag.
    let mut m = op(Op::QueryValidPaths);
    wire::put_strings(&mut m, [full(BAZ), full(TEXT)]);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.strings().await, vec![full(BAZ)]);
    // An invalid path is an error: message and a status of at least 1.
    query_path_info(&mut c, &full(TEXT)).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(c.string().await.contains("is not valid"));
    assert!(c.u64().await >= 1);
    // QueryReferences (obsolete in Nix, used by Guix), QueryPathHash.
    let mut m = op(Op::QueryReferences);
    wire::put_str(&mut m, &full(BAZ));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.strings().await, vec![full(HELLO), full(TEXT)]);
    let mut m = op(Op::QueryPathHash);
    wire::put_str(&mut m, &full(HELLO));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.string().await, HELLO_NAR_SHA256);
    // Guix's substitutable path infos take a plain list.
    let mut m = op(Op::QuerySubstitutablePathInfos);
    wire::put_strings(&mut m, [full(BAZ)]);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 0);
    c.send(&op(Op::BuiltinBuilders)).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert!(c.strings().await.is_empty());
    d.stop().await;
}

/// After a misbehaving client, a well-behaved one on a new connection is
/// still served.
async fn next_client_served(d: &TestDaemon) {
    let mut c = hello(d, 0x122).await;
    let mut m = op(Op::IsValidPath);
    wire::put_str(&mut m, &full(BAZ));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 1);
}

#[tokio::test]
async fn bad_clients_cost_only_their_connection() {
    let d = start().await;

    // Wrong magic.
    let mut c = Raw::connect(&d.socket).await;
    c.send(&0xdead_beefu64.to_le_bytes()).await;
    assert!(c.closed().await);
    next_client_served(&d).await;

    // Too old a version.
    let mut c = Raw::connect(&d.socket).await;
    c.send(&WORKER_MAGIC_1.to_le_bytes()).await;
    assert_eq!(c.u64().await, WORKER_MAGIC_2);
    assert_eq!(c.u64().await, 0x126);
    c.send(&0x10au64.to_le_bytes()).await;
    assert!(c.closed().await);

    // Oversized string length.
    let mut c = hello(&d, 0x122).await;
    let mut m = op(Op::IsValidPath);
    wire::put_u64(&mut m, 1 << 40);
    c.send(&m).await;
    assert!(c.closed().await);
    next_client_served(&d).await;

    // Oversized list count.
    let mut c = hello(&d, 0x122).await;
    let mut m = op(Op::QueryValidPaths);
    wire::put_u64(&mut m, u64::MAX);
    c.send(&m).await;
    assert!(c.closed().await);

    // Non-zero padding.
    let mut c = hello(&d, 0x122).await;
    let mut m = op(Op::IsValidPath);
    wire::put_str(&mut m, &full(BAZ));
    let last = m.len() - 1;
    m[last] = 0x55;
    c.send(&m).await;
    assert!(c.closed().await);
    next_client_served(&d).await;

    // Unknown op: an error naming it, then the connection closes.
    let mut c = hello(&d, 0x122).await;
    let mut m = msg();
    wire::put_u64(&mut m, 99);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    let e = read_structured_error(&mut c).await;
    assert!(e.contains("99"), "{e}");
    assert!(c.closed().await);

    // A truncated framed stream (AddBuildLog), then a hang-up.
    let mut c = hello(&d, 0x122).await;
    let mut m = op(Op::AddBuildLog);
    wire::put_str(&mut m, "x.drv");
    wire::put_u64(&mut m, 100);
    m.extend_from_slice(b"only a few bytes");
    c.send(&m).await;
    drop(c);
    next_client_served(&d).await;

    // A complete framed stream is drained and refused; the connection lives.
    let mut c = hello(&d, 0x122).await;
    let mut m = op(Op::AddBuildLog);
    wire::put_str(&mut m, "x.drv");
    wire::put_u64(&mut m, 5);
    m.extend_from_slice(b"hello");
    wire::put_u64(&mut m, 0);
    wire::put_u64(&mut m, Op::IsValidPath.to_wire());
    wire::put_str(&mut m, &full(HELLO));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(read_structured_error(&mut c).await.contains("AddBuildLog"));
    assert_eq!(c.u64().await, STDERR_LAST_);
    assert_eq!(c.u64().await, 1);

    // Hang-up in the middle of a request.
    let mut c = hello(&d, 0x122).await;
    let mut m = op(Op::QueryValidPaths);
    wire::put_u64(&mut m, 3);
    wire::put_str(&mut m, &full(BAZ));
    c.send(&m).await;
    drop(c);
    next_client_served(&d).await;
    d.stop().await;
}

#[tokio::test]
async fn many_concurrent_connections() {
    let d = start().await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let socket = d.socket.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Raw::connect(&socket).await;
            let mut m = msg();
            wire::put_u64(&mut m, WORKER_MAGIC_1);
            wire::put_u64(&mut m, 0x122);
            m.extend(handshake_tail(34));
            c.send(&m).await;
            assert_eq!(c.u64().await, WORKER_MAGIC_2);
            assert_eq!(c.u64().await, 0x126);
            assert!(c.string().await.starts_with("storefs"));
            assert_eq!(c.u64().await, STDERR_LAST_);
            for _ in 0..20 {
                let mut m = op(Op::QueryPathInfo);
                wire::put_str(&mut m, &full(HELLO));
                c.send(&m).await;
                assert_eq!(c.u64().await, STDERR_LAST_);
                assert_eq!(c.u64().await, 1);
                assert_eq!(c.string().await, "");
                assert_eq!(c.string().await, HELLO_NAR_SHA256);
                c.strings().await;
                c.u64().await;
                assert_eq!(c.u64().await, 128);
                c.u64().await;
                c.strings().await;
                c.string().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    d.stop().await;
}

#[tokio::test]
async fn socket_mode_and_stale_socket() {
    use std::os::unix::fs::PermissionsExt;
    let d = start().await;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    // A live socket is not taken over.
    let err = storefs_store::daemon::bind_socket(&d.socket, 0o600)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let path = d.socket.clone();
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let l = storefs_store::daemon::bind_socket(&stale, 0o600)
        .await
        .unwrap();
    let mode = std::fs::metadata(&stale).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(l);
    assert!(path.exists());
    d.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_told_why() {
    let (services, _) = memory_services().await;
    let d = TestDaemon::start(
        services,
        DaemonConfig {
            trust: TrustPolicy::Everyone,
            max_connections: 2,
            ..DaemonConfig::default()
        },
    )
    .await;
    let a = hello(&d, 0x122).await;
    let _b = hello(&d, 0x122).await;
    // Both are past their handshake: a third is refused at once, with an
    // error the client prints, rather than left waiting in the backlog.
    let mut third = Raw::connect(&d.socket).await;
    let mut m = msg();
    wire::put_u64(&mut m, WORKER_MAGIC_1);
    third.send(&m).await;
    assert_eq!(third.u64().await, WORKER_MAGIC_2);
    let _server_version = third.u64().await;
    let mut m = msg();
    wire::put_u64(&mut m, 0x122);
    m.extend(handshake_tail(0x22));
    third.send(&m).await;
    let _daemon_version = third.string().await;
    assert_eq!(third.u64().await, STDERR_ERROR);
    let e = read_structured_error(&mut third).await;
    assert!(e.contains("too many connections"), "{e}");
    assert!(third.closed().await);
    // Once one goes, a newcomer is served.
    drop(a);
    let mut ok = false;
    for _ in 0..200 {
        let mut c = Raw::connect(&d.socket).await;
        let mut m = msg();
        wire::put_u64(&mut m, WORKER_MAGIC_1);
        c.send(&m).await;
        assert_eq!(c.u64().await, WORKER_MAGIC_2);
        let _ = c.u64().await;
        let mut m = msg();
        wire::put_u64(&mut m, 0x122);
        m.extend(handshake_tail(0x22));
        c.send(&m).await;
        let _ = c.string().await;
        if c.u64().await == STDERR_LAST {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(ok, "no connection was served after one closed");
    d.stop().await;
}
