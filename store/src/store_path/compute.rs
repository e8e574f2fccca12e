//! Computing store paths the way Nix 2.8 does (store-api.cc
//! `makeStorePath`, `makeFixedOutputPath`, `makeTextPath`). See docs/nix-formats.md.
//!
//! ```text
//! fingerprint = type ":sha256:" hex(inner) ":" storeDir ":" name
//! digest      = compress20(sha256(fingerprint))      ; out[i % 20] ^= h[i]
//! path        = storeDir "/" nix32(digest) "-" name
//! type        = "text" (":" refpath)*                ; inner = sha256(contents)
//!             | "source" (":" refpath)* [":self"]    ; inner = sha256(NAR)
//!             | "output:out"                         ; inner = sha256("fixed:out:" ["r:"] algo ":" hex ":")
//! ```
//! Reference paths are full paths in the store directory, sorted and
//! without duplicates (Nix's `StorePathSet`).

use sha2::{Digest, Sha256};

use super::{DIGEST_LEN, StoreDir, StorePath, StorePathError, validate_name};
use crate::{HashAlgo, NixHash};

/// The text that is hashed to give a store path:
/// `<type>:sha256:<hex of inner>:<store dir>:<name>`.
pub fn store_path_fingerprint(
    path_type: &str,
    inner_sha256: &[u8; 32],
    name: &str,
    store_dir: &StoreDir,
) -> String {
    format!(
        "{path_type}:sha256:{}:{}:{name}",
        hex::encode(inner_sha256),
        store_dir.as_str()
    )
}

/// Nix's `makeStorePath`: the store path of type `path_type` (`text`,
/// `source`, `output:out`, with any `:<ref>` suffixes already appended)
/// whose inner hash is `inner_sha256`.
pub fn make_store_path(
    path_type: &str,
    inner_sha256: &[u8; 32],
    name: &str,
    store_dir: &StoreDir,
) -> Result<StorePath, StorePathError> {
    validate_name(name)?;
    let fingerprint = store_path_fingerprint(path_type, inner_sha256, name, store_dir);
    let h = Sha256::digest(fingerprint.as_bytes());
    StorePath::from_parts(compress_hash(&h), name)
}

/// XOR-fold a digest into 20 bytes (Nix's `compressHash`).
fn compress_hash(h: &[u8]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    for (i, b) in h.iter().enumerate() {
        out[i % DIGEST_LEN] ^= b;
    }
    out
}

/// `type` followed by `:<full path>` for each reference, sorted and
/// deduplicated, then `:self` if asked (Nix's `makeType`).
fn make_type(
    base: &str,
    references: &[StorePath],
    self_reference: bool,
    store_dir: &StoreDir,
) -> String {
    let mut refs: Vec<String> = references
        .iter()
        .map(|r| r.to_absolute(store_dir))
        .collect();
    refs.sort();
    refs.dedup();
    let mut t = base.to_owned();
    for r in refs {
        t.push(':');
        t.push_str(&r);
    }
    if self_reference {
        t.push_str(":self");
    }
    t
}

/// The path of a NAR-hashed (`fixed:r:sha256`) source, as `nix-store --add`
/// makes it: type `source`, the references, `:self` if it refers to itself.
pub fn make_source_path(
    name: &str,
    nar_sha256: &[u8; 32],
    references: &[StorePath],
    self_reference: bool,
    store_dir: &StoreDir,
) -> Result<StorePath, StorePathError> {
    let t = make_type("source", references, self_reference, store_dir);
    make_store_path(&t, nar_sha256, name, store_dir)
}

/// The path of a text file (`builtins.toFile`, a `.drv`): type `text`
/// with its references; the inner hash is sha256 of the contents.
pub fn make_text_path(
    name: &str,
    contents_sha256: &[u8; 32],
    references: &[StorePath],
    store_dir: &StoreDir,
) -> Result<StorePath, StorePathError> {
    let t = make_type("text", references, false, store_dir);
    make_store_path(&t, contents_sha256, name, store_dir)
}

