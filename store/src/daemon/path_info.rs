//! The wire form of a path's metadata (Nix's `UnkeyedValidPathInfo`),
//! written by QueryPathInfo and read from AddToStoreNar and
//! AddMultipleToStore (server) or QueryPathInfo replies (client).
//!
//! ```text
//! string deriver ("" = none), string narHash (base16), [P] references,
//! u64 registrationTime, u64 narSize,
//! then from 1.16 on: u64 ultimate, [string] sigs, string ca ("" = none)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use storefs_castore::Node;
use tokio::io::AsyncRead;

use super::compat;
use super::error::OpError;
use super::wire::{self, WireError, limits};
use crate::pathinfo::{PathInfo, Signature};
use crate::store_path::{StoreDir, StorePath};

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
        wire::put_strings(out, info.signatures.iter().map(signature_to_string));
        let ca = info
            .ca
            .as_ref()
            .map(compat::ca_to_string)
            .unwrap_or_default();
        wire::put_str(out, &ca);
    }
}

/// `name:base64`, as Nix prints a signature.
pub(crate) fn signature_to_string(sig: &Signature) -> String {
    format!("{}:{}", sig.name, BASE64.encode(sig.bytes))
}

/// Parse `name:base64` of a 64-byte ed25519 signature.
pub(crate) fn parse_signature(s: &str) -> Result<Signature, OpError> {
    let bad = |why: &str| OpError(format!("invalid signature '{s}': {why}"));
    let (name, b64) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
    if name.is_empty() {
        return Err(bad("empty key name"));
    }
    let bytes = BASE64.decode(b64).map_err(|_| bad("not base64"))?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| bad("not a 64-byte ed25519 signature"))?;
    Ok(Signature {
        name: name.to_owned(),
        bytes,
    })
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
        compat::parse_sha256(&self.nar_hash)
            .ok_or_else(|| OpError(format!("invalid NAR hash '{}'", self.nar_hash)))
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
                compat::parse_ca(s)
                    .ok_or_else(|| OpError(format!("invalid content address '{s}'")))?,
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
