//! The one place where `PathInfo` meets its protobuf message. The
//! conversion itself belongs to storefs-store (its `TryFrom`/`From`
//! impls); these wrappers give the gRPC code a single call site.

use storefs_store::pathinfo::PathInfo;
use storefs_store::proto;

/// The message for `info`.
pub(crate) fn to_proto(info: &PathInfo) -> Result<proto::PathInfo, String> {
    let _ = info;
    Err("PathInfo conversion is not available yet".into())
}

/// The validated `PathInfo` of a received message.
pub(crate) fn from_proto(msg: proto::PathInfo) -> Result<PathInfo, String> {
    let _ = msg;
    Err("PathInfo conversion is not available yet".into())
}