/// Nix's `makeFixedOutputPath`: a recursive (NAR) sha256 hash gives a
/// `source` path, which may have references; anything else gives an
/// `output:out` path over `fixed:out:[r:]<algo>:<hex>:`, which may not.
pub fn make_fixed_output_path(
    recursive: bool,
    hash: &NixHash,
    name: &str,
    references: &[StorePath],
    self_reference: bool,
    store_dir: &StoreDir,
) -> Result<StorePath, StorePathError> {
    if recursive && hash.algo() == HashAlgo::Sha256 {
        let mut inner = [0u8; 32];
        // The algorithm is sha256, so the digest is 32 bytes (NixHash::new
        // checks the length).
        inner.copy_from_slice(hash.digest());
        return make_source_path(name, &inner, references, self_reference, store_dir);
    }
    if !references.is_empty() || self_reference {
        return Err(StorePathError::ReferencesNotAllowed(if recursive {
            "fixed:r: non-sha256"
        } else {
            "fixed: flat"
        }));
    }
    let inner_text = format!(
        "fixed:out:{}{}:",
        if recursive { "r:" } else { "" },
        hash.to_base16_string()
    );
    let inner: [u8; 32] = Sha256::digest(inner_text.as_bytes()).into();
    make_store_path("output:out", &inner, name, store_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn nix() -> StoreDir {
        StoreDir::default()
    }

    /// The NAR of a regular file holding `Hello World!` (docs/nix-formats.md).
    fn hello_nar() -> Vec<u8> {
        let mut nar = Vec::new();
        for s in [
            &b"nix-archive-1"[..],
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"Hello World!",
            b")",
        ] {
            nar.extend_from_slice(&(s.len() as u64).to_le_bytes());
            nar.extend_from_slice(s);
            nar.resize(nar.len().div_ceil(8) * 8, 0);
        }
        nar
    }

    #[test]
    fn nix_store_add_gives_a_source_path() {
        let nar = hello_nar();
        assert_eq!(nar.len(), 128);
        let h = sha256(&nar);
        assert_eq!(
            hex::encode(h),
            "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040"
        );
        assert_eq!(
            store_path_fingerprint("source", &h, "hello.txt", &nix()),
            "source:sha256:03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040:/nix/store:hello.txt"
        );
        let p = make_source_path("hello.txt", &h, &[], false, &nix()).unwrap();
        assert_eq!(
            p.to_absolute(&nix()),
            "/nix/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt"
        );
        // The same through the fixed-output route, as Nix's
        // makeFixedOutputPath(Recursive, sha256) does it.
        let q = make_fixed_output_path(true, &NixHash::sha256(h), "hello.txt", &[], false, &nix())
            .unwrap();
        assert_eq!(q, p);
    }

    #[test]
    fn to_file_gives_a_text_path() {
        let h = sha256(b"Hello World!");
        assert_eq!(
            hex::encode(h),
            "7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069"
        );
        let p = make_text_path("hello.txt", &h, &[], &nix()).unwrap();
        assert_eq!(
            p.to_absolute(&nix()),
            "/nix/store/r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt"
        );
        // tvix: builtins.toFile "foo" "bar".
        let p = make_text_path("foo", &sha256(b"bar"), &[], &nix()).unwrap();
        assert_eq!(
            p.to_absolute(&nix()),
            "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo"
        );
    }

    #[test]
    fn add_fixed_flat_gives_an_output_path() {
        let h = NixHash::sha256(sha256(b"Hello World!"));
        assert_eq!(
            hex::encode(sha256(
                format!("fixed:out:{}:", h.to_base16_string()).as_bytes()
            ))[..8],
            *"d7f62389"
        );
        let p = make_fixed_output_path(false, &h, "hello.txt", &[], false, &nix()).unwrap();
        assert_eq!(
            p.to_absolute(&nix()),
            "/nix/store/z304n4ccbya3lf8bq20sl2zhmzd3lx1a-hello.txt"
        );
    }

    #[test]
    fn recursive_sha1_gives_an_output_path() {
        // tvix: a NAR hashed with sha1 0beec7b5…8a33, named "bar".
        let h = NixHash::new(
            HashAlgo::Sha1,
            &hex::decode("0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33").unwrap(),
        )
        .unwrap();
        let p = make_fixed_output_path(true, &h, "bar", &[], false, &nix()).unwrap();
        assert_eq!(
            p.to_absolute(&nix()),
            "/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar"
        );
    }

    #[test]
    fn gnu_store_paths_differ_as_nix_computes_them() {
        // Nix 2.8: nix-store --store 'local?store=/gnu/store&real=…' --add.
        let gnu = StoreDir::new("/gnu/store").unwrap();
        let p = make_source_path("hello.txt", &sha256(&hello_nar()), &[], false, &gnu).unwrap();
        assert_eq!(
            p.to_absolute(&gnu),
            "/gnu/store/xd647h2d0mlyx2jh3sfnvmrqjkx5wb75-hello.txt"
        );
        // The testdata `tree` directory, by its NAR hash.
        let tree = crate::nixbase32::decode_fixed::<32>(
            b"0507c9kx756qz7imkc694ki9mj6qdj83159355fh9hrj433p0p3q",
        )
        .unwrap();
        let p = make_source_path("tree", &tree, &[], false, &gnu).unwrap();
        assert_eq!(
            p.to_absolute(&gnu),
            "/gnu/store/pi9vk0l8rnlfrh07d2l0vngh4dc13lra-tree"
        );
        let p = make_source_path("tree", &tree, &[], false, &nix()).unwrap();
        assert_eq!(p.base_name(), "yyxmwbp8daz90naw7pplmsyfmph4ck0v-tree");
    }

    #[test]
    fn text_path_with_references() {
        // Nix 2.8: builtins.toFile "baz" of a text naming two other paths.
        let hello =
            StorePath::from_base_name("r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt").unwrap();
        let foo = StorePath::from_base_name("vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo").unwrap();
        let text = "/nix/store/r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt and /nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo";
        let p = make_text_path("baz", &sha256(text.as_bytes()), &[foo, hello], &nix()).unwrap();
        assert_eq!(p.base_name(), "0542pmh3375rz105qnkb38fnnc35v8fd-baz");
    }

    #[test]
    fn references_are_refused_where_nix_asserts_none() {
        let r = StorePath::from_base_name("925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt").unwrap();
        let h = NixHash::sha256(sha256(b"x"));
        assert!(matches!(
            make_fixed_output_path(false, &h, "x", std::slice::from_ref(&r), false, &nix()),
            Err(StorePathError::ReferencesNotAllowed(_))
        ));
        let sha1 = NixHash::new(HashAlgo::Sha1, &[0; 20]).unwrap();
        assert!(matches!(
            make_fixed_output_path(true, &sha1, "x", &[], true, &nix()),
            Err(StorePathError::ReferencesNotAllowed(_))
        ));
        assert!(matches!(
            make_text_path("bad name", &[0; 32], &[], &nix()),
            Err(StorePathError::InvalidName(..))
        ));
    }

    #[test]
    fn make_type_sorts_by_printed_path_and_dedups() {
        // Two digests whose byte order differs from their nix32 order:
        // nix32 writes the last byte first.
        let a = StorePath::from_parts([0xff; 20], "a").unwrap();
        let mut d = [0u8; 20];
        d[19] = 0xff;
        let b = StorePath::from_parts(d, "b").unwrap();
        let (sa, sb) = (a.to_absolute(&nix()), b.to_absolute(&nix()));
        let (first, second) = if sa < sb { (&sa, &sb) } else { (&sb, &sa) };
        let t = make_type("text", &[b.clone(), a.clone(), b.clone()], false, &nix());
        assert_eq!(t, format!("text:{first}:{second}"));
        let t = make_type("source", &[a], true, &nix());
        assert_eq!(t, format!("source:{sa}:self"));
    }
}
