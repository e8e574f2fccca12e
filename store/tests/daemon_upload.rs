//! Uploads over raw bytes: AddToStoreNar in both framings, checks of the
//! declared hash, size and signatures, AddMultipleToStore, and NarFromPath
//! of what was uploaded, including a client that hangs up in the middle.

mod daemon_common;

use daemon_common::*;
use sha2::{Digest, Sha256};
use storefs_store::daemon::protocol::*;
use storefs_store::daemon::wire;
use storefs_store::daemon::{DaemonConfig, TrustPolicy};
use tokio::io::AsyncReadExt;

/// The NAR of a single regular file, built token by token from the
/// grammar (docs/nix-formats.md), independently of our NAR writer.
fn nar_of_file(contents: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for t in ["nix-archive-1", "(", "type", "regular", "contents"] {
        wire::put_str(&mut v, t);
    }
    wire::put_bytes(&mut v, contents);
    wire::put_str(&mut v, ")");
    v
}

const NOT_CA: &str = "00000000000000000000000000000000-big";

async fn start(trust: TrustPolicy) -> TestDaemon {
    let (services, _) = memory_services().await;
    TestDaemon::start(
        services,
        DaemonConfig {
            trust,
            // Nix's rule: untrusted clients may add content-addressed or
            // signed paths (storefs refuses them unless told otherwise).
            untrusted_writes: true,
            ..DaemonConfig::default()
        },
    )
    .await
}

async fn hello(d: &TestDaemon, version: u64) -> Raw {
    let mut c = Raw::connect(&d.socket).await;
    let mut m = msg();
    wire::put_u64(&mut m, WORKER_MAGIC_1);
    wire::put_u64(&mut m, version);
    m.extend(handshake_tail(version & 0xff));
    c.send(&m).await;
    assert_eq!(c.u64().await, WORKER_MAGIC_2);
    assert_eq!(c.u64().await, 0x126);
    let minor = version & 0xff;
    let nix = minor < 0x60;
    if nix && minor >= 38 {
        assert!(c.strings().await.is_empty());
    }
    if nix && minor >= 33 {
        c.string().await;
    }
    if nix && minor >= 35 {
        c.u64().await;
    }
    assert_eq!(c.u64().await, STDERR_LAST);
    c
}

/// AddToStoreNar's arguments up to the data.
fn add_nar_request(
    path: &str,
    nar: &[u8],
    declared_sha: &[u8],
    ca: &str,
    dont_check: bool,
) -> Vec<u8> {
    let mut m = msg();
    wire::put_u64(&mut m, Op::AddToStoreNar.to_wire());
    wire::put_str(&mut m, path);
    wire::put_str(&mut m, ""); // deriver
    wire::put_str(&mut m, &hex::encode(declared_sha));
    wire::put_u64(&mut m, 0); // references
    wire::put_u64(&mut m, 0); // registrationTime
    wire::put_u64(&mut m, nar.len() as u64);
    wire::put_u64(&mut m, 0); // ultimate
    wire::put_u64(&mut m, 0); // sigs
    wire::put_str(&mut m, ca);
    wire::put_u64(&mut m, 0); // repair
    wire::put_bool(&mut m, dont_check);
    m
}

fn framed(data: &[u8], frame: usize) -> Vec<u8> {
    let mut m = msg();
    for chunk in data.chunks(frame) {
        wire::put_u64(&mut m, chunk.len() as u64);
        m.extend_from_slice(chunk);
    }
    wire::put_u64(&mut m, 0);
    m
}

async fn is_valid(c: &mut Raw, path: &str) -> bool {
    let mut m = msg();
    wire::put_u64(&mut m, Op::IsValidPath.to_wire());
    wire::put_str(&mut m, path);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    c.u64().await != 0
}

async fn nar_from_path(c: &mut Raw, path: &str, len: usize) -> Vec<u8> {
    let mut m = msg();
    wire::put_u64(&mut m, Op::NarFromPath.to_wire());
    wire::put_str(&mut m, path);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    let mut nar = vec![0u8; len];
    c.s.read_exact(&mut nar).await.unwrap();
    nar
}

