//! The server over arbitrary bytes: whatever a client sends, the server
//! answers the handshake, never panics and ends when the input does.

use proptest::prelude::*;
use storefs_store::daemon::fuzzing::serve_bytes;
use storefs_store::daemon::protocol::{WORKER_MAGIC_1, WORKER_MAGIC_2};
use storefs_store::daemon::wire;

fn handshake(version: u64) -> Vec<u8> {
    let mut v = Vec::new();
    wire::put_u64(&mut v, WORKER_MAGIC_1);
    wire::put_u64(&mut v, version);
    if version & 0xff >= 38 && version & 0xff < 0x60 {
        wire::put_u64(&mut v, 0);
    }
    wire::put_u64(&mut v, 0);
    wire::put_u64(&mut v, 0);
    v
}

/// A request: an op number (mostly real ones) and arguments made of
/// plausible pieces: small numbers, strings, store paths, frames, noise.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let op = prop_oneof![1u64..=47, Just(80u64), Just(81u64), any::<u64>()];
    let piece = prop_oneof![
        (0u64..4).prop_map(|n| n.to_le_bytes().to_vec()),
        "[a-z0-9/.-]{0,40}".prop_map(|s| {
            let mut v = Vec::new();
            wire::put_str(&mut v, &s);
            v
        }),
        Just({
            let mut v = Vec::new();
            wire::put_str(
                &mut v,
                "/nix/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt",
            );
            v
        }),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|d| {
            let mut v = Vec::new();
            wire::put_u64(&mut v, d.len() as u64);
            v.extend_from_slice(&d);
            v
        }),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    (op, proptest::collection::vec(piece, 0..8)).prop_map(|(op, pieces)| {
        let mut v = op.to_le_bytes().to_vec();
        for p in pieces {
            v.extend(p);
        }
        v
    })
}

fn run(input: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(serve_bytes(input))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_requests_after_a_handshake(
        version in prop_oneof![Just(0x115u64), Just(0x122), Just(0x126), Just(0x164)],
        requests in proptest::collection::vec(request(), 0..6),
    ) {
        let mut input = handshake(version);
        for r in requests {
            input.extend(r);
        }
        let out = run(&input);
        prop_assert_eq!(&out[..8], &WORKER_MAGIC_2.to_le_bytes());
    }

    #[test]
    fn any_bytes_at_all(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let out = run(&input);
        // Magic 2 goes out only after magic 1 came in.
        if input.len() >= 8 && input[..8] == WORKER_MAGIC_1.to_le_bytes() {
            prop_assert_eq!(&out[..8], &WORKER_MAGIC_2.to_le_bytes());
        } else {
            prop_assert!(out.is_empty());
        }
    }
}
