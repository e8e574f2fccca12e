//! `storefs serve`: the store service on gRPC listeners, the HTTP binary
//! cache view and the Nix daemon socket, all over the same services, until
//! SIGINT or SIGTERM.

use std::path::Path;

use anyhow::{Context, bail};
use storefs_grpc::{AuthPolicy, ListenAddr, Listener, ServerConfig};
use storefs_store::daemon::{DaemonConfig, bind_socket, serve_daemon};
use storefs_store::signing::SecretKey;
use storefs_store::store_path::StoreDir;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::services::{Services, read_token};

/// Where gRPC listens when nothing at all is asked for.
const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// Run every server asked for until a signal, then stop them gracefully.
pub async fn run(services: Services, store_dir: StoreDir, args: &ServeArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    let mut tasks = tokio::task::JoinSet::new();

    let mut listen = args.listen.clone();
    if listen.is_empty() && args.http.is_none() && args.daemon_socket.is_none() {
        listen.push(DEFAULT_LISTEN.to_owned());
    }
    if !listen.is_empty() {
        let mut listeners = Vec::new();
        for l in &listen {
            let addr = ListenAddr::parse(l).with_context(|| format!("--listen {l}"))?;
            listeners.push(
                Listener::bind(&addr)
                    .await
                    .with_context(|| format!("listening on {l}"))?,
            );
        }
        let config = ServerConfig {
            auth: AuthPolicy {
                read: token_from(args.read_token_file.as_deref())?,
                write: token_from(args.write_token_file.as_deref())?,
            },
            ..ServerConfig::default()
        };
        let grpc = services.clone();
        let s = stop.clone();
        tasks.spawn(async move {
            storefs_grpc::serve(listeners, grpc, config, s.cancelled_owned())
                .await
                .context("gRPC server")
        });
    }

    if let Some(addr) = &args.http {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--http {addr}"))?;
        let mut config = storefs_http::HttpConfig::new(store_dir.clone());
        config.priority = u64::from(args.priority);
        if let Some(f) = &args.sign_key_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading --sign-key-file {}", f.display()))?;
            config.sign_key = Some(
                SecretKey::parse(text.trim())
                    .with_context(|| format!("--sign-key-file {}", f.display()))?,
            );
        }
        if let Some(f) = &args.write_token_file {
            config.write_token = Some(read_file_trimmed(f)?);
        }
        let http = services.clone();
        tracing::info!(listen = %addr, "serving the HTTP binary cache");
        eprintln!(
            "storefs: HTTP binary cache on http://{}",
            listener.local_addr()?
        );
        let s = stop.clone();
        tasks.spawn(async move {
            storefs_http::serve_http(listener, http, config, s.cancelled_owned())
                .await
                .context("HTTP server")
        });
    }

    if let Some(path) = &args.daemon_socket {
        spawn_daemon(&mut tasks, &services, &store_dir, path, stop.clone()).await?;
    }

    // The first server to fail stops the others.
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let r = done.context("a server task panicked").and_then(|r| r);
        if r.is_err() && result.is_ok() {
            stop.cancel();
            result = r;
        }
    }
    result
}

/// Start the Nix daemon socket at `path` over `services`.
pub async fn spawn_daemon(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    services: &Services,
    store_dir: &StoreDir,
    path: &Path,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = bind_socket(path, storefs_store::daemon::DEFAULT_SOCKET_MODE)
        .await
        .with_context(|| format!("--daemon-socket {}", path.display()))?;
    let daemon_services = services.clone();
    let config = DaemonConfig {
        store_dir: store_dir.clone(),
        ..DaemonConfig::default()
    };
    eprintln!("storefs: Nix daemon socket at {}", path.display());
    let path = path.to_owned();
    tasks.spawn(async move {
        let r = serve_daemon(listener, daemon_services, config, stop.cancelled_owned()).await;
        let _ = std::fs::remove_file(&path);
        r.context("daemon socket")
    });
    Ok(())
}

/// Cancel `stop` on the first SIGINT or SIGTERM.
pub fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received, stopping");
        stop.cancel();
    });
}

fn token_from(file: Option<&Path>) -> anyhow::Result<Option<storefs_grpc::Token>> {
    match file {
        Some(f) => read_token(Some(f)),
        None => Ok(None),
    }
}

fn read_file_trimmed(f: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
    let t = t.trim().to_owned();
    if t.is_empty() {
        bail!("{} is empty", f.display());
    }
    Ok(t)
}
