//! storefs-grpc: the snix-compatible gRPC services, server and clients.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Generated tonic services and their request/response messages.
#[allow(missing_docs)] // generated code; the schemas document each field
pub mod proto {
    /// `snix.castore.v1` services.
    pub mod castore {
        include!(concat!(env!("OUT_DIR"), "/snix.castore.v1.rs"));
    }
    /// `snix.store.v1` services.
    pub mod store {
        include!(concat!(env!("OUT_DIR"), "/snix.store.v1.rs"));
    }
}
