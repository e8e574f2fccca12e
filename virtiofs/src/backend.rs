//! The vhost-user-fs device: what `vhost-user-backend` asks of a backend
//! (queues, features, guest memory) and the queue handler that feeds each
//! request, a descriptor chain in guest memory, to fuse-backend-rs's FUSE
//! server and hands the used buffer back to the guest.
//!
//! A virtio-fs device has two queues: the high-priority one (`FORGET`,
//! `INTERRUPT`) and one request queue (QEMU's default, and what Linux
//! uses). Both are served by one worker thread, one request at a time: a
//! request that needs the network waits (within `--timeout`) in the core's
//! bridge, while the core's read-ahead and sibling fetches go on in tokio.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{Reader, VirtioFsWriter};
use parking_lot::RwLock;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::QueueOwnedT;
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

/// Guest memory as vhost-user maps it.
type Memory = GuestMemoryAtomic<GuestMemoryMmap>;

/// One guest connection's device. `vhost-user-backend` calls it from its
/// socket thread (setup) and its queue thread (requests).
pub(crate) struct FsBackend {
    server: Arc<Server<Arc<StoreVirtioFs>>>,
    memory: RwLock<Option<Memory>>,
    event_idx: AtomicBool,
}

impl FsBackend {
    /// A device serving `server`.
    pub(crate) fn new(server: Arc<Server<Arc<StoreVirtioFs>>>) -> Self {
        Self {
            server,
            memory: RwLock::new(None),
            event_idx: AtomicBool::new(false),
        }
    }

    /// Answer every request waiting in `vring`.
    fn process_queue(&self, vring: &VringRwLock) -> io::Result<()> {
        let Some(atomic) = self.memory.read().clone() else {
            return Err(io::Error::other(
                "a queue was kicked before guest memory was set",
            ));
        };
        let mem = atomic.memory();
        loop {
            let chain = vring
                .get_mut()
                .get_queue_mut()
                .iter(atomic.memory())
                .map_err(|e| io::Error::other(format!("the request queue is broken: {e}")))?
                .next();
            let Some(chain) = chain else {
                break;
            };
            let head = chain.head_index();
            let used = match (
                Reader::from_descriptor_chain(&*mem, chain.clone()),
                VirtioFsWriter::new(&*mem, chain),
            ) {
                (Ok(reader), Ok(writer)) => {
                    match self
                        .server
                        .handle_message(reader, writer.into(), None, None)
                    {
                        Ok(n) => n,
                        Err(e) => {
                            // A malformed request from the guest: answered
                            // with nothing, the device goes on.
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
            vring
                .add_used(head, used)
                .map_err(|e| io::Error::other(format!("cannot return a used buffer: {e}")))?;
            if vring
                .needs_notification()
                .map_err(|e| io::Error::other(format!("the request queue is broken: {e}")))?
            {
                vring.signal_used_queue()?;
            }
        }
        Ok(())
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
