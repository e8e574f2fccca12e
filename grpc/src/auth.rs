//! Bearer tokens: the server's policy (which calls need which token) and the
//! client's interceptor that sends one.
//!
//! A request carries `authorization: Bearer <token>`. On the server, a call
//! whose method is `Put` is a write; everything else is a read.
//! - Writes need the write token when one is configured, else the read
//!   token when that is configured, else nothing.
//! - Reads need the read token (or the write token, which implies it) when a
//!   read token is configured; otherwise they are open.
//!
//! Tokens ([`Token`], shared with the HTTP view) are compared in constant time. A missing token is
//! `UNAUTHENTICATED`; a wrong one is `PERMISSION_DENIED`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;
use tonic::codegen::{Service, http};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::server::NamedService;

pub use storefs_castore::{MAX_TOKEN_LEN, Token, TokenError};

/// Which tokens the server asks for (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    /// Needed for reads (and for writes when no write token is set).
    pub read: Option<Token>,
    /// Needed for writes; also grants reads.
    pub write: Option<Token>,
}

impl AuthPolicy {
    /// Decide on a request for `path` (`/package.Service/Method`) carrying
    /// these headers.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        let write = path.rsplit('/').next() == Some("Put");
        let accepted: &[&Option<Token>] = match (write, &self.write) {
            (true, Some(_)) => &[&self.write],
            (true, None) | (false, _) => &[&self.read, &self.write],
        };
        // Open when the first (the governing) token is not configured.
        if accepted[0].is_none() {
            return Ok(());
        }
        let kind = if write { "write" } else { "read" };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(format!(
                "{path}: this server needs a {kind} token (authorization: Bearer ...)"
            )));
        };
        let presented = bearer(value.as_bytes()).ok_or_else(|| {
            Status::unauthenticated(format!(
                "{path}: the authorization header is not `Bearer <token>`"
            ))
        })?;
        // Check every candidate, so timing does not tell which one matched.
        let ok = accepted
            .iter()
            .filter_map(|t| t.as_ref())
            .fold(false, |acc, t| acc | t.matches(presented));
        if ok {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{path}: the token does not grant {kind} access"
            )))
        }
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let head = value.get(..SCHEME.len())?;
    head.eq_ignore_ascii_case(SCHEME)
        .then(|| value.get(SCHEME.len()..))
        .flatten()
        .map(|t| t.trim_ascii())
}

/// A generated tonic server behind an [`AuthPolicy`]: refused requests are
/// answered with a status and never reach the service.
#[derive(Clone)]
pub(crate) struct Authorized<S> {
    inner: S,
    policy: Arc<AuthPolicy>,
}

impl<S> Authorized<S> {
    pub(crate) fn new(inner: S, policy: Arc<AuthPolicy>) -> Self {
        Self { inner, policy }
    }
}

impl<S: NamedService> NamedService for Authorized<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authorized<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.policy.check(req.uri().path(), req.headers()) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(status) => {
                tracing::info!(path = req.uri().path(), code = ?status.code(), "request refused");
                Box::pin(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The client side: adds `authorization: Bearer <token>` to every call when
/// a token is configured.
#[derive(Clone, Default)]
pub(crate) struct BearerInterceptor {
    header: Option<AsciiMetadataValue>,
}

impl BearerInterceptor {
    pub(crate) fn new(token: Option<&Token>) -> Self {
        // A Token holds only visible ASCII (checked in Token::new), which is
        // always a valid header value, so the conversion cannot fail; a
        // failure would merely send no header.
        let header =
            token.and_then(|t| MetadataValue::try_from(format!("Bearer {}", t.secret())).ok());
        Self { header }
    }
}

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    const PUT: &str = "/snix.castore.v1.BlobService/Put";
    const READ: &str = "/snix.castore.v1.BlobService/Read";

    #[test]
    fn write_token_guards_puts_only() {
        let p = AuthPolicy {
            read: None,
            write: Some(Token::new("w").unwrap()),
        };
        assert!(p.check(READ, &headers(None)).is_ok());
        let e = p.check(PUT, &headers(None)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = p.check(PUT, &headers(Some("Bearer x"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(p.check(PUT, &headers(Some("Bearer w"))).is_ok());
        assert!(p.check(PUT, &headers(Some("bearer w"))).is_ok());
        let e = p.check(PUT, &headers(Some("Basic w"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn read_token_guards_reads_and_write_token_implies_it() {
        let p = AuthPolicy {
            read: Some(Token::new("r").unwrap()),
            write: Some(Token::new("w").unwrap()),
        };
        assert!(p.check(READ, &headers(None)).is_err());
        assert!(p.check(READ, &headers(Some("Bearer r"))).is_ok());
        assert!(p.check(READ, &headers(Some("Bearer w"))).is_ok());
        assert!(p.check(PUT, &headers(Some("Bearer r"))).is_err());
        // Only a read token: writes need it too.
        let p = AuthPolicy {
            read: Some(Token::new("r").unwrap()),
            write: None,
        };
        assert!(p.check(PUT, &headers(None)).is_err());
        assert!(p.check(PUT, &headers(Some("Bearer r"))).is_ok());
    }

    #[test]
    fn open_policy_lets_everything_through() {
        let p = AuthPolicy::default();
        assert!(p.check(PUT, &headers(None)).is_ok());
        assert!(p.check(READ, &headers(Some("Bearer junk"))).is_ok());
    }
}