#[tokio::test]
async fn add_to_store_nar_framed_then_nar_from_path() {
    let d = start(TrustPolicy::Nobody).await;
    let mut c = hello(&d, 0x122).await;
    // The content-addressed hello.txt of `nix-store --add`: acceptable from
    // an untrusted client without a signature.
    let nar = nar_of_file(b"Hello World!");
    assert_eq!(nar.len(), 128);
    let sha = Sha256::digest(&nar);
    assert_eq!(hex::encode(sha), HELLO_NAR_SHA256);
    let other = "1b8m03r63zqhnjf7l5wnldhh7c134ap5-hello.txt";
    // Same NAR under a path its content address does not give: refused.
    let mut m = add_nar_request(
        &full(other),
        &nar,
        &sha,
        "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3",
        true,
    );
    m.extend(framed(&nar, 50));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    let e = read_structured_error(&mut c).await;
    assert!(e.contains("lacks a signature by a trusted key"), "{e}");
    assert!(!is_valid(&mut c, &full(other)).await);

    // Under its own path it is accepted, signature or not.
    let mut m = add_nar_request(
        &full(HELLO),
        &nar,
        &sha,
        "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3",
        false,
    );
    m.extend(framed(&nar, 50));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert_eq!(nar_from_path(&mut c, &full(HELLO), nar.len()).await, nar);

    // The non-CA big path from an untrusted client: refused, even with
    // dontCheckSigs (only trusted clients may waive the check).
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let big_nar = nar_of_file(&big);
    let big_sha = Sha256::digest(&big_nar);
    let mut m = add_nar_request(&full(NOT_CA), &big_nar, &big_sha, "", true);
    m.extend(framed(&big_nar, 32 * 1024));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(
        read_structured_error(&mut c)
            .await
            .contains("lacks a signature")
    );
    assert!(!is_valid(&mut c, &full(NOT_CA)).await);
    d.stop().await;
}

#[tokio::test]
async fn uploads_check_hash_and_size_and_survive_hang_ups() {
    let d = start(TrustPolicy::Everyone).await;
    let mut c = hello(&d, 0x126).await;
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let nar = nar_of_file(&big);
    let sha = Sha256::digest(&nar);

    // A wrong declared hash: error, nothing recorded, connection usable.
    let mut m = add_nar_request(&full(NOT_CA), &nar, &[0u8; 32], "", true);
    m.extend(framed(&nar, 32 * 1024));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    let e = read_structured_error(&mut c).await;
    assert!(e.contains("hash mismatch"), "{e}");
    assert!(!is_valid(&mut c, &full(NOT_CA)).await);

    // A declared size larger than the NAR: error, the frames drained.
    let mut m = add_nar_request(&full(NOT_CA), &nar, &sha, "", true);
    let size_at = m.len() - 8 * 5 - 8; // narSize sits before ultimate, sigs, ca(""), repair, dontCheckSigs
    m[size_at..size_at + 8].copy_from_slice(&(nar.len() as u64 + 8).to_le_bytes());
    m.extend(framed(&nar, 32 * 1024));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    let e = read_structured_error(&mut c).await;
    assert!(e.contains("NAR"), "{e}");
    assert!(!is_valid(&mut c, &full(NOT_CA)).await);

    // Trailing data after the NAR inside the frames: error.
    let mut m = add_nar_request(&full(NOT_CA), &nar, &sha, "", true);
    let mut data = nar.clone();
    data.extend_from_slice(b"trailing");
    m.extend(framed(&data, 32 * 1024));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(
        read_structured_error(&mut c)
            .await
            .contains("unexpected data")
    );

    // Right: recorded, and NarFromPath gives back the same bytes.
    let mut m = add_nar_request(&full(NOT_CA), &nar, &sha, "", true);
    m.extend(framed(&nar, 32 * 1024));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert!(is_valid(&mut c, &full(NOT_CA)).await);
    assert_eq!(nar_from_path(&mut c, &full(NOT_CA), nar.len()).await, nar);
    // NarFromPath of an invalid path: an error, not a NAR.
    let mut m = msg();
    wire::put_u64(&mut m, Op::NarFromPath.to_wire());
    wire::put_str(&mut m, &full(TEXT));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(read_structured_error(&mut c).await.contains("is not valid"));

    // Hang up in the middle of a NAR download.
    let mut h = hello(&d, 0x122).await;
    let mut m = msg();
    wire::put_u64(&mut m, Op::NarFromPath.to_wire());
    wire::put_str(&mut m, &full(NOT_CA));
    h.send(&m).await;
    assert_eq!(h.u64().await, STDERR_LAST);
    let mut some = [0u8; 100];
    h.s.read_exact(&mut some).await.unwrap();
    drop(h);

    // Hang up in the middle of a NAR upload (a frame cut short).
    let other = "11111111111111111111111111111111-big";
    let mut h = hello(&d, 0x122).await;
    let mut m = add_nar_request(&full(other), &nar, &sha, "", true);
    wire::put_u64(&mut m, 32 * 1024);
    m.extend_from_slice(&nar[..1000]);
    h.send(&m).await;
    drop(h);

    // Others are still served, and the cut upload left nothing.
    let mut c2 = hello(&d, 0x122).await;
    assert!(!is_valid(&mut c2, &full(other)).await);
    assert!(is_valid(&mut c, &full(NOT_CA)).await);
    d.stop().await;
}

