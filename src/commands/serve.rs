//! `storefs serve`: the store service on gRPC listeners, the HTTP binary
//! cache view and the Nix daemon socket, all over the same services, until
//! SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use storefs_grpc::{AuthPolicy, ListenAddr, Listener, ServerConfig};
use storefs_store::SecretKey;
use storefs_store::StoreDir;
use storefs_store::daemon::{DaemonConfig, TrustPolicy, bind_socket, serve_daemon};
use tokio_util::sync::CancellationToken;

use crate::cli::{DaemonAccessArgs, ServeArgs};
use crate::commands::startup;
use crate::metrics::{self, ServiceMetrics};
use crate::services::{Services, read_token};

/// Where gRPC listens when nothing at all is asked for.
const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// Run every server asked for until a signal, then stop them gracefully.
pub async fn run(services: Services, store_dir: StoreDir, args: &ServeArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    let mut tasks = tokio::task::JoinSet::new();

    // Each front end sees the services through its own meter: served at
    // --metrics, and the bytes gRPC served printed at exit (what clients
    // fetched: bench/run and the peer tests read it).
    let mut registry = metrics::registry();
    let service_metrics = ServiceMetrics::register(&mut registry);
    if let Some(addr) = &args.metrics {
        let server = metrics::serve(addr, registry, stop.clone()).await?;
        tasks.spawn(async move { server.await.context("the metrics task failed")? });
    }
    let front = |frontend: &'static str| service_metrics.wrap(services.clone(), frontend);
    let report = ServedReport(Arc::clone(&service_metrics));

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
        let auth = AuthPolicy {
            read: token_from(args.read_token_file.as_deref())?,
            write: token_from(args.write_token_file.as_deref())?,
        };
        for l in &listeners {
            eprintln!(
                "storefs: gRPC on {} ({})",
                l.client_url(),
                startup::token_summary(auth.read.is_some(), auth.write.is_some(), true)
            );
        }
        let config = ServerConfig {
            auth,
            ..ServerConfig::default()
        };
        let grpc = front("grpc");
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
        config.auth = storefs_http::HttpAuth {
            read: token_from(args.read_token_file.as_deref())?,
            write: token_from(args.write_token_file.as_deref())?,
        };
        config.limits = startup::http_limits(&args.http_limits);
        config.guix = super::guix::http_config(&args.guix, &store_dir, &config)?;
        let http = front("http");
        tracing::info!(listen = %addr, "serving the HTTP binary cache");
        eprintln!(
            "storefs: HTTP binary cache on http://{} ({})",
            listener.local_addr()?,
            startup::token_summary(
                config.auth.read.is_some(),
                config.auth.write.is_some(),
                false
            )
        );
        let s = stop.clone();
        tasks.spawn(async move {
            storefs_http::serve_http(listener, http, config, s.cancelled_owned())
                .await
                .context("HTTP server")
        });
    }

    if let Some(path) = &args.daemon_socket {
        spawn_daemon(
            &mut tasks,
            &front("daemon"),
            &store_dir,
            path,
            &args.daemon_access,
            stop.clone(),
        )
        .await?;
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
    drop(report);
    result
}

/// Prints the blob bytes served over gRPC on one line on stderr when
/// dropped (as `serve` exits, however it exits).
struct ServedReport(Arc<ServiceMetrics>);

impl Drop for ServedReport {
    fn drop(&mut self) {
        eprintln!(
            "storefs: served {} blob bytes over gRPC",
            self.0.bytes_out("grpc")
        );
    }
}

/// Start the Nix daemon socket at `path` over `services`.
pub async fn spawn_daemon(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    services: &Services,
    store_dir: &StoreDir,
    path: &Path,
    access: &DaemonAccessArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let socket = startup::daemon_access(access)?;
    let listener = bind_socket(path, access.daemon_socket_mode)
        .await
        .with_context(|| format!("--daemon-socket {}", path.display()))?;
    if let Some(gid) = socket.group {
        std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
            format!(
                "giving {} to group {gid} (--daemon-socket-group)",
                path.display()
            )
        })?;
    }
    let daemon_services = services.clone();
    eprintln!(
        "storefs: Nix daemon socket at {} (mode {:04o}; trusted users: {}; allowed users: {})",
        path.display(),
        access.daemon_socket_mode,
        socket.trusted,
        socket.allowed
    );
    let config = DaemonConfig {
        store_dir: store_dir.clone(),
        trust: TrustPolicy::Users(socket.trusted),
        allowed_users: socket.allowed,
        limits: socket.limits,
        ..DaemonConfig::default()
    };
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
