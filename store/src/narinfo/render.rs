//! Writing narinfo text byte for byte as Nix 2.8's `NarInfo::to_string`.

use std::fmt::Write;

use super::NarInfo;
use crate::StoreDir;
use crate::nixbase32;

impl NarInfo {
    /// The narinfo text, keys in Nix's order, references and signatures
    /// sorted. `Compression` is always written (Nix reads its absence as
    /// bzip2); `FileHash`/`FileSize`, `Deriver`, `System` and `CA` only when
    /// known. You must keep newlines out of `url`, `compression` and
    /// `system`, or the text will not parse back to the same value.
    pub fn render(&self, store_dir: &StoreDir) -> String {
        let mut n = self.clone();
        n.normalize();
        let mut out = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "StorePath: {}", n.store_path.to_absolute(store_dir));
        let _ = writeln!(out, "URL: {}", n.url);
        let _ = writeln!(out, "Compression: {}", n.compression);
        if let Some(h) = &n.file_hash {
            let _ = writeln!(out, "FileHash: {h}");
        }
        if let Some(s) = n.file_size {
            let _ = writeln!(out, "FileSize: {s}");
        }
        let _ = writeln!(out, "NarHash: sha256:{}", nixbase32::encode(&n.nar_sha256));
        let _ = writeln!(out, "NarSize: {}", n.nar_size);
        let refs: Vec<String> = n.references.iter().map(|r| r.base_name()).collect();
        let _ = writeln!(out, "References: {}", refs.join(" "));
        if let Some(d) = &n.deriver {
            let _ = writeln!(out, "Deriver: {d}");
        }
        if let Some(s) = &n.system {
            let _ = writeln!(out, "System: {s}");
        }
        for s in &n.signatures {
            let _ = writeln!(out, "Sig: {s}");
        }
        if let Some(ca) = &n.ca {
            let _ = writeln!(out, "CA: {ca}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signature;
    use crate::StorePath;

    #[test]
    fn renders_in_nix_order_with_sets_sorted() {
        let p = |s: &str| StorePath::from_base_name(s).unwrap();
        let sig = |name: &str| Signature {
            name: name.into(),
            bytes: [0; 64],
        };
        let n = NarInfo {
            store_path: p("0542pmh3375rz105qnkb38fnnc35v8fd-baz"),
            url: "nar/x.nar.xz".into(),
            compression: "xz".into(),
            file_hash: None,
            file_size: Some(9),
            nar_sha256: [0; 32],
            nar_size: 224,
            references: vec![
                p("vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo"),
                p("r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt"),
            ],
            deriver: Some(p("nfsx1mg16n2c4c7bs93jv2b1dvsspl4f-d.drv")),
            system: Some("x86_64-linux".into()),
            signatures: vec![sig("b"), sig("a")],
            ca: None,
        };
        let zero = "0".repeat(52);
        let a64 = "A".repeat(86);
        assert_eq!(
            n.render(&StoreDir::default()),
            format!(
                "StorePath: /nix/store/0542pmh3375rz105qnkb38fnnc35v8fd-baz\n\
                 URL: nar/x.nar.xz\n\
                 Compression: xz\n\
                 FileSize: 9\n\
                 NarHash: sha256:{zero}\n\
                 NarSize: 224\n\
                 References: r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo\n\
                 Deriver: nfsx1mg16n2c4c7bs93jv2b1dvsspl4f-d.drv\n\
                 System: x86_64-linux\n\
                 Sig: a:{a64}==\n\
                 Sig: b:{a64}==\n"
            )
        );
    }
}
