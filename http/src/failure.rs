//! The one shape of a refused or failed HTTP answer, shared by every route
//! (the Nix and Guix views, uploads).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An answer that is not a success: a status and a one-line reason.
pub(crate) struct Failure(pub(crate) StatusCode, pub(crate) String);

impl Failure {
    /// 404 with this reason.
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Failure(StatusCode::NOT_FOUND, what.into())
    }

    /// 400 with this reason.
    pub(crate) fn bad_request(what: impl Into<String>) -> Self {
        Failure(StatusCode::BAD_REQUEST, what.into())
    }

    /// 500 with this error's text.
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut text = self.1;
        text.push('\n');
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response()
    }
}
