//! The NAR grammar: tokens and encoding rules, with no I/O. Both the
//! [writer](super::write_nar) and the [reader](super::read_nar) use these.
//!
//! ```text
//! nar       = str("nix-archive-1") node
//! node      = str("(") str("type") body str(")")
//! body      = str("regular") [str("executable") str("")] str("contents") contents
//!           | str("symlink") str("target") str(target)
//!           | str("directory") { str("entry") str("(") str("name") str(name)
//!                                 str("node") node str(")") }
//! str(s)    = u64le(len(s)) s zero-padding-to-8
//! contents  = str(file bytes)        ; streamed, any length
//! ```
//!
//! Directory entries are strictly increasing in name bytes. A name is
//! 1–255 bytes, not `.` or `..`, without `/` or NUL; a target is 1–4095
//! bytes without NUL (castore's rules, which Nix's also are). The bounds
//! the reader applies to untrusted input are in [`super::limits`].

/// The archive magic, the first string of every NAR.
pub const MAGIC: &[u8] = b"nix-archive-1";
/// Opens a node or an entry.
pub const TOK_OPEN: &[u8] = b"(";
/// Closes a node or an entry.
pub const TOK_CLOSE: &[u8] = b")";
/// Introduces the node type.
pub const TOK_TYPE: &[u8] = b"type";
/// Node type of a regular file.
pub const TOK_REGULAR: &[u8] = b"regular";
/// Marks a regular file executable; followed by an empty string.
pub const TOK_EXECUTABLE: &[u8] = b"executable";
/// Introduces a regular file's contents.
pub const TOK_CONTENTS: &[u8] = b"contents";
/// Node type of a symlink.
pub const TOK_SYMLINK: &[u8] = b"symlink";
/// Introduces a symlink's target.
pub const TOK_TARGET: &[u8] = b"target";
/// Node type of a directory.
pub const TOK_DIRECTORY: &[u8] = b"directory";
/// Introduces one directory entry.
pub const TOK_ENTRY: &[u8] = b"entry";
/// Introduces an entry's name.
pub const TOK_NAME: &[u8] = b"name";
/// Introduces an entry's node.
pub const TOK_NODE: &[u8] = b"node";

/// The longest token of the grammar (`nix-archive-1`, 13 bytes). The reader
/// refuses a longer string where it expects a token without reading it.
pub const MAX_TOKEN_LEN: usize = 13;

/// Zero bytes to pad a string of `len` bytes to a multiple of 8.
pub const fn padding_len(len: u64) -> u64 {
    (8 - len % 8) % 8
}

/// Eight zero bytes: the source of all padding.
pub const ZEROS: [u8; 8] = [0; 8];

/// Append `str(s)`: length, bytes, padding.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len() as u64;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s);
    // padding_len is < 8, so the cast cannot truncate.
    out.extend_from_slice(&ZEROS[..padding_len(len) as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_padded_to_eight() {
        let mut out = Vec::new();
        put_str(&mut out, b"");
        assert_eq!(out, [0u8; 8]);
        out.clear();
        put_str(&mut out, MAGIC);
        assert_eq!(out.len(), 8 + 16);
        assert_eq!(&out[..8], &13u64.to_le_bytes());
        assert_eq!(&out[8..21], MAGIC);
        assert_eq!(&out[21..], &[0, 0, 0]);
        out.clear();
        put_str(&mut out, b"contents");
        assert_eq!(out.len(), 16, "8-byte strings take no padding");
        assert_eq!(
            (0..=16).map(padding_len).collect::<Vec<_>>(),
            [0, 7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0]
        );
    }

    #[test]
    fn max_token_len_is_the_longest_token() {
        let all = [
            MAGIC,
            TOK_OPEN,
            TOK_CLOSE,
            TOK_TYPE,
            TOK_REGULAR,
            TOK_EXECUTABLE,
            TOK_CONTENTS,
            TOK_SYMLINK,
            TOK_TARGET,
            TOK_DIRECTORY,
            TOK_ENTRY,
            TOK_NAME,
            TOK_NODE,
        ];
        assert_eq!(all.iter().map(|t| t.len()).max(), Some(MAX_TOKEN_LEN));
    }
}
