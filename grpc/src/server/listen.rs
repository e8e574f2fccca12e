//! Where the server listens: `HOST:PORT` (TCP) or `unix:/PATH` (a unix
//! socket, created with mode 0660 after removing a stale socket file).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use super::ServeError;

/// Mode of a listening unix socket: owner and group may connect.
pub const UNIX_SOCKET_MODE: u32 = 0o660;

/// A listen address as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `HOST:PORT`; the host is resolved when binding. Port 0 picks one.
    Tcp(String),
    /// `unix:/PATH` (also `unix:///PATH`).
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parse `HOST:PORT`, `unix:/PATH` or `unix:///PATH`.
    pub fn parse(s: &str) -> Result<Self, ServeError> {
        let bad = |reason: &str| ServeError::Address {
            addr: s.into(),
            reason: reason.into(),
        };
        if let Some(rest) = s.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad("a unix socket path must be absolute: unix:/PATH"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT or unix:/PATH"))?;
        if host.is_empty() {
            return Err(bad(
                "missing HOST (use 127.0.0.1 or [::] for all interfaces)",
            ));
        }
        port.parse::<u16>()
            .map_err(|_| bad("PORT is not a number 0-65535"))?;
        Ok(ListenAddr::Tcp(s.into()))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => f.write_str(a),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound listening socket, ready to be served by [`super::serve`].
#[derive(Debug)]
pub struct Listener {
    pub(super) kind: ListenerKind,
}

#[derive(Debug)]
pub(super) enum ListenerKind {
    Tcp(TcpListener, SocketAddr),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Bind `addr`. A unix socket path that holds a stale socket (nobody
    /// answers on it) is removed first; a live socket or any other file there
    /// is an error. The new socket gets mode [`UNIX_SOCKET_MODE`].
    pub async fn bind(addr: &ListenAddr) -> Result<Self, ServeError> {
        let bind_err = |source: io::Error| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        match addr {
            ListenAddr::Tcp(a) => {
                let l = TcpListener::bind(a.as_str()).await.map_err(bind_err)?;
                let local = l.local_addr().map_err(bind_err)?;
                Ok(Self {
                    kind: ListenerKind::Tcp(l, local),
                })
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await.map_err(bind_err)?;
                let l = UnixListener::bind(path).map_err(bind_err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE))
                    .map_err(bind_err)?;
                Ok(Self {
                    kind: ListenerKind::Unix(l, path.clone()),
                })
            }
        }
    }

    /// The address actually bound (with the port chosen for port 0).
    pub fn local_addr(&self) -> ListenAddr {
        match &self.kind {
            ListenerKind::Tcp(_, a) => ListenAddr::Tcp(a.to_string()),
            ListenerKind::Unix(_, p) => ListenAddr::Unix(p.clone()),
        }
    }

    /// The URL a client gives to reach this listener (`grpc://…` or
    /// `grpc+unix://…`).
    pub fn client_url(&self) -> String {
        match &self.kind {
            ListenerKind::Tcp(_, a) => format!("grpc://{a}"),
            ListenerKind::Unix(_, p) => storefs_castore::StoreUrl::Grpc {
                endpoint: storefs_castore::GrpcEndpoint::Unix { path: p.clone() },
            }
            .to_string(),
        }
    }
}

/// Remove `path` if it is a unix socket that nobody listens on.
async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; refusing to replace it",
        ));
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server is listening on this socket",
        )),
        // Refused: nobody listens. Reset: the listener closed while we
        // connected (a server shutting down); it is going away too.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
            ) =>
        {
            tracing::info!(path = %path.display(), "removing stale socket");
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(
            ListenAddr::parse("127.0.0.1:7070").unwrap(),
            ListenAddr::Tcp("127.0.0.1:7070".into())
        );
        assert_eq!(
            ListenAddr::parse("[::]:0").unwrap(),
            ListenAddr::Tcp("[::]:0".into())
        );
        assert_eq!(
            ListenAddr::parse("unix:/run/s").unwrap(),
            ListenAddr::Unix("/run/s".into())
        );
        assert_eq!(
            ListenAddr::parse("unix:///run/s").unwrap(),
            ListenAddr::Unix("/run/s".into())
        );
        for bad in ["7070", ":7070", "h:x", "unix:rel", "unix:"] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A socket file with no listener behind it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let addr = ListenAddr::Unix(path.clone());
        let live = Listener::bind(&addr).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, UNIX_SOCKET_MODE);
        let err = Listener::bind(&addr).await.unwrap_err();
        let err = storefs_castore::Report(&err).to_string();
        assert!(err.contains("another server"), "{err}");
        drop(live);
        // A regular file is never removed.
        let file = dir.path().join("f");
        std::fs::write(&file, b"keep").unwrap();
        assert!(
            Listener::bind(&ListenAddr::Unix(file.clone()))
                .await
                .is_err()
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }
}
