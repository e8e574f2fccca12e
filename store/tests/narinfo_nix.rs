//! narinfo files written by Nix 2.8 (`nix copy --to file://…`, see
//! testdata/narinfo/README.md): parse → render is byte-identical, the
//! content addresses give back the store paths, and the signatures Nix made
//! with a key from `nix-store --generate-binary-cache-key` verify with ours
//! and equal the ones we make with the same key.

use std::path::PathBuf;

use storefs_store::StoreDir;
use storefs_store::narinfo::NarInfo;
use storefs_store::{PublicKey, SecretKey, TrustedKeys};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/narinfo")
}

fn narinfos(dir: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(testdata().join(dir))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn nix_written_narinfos_round_trip_byte_for_byte() {
    let sd = StoreDir::default();
    let mut n = 0;
    for dir in ["none", "xz"] {
        for (file, text) in narinfos(dir) {
            let info = NarInfo::parse(&text, &sd).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(info.render(&sd), text, "{dir}/{file}");
            assert_eq!(format!("{}.narinfo", info.store_path.hash_part()), file);
            n += 1;
        }
    }
    assert_eq!(n, 16);
}

#[test]
fn content_addresses_give_the_store_paths() {
    let sd = StoreDir::default();
    let mut checked = 0;
    for (file, text) in narinfos("none") {
        let info = NarInfo::parse(&text, &sd).unwrap();
        let Some(ca) = &info.ca else { continue };
        let self_ref = info.references.contains(&info.store_path);
        let others: Vec<_> = info
            .references
            .iter()
            .filter(|r| **r != info.store_path)
            .cloned()
            .collect();
        let p = ca
            .store_path(info.store_path.name(), &others, self_ref, &sd)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p, info.store_path, "{file}");
        assert!(info.is_content_addressed(&sd), "{file}");
        // Another name, or one reference more, breaks the claim.
        let mut other = info.clone();
        other.store_path =
            storefs_store::StorePath::from_parts(*info.store_path.digest(), "x").unwrap();
        assert!(!other.is_content_addressed(&sd), "{file}");
        let mut more = info.clone();
        more.references.push(
            storefs_store::StorePath::from_base_name("00000000000000000000000000000000-x").unwrap(),
        );
        assert!(!more.is_content_addressed(&sd), "{file}");
        checked += 1;
    }
    // Every fixture but the built output `-d` is content-addressed.
    assert_eq!(checked, 7);
    let d = narinfos("none")
        .into_iter()
        .find(|(f, _)| f.starts_with("f10h"))
        .unwrap();
    assert!(!NarInfo::parse(&d.1, &sd).unwrap().is_content_addressed(&sd));
}

#[test]
fn nix_signatures_verify_and_match_ours() {
    let sd = StoreDir::default();
    let secret = std::fs::read_to_string(testdata().join("storefs-test-1.secret")).unwrap();
    let public = std::fs::read_to_string(testdata().join("storefs-test-1.public")).unwrap();
    let sk = SecretKey::parse(&secret).unwrap();
    let pk = PublicKey::parse(&public).unwrap();
    assert_eq!(sk.to_public(), pk);
    let trusted = TrustedKeys::new([pk]);
    let untrusted = TrustedKeys::new([SecretKey::from_seed("storefs-test-1", &[9; 32])
        .unwrap()
        .to_public()]);
    let mut n = 0;
    for (file, text) in narinfos("xz") {
        let info = NarInfo::parse(&text, &sd).unwrap();
        assert_eq!(info.signatures.len(), 1, "{file}");
        let fp = info.fingerprint(&sd).unwrap();
        assert!(fp.starts_with(&format!("1;{};sha256:", info.store_path.to_absolute(&sd))));
        assert!(trusted.verify(fp.as_bytes(), &info.signatures[0]), "{file}");
        assert!(
            !untrusted.verify(fp.as_bytes(), &info.signatures[0]),
            "{file}"
        );
        // ed25519 is deterministic: our signature is Nix's.
        assert_eq!(sk.sign(fp.as_bytes()), info.signatures[0], "{file}");
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn uncompressed_and_xz_narinfos_describe_the_same_nar() {
    let sd = StoreDir::default();
    for ((fa, a), (fb, b)) in narinfos("none").into_iter().zip(narinfos("xz")) {
        assert_eq!(fa, fb);
        let (a, b) = (
            NarInfo::parse(&a, &sd).unwrap(),
            NarInfo::parse(&b, &sd).unwrap(),
        );
        assert_eq!(a.compression, "none");
        assert_eq!(b.compression, "xz");
        assert_eq!((a.nar_sha256, a.nar_size), (b.nar_sha256, b.nar_size));
        assert_eq!(a.references, b.references);
        assert_eq!(a.fingerprint(&sd), b.fingerprint(&sd));
        // Uncompressed: the file is the NAR.
        assert_eq!(a.file_size, Some(a.nar_size));
        assert_eq!(
            a.file_hash.as_ref().map(|h| h.digest().to_vec()),
            Some(a.nar_sha256.to_vec())
        );
    }
}
