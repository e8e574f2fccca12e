//! QueryPathInfo requests per second over a daemon socket: storefs's
//! server against a real `nix-daemon`, on the same paths, side by side.
//!
//! ```text
//! cargo run --release -p storefs-store --example daemon_bench -- [PATHS] [SECONDS] [CLIENTS]
//! ```
//! Makes PATHS (default 200) small files in a scratch store with
//! `nix-store --add`, serves them with `nix-daemon --store`, imports them
//! into memory services with our client, serves those with our daemon, and
//! then runs CLIENTS concurrent connections (default 4) each asking
//! QueryPathInfo round-robin for SECONDS (default 5) against each socket.
//! Needs nix-bin.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use storefs_store::StoreDir;
use storefs_store::daemon::protocol::ProtocolVersion;
use storefs_store::daemon::{
    DEFAULT_SOCKET_MODE, DaemonClient, DaemonConfig, TrustPolicy, bind_socket, import_from_daemon,
    serve_daemon,
};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn hammer(socket: &Path, paths: Arc<Vec<String>>, secs: u64, clients: u64) -> (u64, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let socket = socket.to_owned();
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            let mut client =
                DaemonClient::connect_with_version(&socket, ProtocolVersion::new(1, 34))
                    .await
                    .expect("connect");
            let mut n = 0u64;
            let mut i = c as usize;
            while Instant::now() < deadline {
                let p = &paths[i % paths.len()];
                let info = client.query_path_info(p).await.expect("query");
                assert!(info.is_some(), "{p} missing");
                n += 1;
                i += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    (total, start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n_paths = arg(1, 200);
    let secs = arg(2, 5);
    let clients = arg(3, 4);
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src)?;
    let mut files = Vec::new();
    for i in 0..n_paths {
        let f = src.join(format!("file-{i}"));
        std::fs::write(&f, format!("contents of file {i}\n"))?;
        files.push(f);
    }
    let out = Command::new("nix-store")
        .env("NIX_CONFIG", "substituters =")
        .arg("--store")
        .arg(&root)
        .arg("--add")
        .args(&files)
        .output()?;
    if !out.status.success() {
        return Err(format!("nix-store --add: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let paths: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();

    let real_sock: PathBuf = dir.path().join("real.sock");
    let mut real = Command::new("nix-daemon")
        .env("NIX_DAEMON_SOCKET_PATH", &real_sock)
        .env("NIX_CONFIG", "build-users-group =\nsubstituters =")
        .arg("--store")
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while !real_sock.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let services = storefs_store::Services::memory();
    let options = storefs_store::import::ImportOptions {
        check_sigs: false,
        ..storefs_store::import::ImportOptions::new(StoreDir::default())
    };
    let into = services.clone();
    let report = import_from_daemon(
        &real_sock,
        &paths,
        options,
        into,
        Arc::new(storefs_store::import::NoProgress),
    )
    .await?;
    if !report.is_success() {
        return Err(format!("import failed: {:?}", report.failed).into());
    }
    let our_sock = dir.path().join("ours.sock");
    let listener = bind_socket(&our_sock, DEFAULT_SOCKET_MODE).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_daemon(
        listener,
        services,
        DaemonConfig {
            trust: TrustPolicy::Everyone,
            ..DaemonConfig::default()
        },
        async move {
            let _ = stop_rx.await;
        },
    ));

    let paths = Arc::new(paths);
    println!("paths={n_paths} seconds={secs} clients={clients}");
    println!("server,requests,seconds,requests_per_second");
    let (n_real, t_real) = hammer(&real_sock, paths.clone(), secs, clients).await;
    let (n_ours, t_ours) = hammer(&our_sock, paths.clone(), secs, clients).await;
    let r_real = n_real as f64 / t_real;
    let r_ours = n_ours as f64 / t_ours;
    println!("nix-daemon,{n_real},{t_real:.2},{r_real:.0}");
    println!("storefs,{n_ours},{t_ours:.2},{r_ours:.0}");
    println!("ratio storefs/nix-daemon: {:.2}", r_ours / r_real);

    let _ = stop_tx.send(());
    server.await??;
    let _ = real.kill();
    let _ = real.wait();
    Ok(())
}
