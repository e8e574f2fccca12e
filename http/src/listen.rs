//! The server loop: accepts TCP connections, admits them under the
//! connection limits and serves each with hyper (HTTP/1.1, and HTTP/2 with
//! prior knowledge) under the timeouts of [`HttpLimits`]; on shutdown stops
//! accepting, lets requests in flight finish for a grace period, then
//! drops what is left.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use storefs_castore::{Activity, Tracked};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::limits::{Admission, HttpLimits, Refusal};

/// Serve `app` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let admission = Admission::new(&limits);
    let refusing = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin.
                    tracing::warn!(error = %e, "HTTP: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tasks.spawn(refuse(stream, peer, why, permit));
                }
                continue;
            }
        };
        let (app, builder, stop) = (app.clone(), builder.clone(), stop.clone());
        let idle = limits.idle_timeout;
        tasks.spawn(async move {
            serve_one(stream, peer, app, &builder, idle, stop).await;
            drop(slot);
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    stop.cancel();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "HTTP: dropping connections still busy after shutdown"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Refusals being answered at once; past this, refused connections are
/// closed without a word.
const MAX_REFUSALS_IN_FLIGHT: usize = 16;

/// How long a refused client is given to take its 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Answer a connection over the limits with 503 and close it, reading
/// what the client sent meanwhile (closing with unread data would reset
/// the connection and lose the answer). At most
/// [`MAX_REFUSALS_IN_FLIGHT`] at once, each for at most [`REFUSAL_LINGER`].
async fn refuse(
    mut stream: TcpStream,
    peer: SocketAddr,
    why: Refusal,
    _permit: OwnedSemaphorePermit,
) {
    let what = match why {
        Refusal::PerIp => "too many connections from your address",
        Refusal::Total => "too many connections",
    };
    tracing::info!(%peer, reason = what, "HTTP: connection refused");
    let body = format!("{what}; try again later\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

/// Serve one connection until it ends, idles out, or shutdown finishes it.
async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    idle: Duration,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.idle(idle) => {
                tracing::debug!(%peer, "HTTP: closing a connection idle for {idle:?}");
                return;
            }
        }
    }
}
