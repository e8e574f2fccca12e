//! The Guix flavour end to end, with real processes: a store under
//! /gnu/store filled by storefs (from paths a real Nix made with that store
//! directory), served by `storefs serve --http` in the Guix flavour;
//! `storefs import --authorized-keys` from it into a second store, every
//! signature checked, every NAR equal to the original; Guix's own
//! cryptography (guile-gcrypt) accepting what the server signs; the Nix
//! flavour of the same store unchanged; refused imports naming the path.

use std::io::Write;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use storefs_testkit::{
    TestServer, free_port, http, nix::require_nix, ok, ok_str, pseudo_random, storefs,
};

/// GET from the loopback port: (status, body).
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let a = http::get(([127, 0, 0, 1], port).into(), path);
    (a.status, a.body)
}

const GNU: &str = "/gnu/store";

/// A Nix store whose store directory is /gnu/store, its files under `dir`.
struct GnuNix {
    spec: String,
}

impl GnuNix {
    fn new(dir: &Path) -> Self {
        require_nix();
        let d = dir.display();
        GnuNix {
            spec: format!("local?store={GNU}&state={d}/state&log={d}/log&real={d}/real"),
        }
    }

    fn nix_store(&self) -> Command {
        let mut c = Command::new("nix-store");
        c.args(["--store", &self.spec, "--option", "substituters", ""]);
        c
    }

    /// The NAR Nix serializes (`nix-store --dump` would read the logical
    /// path, which does not exist here).
    fn dump(&self, p: &str) -> Vec<u8> {
        ok(Command::new("nix")
            .args([
                "--extra-experimental-features",
                "nix-command",
                "store",
                "dump-path",
            ])
            .args(["--store", &self.spec, p]))
    }
}

/// Paths under /gnu/store with references: a tree (executable, symlink,
/// nested, empty files), a text file, and one referring to both, whose
/// name needs URL encoding. Returns the Nix store and the root path.
fn make_closure(tmp: &Path) -> (GnuNix, String) {
    let tree = tmp.join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::write(tree.join("README"), "a Guix closure made for storefs\n").unwrap();
    std::fs::write(tree.join("sub/empty"), "").unwrap();
    std::fs::write(tree.join("sub/deeper/big"), pseudo_random(300_000, 7)).unwrap();
    let exe = tree.join("run.sh");
    std::fs::write(&exe, "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/deeper/big", tree.join("link")).unwrap();
    let nix = GnuNix::new(&tmp.join("nix"));
    let expr = format!(
        r#"builtins.toFile "gtk+-app" "uses ${{builtins.path {{ path = {}; name = "tree"; }}}} and ${{builtins.toFile "hello" "Hello Guix"}}""#,
        tree.display()
    );
    let out = ok_str(
        Command::new("nix-instantiate")
            .args(["--store", &nix.spec, "--option", "substituters", ""])
            .args(["--read-write-mode", "--eval", "-E", &expr]),
    );
    (nix, out.trim_matches('"').to_owned())
}

