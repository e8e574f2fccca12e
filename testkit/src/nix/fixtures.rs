//! The fixture set a real Nix makes in a scratch store.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::NixStore;
use crate::pseudo_random;

/// The store paths every Nix-backed test uses, made once per store.
pub struct Fixtures {
    /// The scratch store holding them.
    pub store: NixStore,
    /// `nix-store --add` of [`write_odd_tree`]'s tree.
    pub tree: String,
    /// `nix-store --add` of a single file holding `Hello World!`.
    pub single: String,
    /// `builtins.toFile "hello.txt" "Hello World!"`.
    pub hello: String,
    /// `builtins.path` of a directory holding one file.
    pub small: String,
    /// A derivation output, built with `/bin/sh`, that references `hello`,
    /// `small` and `tree`.
    pub withrefs: String,
}

impl Fixtures {
    /// Make every fixture in a fresh temporary store.
    pub fn build() -> Self {
        Self::build_in(NixStore::new())
    }

    /// Make every fixture in `store`.
    pub fn build_in(store: NixStore) -> Self {
        let src = store.dir().join("src");
        let tree_dir = src.join("tree");
        std::fs::create_dir_all(&tree_dir).expect("mkdir");
        write_odd_tree(&tree_dir);
        let tree = store.add(&tree_dir);

        let single_file = src.join("single.txt");
        std::fs::write(&single_file, b"Hello World!").expect("write");
        let single = store.add(&single_file);

        let small_dir = src.join("small");
        std::fs::create_dir_all(&small_dir).expect("mkdir");
        std::fs::write(small_dir.join("a"), b"a\n").expect("write");

        let withrefs = store.build(&format!(
            r#"let
  hello = builtins.toFile "hello.txt" "Hello World!";
  small = builtins.path {{ path = {small}; name = "small"; }};
  tree = builtins.storePath "{tree}";
in derivation {{
  name = "withrefs";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  args = [ "-c" "mkdir $out; echo ${{hello}} > $out/ref; ln -s ${{small}}/a $out/link; ln -s ${{tree}}/sub $out/sub; printf '#!/bin/sh\\necho hi\\n' > $out/run; chmod +x $out/run" ];
}}
"#,
            small = small_dir.display()
        ));
        let closure = store.requisites(&withrefs);
        let find = |suffix: &str| {
            closure
                .iter()
                .find(|p| p.ends_with(suffix))
                .unwrap_or_else(|| panic!("{suffix} not in {closure:?}"))
                .clone()
        };
        let hello = find("-hello.txt");
        let small = find("-small");
        Fixtures {
            store,
            tree,
            single,
            hello,
            small,
            withrefs,
        }
    }

    /// Every fixture path.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.tree.clone(),
            self.single.clone(),
            self.hello.clone(),
            self.small.clone(),
            self.withrefs.clone(),
        ]
    }
}

/// Write, in the existing directory `dir`, a tree with every kind of node
/// and name the model allows: executables, symlinks (relative, absolute,
/// dangling, to a directory), empty files and directories, deep nesting,
/// names with spaces, newlines, non-UTF-8 bytes and 200–255 bytes, and files
/// around the chunker's bounds (16/64/256 KiB) up to several chunks.
pub fn write_odd_tree(dir: &Path) {
    let w = |p: &str, data: &[u8]| std::fs::write(dir.join(p), data).expect("write");
    let exe = |p: &str| {
        std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o755))
            .expect("chmod")
    };
    for d in [
        "bin",
        "empty-dir",
        "nested/deeper/deepest",
        "sub/deep/deeper",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    w("a", b"a\n");
    w("empty", b"");
    w("-dash", b"x");
    w("seven77", b"1234567");
    w("name with spaces", b"spaces\n");
    w("new\nline", b"newline\n");
    w("ünïcödé", "ünïcödé\n".as_bytes());
    std::fs::write(
        dir.join(OsStr::from_bytes(b"not-utf8-\xff\xfe")),
        b"bytes\n",
    )
    .expect("write");
    w(&"n".repeat(200), b"long name");
    w(&"x".repeat(255), b"longest name\n");
    w("nested/deeper/deepest/leaf", b"leaf\n");
    w("sub/deep/deeper/we ird=+name,ü", b"odd\n");
    w("bin/tool", b"#!/bin/sh\necho tool\n");
    exe("bin/tool");
    w("sub/run", b"#!/bin/sh\necho x\n");
    exe("sub/run");
    // Seed 7 starts the 1 MiB file; tests find it in the NAR by its bytes.
    w("sub/big.bin", &pseudo_random(1 << 20, 7));
    for (i, size) in [
        16 * 1024 - 1,
        16 * 1024,
        64 * 1024 + 1,
        256 * 1024,
        3 * 1024 * 1024 + 7,
    ]
    .into_iter()
    .enumerate()
    {
        w(
            &format!("blob-{size}"),
            &pseudo_random(size, 100 + i as u64),
        );
    }
    for (target, link) in [
        ("a", "link"),
        ("sub/deep", "dirlink"),
        ("/etc/hostname", "abs-link"),
        ("/nonexistent/target", "dangling"),
        ("../a", "nested/up-link"),
    ] {
        symlink(target, dir.join(link)).expect("symlink");
    }
}
