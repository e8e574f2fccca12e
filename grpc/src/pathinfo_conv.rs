//! The one place where `PathInfo` meets its protobuf message. The
//! conversion itself belongs to storefs-store (its `TryFrom`/`From`
//! impls, which validate every field); these wrappers give the gRPC code a
//! single call site.

use storefs_store::proto;
use storefs_store::{PathInfo, PathInfoError};

/// The message for `info`.
pub(crate) fn to_proto(info: &PathInfo) -> proto::PathInfo {
    proto::PathInfo::from(info)
}

/// The validated `PathInfo` of a received message.
pub(crate) fn from_proto(msg: proto::PathInfo) -> Result<PathInfo, PathInfoError> {
    PathInfo::try_from(msg)
}
