//! The vhost-user socket and its guests, one after another: bind, accept a
//! guest (QEMU's `-chardev socket`), serve it until it goes away, accept
//! the next, until stopped.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fuse_backend_rs::api::server::Server;
use storefs_fuse::core::{Core, CoreConfig, CoreError, MountStats, StatsSnapshot};
use storefs_store::Services;
use tokio::runtime::Handle;
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::backend::FsBackend;
use crate::fs::StoreVirtioFs;

/// How to serve. Build it with [`VirtiofsConfig::new`] and change the
/// fields you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VirtiofsConfig {
    /// The vhost-user socket to listen on (QEMU's `-chardev
    /// socket,path=…`). A stale socket there is replaced; a live one, or a
    /// file that is not a socket, is refused.
    pub socket: PathBuf,
    /// The filesystem: the same settings as a FUSE mount's.
    pub core: CoreConfig,
    /// Serve one guest and return when it goes away, instead of waiting for
    /// the next.
    pub once: bool,
}

impl VirtiofsConfig {
    /// The defaults, listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            core: CoreConfig::default(),
            once: false,
        }
    }
}

/// Why the backend cannot start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirtiofsError {
    /// The filesystem's configuration cannot work.
    #[error("invalid configuration")]
    Config(#[source] CoreError),
    /// Another backend is listening on the socket.
    #[error("{path} is a live socket: another backend serves it")]
    SocketBusy {
        /// The socket.
        path: PathBuf,
    },
    /// Something other than a socket is in the way.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Binding or replacing the socket failed.
    #[error("cannot listen on {path}")]
    Bind {
        /// The socket.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The vhost-user device failed outside any one guest's session.
    #[error("the vhost-user device failed: {message}")]
    Device {
        /// What `vhost-user-backend` said (its errors carry no source).
        message: String,
    },
}

/// A bound socket with the filesystem behind it; [`VirtiofsServer::run`]
/// serves guests on it.
pub struct VirtiofsServer {
    core: Arc<Core>,
    listener: Listener,
    socket: PathBuf,
    once: bool,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for VirtiofsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtiofsServer")
            .field("socket", &self.socket)
            .field("once", &self.once)
            .finish_non_exhaustive()
    }
}

/// Stops a [`VirtiofsServer`] between guests, from any thread.
#[derive(Debug, Clone)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    socket: PathBuf,
}

impl Stopper {
    /// Accept no further guest: [`VirtiofsServer::run`] returns when no
    /// guest is connected, or as soon as the connected one goes away. (To
    /// end a connected guest's session at once, end the process.)
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake an `accept` waiting for the next guest: it takes this
        // connection, sees the flag and returns.
        let _ = UnixStream::connect(&self.socket);
    }
}

impl VirtiofsServer {
    /// Listen on `config.socket` for guests of the store given by
    /// `services`, running async work on `runtime`.
    pub fn bind(
        config: &VirtiofsConfig,
        services: &Services,
        runtime: Handle,
    ) -> Result<Self, VirtiofsError> {
        let core = Core::new(&config.core, services, runtime).map_err(VirtiofsError::Config)?;
        storefs_fuse::bound_malloc();
        clear_stale(&config.socket)?;
        let listener = Listener::new(&config.socket, false).map_err(|e| VirtiofsError::Bind {
            path: config.socket.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            core: Arc::new(core),
            listener,
            socket: config.socket.clone(),
            once: config.once,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The live figures (also the root's `user.storefs.stats` xattr in the
    /// guest).
    pub fn stats(&self) -> Arc<MountStats> {
        self.core.stats()
    }

    /// Where it listens.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Something that stops [`VirtiofsServer::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            stop: Arc::clone(&self.stop),
            socket: self.socket.clone(),
        }
    }

    /// Serve guests, one at a time, until stopped (or, with `once`, until
    /// the first goes away); `session_ended` gets the figures after each.
    /// Blocks: run it on a thread of its own. Removes the socket when it
    /// returns.
    pub fn run(
        mut self,
        mut session_ended: impl FnMut(&StatsSnapshot),
    ) -> Result<(), VirtiofsError> {
        let device = |e: vhost_user_backend::Error| VirtiofsError::Device {
            message: e.to_string(),
        };
        while !self.stop.load(Ordering::SeqCst) {
            let fs = Arc::new(StoreVirtioFs::new(Arc::clone(&self.core)));
            let backend = Arc::new(FsBackend::new(Arc::new(Server::new(fs))).map_err(|e| {
                VirtiofsError::Device {
                    message: format!("cannot start the request workers: {e}"),
                }
            })?);
            let memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
            let mut daemon = VhostUserDaemon::new("storefs-virtiofs".to_owned(), backend, memory)
                .map_err(device)?;
            daemon.start(&mut self.listener).map_err(device)?;
            let stopping = self.stop.load(Ordering::SeqCst);
            if !stopping {
                tracing::info!(socket = %self.socket.display(), "virtio-fs: a guest connected");
            }
            let ended = daemon.wait();
            for handler in daemon.get_epoll_handlers() {
                handler.send_exit_event();
            }
            if stopping {
                break;
            }
            match ended {
                Ok(()) => tracing::info!("virtio-fs: the guest went away"),
                Err(e) => tracing::info!(reason = %e, "virtio-fs: the guest went away"),
            }
            session_ended(&self.core.stats().snapshot());
            if self.once {
                break;
            }
        }
        Ok(())
    }
}

/// Make way for our socket at `path`: nothing there, or a socket nobody
/// listens on (left by a backend that died), which is removed.
fn clear_stale(path: &Path) -> Result<(), VirtiofsError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(VirtiofsError::Bind {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(VirtiofsError::NotASocket {
            path: path.to_owned(),
        });
    }
    if UnixStream::connect(path).is_ok() {
        return Err(VirtiofsError::SocketBusy {
            path: path.to_owned(),
        });
    }
    std::fs::remove_file(path).map_err(|source| VirtiofsError::Bind {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sockets_go_live_ones_and_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            clear_stale(&file),
            Err(VirtiofsError::NotASocket { .. })
        ));
        assert!(file.exists());

        let live = dir.path().join("live.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        assert!(matches!(
            clear_stale(&live),
            Err(VirtiofsError::SocketBusy { .. })
        ));

        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        clear_stale(&stale).unwrap();
        assert!(!stale.exists());
        clear_stale(&stale).unwrap();
    }
}
