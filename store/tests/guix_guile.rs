//! storefs's Guix keys, signatures and narinfos against Guix's own
//! cryptography: libgcrypt through guile-gcrypt, driven by
//! `tests/guix/reference.scm` the way `guix archive`, `guix publish` and
//! `guix substitute` drive it. scripts/test installs guile-3.0 and
//! guile-gcrypt.

use std::path::{Path, PathBuf};
use std::process::Command;

use data_encoding::BASE64;
use storefs_store::guix::SexpError;
use storefs_store::guix::SignatureError;
use storefs_store::guix::{Acl, PublicKey, SecretKey};
use storefs_store::guix::{GuixNarInfo, GuixNarInfoError, NarOffer, nar_url};
use storefs_store::{StoreDir, StorePath};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guix/reference.scm")
}

/// Run the reference script; returns (success, stdout).
fn guile(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new("guile")
        .env("GUILE_AUTO_COMPILE", "0")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "guile not found ({e}): run scripts/test, which installs guile-3.0 and guile-gcrypt"
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("no code for module"),
        "guile-gcrypt missing: run scripts/test, which installs it\n{stderr}"
    );
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("utf-8 from guile"),
    )
}

fn gnu() -> StoreDir {
    StoreDir::new("/gnu/store").unwrap()
}

/// A few narinfos of different shapes (no references, several, a deriver,
/// a name that needs URL encoding).
fn samples() -> Vec<GuixNarInfo> {
    let p = |s: &str| StorePath::from_base_name(s).unwrap();
    let base = GuixNarInfo {
        store_path: p("y857mykfnc9vd1sc2lqz5g35l111fp71-hello-2.12.1"),
        nar_sha256: [0x5a; 32],
        nar_size: 226_104,
        references: vec![],
        deriver: None,
        system: None,
        signature: None,
        offers: vec![],
    };
    let mut with_refs = base.clone();
    with_refs.store_path = p("2sznibwwvp6x0ha2j6n8s1z1brf8ra4q-gtk+-3.24.41");
    with_refs.references = vec![
        p("0ddqclfrb4bvqnjxngslnzd32lx1hnys-glibc-2.39"),
        p("2sznibwwvp6x0ha2j6n8s1z1brf8ra4q-gtk+-3.24.41"),
        p("8aski1xwcn6lj112yc9ylgp2y3c7sj83-cairo-1.18.0"),
    ];
    with_refs.deriver = Some(p("9aski1xwcn6lj112yc9ylgp2y3c7sj83-gtk+-3.24.41.drv"));
    with_refs.nar_sha256 = [0x80; 32];
    let mut big = base.clone();
    big.nar_size = u64::MAX;
    big.nar_sha256 = [0; 32];
    let mut all = vec![base, with_refs, big];
    for info in &mut all {
        let b = info.store_path.base_name();
        info.offers = ["zstd", "none"]
            .iter()
            .map(|c| NarOffer {
                url: nar_url(c, &b),
                compression: (*c).to_owned(),
                file_size: (*c == "none").then_some(info.nar_size),
            })
            .collect();
    }
    all
}

#[test]
fn guile_signs_storefs_verifies_and_signs_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _) = guile(&["genkey".as_ref(), dir.path().as_os_str()]);
    assert!(ok, "guile genkey failed");
    let sec_file = dir.path().join("signing-key.sec");
    let pub_file = dir.path().join("signing-key.pub");
    let sec_text = std::fs::read(&sec_file).unwrap();
    let pub_text = std::fs::read(&pub_file).unwrap();
    let secret = SecretKey::parse(&sec_text).unwrap();
    let public = PublicKey::parse(&pub_text).unwrap();
    assert_eq!(secret.public(), &public);
    // Key files as libgcrypt wrote them come back byte for byte.
    assert_eq!(secret.to_file_text().as_bytes(), sec_text.as_slice());
    assert_eq!(public.to_file_text().as_bytes(), pub_text.as_slice());
    let acl = Acl::new([public]);

    for (i, info) in samples().iter().enumerate() {
        let body = dir.path().join(format!("body{i}"));
        std::fs::write(&body, info.signed_text(&gnu())).unwrap();
        let (ok, signed) = guile(&[
            "sign".as_ref(),
            sec_file.as_os_str(),
            pub_file.as_os_str(),
            body.as_os_str(),
            "guix-host".as_ref(),
        ]);
        assert!(ok, "guile sign failed");
        let parsed = GuixNarInfo::parse(signed.as_bytes(), &gnu())
            .unwrap_or_else(|e| panic!("{e}\n{signed}"));
        parsed
            .verify(&acl)
            .unwrap_or_else(|e| panic!("{e}\n{signed}"));
        // storefs signs the same text with the same key to the same bytes
        // (RFC 6979 makes ECDSA deterministic).
        let mut ours = info.clone();
        ours.offers.clear();
        assert_eq!(ours.render(&gnu(), Some((&secret, "guix-host"))), signed);
    }
}

