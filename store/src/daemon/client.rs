//! A client of a Nix daemon socket (a real `nix-daemon`, or ours), on the
//! same wire code as the server: the handshake as Nix 2.8 (1.34) or 2.24+
//! (1.38) does it, and the read ops an import needs.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, Take};
use tokio::net::UnixStream;

use super::error::ConnectionError;
use super::handshake::{Negotiated, client_handshake};
use super::path_info::RawPathInfo;
use super::protocol::{Op, ProtocolVersion, SERVER_VERSION};
use super::stderr::read_stderr;
use super::wire::{self, limits};

type ClientReader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
type ClientWriter = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

/// A connection to a Nix daemon, after the handshake.
///
/// An error the daemon reports ([`ConnectionError::Remote`]) leaves the
/// connection usable; any other error means it must be dropped.
pub struct DaemonClient {
    r: ClientReader,
    w: ClientWriter,
    negotiated: Negotiated,
}

impl DaemonClient {
    /// Connect to the socket at `path` and shake hands as a 1.38 client.
    pub async fn connect(path: &Path) -> Result<Self, ConnectionError> {
        Self::connect_with_version(path, SERVER_VERSION).await
    }

    /// Connect and shake hands announcing `version` (1.34 is Nix 2.8).
    pub async fn connect_with_version(
        path: &Path,
        version: ProtocolVersion,
    ) -> Result<Self, ConnectionError> {
        let stream = UnixStream::connect(path).await.map_err(|source| {
            ConnectionError::Wire(wire::WireError::Io {
                what: "connecting to the daemon socket",
                source,
            })
        })?;
        let (r, w) = stream.into_split();
        Self::handshake(Box::new(r), Box::new(w), version).await
    }

    /// Shake hands over an already open byte stream.
    pub async fn handshake(
        r: Box<dyn AsyncRead + Send + Unpin>,
        w: Box<dyn AsyncWrite + Send + Unpin>,
        version: ProtocolVersion,
    ) -> Result<Self, ConnectionError> {
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut w = BufWriter::new(w);
        let negotiated = client_handshake(&mut r, &mut w, version).await?;
        Ok(Self { r, w, negotiated })
    }

    /// What the handshake agreed.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    fn minor(&self) -> u8 {
        self.negotiated.version.minor()
    }

    async fn send(&mut self, req: &[u8]) -> Result<(), ConnectionError> {
        self.w
            .write_all(req)
            .await
            .map_err(ConnectionError::Write)?;
        self.w.flush().await.map_err(ConnectionError::Write)?;
        read_stderr(&mut self.r, self.negotiated.version).await
    }

    fn request(op: Op) -> Vec<u8> {
        let mut req = Vec::with_capacity(128);
        wire::put_u64(&mut req, op.to_wire());
        req
    }

    /// IsValidPath: whether `path` (a full store path) is valid.
    pub async fn is_valid_path(&mut self, path: &str) -> Result<bool, ConnectionError> {
        let mut req = Self::request(Op::IsValidPath);
        wire::put_str(&mut req, path);
        self.send(&req).await?;
        Ok(wire::read_bool(&mut self.r, "IsValidPath reply").await?)
    }

    /// QueryPathInfo: the metadata of `path`, `None` if it is not valid.
    /// Needs protocol 1.17 or later (every supported daemon has it).
    pub async fn query_path_info(
        &mut self,
        path: &str,
    ) -> Result<Option<RawPathInfo>, ConnectionError> {
        if self.minor() < 17 {
            return Err(ConnectionError::VersionTooOld {
                what: "QueryPathInfo with a validity flag",
                need: ProtocolVersion::new(1, 17),
                have: self.negotiated.version,
            });
        }
        let mut req = Self::request(Op::QueryPathInfo);
        wire::put_str(&mut req, path);
        self.send(&req).await?;
        if !wire::read_bool(&mut self.r, "QueryPathInfo valid").await? {
            return Ok(None);
        }
        Ok(Some(RawPathInfo::read(&mut self.r, true).await?))
    }

    /// QueryValidPaths: the valid subset of `paths`.
    pub async fn query_valid_paths(
        &mut self,
        paths: &[String],
    ) -> Result<Vec<String>, ConnectionError> {
        let mut req = Self::request(Op::QueryValidPaths);
        wire::put_strings(&mut req, paths);
        if self.minor() >= 27 {
            wire::put_bool(&mut req, false); // do not substitute
        }
        self.send(&req).await?;
        Ok(read_path_list(&mut self.r).await?)
    }

    /// QueryAllValidPaths: every valid path.
    pub async fn query_all_valid_paths(&mut self) -> Result<Vec<String>, ConnectionError> {
        let req = Self::request(Op::QueryAllValidPaths);
        self.send(&req).await?;
        Ok(read_path_list(&mut self.r).await?)
    }

    /// NarFromPath: the NAR of `path`, whose size is `nar_size` (from
    /// [`DaemonClient::query_path_info`]). The stream carries no length of
    /// its own, so the reader returned ends after exactly `nar_size` bytes.
    ///
    /// You must read it to its end (or drop the client): the next request
    /// would otherwise read NAR bytes as its reply.
    pub async fn nar_from_path(
        &mut self,
        path: &str,
        nar_size: u64,
    ) -> Result<Take<&mut (dyn AsyncRead + Send + Unpin)>, ConnectionError> {
        let mut req = Self::request(Op::NarFromPath);
        wire::put_str(&mut req, path);
        self.send(&req).await?;
        let r: &mut (dyn AsyncRead + Send + Unpin) = &mut self.r;
        Ok(r.take(nar_size))
    }
}

async fn read_path_list<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> wire::Result<Vec<String>> {
    wire::read_strings(
        r,
        limits::MAX_LIST_COUNT,
        limits::MAX_PATH_LEN,
        "store paths",
    )
    .await
}
