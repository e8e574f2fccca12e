//! Entry points for fuzz targets and property tests: the whole server
//! (handshake, op loop, every handler) over a byte slice.

use super::context::DaemonConfig;
use super::server::serve_stream;

/// Feed `input` to a fresh server (empty memory services, a trusted
/// client) as if a client sent it, and return everything the server wrote.
/// It must return for any input, without panicking.
pub async fn serve_bytes(input: &[u8]) -> Vec<u8> {
    let services = crate::Services::memory();
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    let (r, w) = tokio::io::split(theirs);
    let input = input.to_vec();
    let server = tokio::spawn(serve_stream(r, w, services, DaemonConfig::default(), true));
    let (mut rd, mut wr) = tokio::io::split(&mut ours);
    let feed = async {
        use tokio::io::AsyncWriteExt;
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
    };
    let collect = async {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let ((), out) = tokio::join!(feed, collect);
    let _ = server.await;
    out
}
