//! Constants of the worker protocol, named as in Nix's `worker-protocol.hh`
//! (docs/daemon-protocol.md), and the negotiated version.

use std::fmt;

/// First word of the handshake, client to server (`"cxin"` little-endian).
pub const WORKER_MAGIC_1: u64 = 0x6e69_7863;
/// Server's answer to [`WORKER_MAGIC_1`] (`"oixd"` little-endian).
pub const WORKER_MAGIC_2: u64 = 0x6478_696f;

/// The version we announce: 1.38, the last one Nix defines.
pub const SERVER_VERSION: ProtocolVersion = ProtocolVersion(0x126);
/// The oldest client version we serve: 1.21 (Nix 2.0–2.3).
pub const MIN_CLIENT_VERSION: ProtocolVersion = ProtocolVersion(0x115);
/// Client minors from this one up are Guix's (guix sends 0x164).
pub const GUIX_MINOR_MIN: u8 = 0x60;

/// A log line follows (`"gmlo"`).
pub const STDERR_NEXT: u64 = 0x6f6c_6d67;
/// The server asks the client for data (`"atad"`).
pub const STDERR_READ: u64 = 0x6461_7461;
/// The server sends data to the client, ExportPath only (`"\x16tad"`).
pub const STDERR_WRITE: u64 = 0x6461_7416;
/// The reply follows (`"stla"`).
pub const STDERR_LAST: u64 = 0x616c_7473;
/// The request failed; an error follows and no reply (`"ptxc"`).
pub const STDERR_ERROR: u64 = 0x6378_7470;
/// An activity starts (`"TRTS"`).
pub const STDERR_START_ACTIVITY: u64 = 0x5354_5254;
/// An activity stops (`"POTS"`).
pub const STDERR_STOP_ACTIVITY: u64 = 0x5354_4f50;
/// An activity reports a result (`"TLSR"`).
pub const STDERR_RESULT: u64 = 0x5253_4c54;

/// `Verbosity::lvlError`, the level we give errors.
pub const VERBOSITY_ERROR: u64 = 0;

/// `BuildResult::Status::AlreadyValid`.
pub const BUILD_STATUS_ALREADY_VALID: u64 = 2;

/// A protocol version: `major << 8 | minor`, with major 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion(u16);

impl ProtocolVersion {
    /// From the wire word; `None` if it does not fit (anything above
    /// 0xffff is not a version).
    pub fn from_wire(word: u64) -> Option<Self> {
        u16::try_from(word).ok().map(Self)
    }

    /// From major and minor.
    pub const fn new(major: u8, minor: u8) -> Self {
        Self((major as u16) << 8 | minor as u16)
    }

    /// The wire word.
    pub const fn to_wire(self) -> u64 {
        self.0 as u64
    }

