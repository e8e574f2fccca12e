//! The HTTP view's front door, as a real `storefs serve` process: reads need
//! the read token (Bearer, or Basic from a netrc, as a real `nix copy
//! --from http://…` sends it), writes the write token; half-sent requests,
//! trickled headers and silent connections are cut off; one address cannot
//! hold more than its share of connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use storefs_testkit::{
    Serve, http::Answer, http::http, nix::NixStore, nix::write_odd_tree, ok, ok_str, storefs,
    storefs_bin,
};

const READ: &str = "read-s3cret";
const WRITE: &str = "write-s3cret";

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {cred}")
}

/// A store with one path added, served with both tokens over HTTP.
fn served(tmp: &Path, extra: &[&str]) -> (Serve, String) {
    let data = tmp.join("data");
    let src = tmp.join("tree");
    write_odd_tree(&src);
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    std::fs::write(tmp.join("read.token"), format!("{READ}\n")).unwrap();
    std::fs::write(tmp.join("write.token"), format!("{WRITE}\n")).unwrap();
    let read_file = tmp.join("read.token");
    let write_file = tmp.join("write.token");
    let mut args = vec![
        "--http",
        "127.0.0.1:0",
        "--read-token-file",
        read_file.to_str().unwrap(),
        "--write-token-file",
        write_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (Serve::start(&storefs_bin!(), &data, &args, 1), path)
}

fn hash_part(store_path: &str) -> &str {
    let base = store_path.rsplit('/').next().unwrap();
    &base[..32]
}

fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    http(addr, "GET", path, &headers, b"")
}

fn assert_challenged(a: &Answer, what: &str) {
    assert_eq!(a.status, 401, "{what}: {a:?}");
    let challenges = a.header_values("www-authenticate");
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic ")),
        "{what}: no Basic challenge in {challenges:?}"
    );
}

#[test]
fn reads_need_the_read_token_and_nix_sends_it_from_a_netrc() {
    let tmp = tempfile::tempdir().unwrap();
    let (serve, path) = served(tmp.path(), &[]);
    assert!(
        serve.lines[0].contains("reads need the read token"),
        "{:?}",
        serve.lines
    );
    let addr = serve.http();
    let narinfo_url = format!("/{}.narinfo", hash_part(&path));

    // Without a token, with a wrong one, by either scheme: 401, for every
    // kind of file.
    for url in ["/nix-cache-info", narinfo_url.as_str()] {
        assert_challenged(&get(addr, url, None), url);
        assert_challenged(&get(addr, url, Some("Bearer wrong")), url);
        assert_challenged(&get(addr, url, Some(&basic("nix", "wrong"))), url);
        assert_challenged(&get(addr, url, Some("Bearer ")), url);
        assert_challenged(&http(addr, "HEAD", url, &[], b""), url);
    }
    // With the read token, by either scheme, or the write token: 200.
    let bearer = format!("Bearer {READ}");
    let info = get(addr, &narinfo_url, Some(&bearer));
    assert_eq!(info.status, 200, "{info:?}");
    let text = String::from_utf8(info.body).unwrap();
    assert!(text.contains(&format!("StorePath: {path}")), "{text}");
    assert_eq!(
        get(addr, &narinfo_url, Some(&basic("nix", READ))).status,
        200
    );
    assert_eq!(
        get(addr, &narinfo_url, Some(&format!("Bearer {WRITE}"))).status,
        200
    );
    let nar_url = text
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("URL line")
        .to_owned();
    assert_challenged(&get(addr, &format!("/{nar_url}"), None), "the NAR");
    let nar = get(addr, &format!("/{nar_url}"), Some(&bearer));
    assert_eq!(nar.status, 200);

    // Uploads keep needing the write token: the read token is not enough.
    for auth in [None, Some(bearer.clone()), Some(basic("nix", READ))] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let a = http(addr, "PUT", "/nar/x.nar", &headers, b"junk");
        assert_eq!(a.status, 401, "{auth:?}: {a:?}");
    }

    // A real Nix, with the token in a netrc file: the copy works and is
    // byte for byte ours.
    let netrc = tmp.path().join("netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1 login nix password {READ}\n"),
    )
    .unwrap();
    let url = format!("http://{addr}");
    let without = NixStore::new();
    let out = without
        .nix()
        .args(["copy", "--no-check-sigs", "--from", &url, &path])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nix copy without the netrc worked");
    assert!(!without.real_path(&path).exists());
    let dest = NixStore::new();
    ok(dest
        .nix()
        .args(["copy", "--no-check-sigs", "--from", &url])
        .arg("--option")
        .arg("netrc-file")
        .arg(&netrc)
        .arg(&path));
    assert_eq!(dest.dump(&path), nar.body);

    // And a write through the netrc (Basic, with the write token): Nix
    // uploads a path of its own.
    let upload_netrc = tmp.path().join("netrc-write");
    std::fs::write(
        &upload_netrc,
        format!("machine 127.0.0.1 login nix password {WRITE}\n"),
    )
    .unwrap();
    let own = tmp.path().join("own.txt");
    std::fs::write(&own, "uploaded through a netrc\n").unwrap();
    let own_path = dest.add(&own);
    ok(dest
        .nix()
        .args(["copy", "--to", &url])
        .arg("--option")
        .arg("netrc-file")
        .arg(&upload_netrc)
        .arg(&own_path));
    let got = get(
        addr,
        &format!("/{}.narinfo", hash_part(&own_path)),
        Some(&bearer),
    );
    assert_eq!(got.status, 200, "{got:?}");
}

