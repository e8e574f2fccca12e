//! Entry points for the fuzz targets in `fuzz/` (one call each). Not part of
//! the API: they panic on purpose when an invariant breaks.

use sha2::{Digest, Sha256};
use storefs_castore::{MemoryBlobService, MemoryDirectoryService};

use crate::StoreDir;
use crate::nar::{read_nar, read_nar_to_end, write_nar};
use crate::narinfo::NarInfo;

/// Parse `data` as a narinfo; if it parses, rendering it and parsing again
/// must give the same value.
pub fn narinfo(data: &[u8]) {
    let store_dir = StoreDir::default();
    if let Ok(info) = NarInfo::parse_bytes(data, &store_dir) {
        let text = info.render(&store_dir);
        match NarInfo::parse(&text, &store_dir) {
            Ok(again) => assert_eq!(again, info, "narinfo changed by render:\n{text}"),
            Err(e) => panic!("rendered narinfo does not parse: {e}\n{text}"),
        }
    }
}

thread_local! {
    /// One runtime per fuzzing thread, reused across inputs.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime without I/O or timers always builds");
}

/// Feed `data` to the strict NAR reader. Whatever it accepts must render
/// back to exactly `data` (the reader accepts only canonical NARs), with
/// the size and sha256 it reported; whatever it refuses must be refused at
/// an offset inside the input. The protocol-stream variant must agree with
/// the check-EOF one on every prefix it accepts.
pub fn nar_reader(data: &[u8]) {
    RUNTIME.with(|rt| rt.block_on(nar_reader_async(data)));
}

async fn nar_reader_async(data: &[u8]) {
    let bs = MemoryBlobService::default();
    let ds = MemoryDirectoryService::default();
    let mut r = data;
    match read_nar_to_end(&mut r, &bs, &ds).await {
        Ok(got) => {
            assert_eq!(got.nar_size, data.len() as u64, "size of an accepted NAR");
            assert_eq!(
                got.nar_sha256,
                <[u8; 32]>::from(Sha256::digest(data)),
                "sha256 of an accepted NAR"
            );
            let mut out = Vec::with_capacity(data.len());
            write_nar(&mut out, &got.root, &bs, &ds)
                .await
                .expect("an accepted NAR renders back");
            assert!(out == data, "accepted NAR does not render back to itself");
        }
        Err(e) => {
            assert!(
                e.offset() <= data.len() as u64,
                "error offset {} beyond input of {} bytes: {e}",
                e.offset(),
                data.len()
            );
        }
    }

    // read_nar stops at the NAR's end; what it accepts is a canonical NAR
    // that is a prefix of the input.
    let bs = MemoryBlobService::default();
    let ds = MemoryDirectoryService::default();
    let mut r = data;
    if let Ok(got) = read_nar(&mut r, &bs, &ds).await {
        let n = usize::try_from(got.nar_size).expect("nar_size is at most the input length");
        assert!(n <= data.len());
        assert_eq!(r.len(), data.len() - n, "read_nar consumed past the NAR");
        let mut out = Vec::with_capacity(n);
        write_nar(&mut out, &got.root, &bs, &ds)
            .await
            .expect("an accepted NAR renders back");
        assert!(out == data[..n], "accepted NAR prefix does not render back");
    }
}

thread_local! {
    /// The daemon server needs I/O (duplex pipes) and timers: a runtime of
    /// its own per fuzzing thread, reused across inputs.
    static DAEMON_RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds");
}

/// Feed `data` to the daemon protocol server as a client's bytes: it must
/// answer and close without panicking, whatever the bytes.
pub fn daemon_server(data: &[u8]) {
    DAEMON_RUNTIME.with(|rt| {
        rt.block_on(crate::daemon::fuzzing::serve_bytes(data));
    });
}

/// Parse `data` as an s-expression; whatever parses must write back (in
/// the advanced and the canonical form) to text that parses to the same
/// value, and the advanced form must be stable.
pub fn guix_sexp(data: &[u8]) {
    use crate::guix::Sexp;
    match Sexp::parse(data) {
        Ok(s) => {
            let adv = s.to_advanced();
            let again = Sexp::parse(&adv).expect("the advanced form parses");
            assert_eq!(again, s, "advanced form changes the value");
            assert_eq!(again.to_advanced(), adv, "advanced form is not stable");
            let canon = Sexp::parse(&s.to_canonical()).expect("the canonical form parses");
            assert_eq!(canon, s, "canonical form changes the value");
        }
        Err(e) => assert!(e.offset() <= data.len(), "error offset past the input: {e}"),
    }
}

/// Parse `data` as a Guix narinfo; whatever parses must render back to a
/// narinfo that parses to the same fields, and a signature it carries
/// must render to the same `Signature:` value.
pub fn guix_narinfo(data: &[u8]) {
    use crate::guix::GuixNarInfo;
    let store_dir = StoreDir::new("/gnu/store").expect("/gnu/store is a valid store directory");
    if let Ok(parsed) = GuixNarInfo::parse(data, &store_dir) {
        let text = parsed.info.render(&store_dir, None);
        match GuixNarInfo::parse(text.as_bytes(), &store_dir) {
            Ok(again) => assert_eq!(
                again.info, parsed.info,
                "narinfo changed by render:\n{text}"
            ),
            Err(e) => panic!("rendered narinfo does not parse: {e}\n{text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses_without_panicking() {
        nar_reader(include_bytes!("../testdata/hello-world.nar"));
        nar_reader(b"");
        nar_reader(&include_bytes!("../testdata/hello-world.nar")[..100]);
        let mut with_tail = include_bytes!("../testdata/hello-world.nar").to_vec();
        with_tail.extend_from_slice(b"tail");
        nar_reader(&with_tail);
    }
}
