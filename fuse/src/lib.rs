//! storefs-fuse: the read-only lazy filesystem over a root of store paths.
//! Not built yet: the mount comes with its own issue.
#![deny(missing_docs)]
