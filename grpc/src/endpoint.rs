//! Parsing of gRPC store URLs into the place a client connects to.
//!
//! Grammar (DESIGN.md "Stores by URL"):
//! - `grpc://HOST:PORT` and `grpc+http://HOST:PORT`: plain HTTP/2 over TCP;
//!   `HOST` may be a name, an IPv4 address or a bracketed IPv6 address.
//! - `grpc+unix:///ABSOLUTE/PATH` and `grpc+unix:/ABSOLUTE/PATH`: a unix
//!   socket.
//!
//! Nothing after the authority (path, query, fragment) is accepted for TCP;
//! a unix path must be absolute.

use std::fmt;
use std::path::PathBuf;

/// Where a gRPC client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// HTTP/2 over TCP to `host:port`.
    Tcp {
        /// Host name or address as written (IPv6 keeps its brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// HTTP/2 over a unix socket.
    Unix(PathBuf),
}

/// Why a string is not a gRPC store URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The scheme is not one of `grpc`, `grpc+http`, `grpc+unix`.
    #[error("{url:?}: unsupported scheme; use grpc://HOST:PORT or grpc+unix:///PATH")]
    Scheme {
        /// The URL as given.
        url: String,
    },
    /// A TCP URL without a usable `HOST:PORT`.
    #[error("{url:?}: expected grpc://HOST:PORT: {reason}")]
    Authority {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A unix URL whose path is empty or relative.
    #[error("{url:?}: the unix socket path must be absolute (grpc+unix:///PATH)")]
    UnixPath {
        /// The URL as given.
        url: String,
    },
}

impl Endpoint {
    /// Parse a store URL.
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        if let Some(rest) = url.strip_prefix("grpc+unix:") {
            // `grpc+unix:///p` and `grpc+unix:/p` both name `/p`; an authority
            // (`grpc+unix://host/p`) is not meaningful for a socket.
            let path = match rest.strip_prefix("//") {
                Some(after) if after.starts_with('/') => after,
                Some(_) => return Err(EndpointError::UnixPath { url: url.into() }),
                None => rest,
            };
            if !path.starts_with('/') || path.len() < 2 {
                return Err(EndpointError::UnixPath { url: url.into() });
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let authority = url
            .strip_prefix("grpc+http://")
            .or_else(|| url.strip_prefix("grpc://"))
            .ok_or_else(|| EndpointError::Scheme { url: url.into() })?;
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let bad = |reason| EndpointError::Authority {
            url: url.into(),
            reason,
        };
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad("nothing may follow HOST:PORT"));
        }
        let (host, port) = authority.rsplit_once(':').ok_or(bad("missing :PORT"))?;
        if host.is_empty() {
            return Err(bad("missing HOST"));
        }
        if host.starts_with('[') != host.ends_with(']') {
            return Err(bad("unbalanced brackets around an IPv6 address"));
        }
        if !host.starts_with('[') && host.contains(':') {
            return Err(bad("an IPv6 address must be in brackets"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("PORT is not a number 0-65535"))?;
        Ok(Endpoint::Tcp {
            host: host.into(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "grpc://{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "grpc+unix://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(
            Endpoint::parse("grpc://localhost:7070"),
            Ok(tcp("localhost", 7070))
        );
        assert_eq!(
            Endpoint::parse("grpc+http://10.0.0.1:1/"),
            Ok(tcp("10.0.0.1", 1))
        );
        assert_eq!(Endpoint::parse("grpc://[::1]:7070"), Ok(tcp("[::1]", 7070)));
    }

    #[test]
    fn unix_forms() {
        let want = Ok(Endpoint::Unix(PathBuf::from("/run/s.sock")));
        assert_eq!(Endpoint::parse("grpc+unix:///run/s.sock"), want);
        assert_eq!(Endpoint::parse("grpc+unix:/run/s.sock"), want);
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "http://x:1",
            "grpc://x",
            "grpc://:1",
            "grpc://x:70000",
            "grpc://x:1/path",
            "grpc://::1:7070",
            "grpc://[::1:7070",
            "grpc+unix:relative",
            "grpc+unix://host/p",
            "grpc+unix:",
            "grpc+unix:/",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn display_parses_back() {
        for url in ["grpc://[::1]:7070", "grpc+unix:///tmp/a b.sock"] {
            let e = Endpoint::parse(url).unwrap();
            assert_eq!(Endpoint::parse(&e.to_string()), Ok(e));
        }
    }
}
