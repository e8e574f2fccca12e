//! Why an import, or one path of it, failed. One set of errors for every
//! source; a variant names the source's file or socket where it matters.

use super::cache_info::CacheInfoError;
use super::source::SourceError;
use crate::SigningError;
use crate::StorePathError;
use crate::nar::NarReadError;

/// An error of a source's own kind (a daemon connection's, say), kept as
/// the cause of an import error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the whole import could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A binary cache could not be reached or read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The cache has no `nix-cache-info`: probably not a binary cache.
    #[error("{0} has no nix-cache-info; is it a binary cache?")]
    NoCacheInfo(String),
    /// The cache's `nix-cache-info` is malformed.
    #[error("{cache}")]
    CacheInfo {
        /// The cache.
        cache: String,
        /// What is wrong with it.
        #[source]
        source: CacheInfoError,
    },
    /// The source holds paths of another store directory.
    #[error("the source {cache} is for store directory {theirs}, but ours is {ours}")]
    StoreDirMismatch {
        /// The source.
        cache: String,
        /// Its store directory.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// Guix signatures are checked and no authorized key was given: every
    /// path would be refused.
    #[error("no authorized Ed25519 key was given")]
    NoAuthorizedKeys,
    /// A trusted key that does not parse.
    #[error("invalid trusted public key {key:?}")]
    BadKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        #[source]
        source: SigningError,
    },
    /// A path argument that is not a store path of our store directory.
    #[error("invalid store path argument")]
    BadPath(#[from] StorePathError),
    /// A source reached over a connection of its own (a nix-daemon
    /// socket) could not be reached or answered wrongly.
    #[error("{from}")]
    Connection {
        /// The source: its socket or URL.
        from: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// The PathInfoService failed while looking paths up.
    #[error("path info service")]
    Store(#[source] storefs_castore::Error),
}

/// One path that was not imported.
#[derive(Debug)]
pub struct PathFailure {
    /// The path: full store path when known, else the hash part.
    pub path: String,
    /// Why.
    pub error: PathImportError,
}

/// Why one path was not imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathImportError {
    /// The binary cache has no narinfo for it.
    #[error("not in the binary cache ({0}.narinfo is absent)")]
    NotInCache(String),
    /// The source daemon does not hold it as a valid path.
    #[error("not valid on the source daemon")]
    NotValid,
    /// Fetching its narinfo or NAR from a binary cache failed.
    #[error(transparent)]
    Fetch(#[from] SourceError),
    /// Asking a source over its connection (a nix-daemon socket) failed.
    #[error("{from}")]
    Connection {
        /// The source: its socket or URL.
        from: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// Its narinfo does not parse.
    #[error("malformed narinfo {file}")]
    BadNarInfo {
        /// The narinfo file.
        file: String,
        /// What is wrong.
        #[source]
        source: crate::narinfo::NarInfoError,
    },
    /// The metadata a source sent for it is not valid (a path, hash or
    /// signature that does not parse).
    #[error("invalid metadata from {from}")]
    BadMetadata {
        /// The source.
        from: String,
        /// What is wrong.
        #[source]
        source: BoxError,
    },
    /// A `guix publish` narinfo that does not parse, or whose signature
    /// the authorized keys refuse.
    #[error("narinfo {file}")]
    RefusedGuixNarInfo {
        /// The narinfo file.
        file: String,
        /// Why.
        #[source]
        source: crate::guix::GuixNarInfoError,
    },
    /// No NAR is offered in a compression storefs decodes.
    #[error("no NAR in a compression storefs decodes (offered: {0})")]
    NoUsableOffer(String),
    /// The source describes another path than the one asked for.
    #[error("the source describes {found}, not {expected}")]
    WrongPath {
        /// What was asked for.
        expected: String,
        /// What it names.
        found: String,
    },
    /// Signatures are checked and the source does not vouch for it.
    #[error(
        "no valid signature by a trusted key (signed by: {signers}); pass the key with --trusted-public-key, or --no-check-sigs"
    )]
    Untrusted {
        /// Names of the keys that signed it, or `nobody`.
        signers: String,
    },
    /// A `Compression` we cannot decode.
    #[error("unsupported compression {0:?} (supported: none, xz, zstd, bzip2, gzip)")]
    UnsupportedCompression(String),
    /// The narinfo's `URL` names a file the cache does not have.
    #[error("NAR file {0} is absent from the cache")]
    NarMissing(String),
    /// The compressed file's size differs from `FileSize`.
    #[error("NAR file {url}: size {actual} but the narinfo says FileSize {expected}")]
    FileSize {
        /// The NAR file.
        url: String,
        /// `FileSize`.
        expected: u64,
        /// What was fetched.
        actual: u64,
    },
    /// The compressed file's hash differs from `FileHash`.
    #[error("NAR file {url}: sha256 {actual} but the narinfo says FileHash {expected}")]
    FileHash {
        /// The NAR file.
        url: String,
        /// `FileHash`, nix32.
        expected: String,
        /// What was fetched, nix32.
        actual: String,
    },
    /// The NAR's size differs from the declared `NarSize`.
    #[error("NAR size {actual} but the source declared NarSize {expected}")]
    NarSize {
        /// The declared size.
        expected: u64,
        /// What was read.
        actual: u64,
    },
    /// The NAR's hash differs from the declared `NarHash`.
    #[error("NAR hash sha256:{actual} but the source declared NarHash sha256:{expected}")]
    NarHash {
        /// The declared hash, nix32.
        expected: String,
        /// What was read, nix32.
        actual: String,
    },
    /// The NAR is malformed, or decompression failed.
    #[error("reading NAR {url}")]
    BadNar {
        /// The NAR file, or the path on a daemon.
        url: String,
        /// What the NAR reader or decompressor said.
        #[source]
        source: NarReadError,
    },
    /// Reading the rest of a NAR file failed.
    #[error("reading NAR file {url}")]
    NarFile {
        /// The NAR file.
        url: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Storing failed.
    #[error("storing")]
    Store(#[source] storefs_castore::Error),
    /// A path it references failed, so it cannot be recorded.
    #[error("its reference {0} could not be imported")]
    ReferenceFailed(String),
    /// The import task of this path died (a bug); nothing was recorded.
    #[error("internal error: {0}")]
    Internal(String),
    /// It references paths that (transitively) reference it.
    #[error("reference cycle among its references")]
    ReferenceCycle,
}