#[tokio::test]
async fn add_to_store_nar_through_stderr_read_at_1_22() {
    let d = start(TrustPolicy::Everyone).await;
    let mut c = hello(&d, 0x116).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 247) as u8).collect();
    let nar = nar_of_file(&data);
    let sha = Sha256::digest(&nar);
    let m = add_nar_request(&full(NOT_CA), &nar, &sha, "", true);
    c.send(&m).await;
    // Serve STDERR_READ requests until STDERR_LAST.
    let mut sent = 0usize;
    let mut requests = 0;
    loop {
        match c.u64().await {
            STDERR_READ => {
                let max = c.u64().await as usize;
                assert!(max > 0);
                let n = max.min(nar.len() - sent).min(10_000);
                let mut m = msg();
                wire::put_bytes(&mut m, &nar[sent..sent + n]);
                sent += n;
                requests += 1;
                c.send(&m).await;
            }
            STDERR_LAST => break,
            other => panic!("unexpected {other:#x}"),
        }
    }
    assert_eq!(sent, nar.len());
    assert!(requests > 1);
    assert!(is_valid(&mut c, &full(NOT_CA)).await);
    // Errors at 1.22: message and status.
    let mut m = msg();
    wire::put_u64(&mut m, Op::EnsurePath.to_wire());
    wire::put_str(&mut m, &full(TEXT));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(c.string().await.contains("is not valid"));
    assert_eq!(c.u64().await, 1);
    d.stop().await;
}

#[tokio::test]
async fn add_multiple_to_store_all_or_error() {
    let d = start(TrustPolicy::Everyone).await;
    let mut c = hello(&d, 0x122).await;
    let a_nar = nar_of_file(b"first\n");
    let b_nar = nar_of_file(b"second\n");
    let a = "22222222222222222222222222222222-a";
    let b = "33333333333333333333333333333333-b";
    let entry = |path: &str, nar: &[u8], sha: &[u8], refs: &[String]| {
        let mut e = msg();
        wire::put_str(&mut e, path);
        wire::put_str(&mut e, "");
        wire::put_str(&mut e, &hex::encode(sha));
        wire::put_strings(&mut e, refs);
        wire::put_u64(&mut e, 0);
        wire::put_u64(&mut e, nar.len() as u64);
        wire::put_u64(&mut e, 0);
        wire::put_u64(&mut e, 0);
        wire::put_str(&mut e, "");
        e.extend_from_slice(nar);
        e
    };
    let mut body = msg();
    wire::put_u64(&mut body, 2);
    body.extend(entry(&full(a), &a_nar, &Sha256::digest(&a_nar), &[]));
    body.extend(entry(&full(b), &b_nar, &Sha256::digest(&b_nar), &[full(a)]));
    let mut m = msg();
    wire::put_u64(&mut m, Op::AddMultipleToStore.to_wire());
    wire::put_u64(&mut m, 0); // repair
    wire::put_u64(&mut m, 1); // dontCheckSigs
    m.extend(framed(&body, 100));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert!(is_valid(&mut c, &full(a)).await);
    assert!(is_valid(&mut c, &full(b)).await);
    // b refers to a: a's referrers.
    let mut m = msg();
    wire::put_u64(&mut m, Op::QueryReferrers.to_wire());
    wire::put_str(&mut m, &full(a));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert_eq!(c.strings().await, vec![full(b)]);

    // A bad second entry: an error after the stream is drained; the
    // connection goes on.
    let c_path = "44444444444444444444444444444444-c";
    let mut body = msg();
    wire::put_u64(&mut body, 2);
    body.extend(entry(&full(c_path), &a_nar, &Sha256::digest(&a_nar), &[]));
    body.extend(entry(&full(b), &b_nar, &[1u8; 32], &[]));
    let mut m = msg();
    wire::put_u64(&mut m, Op::AddMultipleToStore.to_wire());
    wire::put_u64(&mut m, 0);
    wire::put_u64(&mut m, 1);
    m.extend(framed(&body, 7));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(
        read_structured_error(&mut c)
            .await
            .contains("hash mismatch")
    );
    assert!(is_valid(&mut c, &full(a)).await);
    d.stop().await;
}

