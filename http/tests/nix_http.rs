//! The HTTP binary cache view driven by a real Nix (2.8): `nix copy --from
//! http://…` with signatures checked, `nix store verify`, `nix store ls` and
//! `nix store cat`; and raw requests (ranges, HEAD, errors) with reqwest.
//!
//! The store behind the server is filled by importing caches that Nix
//! itself wrote, so every byte served is compared with Nix's own.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use storefs_http::{HttpConfig, serve_http};
use storefs_store::Services;
use storefs_store::StoreDir;
use storefs_store::import::{ImportOptions, NoProgress, import_from_binary_cache};
use storefs_store::narinfo::NarInfo;
use storefs_store::nixbase32;
use storefs_store::{PublicKey, SecretKey, TrustedKeys};
use storefs_testkit::nix::{Fixtures, NixStore};
use storefs_testkit::ok;
use storefs_testkit::pseudo_random;

struct World {
    fx: Fixtures,
    public_key: String,
    /// Serves with the signing key.
    signed_port: u16,
    /// Serves the same store without a key.
    unsigned_port: u16,
    /// Serves an empty store that takes uploads with [`WRITE_TOKEN`].
    upload_port: u16,
    /// The store behind `upload_port`.
    upload: Services,
}

const WRITE_TOKEN: &str = "s3cret-token";

fn memory_services() -> Services {
    Services::memory()
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let fx = Fixtures::build_in(NixStore::fresh(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "http-world",
        ));
        let nix = &fx.store;
        let (sk_file, public_key) = nix.keys("storefs-test-1");
        let sign_key = SecretKey::parse(&std::fs::read_to_string(sk_file).unwrap()).unwrap();
        let cache = nix.copy_to_cache("src", "zstd", None, &[&fx.withrefs, &fx.single]);

        let services = memory_services();
        let upload = memory_services();
        let upload_services = upload.clone();
        let (signed_port, unsigned_port, upload_port) = {
            let (tx, rx) = std::sync::mpsc::channel();
            let services = services.clone();
            let cache_url = format!("file://{}", cache.display());
            let roots = vec![fx.withrefs.clone(), fx.single.clone()];
            // The servers outlive each test's runtime: they get their own.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    let report = import_from_binary_cache(
                        &cache_url,
                        &roots,
                        ImportOptions {
                            trusted_keys: vec![],
                            check_sigs: false,
                            store_dir: StoreDir::default(),
                            concurrency: 4,
                        },
                        services.clone(),
                        Arc::new(NoProgress),
                    )
                    .await
                    .unwrap();
                    assert!(report.is_success(), "{:?}", report.failed);
                    let signed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let unsigned = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let uploads = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send((
                        signed.local_addr().unwrap().port(),
                        unsigned.local_addr().unwrap().port(),
                        uploads.local_addr().unwrap().port(),
                    ))
                    .unwrap();
                    let mut upload_config = HttpConfig::new(StoreDir::default());
                    upload_config.auth.write =
                        Some(storefs_castore::Token::new(WRITE_TOKEN).unwrap());
                    let c = serve_http(
                        uploads,
                        upload_services,
                        upload_config,
                        std::future::pending(),
                    );
                    let mut config = HttpConfig::new(StoreDir::default());
                    config.sign_key = Some(sign_key);
                    config.priority = 41;
                    let a = serve_http(signed, services.clone(), config, std::future::pending());
                    let b = serve_http(
                        unsigned,
                        services,
                        HttpConfig::new(StoreDir::default()),
                        std::future::pending(),
                    );
                    let _ = tokio::join!(a, b, c);
                });
            });
            rx.recv().unwrap()
        };
        World {
            fx,
            public_key,
            signed_port,
            unsigned_port,
            upload_port,
            upload,
        }
    })
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// `nix` with the new CLI, no substituters, and a private cache dir (Nix
/// remembers narinfos per cache URL).
fn nix(w: &World) -> Command {
    let mut c = storefs_testkit::nix::cmd("nix");
    c.env("XDG_CACHE_HOME", w.fx.store.dir().join("xdg-cache"));
    c
}

fn hash_part(path: &str) -> &str {
    &path["/nix/store/".len().."/nix/store/".len() + 32]
}

