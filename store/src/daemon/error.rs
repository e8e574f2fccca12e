//! Errors of the daemon protocol, split by what they do to the connection.

use std::io;

use super::protocol::ProtocolVersion;
use super::wire::WireError;

/// An error that ends a connection: the stream is broken or out of sync,
/// or the peer is not speaking the protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A wire value could not be read (truncated, oversized, bad padding).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Writing to the peer failed.
    #[error("writing to the peer")]
    Write(#[source] io::Error),
    /// The first word was not the expected magic.
    #[error("bad magic {got:#x} (expected {expected:#x}): not a Nix daemon protocol peer")]
    BadMagic {
        /// What arrived.
        got: u64,
        /// What the protocol requires.
        expected: u64,
    },
    /// The peer's protocol version is not one we speak.
    #[error("protocol version {0:#x} is not supported (need 1.21 or later, major 1)")]
    UnsupportedVersion(u64),
    /// An op we cannot skip over (its arguments have no generic length),
    /// so the connection is closed after telling the peer.
    #[error("unsupported operation {name} ({number})")]
    UnsupportedOp {
        /// The op's name, or "unknown".
        name: String,
        /// Its number.
        number: u64,
    },
    /// A framed stream could not be read to its end.
    #[error("framed stream of {op}")]
    Framing {
        /// The op whose data it was.
        op: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// A NAR stream failed after its first bytes were sent; the peer
    /// cannot be told, so the connection ends.
    #[error("streaming the NAR of {path}")]
    NarStream {
        /// The store path.
        path: String,
        /// What failed.
        source: storefs_castore::BoxError,
    },
    /// The server answered with STDERR_ERROR (client side).
    #[error("daemon error: {0}")]
    Remote(String),
    /// The peer sent a message we did not expect (client side).
    #[error("unexpected {what} {value:#x} from the daemon")]
    Unexpected {
        /// What was being read.
        what: &'static str,
        /// What came.
        value: u64,
    },
    /// The negotiated version lacks something we need.
    #[error("{what} needs protocol {need} but the peer speaks {have}")]
    VersionTooOld {
        /// What is needed.
        what: &'static str,
        /// The version it needs.
        need: ProtocolVersion,
        /// The version negotiated.
        have: ProtocolVersion,
    },
    /// The server refused the client at the end of the handshake (not
    /// allowed, too many connections); the client was sent this message.
    #[error("refused at the handshake: {0}")]
    Refused(String),
}

impl ConnectionError {
    /// Whether the peer simply went away, which is logged at debug level.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ConnectionError::Wire(e) => e.is_disconnect(),
            ConnectionError::Write(e) | ConnectionError::Framing { source: e, .. } => matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
            ),
            // Logged where the refusal was decided.
            ConnectionError::Refused(_) => true,
            _ => false,
        }
    }
}

/// An error in carrying out one request whose arguments were all read: it
/// is sent to the client as STDERR_ERROR and the connection stays open.
/// The message is what the client prints, so it says what failed and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl OpError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl From<storefs_castore::Error> for OpError {
    fn from(e: storefs_castore::Error) -> Self {
        if e.is_data_loss() {
            tracing::error!(error = %storefs_castore::Report(&e), "DATA_LOSS: corrupt data in this daemon's own store");
        }
        OpError(format!("storefs: {e}"))
    }
}
