//! Who may read and who may write through the HTTP view.
//!
//! Credentials come in `Authorization`, in either of two forms:
//! - `Bearer <token>`, as `curl -H` or a script sends it;
//! - `Basic <base64(user:token)>`, what Nix sends from a `netrc-file` entry
//!   (`machine HOST password TOKEN`); the user name is ignored.
//!
//! The rules, the same as the gRPC service's:
//! - With a read token configured, every read (`GET`/`HEAD`, including
//!   `nix-cache-info`) needs it, or the write token, which implies it.
//!   Without one, reads are open.
//! - A `PUT` needs the write token; without a write token configured the
//!   view is read-only and every `PUT` is 405.
//!
//! A request without valid credentials is answered 401 with
//! `WWW-Authenticate` challenges for both schemes, so clients that wait for
//! a challenge before sending their netrc credentials retry with them.
//! Tokens are compared in constant time ([`Token::matches`]).

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use storefs_castore::Token;

/// The challenges sent with a 401, one per scheme we take.
const CHALLENGES: [&str; 2] = [
    "Basic realm=\"storefs\", charset=\"UTF-8\"",
    "Bearer realm=\"storefs\"",
];

/// The tokens the view asks for.
#[derive(Debug, Clone, Default)]
pub struct HttpAuth {
    /// Needed for reads when set (the write token also grants reads).
    pub read: Option<Token>,
    /// Needed for uploads; `None` makes the view read-only.
    pub write: Option<Token>,
}

impl HttpAuth {
    /// Decide on a request with `method` and `headers`: `Ok` lets it
    /// through, `Err` is the answer to send instead.
    pub(crate) fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Box<Response>> {
        if method == Method::PUT {
            let Some(write) = &self.write else {
                return Err(Box::new(plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this binary cache is read-only (start it with a write token to allow uploads)",
                )));
            };
            return check_one(&[Some(write)], headers, "uploads need the write token");
        }
        if self.read.is_none() {
            return Ok(());
        }
        check_one(
            &[self.read.as_ref(), self.write.as_ref()],
            headers,
            "this binary cache needs the read token",
        )
    }
}

/// Whether `headers` carry one of `accepted`; every candidate is compared,
/// so the time taken does not tell which one matched.
fn check_one(
    accepted: &[Option<&Token>],
    headers: &HeaderMap,
    need: &str,
) -> Result<(), Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| credential(v.as_bytes()));
    let Some(presented) = presented else {
        return Err(challenge(&format!(
            "{need} (Authorization: Bearer TOKEN, or Basic with TOKEN as password as a netrc-file gives it)"
        )));
    };
    let ok = accepted
        .iter()
        .flatten()
        .fold(false, |acc, t| acc | t.matches(&presented));
    if ok {
        Ok(())
    } else {
        Err(challenge(&format!(
            "{need}; the credentials given do not match it"
        )))
    }
}

/// The secret an `Authorization` value presents: the token of `Bearer`, or
/// the password of `Basic`. `None` for any other scheme or a malformed
/// value. Scheme names are case-insensitive.
pub(crate) fn credential(value: &[u8]) -> Option<Vec<u8>> {
    let (scheme, rest) = value.split_at_checked(value.iter().position(|b| *b == b' ')?)?;
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(rest.to_vec());
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        return decoded.get(colon + 1..).map(<[u8]>::to_vec);
    }
    None
}

/// 401 with a challenge for each scheme we take.
fn challenge(msg: &str) -> Box<Response> {
    let mut r = plain(StatusCode::UNAUTHORIZED, msg);
    let h = r.headers_mut();
    for c in CHALLENGES {
        h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    Box::new(r)
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    fn status(r: Result<(), Box<Response>>) -> StatusCode {
        match r {
            Ok(()) => StatusCode::OK,
            Err(resp) => resp.status(),
        }
    }

    #[test]
    fn credentials_are_parsed_from_both_schemes() {
        assert_eq!(credential(b"Bearer abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(credential(b"bearer  abc ").as_deref(), Some(&b"abc"[..]));
        let b = basic("nix:s3cret");
        assert_eq!(credential(b.as_bytes()).as_deref(), Some(&b"s3cret"[..]));
        let b = basic(":a:b");
        assert_eq!(credential(b.as_bytes()).as_deref(), Some(&b"a:b"[..]));
        assert_eq!(credential(basic("nocolon").as_bytes()), None);
        assert_eq!(credential(b"Basic !!!"), None);
        assert_eq!(credential(b"Digest x"), None);
        assert_eq!(credential(b"Bearer"), None);
        assert_eq!(credential(b""), None);
    }

    #[test]
    fn reads_need_the_read_token_when_set() {
        let a = HttpAuth {
            read: Some(Token::new("r").unwrap()),
            write: Some(Token::new("w").unwrap()),
        };
        let get = Method::GET;
        assert_eq!(
            status(a.check(&get, &headers(None))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(a.check(&get, &headers(Some("Bearer x")))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(a.check(&get, &headers(Some("Bearer r")))),
            StatusCode::OK
        );
        assert_eq!(
            status(a.check(&get, &headers(Some("Bearer w")))),
            StatusCode::OK
        );
        assert_eq!(
            status(a.check(&get, &headers(Some(&basic("u:r"))))),
            StatusCode::OK
        );
        let refused = a.check(&Method::HEAD, &headers(None)).unwrap_err();
        assert_eq!(
            refused
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .count(),
            2
        );
        // The read token does not grant uploads.
        assert_eq!(
            status(a.check(&Method::PUT, &headers(Some("Bearer r")))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(a.check(&Method::PUT, &headers(Some(&basic("u:w"))))),
            StatusCode::OK
        );
    }

    #[test]
    fn without_tokens_reads_are_open_and_writes_refused() {
        let a = HttpAuth::default();
        assert_eq!(
            status(a.check(&Method::GET, &headers(None))),
            StatusCode::OK
        );
        assert_eq!(
            status(a.check(&Method::PUT, &headers(Some("Bearer x")))),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
