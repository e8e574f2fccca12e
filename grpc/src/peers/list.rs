//! A list of peers as text: one gRPC URL a line (`grpc://HOST:PORT`,
//! `grpc+unix:///PATH`); blank lines and lines starting with `#` are
//! skipped, and so is the text after a `#` that follows whitespace.

use storefs_castore::{GrpcEndpoint, StoreUrl};

/// Why a list of peers was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerListError {
    /// A line that is not a gRPC URL.
    #[error("line {line}: {text:?} is not a peer URL (grpc://HOST:PORT or grpc+unix:///PATH)")]
    NotGrpc {
        /// The line, from 1.
        line: usize,
        /// What it holds.
        text: String,
    },
    /// A line that cannot be parsed as a URL at all.
    #[error("line {line}: {text:?}")]
    Url {
        /// The line, from 1.
        line: usize,
        /// What it holds.
        text: String,
        /// Why it cannot be parsed.
        #[source]
        source: storefs_castore::StoreUrlError,
    },
}

/// The peers listed in `text`, in order, each once. Nothing is returned
/// if any line is wrong.
pub fn parse_peer_list(text: &str) -> Result<Vec<GrpcEndpoint>, PeerListError> {
    let mut out: Vec<GrpcEndpoint> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw
            .split_once(" #")
            .or_else(|| raw.split_once("\t#"))
            .map_or(raw, |(l, _)| l)
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match StoreUrl::parse(line) {
            Ok(StoreUrl::Grpc { endpoint }) => {
                if !out.contains(&endpoint) {
                    out.push(endpoint);
                }
            }
            Ok(_) => {
                return Err(PeerListError::NotGrpc {
                    line: i + 1,
                    text: line.to_owned(),
                });
            }
            Err(source) => {
                return Err(PeerListError::Url {
                    line: i + 1,
                    text: line.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_bad_lines_say_where() {
        let got = parse_peer_list(
            "# the fleet\n\ngrpc://10.0.0.1:7171\ngrpc+unix:///run/p.sock  # local\ngrpc://10.0.0.1:7171\n",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[1], GrpcEndpoint::Unix { .. }));
        assert!(parse_peer_list("").unwrap().is_empty());
        assert!(matches!(
            parse_peer_list("grpc://a:1\nmemory:\n"),
            Err(PeerListError::NotGrpc { line: 2, .. })
        ));
        assert!(matches!(
            parse_peer_list("grpc://a:1\n\nnot a url\n"),
            Err(PeerListError::Url { line: 3, .. })
        ));
    }
}
