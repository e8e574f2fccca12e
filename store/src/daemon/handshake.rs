//! The handshake (docs/daemon-protocol.md), server and client side.
//!
//! ```text
//! C→S u64 WORKER_MAGIC_1
//! S→C u64 WORKER_MAGIC_2, u64 S           ; before we know C
//! C→S u64 C
//! N >= 38: C→S [string] features, S→C [string] features
//! N >= 14: C→S u64 sendCpu (u64 cpu if non-zero)
//! N >= 11: C→S u64 reserveSpace
//! N >= 33: S→C string version             ; not for Guix
//! N >= 35: S→C u64 trust                  ; not for Guix
//! S→C STDERR_LAST
//! ```
//! N = min(C, S). A client minor of 0x60 or more is Guix, which gates on S
//! alone and never reads a version string or trust.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::error::ConnectionError;
use super::protocol::{
    GUIX_MINOR_MIN, MIN_CLIENT_VERSION, ProtocolVersion, SERVER_VERSION, STDERR_LAST,
    WORKER_MAGIC_1, WORKER_MAGIC_2,
};
use super::wire::{self, limits};

/// Which family of client is on the other end; the replies of some ops
/// differ (docs/daemon-protocol.md, Guix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Nix (and Lix): everything gated on the negotiated version.
    Nix,
    /// Guix: the 2012-era protocol of guix-daemon.
    Guix,
}

/// What a client is told about its trust (protocol ≥ 1.35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustLevel {
    /// Trusted: may skip signature checks.
    Trusted,
    /// Not trusted: uploads need signatures by trusted keys or a content
    /// address.
    NotTrusted,
}

impl TrustLevel {
    fn to_wire(self) -> u64 {
        match self {
            TrustLevel::Trusted => 1,
            TrustLevel::NotTrusted => 2,
        }
    }
}

/// The outcome of a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The version both sides speak: min(C, S).
    pub version: ProtocolVersion,
    /// Nix or Guix.
    pub dialect: Dialect,
    /// The features the peer offered (1.38); we agree to none.
    pub peer_features: Vec<String>,
    /// The peer daemon's version string (client side, 1.33+).
    pub daemon_version: Option<String>,
    /// What the daemon said of our trust (client side, 1.35+): 0 unknown,
    /// 1 trusted, 2 not trusted.
    pub trust: Option<u64>,
}

/// Run the server side of the handshake, up to and including the
/// STDERR_LAST that ends it; or, with a `refusal`, end it with that error
/// instead (which the client prints) and return [`ConnectionError::Refused`].
pub async fn server_handshake<R, W>(
    r: &mut R,
    w: &mut W,
    daemon_version: &str,
    trust: TrustLevel,
    refusal: Option<&str>,
) -> Result<Negotiated, ConnectionError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let magic = wire::read_u64(r, "client magic").await?;
    if magic != WORKER_MAGIC_1 {
        return Err(ConnectionError::BadMagic {
            got: magic,
            expected: WORKER_MAGIC_1,
        });
    }
    let mut out = Vec::with_capacity(64);
    wire::put_u64(&mut out, WORKER_MAGIC_2);
    wire::put_u64(&mut out, SERVER_VERSION.to_wire());
    send(w, &mut out).await?;

    let word = wire::read_u64(r, "client version").await?;
    let client = ProtocolVersion::from_wire(word)
        .filter(|v| v.major() == 1 && *v >= MIN_CLIENT_VERSION)
        .ok_or(ConnectionError::UnsupportedVersion(word))?;
    let dialect = if client.minor() >= GUIX_MINOR_MIN {
        Dialect::Guix
    } else {
        Dialect::Nix
    };
    let version = client.min(SERVER_VERSION);
    let minor = version.minor();

    let mut peer_features = Vec::new();
    if dialect == Dialect::Nix && minor >= 38 {
        peer_features = wire::read_strings(
            r,
            limits::MAX_OPTIONS,
            limits::MAX_STRING_LEN,
            "client features",
        )
        .await?;
        wire::put_strings(&mut out, std::iter::empty::<&str>());
        send(w, &mut out).await?;
    }
    if minor >= 14 && wire::read_bool(r, "sendCpu").await? {
        wire::read_u64(r, "cpu affinity").await?;
    }
    if minor >= 11 {
        wire::read_u64(r, "reserveSpace").await?;
    }
    if dialect == Dialect::Nix {
        if minor >= 33 {
            wire::put_str(&mut out, daemon_version);
        }
        if minor >= 35 {
            wire::put_u64(&mut out, trust.to_wire());
        }
    }
    if let Some(msg) = refusal {
        out.extend(super::conn::encode_error(version, dialect, msg));
        send(w, &mut out).await?;
        return Err(ConnectionError::Refused(msg.to_owned()));
    }
    wire::put_u64(&mut out, STDERR_LAST);
    send(w, &mut out).await?;
    Ok(Negotiated {
        version,
        dialect,
        peer_features,
        daemon_version: None,
        trust: None,
    })
}

/// Run the client side of the handshake as a Nix client of `version`
/// would (1.34 for Nix 2.8, 1.38 for Nix 2.24+), up to the STDERR_LAST.
/// Log messages the daemon sends before it are skipped.
pub async fn client_handshake<R, W>(
    r: &mut R,
    w: &mut W,
    version: ProtocolVersion,
) -> Result<Negotiated, ConnectionError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut out = Vec::with_capacity(64);
    wire::put_u64(&mut out, WORKER_MAGIC_1);
    send(w, &mut out).await?;
    let magic = wire::read_u64(r, "daemon magic").await?;
    if magic != WORKER_MAGIC_2 {
        return Err(ConnectionError::BadMagic {
            got: magic,
            expected: WORKER_MAGIC_2,
        });
    }
    let word = wire::read_u64(r, "daemon version").await?;
    let server = ProtocolVersion::from_wire(word)
        .filter(|v| v.major() == 1 && *v >= MIN_CLIENT_VERSION)
        .ok_or(ConnectionError::UnsupportedVersion(word))?;
    let negotiated = server.min(version);
    let minor = negotiated.minor();
    wire::put_u64(&mut out, version.to_wire());
    let mut peer_features = Vec::new();
    if minor >= 38 {
        wire::put_strings(&mut out, std::iter::empty::<&str>());
        send(w, &mut out).await?;
        peer_features = wire::read_strings(
            r,
            limits::MAX_OPTIONS,
            limits::MAX_STRING_LEN,
            "daemon features",
        )
        .await?;
    }
    if minor >= 14 {
        wire::put_u64(&mut out, 0); // no CPU affinity
    }
    if minor >= 11 {
        wire::put_u64(&mut out, 0); // reserveSpace, obsolete
    }
    send(w, &mut out).await?;
    let daemon_version = if minor >= 33 {
        Some(wire::read_string(r, limits::MAX_STRING_LEN, "daemon version string").await?)
    } else {
        None
    };
    let trust = if minor >= 35 {
        Some(wire::read_u64(r, "trust").await?)
    } else {
        None
    };
    super::stderr::read_stderr(r, negotiated).await?;
    Ok(Negotiated {
        version: negotiated,
        dialect: Dialect::Nix,
        peer_features,
        daemon_version,
        trust,
    })
}

async fn send<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    out: &mut Vec<u8>,
) -> Result<(), ConnectionError> {
    w.write_all(out).await.map_err(ConnectionError::Write)?;
    w.flush().await.map_err(ConnectionError::Write)?;
    out.clear();
    Ok(())
}