#[test]
fn guix_flavour_serves_and_imports_a_closure() {
    let tmp = tempfile::tempdir().unwrap();
    let (nix, root) = make_closure(tmp.path());
    let closure: Vec<String> = ok_str(nix.nix_store().args(["-qR", &root]))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(closure.len(), 3, "{closure:?}");

    // Fill store A with storefs (from a binary cache Nix writes).
    let cache = tmp.path().join("cache");
    ok(Command::new("nix")
        .args(["--extra-experimental-features", "nix-command", "copy"])
        .args(["--store", &nix.spec])
        .arg("--to")
        .arg(format!(
            "file://{}?compression=none&store={GNU}",
            cache.display()
        ))
        .arg(&root));
    let a = tmp.path().join("a");
    ok(storefs!(&a)
        .args(["--store-dir", GNU, "import", "--no-check-sigs", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg(&root));

    // A Guix key pair made by storefs, the way guix archive makes one.
    let keys = tmp.path().join("keys");
    ok(storefs!(&a).arg("guix-generate-key").arg(&keys));
    let sec = keys.join("signing-key.sec");
    let public = keys.join("signing-key.pub");

    // Serve A in the Guix flavour (chosen by --store-dir /gnu/store).
    let port = free_port();
    let serve = TestServer::spawn(
        storefs!(&a)
            .args([
                "--store-dir",
                GNU,
                "serve",
                "--http",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--guix-sign-key-file")
            .arg(&sec)
            .args(["--guix-host-name", "storefs-test"]),
        &[],
        &[port],
    );

    let (status, info) = get(port, "/nix-cache-info");
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(info).unwrap(),
        "StoreDir: /gnu/store\nWantMassQuery: 0\nPriority: 100\n"
    );
    let (status, key) = get(port, "/signing-key.pub");
    assert_eq!(status, 200);
    assert_eq!(key, std::fs::read(&public).unwrap());

    // Each narinfo: Guix's field order, one group per compression, and
    // libgcrypt accepts the signature.
    let acl = tmp.path().join("acl");
    let acl_text = format!(
        "(acl (entry {} (tag (guix import))))",
        std::fs::read_to_string(&public).unwrap()
    );
    std::fs::write(&acl, acl_text).unwrap();
    let root_base = root.strip_prefix("/gnu/store/").unwrap();
    let hash = &root_base[..32];
    let (status, narinfo) = get(port, &format!("/{hash}.narinfo"));
    assert_eq!(status, 200);
    let narinfo = String::from_utf8(narinfo).unwrap();
    let keys_in_order: Vec<&str> = narinfo
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys_in_order,
        [
            "StorePath",
            "NarHash",
            "NarSize",
            "References",
            "Signature",
            "URL",
            "Compression",
            "URL",
            "Compression",
            "URL",
            "Compression",
            "FileSize"
        ],
        "{narinfo}"
    );
    assert!(narinfo.contains("Signature: 1;storefs-test;"), "{narinfo}");
    let encoded = root_base.replace('+', "%2B");
    assert!(
        narinfo.contains(&format!("URL: nar/zstd/{encoded}\nCompression: zstd\n")),
        "{narinfo}"
    );
    assert!(
        narinfo.contains(&format!(
            "URL: nar/{encoded}\nCompression: none\nFileSize: "
        )),
        "{narinfo}"
    );
    let nf = tmp.path().join("root.narinfo");
    std::fs::write(&nf, &narinfo).unwrap();
    let out = Command::new("guile")
        .env("GUILE_AUTO_COMPILE", "0")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("store/tests/guix/reference.scm"))
        .arg("verify")
        .arg(&acl)
        .arg(&nf)
        .output()
        .expect("guile: run scripts/test, which installs guile-3.0 and guile-gcrypt");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "valid-signature"
    );

    // Every URL serves the NAR Nix dumps (compressed ones decompress to it).
    for p in &closure {
        let base = p.strip_prefix("/gnu/store/").unwrap();
        let enc = base.replace('+', "%2B");
        let (status, body) = get(port, &format!("/nar/{enc}"));
        assert_eq!(status, 200, "{p}");
        assert_eq!(body, nix.dump(p), "uncompressed NAR of {p}");
        let (status, z) = get(port, &format!("/nar/zstd/{enc}"));
        assert_eq!(status, 200);
        assert_eq!(decompress("zstd", &z), nix.dump(p), "zstd NAR of {p}");
        let (status, g) = get(port, &format!("/nar/gzip/{enc}"));
        assert_eq!(status, 200);
        assert_eq!(decompress("gzip", &g), nix.dump(p), "gzip NAR of {p}");
    }
    assert_eq!(
        get(port, &format!("/nar/{}", root_base.replacen('a', "b", 1))).0,
        404
    );

    // Import into store B, signatures checked, NARs exact.
    let b = tmp.path().join("b");
    let imported = ok_str(
        storefs!(&b)
            .args([
                "--store-dir",
                GNU,
                "import",
                "--from",
                &format!("http://127.0.0.1:{port}"),
            ])
            .arg("--authorized-keys")
            .arg(&public)
            .arg(&root),
    );
    let mut imported: Vec<&str> = imported.lines().collect();
    imported.sort();
    let mut want: Vec<&str> = closure.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(imported, want);
    for p in &closure {
        let ours = ok(storefs!(&b).args(["--store-dir", GNU, "nar", p]));
        assert_eq!(ours, nix.dump(p), "{p}");
    }
    let info = ok_str(storefs!(&b).args(["--store-dir", GNU, "info", &root]));
    let mut refs: Vec<String> = info
        .lines()
        .find_map(|l| l.strip_prefix("References:"))
        .unwrap()
        .split_whitespace()
        .map(|r| format!("/gnu/store/{}", r.trim_start_matches("/gnu/store/")))
        .collect();
    refs.sort();
    let mut nix_refs: Vec<String> = ok_str(nix.nix_store().args(["-q", "--references", &root]))
        .lines()
        .map(str::to_owned)
        .collect();
    nix_refs.sort();
    assert_eq!(refs, nix_refs);
    // The ACL file form works as well, and a second run finds it all present.
    let again = storefs!(&b)
        .args([
            "--store-dir",
            GNU,
            "import",
            "--from",
            &format!("http://127.0.0.1:{port}"),
        ])
        .arg("--authorized-keys")
        .arg(&acl)
        .arg(&root)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("imported 0 paths (0 NAR bytes), 1 already present")
    );

    // Signed by another key: refused, naming the path; nothing recorded.
    let stranger = tmp.path().join("stranger");
    ok(storefs!(&a).arg("guix-generate-key").arg(&stranger));
    let c = tmp.path().join("c");
    let refused = storefs!(&c)
        .args([
            "--store-dir",
            GNU,
            "import",
            "--from",
            &format!("http://127.0.0.1:{port}"),
        ])
        .arg("--authorized-keys")
        .arg(stranger.join("signing-key.pub"))
        .arg(&root)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&root) && err.contains("unauthorized key"),
        "{err}"
    );
    let info = storefs!(&c)
        .args(["--store-dir", GNU, "info", &root])
        .output()
        .unwrap();
    assert!(!info.status.success(), "a refused path was recorded");

    // The Nix flavour of the same store is unchanged: Nix copies from it.
    drop(serve);
    let port2 = free_port();
    let _nix_view = TestServer::spawn(
        storefs!(&a)
            .args([
                "--store-dir",
                GNU,
                "serve",
                "--http",
                &format!("127.0.0.1:{port2}"),
            ])
            .args(["--http-flavour", "nix"]),
        &[],
        &[port2],
    );
    let (_, info) = get(port2, "/nix-cache-info");
    assert!(String::from_utf8_lossy(&info).contains("WantMassQuery: 1"));
    let (_, ni) = get(port2, &format!("/{hash}.narinfo"));
    let ni = String::from_utf8(ni).unwrap();
    assert!(
        ni.contains("\nURL: nar/") && ni.contains(".nar\n") && !ni.contains("Signature:"),
        "{ni}"
    );
    let fresh = GnuNix::new(&tmp.path().join("fresh"));
    ok(Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--no-check-sigs",
        ])
        .args(["--store", &fresh.spec])
        .args(["--from", &format!("http://127.0.0.1:{port2}?store={GNU}")])
        .arg(&root));
    for p in &closure {
        assert_eq!(fresh.dump(p), nix.dump(p), "{p} through the Nix flavour");
    }
}

