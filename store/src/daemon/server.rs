//! The daemon socket: accepts connections, hands each to the [`Gate`]
//! (peer credentials, limits, timeouts), runs the handshake and the op loop
//! of each in its own task, and stops on shutdown after the connections in
//! flight finish their current request.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::conn::Conn;
use super::context::{Ctx, DaemonConfig};
use super::error::ConnectionError;
use super::gate::Gate;
use super::handshake::{TrustLevel, server_handshake};
use super::ops;
use super::wire;
use crate::Services;

/// Bind the daemon socket at `path` with permissions `mode` (use
/// [`DEFAULT_SOCKET_MODE`], 0660, unless told otherwise). A stale socket
/// file (nobody listening) is removed first; a live one is an
/// `AddrInUse` error, and so is any other kind of file at `path`.
pub async fn bind_socket(path: &Path, mode: u32) -> io::Result<UnixListener> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: a daemon is already listening there", path.display()),
                ));
            }
            tokio::fs::remove_file(path).await?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await?;
    Ok(listener)
}

/// How long shutdown waits for connections inside a request.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The socket mode [`bind_socket`] is given by default: owner and group.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// Serve the daemon protocol on `listener` until `shutdown` completes, then
/// stop accepting, let each open connection finish the request it is in,
/// and return. Who may connect and upload, how many connections are held
/// and for how long: see [`classify`](super::classify) and [`DaemonLimits`](super::DaemonLimits).
pub async fn serve_daemon(
    listener: UnixListener,
    services: Services,
    config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let gate = Gate::new(services, config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin.
                    tracing::warn!(error = %storefs_castore::Report(&e), "daemon socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Some(task) = gate.accept(stream, stop_rx.clone()) {
            tasks.spawn(task);
        }
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    // Connections between requests stop at once; one stuck inside a
    // request (a client that stopped sending) gets a grace period.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "daemon socket: aborting connections still busy after shutdown"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Serve one connection on an arbitrary byte stream (a socket accepted
/// elsewhere, or stdin/stdout for `--stdio`), until the peer hangs up.
/// An untrusted peer may upload only with `config.untrusted_writes`.
pub async fn serve_stream<R, W>(
    reader: R,
    writer: W,
    services: Services,
    config: DaemonConfig,
    trusted: bool,
) where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let write_refusal = (!trusted && !config.untrusted_writes)
        .then(|| "storefs daemon: this client is not trusted; uploads are refused".to_owned());
    let ctx = Ctx {
        services,
        config: Arc::new(config),
        write_refusal,
    };
    let (_tx, rx) = watch::channel(false);
    let greeting = Greeting {
        trusted,
        refusal: None,
        timeout: None,
    };
    serve_one(
        Box::new(reader),
        Box::new(writer),
        &ctx,
        greeting,
        rx,
        || {},
    )
    .await;
}

/// How a connection's handshake goes.
pub(crate) struct Greeting {
    /// What the client is told of its trust.
    pub trusted: bool,
    /// Refuse the client at the end of the handshake with this error.
    pub refusal: Option<String>,
    /// Longest time the handshake may take.
    pub timeout: Option<std::time::Duration>,
}

/// Run the handshake, then the op loop; `greeted` runs once the handshake
/// is done.
pub(crate) async fn serve_one(
    r: Box<dyn AsyncRead + Send + Unpin>,
    w: Box<dyn AsyncWrite + Send + Unpin>,
    ctx: &Ctx,
    greeting: Greeting,
    stop: watch::Receiver<bool>,
    greeted: impl FnOnce(),
) {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    let trusted = greeting.trusted;
    let trust = if trusted {
        TrustLevel::Trusted
    } else {
        TrustLevel::NotTrusted
    };
    let mut stop_handshake = stop.clone();
    let handshake = server_handshake(
        &mut r,
        &mut w,
        &ctx.config.daemon_version,
        trust,
        greeting.refusal.as_deref(),
    );
    let within = async {
        match greeting.timeout {
            Some(t) => tokio::time::timeout(t, handshake).await.ok(),
            None => Some(handshake.await),
        }
    };
    let negotiated = tokio::select! {
        n = within => match n {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                log_end(&e, "handshake");
                return;
            }
            None => {
                tracing::debug!("daemon client did not finish its handshake in time");
                return;
            }
        },
        _ = stop_handshake.wait_for(|s| *s) => return,
    };
    greeted();
    tracing::debug!(version = %negotiated.version, dialect = ?negotiated.dialect, trusted, "daemon client connected");
    let mut conn = Conn {
        r,
        w,
        version: negotiated.version,
        dialect: negotiated.dialect,
        trusted,
    };
    if let Err(e) = op_loop(&mut conn, ctx, stop).await {
        log_end(&e, "request");
    }
}

async fn op_loop(
    conn: &mut Conn,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    loop {
        let op = tokio::select! {
            op = wire::read_u64(&mut conn.r, "op") => op,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let op = match op {
            Ok(op) => op,
            // A clean hang-up between requests is how every session ends.
            Err(e) if e.is_disconnect() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        ops::dispatch(conn, ctx, op).await?;
    }
}

fn log_end(e: &ConnectionError, phase: &str) {
    if e.is_disconnect() {
        tracing::debug!(error = %storefs_castore::Report(e), phase, "daemon client went away");
    } else {
        tracing::warn!(error = %storefs_castore::Report(e), phase, "daemon connection dropped");
    }
}