#[test]
fn nix_copies_from_us_with_our_signature_and_verifies() {
    let w = world();
    let dest = w.fx.store.dir().join("dest-signed");
    ok(nix(w)
        .args(["copy", "--from", &url(w.signed_port), "--to"])
        .arg(&dest)
        .args(["--option", "trusted-public-keys", &w.public_key])
        .args([&w.fx.withrefs, &w.fx.single]));
    let mut check = nix(w);
    check
        .args(["store", "verify", "--store"])
        .arg(&dest)
        .args(["--option", "trusted-public-keys", &w.public_key])
        .args(["-r", &w.fx.withrefs, &w.fx.single]);
    ok(&mut check);
    for p in w.fx.store.requisites(&w.fx.withrefs) {
        let theirs = String::from_utf8(ok(Command::new("nix-store")
            .arg("--store")
            .arg(&dest)
            .args(["-q", "--hash", &p])))
        .unwrap();
        assert_eq!(theirs.trim(), w.fx.store.hash(&p));
    }

    // Without the key Nix refuses our input-addressed path (content-
    // addressed ones need no signature).
    let dest2 = w.fx.store.dir().join("dest-untrusted");
    let out = nix(w)
        .args(["copy", "--from", &url(w.signed_port), "--to"])
        .arg(&dest2)
        .args(["--option", "trusted-public-keys", ""])
        .arg(&w.fx.withrefs)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lacks a valid signature"), "{err}");
}

