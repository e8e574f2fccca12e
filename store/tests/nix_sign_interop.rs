//! Signatures we make are accepted by a real Nix (Debian's nix-bin 2.8, which
//! the README's test command installs): a narinfo written by `nix copy`,
//! stripped of its CA (so Nix insists on a signature), re-rendered by us
//! with our signature, passes `nix store verify --trusted-public-keys`
//! only for our key. Keys from `nix-store --generate-binary-cache-key`
//! parse and sign with ours.

use std::path::Path;

use storefs_store::StoreDir;
use storefs_store::narinfo::NarInfo;
use storefs_store::{PublicKey, SecretKey};
use storefs_testkit::nix::{self, NixStore};

fn verify(cache: &Path, key: &str, path: &str) -> bool {
    nix::cmd("nix")
        .args(["store", "verify", "--store"])
        .arg(format!("file://{}", cache.display()))
        .args(["--trusted-public-keys", key, path])
        .output()
        .expect("run nix")
        .status
        .success()
}

#[test]
fn nix_accepts_our_signatures_and_keys() {
    let store = NixStore::new();
    let file = store.dir().join("signed.txt");
    std::fs::write(&file, "signed by storefs\n").unwrap();
    let path = store.add(&file);
    let cache = store.copy_to_cache("plain", "none", None, &[&path]);

    let sd = StoreDir::default();
    let sp = sd.parse_path(&path).unwrap();
    let narinfo_path = cache.join(format!("{}.narinfo", sp.hash_part()));
    let text = std::fs::read_to_string(&narinfo_path).unwrap();
    let mut info = NarInfo::parse(&text, &sd).unwrap();
    assert_eq!(info.render(&sd), text);
    assert!(info.ca.is_some());
    info.ca = None;
    std::fs::write(&narinfo_path, info.render(&sd)).unwrap();

    // A key made by Nix, used by us.
    let (sk_file, pk_text) = store.keys("interop-1");
    let sk = SecretKey::parse(&std::fs::read_to_string(sk_file).unwrap()).unwrap();
    let pk = PublicKey::parse(&pk_text).unwrap();
    assert_eq!(sk.to_public(), pk);
    assert_eq!(pk.to_string(), pk_text);
    // A key made by us.
    let ours = SecretKey::from_seed("storefs-1", &[42; 32]).unwrap();

    // Unsigned and not content-addressed: Nix does not trust it.
    assert!(!verify(&cache, &pk.to_string(), &path));

    let fp = info.fingerprint(&sd).unwrap();
    info.signatures = vec![sk.sign(fp.as_bytes()), ours.sign(fp.as_bytes())];
    std::fs::write(&narinfo_path, info.render(&sd)).unwrap();
    assert!(verify(&cache, &pk.to_string(), &path));
    assert!(verify(&cache, &ours.to_public().to_string(), &path));
    let stranger = SecretKey::from_seed("storefs-1", &[43; 32]).unwrap();
    assert!(!verify(&cache, &stranger.to_public().to_string(), &path));

    // A signature over a wrong fingerprint is refused by Nix too.
    let mut wrong = info.clone();
    wrong.signatures = vec![ours.sign(format!("{fp}x").as_bytes())];
    std::fs::write(&narinfo_path, wrong.render(&sd)).unwrap();
    assert!(!verify(&cache, &ours.to_public().to_string(), &path));
}