    /// The major version (1 for every Nix and Guix).
    pub const fn major(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The minor version, on which every feature gate is decided.
    pub const fn minor(self) -> u8 {
        (self.0 & 0xff) as u8
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

/// The operations, by their numbers in `worker-protocol.hh` (docs/daemon-protocol.md),
/// with Guix's own two at 80 and 81.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)] // each variant is the op of the same name in Nix
pub enum Op {
    IsValidPath = 1,
    HasSubstitutes = 3,
    QueryPathHash = 4,
    QueryReferences = 5,
    QueryReferrers = 6,
    AddToStore = 7,
    AddTextToStore = 8,
    BuildPaths = 9,
    EnsurePath = 10,
    AddTempRoot = 11,
    AddIndirectRoot = 12,
    SyncWithGC = 13,
    FindRoots = 14,
    ExportPath = 16,
    QueryDeriver = 18,
    SetOptions = 19,
    CollectGarbage = 20,
    QuerySubstitutablePathInfo = 21,
    QueryDerivationOutputs = 22,
    QueryAllValidPaths = 23,
    QueryFailedPaths = 24,
    ClearFailedPaths = 25,
    QueryPathInfo = 26,
    ImportPaths = 27,
    QueryDerivationOutputNames = 28,
    QueryPathFromHashPart = 29,
    QuerySubstitutablePathInfos = 30,
    QueryValidPaths = 31,
    QuerySubstitutablePaths = 32,
    QueryValidDerivers = 33,
    OptimiseStore = 34,
    VerifyStore = 35,
    BuildDerivation = 36,
    AddSignatures = 37,
    NarFromPath = 38,
    AddToStoreNar = 39,
    QueryMissing = 40,
    QueryDerivationOutputMap = 41,
    RegisterDrvOutput = 42,
    QueryRealisation = 43,
    AddMultipleToStore = 44,
    AddBuildLog = 45,
    BuildPathsWithResults = 46,
    AddPermRoot = 47,
    BuiltinBuilders = 80,
    SubstituteUrls = 81,
}

impl Op {
    /// The op with this number, if there is one.
    pub fn from_wire(n: u64) -> Option<Self> {
        use Op::*;
        Some(match n {
            1 => IsValidPath,
            3 => HasSubstitutes,
            4 => QueryPathHash,
            5 => QueryReferences,
            6 => QueryReferrers,
            7 => AddToStore,
            8 => AddTextToStore,
            9 => BuildPaths,
            10 => EnsurePath,
            11 => AddTempRoot,
            12 => AddIndirectRoot,
            13 => SyncWithGC,
            14 => FindRoots,
            16 => ExportPath,
            18 => QueryDeriver,
            19 => SetOptions,
            20 => CollectGarbage,
            21 => QuerySubstitutablePathInfo,
            22 => QueryDerivationOutputs,
            23 => QueryAllValidPaths,
            24 => QueryFailedPaths,
            25 => ClearFailedPaths,
            26 => QueryPathInfo,
            27 => ImportPaths,
            28 => QueryDerivationOutputNames,
            29 => QueryPathFromHashPart,
            30 => QuerySubstitutablePathInfos,
            31 => QueryValidPaths,
            32 => QuerySubstitutablePaths,
            33 => QueryValidDerivers,
            34 => OptimiseStore,
            35 => VerifyStore,
            36 => BuildDerivation,
            37 => AddSignatures,
            38 => NarFromPath,
            39 => AddToStoreNar,
            40 => QueryMissing,
            41 => QueryDerivationOutputMap,
            42 => RegisterDrvOutput,
            43 => QueryRealisation,
            44 => AddMultipleToStore,
            45 => AddBuildLog,
            46 => BuildPathsWithResults,
            47 => AddPermRoot,
            80 => BuiltinBuilders,
            81 => SubstituteUrls,
            _ => return None,
        })
    }

    /// The wire number.
    pub fn to_wire(self) -> u64 {
        self as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_spell_their_ascii() {
        assert_eq!(&WORKER_MAGIC_1.to_le_bytes()[..4], b"cxin");
        assert_eq!(&WORKER_MAGIC_2.to_le_bytes()[..4], b"oixd");
        assert_eq!(&STDERR_LAST.to_le_bytes()[..4], b"stla");
        assert_eq!(&STDERR_ERROR.to_le_bytes()[..4], b"ptxc");
        assert_eq!(&STDERR_NEXT.to_le_bytes()[..4], b"gmlo");
        assert_eq!(&STDERR_READ.to_le_bytes()[..4], b"atad");
    }

    #[test]
    fn versions_and_ops() {
        assert_eq!(SERVER_VERSION.to_string(), "1.38");
        assert_eq!(ProtocolVersion::from_wire(0x164).unwrap().minor(), 100);
        assert_eq!(ProtocolVersion::from_wire(0x1_0000), None);
        for n in 0..100 {
            if let Some(op) = Op::from_wire(n) {
                assert_eq!(op.to_wire(), n);
            }
        }
        assert_eq!(Op::from_wire(2), None);
    }
}