#[tokio::test]
async fn guix_adds_text_and_old_style_nars() {
    let d = start(TrustPolicy::Everyone).await;
    let mut c = hello(&d, 0x164).await;
    // AddTextToStore: builtins.toFile "hello.txt" "Hello World!".
    let mut m = msg();
    wire::put_u64(&mut m, Op::AddTextToStore.to_wire());
    wire::put_str(&mut m, "hello.txt");
    wire::put_str(&mut m, "Hello World!");
    wire::put_u64(&mut m, 0);
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert_eq!(c.string().await, full(TEXT));
    // Old AddToStore, recursive sha256: `nix-store --add hello.txt`.
    let nar = nar_of_file(b"Hello World!");
    let old_add = |recursive: u64| {
        let mut m = msg();
        wire::put_u64(&mut m, Op::AddToStore.to_wire());
        wire::put_str(&mut m, "hello.txt");
        wire::put_u64(&mut m, 1); // fixed
        wire::put_u64(&mut m, recursive);
        wire::put_str(&mut m, "sha256");
        m.extend_from_slice(&nar); // a raw NAR, self-delimiting
        m
    };
    c.send(&old_add(1)).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert_eq!(c.string().await, full(HELLO));
    // Flat: `nix-store --add-fixed sha256 hello.txt` (docs/nix-formats.md).
    c.send(&old_add(0)).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert_eq!(
        c.string().await,
        full("z304n4ccbya3lf8bq20sl2zhmzd3lx1a-hello.txt")
    );
    // The text path's NAR is the NAR of its contents.
    let mut m = msg();
    wire::put_u64(&mut m, Op::QueryPathHash.to_wire());
    wire::put_str(&mut m, &full(TEXT));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_LAST);
    assert_eq!(c.string().await, HELLO_NAR_SHA256);
    // A bad old-style NAR cannot be skipped: an error, then the end.
    let mut m = msg();
    wire::put_u64(&mut m, Op::AddToStore.to_wire());
    wire::put_str(&mut m, "bad");
    wire::put_u64(&mut m, 1);
    wire::put_u64(&mut m, 1);
    wire::put_str(&mut m, "sha256");
    wire::put_str(&mut m, "not-a-nar-magic");
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(c.string().await.contains("invalid NAR"));
    assert!(c.u64().await >= 1);
    assert!(c.closed().await);
    d.stop().await;
}

#[tokio::test]
async fn a_read_only_socket_drains_and_refuses_uploads() {
    let (services, _) = memory_services().await;
    let d = TestDaemon::start(
        services,
        DaemonConfig {
            trust: TrustPolicy::Everyone,
            allow_writes: false,
            ..DaemonConfig::default()
        },
    )
    .await;
    let mut c = hello(&d, 0x126).await;
    let nar = nar_of_file(b"read only");
    let sha = Sha256::digest(&nar);
    let mut m = add_nar_request(&full(NOT_CA), &nar, &sha, "", true);
    m.extend(framed(&nar, 16));
    c.send(&m).await;
    assert_eq!(c.u64().await, STDERR_ERROR);
    assert!(read_structured_error(&mut c).await.contains("read-only"));
    // The frames were drained: the next request is understood.
    assert!(!is_valid(&mut c, &full(NOT_CA)).await);
    assert!(is_valid(&mut c, &full(HELLO)).await);
    d.stop().await;
}
