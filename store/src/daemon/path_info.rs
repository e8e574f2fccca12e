//! The wire form of a path's metadata (Nix's `UnkeyedValidPathInfo`),
//! written by QueryPathInfo and read from AddToStoreNar and
//! AddMultipleToStore (server) or QueryPathInfo replies (client).
//!
//! ```text
//! string deriver ("" = none), string narHash (base16), [P] references,
//! u64 registrationTime, u64 narSize,
//! then from 1.16 on: u64 ultimate, [string] sigs, string ca ("" = none)
//! ```

use storefs_castore::Node;
use tokio::io::AsyncRead;

use super::error::OpError;
use super::wire::{self, WireError, limits};
use crate::{ContentAddress, HashAlgo, NixHash, PathInfo, Signature};
use crate::{StoreDir, StorePath};

/// Append the unkeyed fields of `info`; the 1.16 fields only if `with_1_16`.
pub(crate) fn put_unkeyed(
    out: &mut Vec<u8>,
    info: &PathInfo,
    store_dir: &StoreDir,
    with_1_16: bool,
) {
    let deriver = info
        .deriver
        .as_ref()
        .map(|d| d.to_absolute(store_dir))
        .unwrap_or_default();
    wire::put_str(out, &deriver);
    wire::put_str(out, &hex::encode(info.nar_sha256));
    let mut refs: Vec<String> = info
        .references
        .iter()
        .map(|r| r.to_absolute(store_dir))
        .collect();
    refs.sort();
    refs.dedup();
    wire::put_strings(out, &refs);
    wire::put_u64(out, 0); // registrationTime: storefs does not record one
    wire::put_u64(out, info.nar_size);
    if with_1_16 {
        wire::put_bool(out, false); // ultimate: nothing here was built locally
        wire::put_strings(out, info.signatures.iter().map(|s| s.to_string()));
        let ca = info
            .ca
            .as_ref()
            .map(|ca| ca.to_string())
            .unwrap_or_default();
        wire::put_str(out, &ca);
    }
}

/// Parse `name:base64` of a 64-byte ed25519 signature.
pub(crate) fn parse_signature(s: &str) -> Result<Signature, OpError> {
    Signature::parse(s).map_err(|e| OpError(format!("invalid signature '{s}': {e}")))
}

/// A path's metadata as it travels on the wire (Nix's
/// `UnkeyedValidPathInfo`), not yet checked: strings as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawPathInfo {
    /// Full path of the deriver, `""` if unknown.
    pub deriver: String,
    /// The NAR's sha256 (daemons send bare base16).
    pub nar_hash: String,
    /// Full paths of the references.
    pub references: Vec<String>,
    /// When the path became valid (unix seconds); 0 if unknown.
    pub registration_time: u64,
    /// Length of the NAR.
    pub nar_size: u64,
    /// Whether the daemon built it itself (1.16+).
    pub ultimate: bool,
    /// Signatures, `name:base64` (1.16+).
    pub sigs: Vec<String>,
    /// Content address, `""` if none (1.16+).
    pub ca: String,
}

impl RawPathInfo {
    /// Read the fields; the 1.16 ones only if `with_1_16`.
    pub async fn read<R: AsyncRead + Unpin + ?Sized>(
        r: &mut R,
        with_1_16: bool,
    ) -> Result<Self, WireError> {
        let mut info = RawPathInfo {
            deriver: wire::read_string(r, limits::MAX_PATH_LEN, "deriver").await?,
            nar_hash: wire::read_string(r, limits::MAX_STRING_LEN, "narHash").await?,
            references: wire::read_strings(
                r,
                limits::MAX_LIST_COUNT,
                limits::MAX_PATH_LEN,
                "references",
            )
            .await?,
            registration_time: wire::read_u64(r, "registrationTime").await?,
            nar_size: wire::read_u64(r, "narSize").await?,
            ..Default::default()
        };
        if with_1_16 {
            info.ultimate = wire::read_bool(r, "ultimate").await?;
            info.sigs =
                wire::read_strings(r, limits::MAX_SIGNATURES, limits::MAX_STRING_LEN, "sigs")
                    .await?;
            info.ca = wire::read_string(r, limits::MAX_STRING_LEN, "ca").await?;
        }
        Ok(info)
    }

    /// The NAR's sha256, from any form Nix reads (base16 as sent, nix32,
    /// base64, SRI, with or without `sha256:`).
    pub fn nar_sha256(&self) -> Result<[u8; 32], OpError> {
        let h = NixHash::parse_with_algo(&self.nar_hash, HashAlgo::Sha256)
            .map_err(|e| OpError(format!("invalid NAR hash '{}': {e}", self.nar_hash)))?;
        let mut out = [0u8; 32];
        // parse_with_algo(.., Sha256) returns a digest of sha256's length.
        out.copy_from_slice(h.digest());
        Ok(out)
    }

    /// Check every field and build the path info of `store_path`, whose
    /// contents are `node`.
    pub fn into_path_info(
        self,
        store_path: StorePath,
        node: Node,
        store_dir: &StoreDir,
    ) -> Result<PathInfo, OpError> {
        let nar_sha256 = self.nar_sha256()?;
        let parse = |s: &str| {
            store_dir
                .parse_path(s)
                .map_err(|e| OpError(format!("invalid store path '{s}': {e}")))
        };
        let deriver = match self.deriver.as_str() {
            "" => None,
            d => Some(parse(d)?),
        };
        let references = self
            .references
            .iter()
            .map(|s| parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let signatures = self
            .sigs
            .iter()
            .map(|s| parse_signature(s))
            .collect::<Result<Vec<_>, _>>()?;
        let ca = match self.ca.as_str() {
            "" => None,
            s => Some(
                ContentAddress::parse(s)
                    .map_err(|e| OpError(format!("invalid content address: {e}")))?,
            ),
        };
        Ok(PathInfo {
            store_path,
            node,
            references,
            nar_size: self.nar_size,
            nar_sha256,
            signatures,
            deriver,
            ca,
        })
    }
}
