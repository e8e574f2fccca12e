//! One server-side connection after the handshake: owns the buffered
//! halves of the stream and writes replies and errors in the format the
//! negotiated version and dialect call for (docs/daemon-protocol.md).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use super::error::{ConnectionError, OpError};
use super::handshake::Dialect;
use super::protocol::{ProtocolVersion, STDERR_ERROR, STDERR_LAST, VERBOSITY_ERROR};
use super::wire;

/// The read half, buffered.
pub(crate) type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
/// The write half, buffered.
pub(crate) type Writer = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

/// A connection in the op loop.
pub(crate) struct Conn {
    /// Requests come in here.
    pub r: Reader,
    /// Replies go out here; flushed at the end of every reply.
    pub w: Writer,
    /// The negotiated version, on which every field is gated.
    pub version: ProtocolVersion,
    /// Nix or Guix: some replies differ.
    pub dialect: Dialect,
    /// Whether this peer may skip signature checks.
    pub trusted: bool,
}

impl Conn {
    /// The negotiated minor version.
    pub fn minor(&self) -> u8 {
        self.version.minor()
    }

    /// Whether the peer is a Guix client.
    pub fn is_guix(&self) -> bool {
        self.dialect == Dialect::Guix
    }

    /// Send STDERR_LAST and `reply`, and flush.
    pub async fn reply(&mut self, reply: &[u8]) -> Result<(), ConnectionError> {
        self.w
            .write_all(&STDERR_LAST.to_le_bytes())
            .await
            .map_err(ConnectionError::Write)?;
        self.w
            .write_all(reply)
            .await
            .map_err(ConnectionError::Write)?;
        self.flush().await
    }

    /// Send the outcome of a request: STDERR_LAST and the reply, or
    /// STDERR_ERROR with the message.
    pub async fn finish(
        &mut self,
        outcome: Result<Vec<u8>, OpError>,
    ) -> Result<(), ConnectionError> {
        match outcome {
            Ok(reply) => self.reply(&reply).await,
            Err(e) => self.error(&e.0).await,
        }
    }

    /// Send STDERR_ERROR with `msg` in the format of this connection, and flush.
    pub async fn error(&mut self, msg: &str) -> Result<(), ConnectionError> {
        tracing::debug!(msg, "sending STDERR_ERROR");
        let out = encode_error(self.version, self.dialect, msg);
        self.w
            .write_all(&out)
            .await
            .map_err(ConnectionError::Write)?;
        self.flush().await
    }

    /// Flush buffered output.
    pub async fn flush(&mut self) -> Result<(), ConnectionError> {
        self.w.flush().await.map_err(ConnectionError::Write)
    }
}

/// STDERR_ERROR and its payload: structured from 1.26 on, message and
/// exit status before, message and a status of at least 1 for Guix.
pub(crate) fn encode_error(version: ProtocolVersion, dialect: Dialect, msg: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + msg.len());
    wire::put_u64(&mut out, STDERR_ERROR);
    if dialect == Dialect::Nix && version.minor() >= 26 {
        wire::put_str(&mut out, "Error");
        wire::put_u64(&mut out, VERBOSITY_ERROR);
        wire::put_str(&mut out, "Error"); // the old name field, ignored
        wire::put_str(&mut out, msg);
        wire::put_u64(&mut out, 0); // no position
        wire::put_u64(&mut out, 0); // no traces
    } else {
        wire::put_str(&mut out, msg);
        wire::put_u64(&mut out, 1); // exit status
    }
    out
}
