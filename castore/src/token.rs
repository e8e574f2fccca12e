//! Shared secrets that guard a service: the bearer token every front end
//! (gRPC, the HTTP view) checks, kept here so that they all compare it the
//! same way — in constant time — and never print it.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// A shared secret. Its `Debug` output does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

/// Why a string cannot be a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Nothing but whitespace.
    #[error("the token is empty")]
    Empty,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// A byte that cannot go into an HTTP header (only visible ASCII can).
    #[error("the token holds a character that is not visible ASCII, at byte {0}")]
    BadChar(usize),
}

impl Token {
    /// A token from text, such as the contents of a token file or
    /// `STOREFS_TOKEN`. Leading and trailing whitespace (the newline a file
    /// ends with) is dropped.
    pub fn new(text: &str) -> Result<Self, TokenError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty);
        }
        if t.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        if let Some(i) = t.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(TokenError::BadChar(i));
        }
        Ok(Self(t.into()))
    }

    /// Whether `presented` is this token, compared in constant time (the
    /// time taken does not tell how many leading bytes were right).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The secret itself, for a client that must send it. Never log it.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_is_trimmed_and_checked() {
        assert_eq!(
            Token::new("  s3cret\n").unwrap(),
            Token::new("s3cret").unwrap()
        );
        assert_eq!(Token::new(" \n"), Err(TokenError::Empty));
        assert_eq!(Token::new("a b"), Err(TokenError::BadChar(1)));
        assert_eq!(
            Token::new(&"x".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::TooLong)
        );
        assert_eq!(
            format!("{:?}", Token::new("s3cret").unwrap()),
            "Token(<redacted>)"
        );
    }

    #[test]
    fn matches_only_the_exact_secret() {
        let t = Token::new("s3cret").unwrap();
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cret2"));
        assert!(!t.matches(b""));
        assert_eq!(t.secret(), "s3cret");
    }
}