#[test]
fn nix_substitutes_unsigned_from_a_trusted_url() {
    let w = world();
    let dest = w.fx.store.dir().join("dest-unsigned");
    let from = format!("{}?trusted=1", url(w.unsigned_port));
    ok(Command::new("nix-store")
        .env("XDG_CACHE_HOME", w.fx.store.dir().join("xdg-cache"))
        .arg("--store")
        .arg(&dest)
        .args(["--option", "substituters", &from])
        .args(["-r", &w.fx.withrefs]));
    for p in w.fx.store.requisites(&w.fx.withrefs) {
        let got = String::from_utf8(ok(Command::new("nix-store")
            .arg("--store")
            .arg(&dest)
            .args(["-q", "--hash", &p])))
        .unwrap();
        assert_eq!(got.trim(), w.fx.store.hash(&p), "{p}");
    }
    let refs = |store: &Path| {
        String::from_utf8(ok(Command::new("nix-store")
            .arg("--store")
            .arg(store)
            .args(["-q", "--references", &w.fx.withrefs])))
        .unwrap()
    };
    assert_eq!(refs(&dest), refs(&w.fx.store.root));

    // An unsigned input-addressed path from an untrusted URL is refused.
    let dest2 = w.fx.store.dir().join("dest-unsigned-refused");
    let out = nix(w)
        .args(["copy", "--from", &url(w.unsigned_port), "--to"])
        .arg(&dest2)
        .arg(&w.fx.withrefs)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn nix_store_ls_and_cat_over_http() {
    let w = world();
    let http = url(w.signed_port);
    // The tree has a non-UTF-8 name: compare the listings as bytes.
    let ls = |store: &str| {
        ok(nix(w)
            .args(["store", "ls", "--store", store, "-lR"])
            .arg(&w.fx.tree))
    };
    let local = w.fx.store.root.display().to_string();
    assert_eq!(ls(&http), ls(&local));

    for (file, on_disk) in [
        ("sub/big.bin", "sub/big.bin"),
        (
            "sub/deep/deeper/we ird=+name,ü",
            "sub/deep/deeper/we ird=+name,ü",
        ),
    ] {
        let got = ok(nix(w)
            .args(["store", "cat", "--store", &http])
            .arg(format!("{}/{file}", w.fx.tree)));
        let want = std::fs::read(
            w.fx.store
                .root
                .join(w.fx.tree.trim_start_matches('/'))
                .join(on_disk),
        )
        .unwrap();
        assert!(got == want, "{file} differs");
    }
}

async fn get(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    req.send().await.unwrap()
}

async fn narinfo_of(w: &World, path: &str) -> NarInfo {
    let resp = get(
        &format!("{}/{}.narinfo", url(w.signed_port), hash_part(path)),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/x-nix-narinfo"
    );
    NarInfo::parse(&resp.text().await.unwrap(), &StoreDir::default()).unwrap()
}

#[tokio::test]
async fn narinfo_is_right_and_signed() {
    let w = world();
    let ni = narinfo_of(w, &w.fx.withrefs).await;
    assert_eq!(
        ni.store_path.to_absolute(&StoreDir::default()),
        w.fx.withrefs
    );
    assert_eq!(ni.compression, "none");
    assert_eq!(
        format!("sha256:{}", nixbase32::encode(&ni.nar_sha256)),
        w.fx.store.hash(&w.fx.withrefs)
    );
    assert_eq!(ni.nar_size, w.fx.store.size(&w.fx.withrefs));
    let mut refs: Vec<String> = ni
        .references
        .iter()
        .map(|r| r.to_absolute(&StoreDir::default()))
        .collect();
    refs.sort();
    let mut want = vec![w.fx.hello.clone(), w.fx.small.clone(), w.fx.tree.clone()];
    want.sort();
    assert_eq!(refs, want);
    assert!(ni.deriver.is_some(), "the deriver Nix recorded is kept");
    let keys = TrustedKeys::new([PublicKey::parse(&w.public_key).unwrap()]);
    let fp = ni.fingerprint(&StoreDir::default()).unwrap();
    assert_eq!(keys.count_valid(fp.as_bytes(), &ni.signatures), 1);

    let tree = narinfo_of(w, &w.fx.tree).await;
    assert!(tree.ca.is_some(), "nix-store --add paths keep their CA");

    let info = get(&format!("{}/nix-cache-info", url(w.signed_port)), None).await;
    assert_eq!(
        info.text().await.unwrap(),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 41\n"
    );
}

#[tokio::test]
async fn nar_whole_and_by_range_equals_nix_dump() {
    let w = world();
    let dump = w.fx.store.dump(&w.fx.tree);
    let ni = narinfo_of(w, &w.fx.tree).await;
    let nar_url = format!("{}/{}", url(w.signed_port), ni.url);

    let whole = get(&nar_url, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(
        whole.headers()["content-length"].to_str().unwrap(),
        dump.len().to_string()
    );
    assert!(whole.bytes().await.unwrap() == dump, "whole NAR differs");

    let total = dump.len() as u64;
    let big_at = find(&dump, &pseudo_random(64, 7)[..]).unwrap() as u64;
    let cases = [
        (Some(0), Some(0)),
        (Some(0), Some(99)),
        (Some(big_at + 100_000), Some(big_at + 300_000)),
        (Some(big_at - 5), Some(big_at + 5)),
        (Some(total - 1), None),
        (Some(500), None),
        (None, Some(17)),
    ];
    for (a, b) in cases {
        let header = format!(
            "bytes={}-{}",
            a.map(|x| x.to_string()).unwrap_or_default(),
            b.map(|x| x.to_string()).unwrap_or_default()
        );
        let (start, end) = match (a, b) {
            (Some(a), Some(b)) => (a, b + 1),
            (Some(a), None) => (a, total),
            (None, Some(n)) => (total - n, total),
            (None, None) => unreachable!(),
        };
        let resp = get(&nar_url, Some(&header)).await;
        assert_eq!(resp.status(), 206, "{header}");
        assert_eq!(
            resp.headers()["content-range"].to_str().unwrap(),
            format!("bytes {start}-{}/{total}", end - 1),
            "{header}"
        );
        let body = resp.bytes().await.unwrap();
        assert!(
            body[..] == dump[start as usize..end as usize],
            "{header}: wrong bytes"
        );
    }

    let past = get(&nar_url, Some(&format!("bytes={total}-"))).await;
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"].to_str().unwrap(),
        format!("bytes */{total}")
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn listing_offsets_point_at_file_contents() {
    let w = world();
    let resp = get(
        &format!("{}/{}.ls", url(w.signed_port), hash_part(&w.fx.tree)),
        None,
    )
    .await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    let ls: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(ls["version"], 1);
    let dump = w.fx.store.dump(&w.fx.tree);
    let mut files = BTreeMap::new();
    collect_files(&ls["root"], String::new(), &mut files);
    assert!(files.len() >= 8, "{files:?}");
    let base = w.fx.store.root.join(w.fx.tree.trim_start_matches('/'));
    for (rel, (offset, size)) in files {
        if rel.contains('\u{fffd}') {
            // A non-UTF-8 name: JSON carries it lossily, so it names no file.
            continue;
        }
        let want = std::fs::read(base.join(&rel)).unwrap();
        assert_eq!(want.len() as u64, size, "{rel}");
        assert!(
            dump[offset as usize..(offset + size) as usize] == want[..],
            "{rel}: narOffset {offset} is wrong"
        );
    }
    let sub = &ls["root"]["entries"]["sub"]["entries"];
    assert_eq!(sub["run"]["executable"], true);
    assert_eq!(ls["root"]["entries"]["link"]["target"], "a");
}

fn collect_files(node: &serde_json::Value, path: String, out: &mut BTreeMap<String, (u64, u64)>) {
    match node["type"].as_str().unwrap() {
        "regular" => {
            out.insert(
                path,
                (
                    node["narOffset"].as_u64().unwrap(),
                    node["size"].as_u64().unwrap(),
                ),
            );
        }
        "directory" => {
            for (name, child) in node["entries"].as_object().unwrap() {
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}/{name}")
                };
                collect_files(child, p, out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn head_matches_get_and_errors_are_clean() {
    let w = world();
    let client = reqwest::Client::new();
    let ni = narinfo_of(w, &w.fx.single).await;
    let base = url(w.signed_port);
    for path in [
        "nix-cache-info".to_owned(),
        format!("{}.narinfo", hash_part(&w.fx.single)),
        ni.url.clone(),
        format!("{}.ls", hash_part(&w.fx.single)),
    ] {
        let u = format!("{base}/{path}");
        let g = client.get(&u).send().await.unwrap();
        let h = client.head(&u).send().await.unwrap();
        assert_eq!(g.status(), h.status(), "{path}");
        for name in ["content-type", "content-length", "accept-ranges"] {
            assert_eq!(
                g.headers().get(name),
                h.headers().get(name),
                "{path}: {name}"
            );
        }
        assert!(g.headers().contains_key("content-length"), "{path}");
        assert!(h.bytes().await.unwrap().is_empty());
    }

    let status = |p: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .get(format!("{base}/{p}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let absent = "00000000000000000000000000000000";
    assert_eq!(status(format!("{absent}.narinfo")).await, 404);
    assert_eq!(status(format!("{absent}.ls")).await, 404);
    assert_eq!(status("nothing-here".into()).await, 404);
    assert_eq!(status("eeee.narinfo".into()).await, 400);
    assert_eq!(status(format!("{}e.narinfo", &absent[1..])).await, 400);
    assert_eq!(status("nar/garbage.nar".into()).await, 404);
    assert_eq!(status(format!("nar/{absent}-x.nar")).await, 404);
    // A NAR URL whose NAR hash is not the path's.
    let stale = format!(
        "nar/{}-{}.nar",
        hash_part(&w.fx.single),
        nixbase32::encode(&[0u8; 32])
    );
    assert_eq!(status(stale).await, 404);
    // Odd requests get a 4xx answer, never a dropped connection.
    let long = format!("{}.narinfo", "a".repeat(10_000));
    for odd in [
        "",
        ".narinfo",
        ".ls",
        "nar/",
        "nar/.nar",
        "nar/-.nar",
        "%2e%2e/etc/passwd",
        "nar/%00.nar",
        "\u{e9}.narinfo",
        long.as_str(),
        "nix-cache-info/extra",
    ] {
        let code = status(odd.to_owned()).await;
        assert!(code.is_client_error(), "{odd:?}: {code}");
    }

    let put = client
        .put(format!("{base}/nix-cache-info"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
}

#[test]
fn nix_copy_to_http_uploads_into_storefs() {
    let w = world();
    let to = url(w.upload_port);
    let netrc = w.fx.store.dir().join("netrc");

    // Without credentials Nix's upload is refused and nothing is recorded.
    std::fs::write(&netrc, "machine 127.0.0.1 login nix password wrong\n").unwrap();
    let out = nix(w)
        .args(["--store"])
        .arg(&w.fx.store.root)
        .args(["copy", "--to", &to, &w.fx.single])
        .args(["--option", "netrc-file"])
        .arg(&netrc)
        .output()
        .unwrap();
    assert!(!out.status.success(), "upload with a wrong token succeeded");

    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1 login nix password {WRITE_TOKEN}\n"),
    )
    .unwrap();
    ok(nix(w)
        .args(["--store"])
        .arg(&w.fx.store.root)
        .args(["copy", "--to", &to, &w.fx.withrefs, &w.fx.single])
        .args(["--option", "netrc-file"])
        .arg(&netrc));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sd = StoreDir::default();
        let mut expected = w.fx.store.requisites(&w.fx.withrefs);
        expected.push(w.fx.single.clone());
        for p in expected {
            let sp = sd.parse_path(&p).unwrap();
            let info = w
                .upload
                .path_info
                .get(*sp.digest())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{p} was not uploaded"));
            let mut nar = Vec::new();
            storefs_store::nar::write_nar(
                &mut nar,
                &info.node,
                w.upload.blob.as_ref(),
                w.upload.directory.as_ref(),
            )
            .await
            .unwrap();
            assert!(nar == w.fx.store.dump(&p), "{p}: uploaded NAR differs");
            assert_eq!(
                format!("sha256:{}", nixbase32::encode(&info.nar_sha256)),
                w.fx.store.hash(&p)
            );
        }
    });

    // And Nix reads back what it uploaded. (A fresh client cache: Nix
    // remembers the narinfos it uploaded, with its own NAR URLs, which name
    // compressed files storefs does not keep.)
    let dest = w.fx.store.dir().join("dest-roundtrip");
    ok(nix(w)
        .env(
            "XDG_CACHE_HOME",
            w.fx.store.dir().join("xdg-cache-roundtrip"),
        )
        .args(["copy", "--no-check-sigs", "--from", &to, "--to"])
        .arg(&dest)
        .arg(&w.fx.withrefs));
}

#[tokio::test]
async fn uploads_are_checked() {
    let w = world();
    let client = reqwest::Client::new();
    let to = url(w.upload_port);
    let put = |path: &str, token: Option<&str>, body: Vec<u8>| {
        let mut req = client.put(format!("{to}/{path}")).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let good = Some(WRITE_TOKEN);

    assert_eq!(put("nar/x.nar", None, vec![]).await.unwrap().status(), 401);
    assert_eq!(
        put("nar/x.nar", Some("nope"), vec![])
            .await
            .unwrap()
            .status(),
        401
    );
    let read_only = client
        .put(format!("{}/nar/x.nar", url(w.signed_port)))
        .bearer_auth(WRITE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(read_only.status(), 405);

    // Not a NAR.
    let bad = put("nar/x.nar", good, b"not a nar".to_vec()).await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("nar/x.nar"));

    // A real NAR, then a narinfo that lies about it.
    let dump = w.fx.store.dump(&w.fx.single);
    assert_eq!(
        put("nar/single.nar", good, dump.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    let mut ni = narinfo_of(w, &w.fx.single).await;
    ni.url = "nar/single.nar".into();
    ni.nar_size += 8;
    let hash = hash_part(&w.fx.single);
    let lie = ni.render(&StoreDir::default());
    let resp = put(&format!("{hash}.narinfo"), good, lie.into_bytes())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("NAR"));

    // A narinfo whose NAR never came.
    ni.nar_size -= 8;
    ni.url = "nar/never.nar".into();
    let resp = put(
        &format!("{hash}.narinfo"),
        good,
        ni.render(&StoreDir::default()).into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);

    // A narinfo whose references are missing.
    let built = narinfo_of(w, &w.fx.withrefs).await;
    let resp = put(
        &format!("{}.narinfo", hash_part(&w.fx.withrefs)),
        good,
        built.render(&StoreDir::default()).into_bytes(),
    )
    .await
    .unwrap();
    // Either the references or the NAR are missing, depending on whether
    // the copy test ran first; never accepted.
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_downloads_all_get_the_whole_nar() {
    let w = world();
    let dump = Arc::new(w.fx.store.dump(&w.fx.tree));
    let ni = narinfo_of(w, &w.fx.tree).await;
    let nar_url = format!("{}/{}", url(w.signed_port), ni.url);
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32u64 {
        let (client, nar_url, dump) = (client.clone(), nar_url.clone(), dump.clone());
        tasks.spawn(async move {
            // Half whole, half a range starting somewhere inside.
            let start = if i % 2 == 0 { 0 } else { i * 997 };
            let mut req = client.get(&nar_url);
            if start > 0 {
                req = req.header("Range", format!("bytes={start}-"));
            }
            let body = req.send().await.unwrap().bytes().await.unwrap();
            assert!(body[..] == dump[start as usize..], "download {i} differs");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}