/// Read from `s` until the server closes it (or `limit` passes: then the
/// server kept it open, which is the failure).
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // an error answer may come first
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn half_sent_and_trickled_requests_are_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let (serve, _) = served(
        tmp.path(),
        &["--http-header-timeout", "1s", "--http-idle-timeout", "3s"],
    );
    let addr = serve.http();

    // Half a request, then silence.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(
        closed_by_server(&mut s, Duration::from_secs(30)),
        "a half-sent request was kept open"
    );

    // Headers trickled a byte at a time keep the connection busy but must
    // not keep it open: the head has to be complete within the timeout.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /nix-cache-info HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(30) {
        if s.write_all(b"X-Slow: y\r\n").is_err() {
            cut = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {
                // An answer (408/400) or the close itself.
                cut = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                cut = true;
                break;
            }
            Err(_) => {} // read timed out: trickle on
        }
    }
    assert!(cut, "trickled headers kept the connection for 30 s");

    // A connection that never sends a byte is closed after the idle timeout (the header
    // timeout starts only once it speaks).
    let mut silent = TcpStream::connect(addr).unwrap();
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(30)),
        "a silent connection was kept open"
    );

    // A whole request still works afterwards.
    assert_eq!(
        get(addr, "/nix-cache-info", Some(&format!("Bearer {READ}"))).status,
        200
    );
}

#[test]
fn one_address_has_a_share_of_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let (serve, _) = served(
        tmp.path(),
        &[
            "--http-header-timeout",
            "1h",
            "--http-idle-timeout",
            "1h",
            "--http-max-connections-per-ip",
            "3",
        ],
    );
    let addr = serve.http();

    // Three keep-alive connections, each proven admitted by an answer.
    let bearer = format!("Bearer {READ}");
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let req = format!(
                "GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\r\n"
            );
            s.write_all(req.as_bytes()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buf[..n])
            );
            s
        })
        .collect();
    // A fourth from the same address is refused at once.
    let fourth = get(addr, "/nix-cache-info", Some(&bearer));
    assert_eq!(fourth.status, 503, "{fourth:?}");
    assert!(!fourth.header_values("retry-after").is_empty());
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2", addr);
    other
        .write_all(format!("GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {bearer}\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    other.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // Once the held connections go, the address gets in again.
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = get(addr, "/nix-cache-info", Some(&bearer));
        if a.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {a:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP connection to `to` from the local address `from` (another
/// loopback address).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(local).unwrap();
        sock.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}
