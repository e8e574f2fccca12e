//! The `.ls` listing of a store path (version 1), as Nix writes it with
//! `write-nar-listing=true` and reads it for `nix store ls`/`cat`:
//!
//! ```text
//! {"version":1,"root":NODE}
//! NODE = {"type":"regular","size":N[,"executable":true],"narOffset":N}
//!      | {"type":"directory","entries":{NAME:NODE,...}}
//!      | {"type":"symlink","target":"..."}
//! ```
//! `narOffset` is where the file's data starts in the NAR. It follows from
//! the NAR grammar and the tree's metadata alone; no blob is read.

use serde_json::{Map, Value, json};
use storefs_castore::{Error, Node};

use storefs_store::nar::wire::{
    MAGIC, TOK_CLOSE, TOK_DIRECTORY, TOK_ENTRY, TOK_NAME, TOK_NODE, TOK_OPEN, TOK_SYMLINK,
    TOK_TARGET, TOK_TYPE,
};

use crate::nar::{Tree, file_header, padding, str_len};

/// Deepest directory nesting listed; a real tree is bounded by `PATH_MAX`
/// (4096 bytes, so at most 2048 levels of one-letter names).
pub const MAX_DEPTH: usize = 2048;

/// Length of a token's `str(token)` in the NAR.
fn tok(token: &[u8]) -> u64 {
    str_len(token.len() as u64)
}

/// The listing of `root` as JSON text.
pub fn listing(tree: &Tree, root: &Node) -> Result<String, Error> {
    let (node, _) = list_node(tree, root, tok(MAGIC), 0)?;
    Ok(json!({"version": 1, "root": node}).to_string())
}

/// A node's listing and its NAR length, for a node starting at `offset`.
fn list_node(tree: &Tree, node: &Node, offset: u64, depth: usize) -> Result<(Value, u64), Error> {
    // "(" "type" and the type string, common to all nodes.
    let open = tok(TOK_OPEN) + tok(TOK_TYPE);
    let close = tok(TOK_CLOSE);
    match node {
        Node::File {
            size, executable, ..
        } => {
            let header = file_header(*size, *executable).len() as u64;
            let mut v = Map::new();
            v.insert("type".into(), json!("regular"));
            v.insert("size".into(), json!(size));
            if *executable {
                v.insert("executable".into(), json!(true));
            }
            v.insert("narOffset".into(), json!(offset + header));
            Ok((Value::Object(v), header + size + padding(*size) + close))
        }
        Node::Symlink { target } => {
            let v = json!({
                "type": "symlink",
                "target": String::from_utf8_lossy(target.as_bytes()),
            });
            let len = open + tok(TOK_SYMLINK) + tok(TOK_TARGET) + tok(target.as_bytes()) + close;
            Ok((v, len))
        }
        Node::Directory { digest, .. } => {
            if depth >= MAX_DEPTH {
                return Err(Error::InvalidRequest(format!(
                    "directory tree deeper than {MAX_DEPTH} levels"
                )));
            }
            let dir = tree.get(digest)?;
            let mut len = open + tok(TOK_DIRECTORY);
            let mut entries = Map::new();
            for (name, child) in dir.entries() {
                len += tok(TOK_ENTRY)
                    + tok(TOK_OPEN)
                    + tok(TOK_NAME)
                    + tok(name.as_bytes())
                    + tok(TOK_NODE);
                let (v, child_len) = list_node(tree, child, offset + len, depth + 1)?;
                len += child_len + close;
                entries.insert(String::from_utf8_lossy(name.as_bytes()).into_owned(), v);
            }
            len += close;
            Ok((json!({"type": "directory", "entries": entries}), len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefs_castore::B3Digest;

    #[test]
    fn single_file_matches_nix() {
        // docs/nix-formats.md (binary caches), recorded from Nix 2.8.
        let root = Node::File {
            digest: B3Digest::of(b"Hello World!"),
            size: 12,
            executable: false,
        };
        assert_eq!(
            listing(&Tree::default(), &root).unwrap(),
            r#"{"root":{"narOffset":96,"size":12,"type":"regular"},"version":1}"#
        );
    }
}