#[test]
fn storefs_signs_guile_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let sec_file = dir.path().join("signing-key.sec");
    let pub_file = dir.path().join("signing-key.pub");
    std::fs::write(&sec_file, key.to_file_text()).unwrap();
    std::fs::write(&pub_file, key.public().to_file_text()).unwrap();
    let acl_file = dir.path().join("acl");
    std::fs::write(&acl_file, Acl::new([key.public().clone()]).to_file_text()).unwrap();

    for (i, info) in samples().iter().enumerate() {
        let text = info.render(&gnu(), Some((&key, "storefs-host")));
        let file = dir.path().join(format!("n{i}.narinfo"));
        std::fs::write(&file, &text).unwrap();
        let (ok, status) = guile(&["verify".as_ref(), acl_file.as_os_str(), file.as_os_str()]);
        assert!(
            ok,
            "libgcrypt refuses storefs's signature: {status}\n{text}"
        );
        assert_eq!(status.trim(), "valid-signature");
        // Guile signing with the key files storefs wrote gives storefs's bytes.
        let body = dir.path().join(format!("b{i}"));
        std::fs::write(&body, info.signed_text(&gnu())).unwrap();
        let (ok, guile_text) = guile(&[
            "sign".as_ref(),
            sec_file.as_os_str(),
            pub_file.as_os_str(),
            body.as_os_str(),
            "storefs-host".as_ref(),
        ]);
        assert!(ok);
        assert!(text.starts_with(&guile_text), "{text}\n---\n{guile_text}");
    }
}

/// Replace the base64 of the `Signature:` line with `f(decoded sexp text)`.
fn rewrite_signature(text: &str, f: impl Fn(&str) -> String) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("Signature: ") {
            Some(v) => {
                let mut parts = v.splitn(3, ';');
                let (ver, host, b64) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let sexp = String::from_utf8(BASE64.decode(b64.as_bytes()).unwrap()).unwrap();
                format!(
                    "Signature: {ver};{host};{}",
                    BASE64.encode(f(&sexp).as_bytes())
                )
            }
            None => l.to_owned(),
        })
        .map(|l| l + "\n")
        .collect()
}

#[test]
fn tampered_foreign_truncated_and_unknown_versions_are_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let other = SecretKey::generate();
    let acl = Acl::new([key.public().clone()]);
    let acl_file = dir.path().join("acl");
    std::fs::write(&acl_file, acl.to_file_text()).unwrap();
    let info = &samples()[1];
    let good = info.render(&gnu(), Some((&key, "h")));

    let guile_status = |text: &str| {
        let f = dir.path().join("x.narinfo");
        std::fs::write(&f, text).unwrap();
        let (ok, s) = guile(&["verify".as_ref(), acl_file.as_os_str(), f.as_os_str()]);
        (ok, s.trim().to_owned())
    };
    let ours =
        |text: &str| GuixNarInfo::parse(text.as_bytes(), &gnu()).and_then(|p| p.verify(&acl));
    assert_eq!(guile_status(&good), (true, "valid-signature".into()));
    ours(&good).unwrap();

    // The body changed after signing.
    let tampered = good.replace("NarSize: 226104", "NarSize: 226105");
    assert_eq!(guile_status(&tampered), (false, "hash-mismatch".into()));
    assert_eq!(
        ours(&tampered),
        Err(GuixNarInfoError::Signature(SignatureError::HashMismatch))
    );

    // Signed by a key not in the ACL.
    let foreign = info.render(&gnu(), Some((&other, "h")));
    assert_eq!(guile_status(&foreign), (false, "unauthorized-key".into()));
    assert!(matches!(
        ours(&foreign),
        Err(GuixNarInfoError::Signature(SignatureError::Unauthorized(_)))
    ));

    // A signature whose r was changed: the ECDSA check itself fails.
    let bad_r = rewrite_signature(&good, |s| {
        let i = s.find("(r #").unwrap() + 4;
        let mut b = s.as_bytes().to_vec();
        b[i + 10] = if b[i + 10] == b'1' { b'2' } else { b'1' };
        String::from_utf8(b).unwrap()
    });
    assert_eq!(guile_status(&bad_r), (false, "invalid-signature".into()));
    assert_eq!(
        ours(&bad_r),
        Err(GuixNarInfoError::Signature(SignatureError::Invalid))
    );

    // A truncated s-expression.
    let truncated = rewrite_signature(&good, |s| s[..s.len() / 2].to_owned());
    assert_eq!(
        guile_status(&truncated),
        (false, "corrupt-signature".into())
    );
    match ours(&truncated) {
        Err(GuixNarInfoError::Field {
            key: "Signature",
            reason,
            ..
        }) => {
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("truncated signature accepted or misreported: {other:?}"),
    }
    let sexp_err = storefs_store::guix::Sexp::parse(b"(signature (data").unwrap_err();
    assert!(matches!(sexp_err, SexpError::Truncated { offset: 16, .. }));

    // An unknown signature version.
    let v2 = good.replace("Signature: 1;", "Signature: 2;");
    assert_eq!(guile_status(&v2), (false, "unsupported-version".into()));
    match ours(&v2) {
        Err(GuixNarInfoError::Field {
            key: "Signature",
            reason,
            ..
        }) => {
            assert!(
                reason.contains("unsupported signature version 2"),
                "{reason}"
            );
        }
        other => panic!("version 2 accepted or misreported: {other:?}"),
    }
}
