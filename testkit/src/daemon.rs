//! The daemon socket (storefs's Nix daemon protocol server) in the test's
//! runtime.

use std::path::PathBuf;

use storefs_store::daemon::{DEFAULT_SOCKET_MODE, DaemonConfig, bind_socket, serve_daemon};

/// `serve_daemon` on a socket in a temporary directory. [`TestDaemon::stop`]
/// shuts it down gracefully; dropping it aborts the task and removes the
/// socket with its directory.
pub struct TestDaemon {
    /// Holds the socket.
    pub dir: tempfile::TempDir,
    /// The socket clients connect to.
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestDaemon {
    /// Serve `services` with `config`.
    pub async fn start(services: storefs_store::Services, config: DaemonConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("daemon.sock");
        let listener = bind_socket(&socket, DEFAULT_SOCKET_MODE)
            .await
            .expect("bind daemon socket");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve_daemon(listener, services, config, async move {
            let _ = rx.await;
        }));
        Self {
            dir,
            socket,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The `--store` URL Nix uses for it.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Ask for shutdown and wait until the server returned cleanly.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("daemon task").expect("daemon served");
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
