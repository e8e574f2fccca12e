//! The vhost-user-fs device: what `vhost-user-backend` asks of a backend
//! (queues, features, guest memory) and the queue handler that feeds each
//! request, a descriptor chain in guest memory, to fuse-backend-rs's FUSE
//! server and hands the used buffer back to the guest.
//!
//! A virtio-fs device has two queues: the high-priority one (`FORGET`,
//! `INTERRUPT`) and one request queue (QEMU's default, and what Linux
//! uses). The queue thread only takes requests off the queues; a pool of
//! [`WORKERS`] threads answers them, each returning its buffer to the guest
//! when done, so a request waiting on the network (within `--timeout`, in
//! the core's bridge) holds up no other. The guest matches answers to
//! requests by their id, in any order.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{Reader, VirtioFsWriter};
use parking_lot::{Mutex, RwLock};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{DescriptorChain, QueueOwnedT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier,
};

use crate::fs::StoreVirtioFs;

/// The high-priority queue and one request queue.
const QUEUES: usize = 2;

/// Descriptors per queue at most (QEMU asks for 128 by default).
const QUEUE_SIZE: usize = 1024;

/// Threads answering requests: requests in flight at once.
pub(crate) const WORKERS: usize = 8;

/// Guest memory as vhost-user maps it.
type Memory = GuestMemoryAtomic<GuestMemoryMmap>;

/// One guest connection's device. `vhost-user-backend` calls it from its
/// socket thread (setup) and its queue thread (requests).
pub(crate) struct FsBackend {
    memory: RwLock<Option<Memory>>,
    event_idx: AtomicBool,
    /// Requests for the workers; they end when it is dropped.
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// One request and the queue to answer it on.
struct Job {
    mem: Arc<GuestMemoryMmap>,
    chain: DescriptorChain<Arc<GuestMemoryMmap>>,
    vring: VringRwLock,
}

impl FsBackend {
    /// A device serving `server`, with its pool of workers.
    pub(crate) fn new(server: Arc<Server<Arc<StoreVirtioFs>>>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            let server = Arc::clone(&server);
            std::thread::Builder::new()
                .name(format!("storefs-vfs-{i}"))
                .spawn(move || {
                    loop {
                        // One worker waits on the queue at a time; the lock
                        // is released before the request is answered.
                        let job = rx.lock().recv();
                        let Ok(job) = job else {
                            break;
                        };
                        answer(&server, job);
                    }
                })?;
        }
        Ok(Self {
            memory: RwLock::new(None),
            event_idx: AtomicBool::new(false),
            jobs: Mutex::new(tx),
        })
    }

    /// Hand every request waiting in `vring` to the workers.
    fn process_queue(&self, vring: &VringRwLock) -> io::Result<()> {
        let Some(atomic) = self.memory.read().clone() else {
            return Err(io::Error::other(
                "a queue was kicked before guest memory was set",
            ));
        };
        let mem = atomic.memory().into_inner();
        loop {
            let chain = vring
                .get_mut()
                .get_queue_mut()
                .iter(Arc::clone(&mem))
                .map_err(|e| io::Error::other(format!("the request queue is broken: {e}")))?
                .next();
            let Some(chain) = chain else {
                break;
            };
            let job = Job {
                mem: Arc::clone(&mem),
                chain,
                vring: vring.clone(),
            };
            if self.jobs.lock().send(job).is_err() {
                return Err(io::Error::other("the request workers are gone"));
            }
        }
        Ok(())
    }
}

/// Answer one request and give its buffer back to the guest.
fn answer(server: &Server<Arc<StoreVirtioFs>>, job: Job) {
    let Job { mem, chain, vring } = job;
    let head = chain.head_index();
    let used = match (
        Reader::from_descriptor_chain(&*mem, chain.clone()),
        VirtioFsWriter::new(&*mem, chain),
    ) {
        (Ok(reader), Ok(writer)) => {
            match server.handle_message(reader, writer.into(), None, None) {
                Ok(n) => n,
                Err(e) => {
                    // A malformed request from the guest: answered with
                    // nothing, the device goes on.
                    tracing::warn!(error = %e, "virtio-fs: cannot handle a request");
                    0
                }
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "virtio-fs: a descriptor chain outside guest memory");
            0
        }
    };
    let used = u32::try_from(used).unwrap_or(u32::MAX);
    let returned = vring
        .add_used(head, used)
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|()| {
            vring
                .needs_notification()
                .map_err(|e| io::Error::other(e.to_string()))
        })
        .and_then(|notify| {
            if notify {
                vring.signal_used_queue()
            } else {
                Ok(())
            }
        });
    if let Err(e) = returned {
        // The guest went away (or reset the device) meanwhile.
        tracing::debug!(error = %e, "virtio-fs: cannot return a used buffer");
    }
}

impl VhostUserBackend for FsBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, mem: Memory) -> io::Result<()> {
        *self.memory.write() = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // A fresh pair for each worker thread the library starts: it keeps
        // the notifier and signals it when the connection is done.
        match new_event_consumer_and_notifier(EventFlag::NONBLOCK) {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!(error = %e, "virtio-fs: no exit event for a queue thread");
                None
            }
        }
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other(format!(
                "unexpected event set {evset:?} on queue {device_event}"
            )));
        }
        let Some(vring) = vrings.get(usize::from(device_event)) else {
            return Err(io::Error::other(format!("no queue {device_event}")));
        };
        if self.event_idx.load(Ordering::Relaxed) {
            // With EVENT_IDX the guest does not kick again for requests
            // added while we work: drain until it has added none.
            loop {
                vring
                    .disable_notification()
                    .map_err(|e| io::Error::other(format!("queue {device_event}: {e}")))?;
                self.process_queue(vring)?;
                if !vring
                    .enable_notification()
                    .map_err(|e| io::Error::other(format!("queue {device_event}: {e}")))?
                {
                    break;
                }
            }
        } else {
            self.process_queue(vring)?;
        }
        Ok(())
    }
}