/// Refusals from a directory laid out like a `guix publish` cache: each
/// altered narinfo is refused with an error naming the path.
#[test]
fn altered_narinfos_are_refused_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let (nix, root) = make_closure(tmp.path());
    let cache = tmp.path().join("cache");
    ok(Command::new("nix")
        .args(["--extra-experimental-features", "nix-command", "copy"])
        .args(["--store", &nix.spec])
        .arg("--to")
        .arg(format!(
            "file://{}?compression=none&store={GNU}",
            cache.display()
        ))
        .arg(&root));
    let a = tmp.path().join("a");
    ok(storefs!(&a)
        .args(["--store-dir", GNU, "import", "--no-check-sigs", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg(&root));
    let keys = tmp.path().join("keys");
    ok(storefs!(&a).arg("guix-generate-key").arg(&keys));
    let port = free_port();
    let serve = TestServer::spawn(
        storefs!(&a)
            .args([
                "--store-dir",
                GNU,
                "serve",
                "--http",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--guix-sign-key-file")
            .arg(keys.join("signing-key.sec"))
            .args(["--guix-compression", "none"]),
        &[],
        &[port],
    );
    // Mirror the server into a directory.
    let mirror = tmp.path().join("mirror");
    std::fs::create_dir_all(mirror.join("nar")).unwrap();
    std::fs::write(
        mirror.join("nix-cache-info"),
        get(port, "/nix-cache-info").1,
    )
    .unwrap();
    let closure: Vec<String> = ok_str(nix.nix_store().args(["-qR", &root]))
        .lines()
        .map(str::to_owned)
        .collect();
    for p in &closure {
        let base = p.strip_prefix("/gnu/store/").unwrap();
        let hash = &base[..32];
        std::fs::write(
            mirror.join(format!("{hash}.narinfo")),
            get(port, &format!("/{hash}.narinfo")).1,
        )
        .unwrap();
        std::fs::write(
            mirror.join("nar").join(base),
            get(port, &format!("/nar/{}", base.replace('+', "%2B"))).1,
        )
        .unwrap();
    }
    drop(serve);
    let root_hash = &root.strip_prefix("/gnu/store/").unwrap()[..32];
    let narinfo_file: PathBuf = mirror.join(format!("{root_hash}.narinfo"));
    let original = std::fs::read_to_string(&narinfo_file).unwrap();

    let import = |name: &str| {
        let data = tmp.path().join(name);
        let out = storefs!(&data)
            .args(["--store-dir", GNU, "import", "--from"])
            .arg(format!("file://{}", mirror.display()))
            .arg("--authorized-keys")
            .arg(keys.join("signing-key.pub"))
            .arg(&root)
            .output()
            .unwrap();
        let recorded = storefs!(&data)
            .args(["--store-dir", GNU, "info", &root])
            .output()
            .unwrap()
            .status
            .success();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            recorded,
        )
    };
    // The unaltered mirror imports.
    let (ok_, err, recorded) = import("good");
    assert!(ok_ && recorded, "{err}");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "tampered",
            original.replacen("NarSize: ", "NarSize: 1", 1),
            "signed text was altered",
        ),
        (
            "truncated",
            {
                let (head, sig) = original.split_once("Signature: 1;").unwrap();
                let (host_b64, rest) = sig.split_once('\n').unwrap();
                let (host, b64) = host_b64.split_once(';').unwrap();
                let sexp = decode_b64(b64);
                let cut = encode_b64(&sexp[..sexp.len() / 2]);
                format!("{head}Signature: 1;{host};{cut}\n{rest}")
            },
            "truncated",
        ),
        (
            "version",
            original.replace("Signature: 1;", "Signature: 2;"),
            "unsupported signature version 2",
        ),
    ];
    for (name, text, expect) in cases {
        std::fs::write(&narinfo_file, &text).unwrap();
        let (ok_, err, recorded) = import(name);
        assert!(!ok_, "{name} accepted");
        assert!(!recorded, "{name}: the refused path was recorded");
        assert!(
            err.contains(&root),
            "{name}: error does not name the path: {err}"
        );
        assert!(err.contains(expect), "{name}: {err}");
    }
    std::fs::write(&narinfo_file, &original).unwrap();
}

fn decompress(kind: &str, data: &[u8]) -> Vec<u8> {
    let (prog, args): (&str, &[&str]) = match kind {
        "gzip" => ("gzip", &["-dc"]),
        _ => ("zstd", &["-dc"]),
    };
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{prog} -dc failed");
    out.stdout
}

fn decode_b64(s: &str) -> Vec<u8> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    out.stdout
}

fn encode_b64(b: &[u8]) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
