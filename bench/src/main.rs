//! `storefs-bench qpi SOCKET SECONDS CLIENTS PATH...`: QueryPathInfo requests
//! per second against any Nix daemon socket (a real `nix-daemon` or
//! `storefs serve --daemon-socket`), CLIENTS connections asking round-robin
//! for SECONDS. Prints `requests seconds requests_per_second` on one line.
//! The load loop is the one of `store/examples/daemon_bench.rs`, made to
//! take the socket from outside so that `bench/run` can point it at the
//! real service process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storefs_store::daemon::DaemonClient;
use storefs_store::daemon::protocol::ProtocolVersion;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Hammer `socket` with QueryPathInfo over `clients` connections for `secs`.
async fn hammer(
    socket: &Path,
    paths: Arc<Vec<String>>,
    secs: f64,
    clients: usize,
) -> Result<(u64, f64), BoxError> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let socket = socket.to_owned();
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            let mut client =
                DaemonClient::connect_with_version(&socket, ProtocolVersion::new(1, 34)).await?;
            let mut n = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let p = &paths[i % paths.len()];
                if client.query_path_info(p).await?.is_none() {
                    return Err(format!("{p} is not valid on {}", socket.display()).into());
                }
                n += 1;
                i += 1;
            }
            Ok::<u64, BoxError>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

async fn run(args: Vec<String>) -> Result<(), BoxError> {
    let usage = "usage: storefs-bench qpi SOCKET SECONDS CLIENTS PATH...";
    if args.len() < 5 || args[0] != "qpi" {
        return Err(usage.into());
    }
    let socket = PathBuf::from(&args[1]);
    let secs: f64 = args[2].parse().map_err(|_| usage)?;
    let clients: usize = args[3].parse().map_err(|_| usage)?;
    let paths = Arc::new(args[4..].to_vec());
    let (n, t) = hammer(&socket, paths, secs, clients.max(1)).await?;
    println!("{n} {t:.3} {:.1}", n as f64 / t);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storefs-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
