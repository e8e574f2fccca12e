//! Bounds on NAR input, in one place. The reader checks each before it
//! allocates or recurses; the writer enforces the same ones, so it never
//! emits a NAR the reader would refuse.

/// Longest entry name, in bytes (castore's and Nix's limit).
pub const MAX_NAME_LEN: usize = storefs_castore::MAX_NAME_LEN;

/// Longest symlink target, in bytes (castore's limit: PATH_MAX less NUL).
pub const MAX_TARGET_LEN: usize = storefs_castore::MAX_SYMLINK_TARGET_LEN;

/// Deepest nesting of directories, the root directory counting as 1.
/// Reader and writer keep an explicit stack, so this bounds memory rather
/// than guarding the call stack; 256 is far beyond real store paths (a
/// path of 256 one-byte names already needs 512 bytes).
pub const MAX_DEPTH: usize = 256;
