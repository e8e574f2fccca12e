//! `storefs mount`'s peer flags (docs/peers.md): the set of peers a mount
//! reads chunks from first (`--peer`, `--peers-file`, re-read when it
//! changes), the listeners where it serves its cached chunks to them
//! (`--peer-listen`), and their figures in `user.storefs.stats` and the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::{Value, json};
use storefs_castore::{BlobService, GrpcEndpoint, StoreUrl};
use storefs_fuse::ExtraStats;
use storefs_grpc::{
    AuthPolicy, ListenAddr, Listener, PeerConfig, PeerServerFigures, PeerSet, ServerConfig, Token,
};
use tokio_util::sync::CancellationToken;

use crate::cli::PeerArgs;
use crate::services::read_token;

/// How often `--peers-file` is checked for changes.
const PEERS_FILE_POLL: Duration = Duration::from_secs(1);

/// The peer flags, checked; listeners bound.
pub struct Peering {
    /// The peers to read from (`None` without `--peer`/`--peers-file`).
    pub set: Option<PeerSet>,
    /// The bound `--peer-listen` listeners, served once the cache is open.
    listeners: Vec<Listener>,
    token: Option<Token>,
    max_reads: usize,
    /// `--peers-file`, its peers merged with `--peer`'s.
    file: Option<PathBuf>,
    /// The version of `file` taken before it was read at start, so that a
    /// change made after that is noticed however late the follower starts.
    file_version: Option<(SystemTime, u64)>,
    fixed: Vec<GrpcEndpoint>,
    /// This mount's own peer URLs, left out of its peers.
    own: Vec<GrpcEndpoint>,
}

impl Peering {
    /// Check the flags, bind the listeners, and read `--peers-file`.
    /// Must run inside the runtime.
    pub async fn start(args: &PeerArgs) -> anyhow::Result<Self> {
        let token = match &args.peer_token_file {
            Some(f) => read_token(Some(f)).context("--peer-token-file")?,
            None => None,
        };
        let mut listeners = Vec::new();
        let mut own = Vec::new();
        for l in &args.peer_listen {
            let addr = ListenAddr::parse(l).with_context(|| format!("--peer-listen {l}"))?;
            let listener = Listener::bind(&addr)
                .await
                .with_context(|| format!("--peer-listen {l}"))?;
            if let Ok(StoreUrl::Grpc { endpoint }) = StoreUrl::parse(&listener.client_url()) {
                own.push(endpoint);
            }
            listeners.push(listener);
        }
        let mut fixed = Vec::new();
        for p in &args.peer {
            match StoreUrl::parse(p).with_context(|| format!("--peer {p}"))? {
                StoreUrl::Grpc { endpoint } => fixed.push(endpoint),
                _ => anyhow::bail!(
                    "--peer {p}: not a peer URL (grpc://HOST:PORT or grpc+unix:///PATH)"
                ),
            }
        }
        // A mount that serves peers lists its fetches from the service too
        // (an empty set), so that a peer asking for a chunk on its way
        // gets it when it arrives.
        // Its first --peer-listen URL names it in the fleet's split of
        // chunks (docs/peers.md, "All at once"): the peers must list it by
        // the same URL.
        let name = own.first().map(|e| {
            StoreUrl::Grpc {
                endpoint: e.clone(),
            }
            .to_string()
            .into()
        });
        let set = (args.reads_from_peers() || !listeners.is_empty()).then(|| {
            PeerSet::new(PeerConfig {
                token: token.clone(),
                timeout: Duration::from_millis(args.peer_timeout.max(1)),
                name,
                ..PeerConfig::default()
            })
        });
        let peering = Self {
            set,
            listeners,
            token,
            max_reads: args.peer_max_reads,
            file: args.peers_file.clone(),
            file_version: args.peers_file.as_deref().and_then(version),
            fixed,
            own,
        };
        if let Some(set) = &peering.set {
            let from_file = match &peering.file {
                Some(f) => read_peers_file(f)?,
                None => Vec::new(),
            };
            set.set_peers(&peering.merge(from_file))
                .context("the peers")?;
        }
        Ok(peering)
    }

    /// `--peer`'s peers, then the file's, each once, without this mount.
    fn merge(&self, from_file: Vec<GrpcEndpoint>) -> Vec<GrpcEndpoint> {
        merge(&self.fixed, from_file, &self.own)
    }

    /// Serve `cache` (the mount's local store, never the layer that
    /// fetches) to peers on the listeners, and follow `--peers-file`,
    /// until `stop`. The figures of what was served, if anything is.
    pub fn run(
        self,
        cache: Option<Arc<dyn BlobService>>,
        tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Arc<PeerServerFigures>>> {
        if let (Some(set), Some(file)) = (&self.set, &self.file) {
            let (set, file, stop) = (set.clone(), file.clone(), stop.clone());
            let (fixed, own, seen) = (self.fixed.clone(), self.own.clone(), self.file_version);
            tokio::spawn(async move {
                follow_peers_file(set, &file, seen, fixed, own, stop).await;
            });
        }
        if self.listeners.is_empty() {
            return Ok(None);
        }
        let Some(cache) = cache else {
            anyhow::bail!(
                "--peer-listen needs a remote --store (a local store has no cache to share)"
            );
        };
        let serving = storefs_grpc::peer_services(cache, self.max_reads, self.set.clone());
        for l in &self.listeners {
            eprintln!(
                "storefs: serving cached chunks to peers on {}{}",
                l.client_url(),
                if self.token.is_some() {
                    " (token required)"
                } else {
                    ""
                }
            );
        }
        let config = ServerConfig {
            auth: AuthPolicy {
                read: self.token.clone(),
                write: self.token.clone(),
            },
            // Reads waiting for a chunk on its way hold no permit and cost
            // next to nothing; the bound on reads is `max_reads`.
            concurrency_limit_per_connection: (self.max_reads.max(1) * 4).max(256),
            ..ServerConfig::default()
        };
        let s = stop.clone();
        let (listeners, services) = (self.listeners, serving.services);
        tasks.spawn(async move {
            storefs_grpc::serve(listeners, services, config, s.cancelled_owned())
                .await
                .context("the peer server")
        });
        Ok(Some(serving.figures))
    }
}

/// `fixed`, then `from_file`, each once, without `own`.
fn merge(
    fixed: &[GrpcEndpoint],
    from_file: Vec<GrpcEndpoint>,
    own: &[GrpcEndpoint],
) -> Vec<GrpcEndpoint> {
    let mut all: Vec<GrpcEndpoint> = Vec::new();
    for e in fixed.iter().cloned().chain(from_file) {
        if !all.contains(&e) && !own.contains(&e) {
            all.push(e);
        }
    }
    all
}

/// The peers in `file`.
fn read_peers_file(file: &Path) -> anyhow::Result<Vec<GrpcEndpoint>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading --peers-file {}", file.display()))?;
    storefs_grpc::parse_peer_list(&text).with_context(|| format!("--peers-file {}", file.display()))
}

/// What identifies a version of the file: its modification time and length.
fn version(file: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Re-read `file` whenever it changes from version `seen` on; a file that
/// cannot be read or parsed is logged and the peers are left as they were.
async fn follow_peers_file(
    set: PeerSet,
    file: &Path,
    mut seen: Option<(SystemTime, u64)>,
    fixed: Vec<GrpcEndpoint>,
    own: Vec<GrpcEndpoint>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PEERS_FILE_POLL) => {}
        }
        let now = version(file);
        if now == seen {
            continue;
        }
        seen = now;
        match read_peers_file(file) {
            Ok(from_file) => {
                if let Err(e) = set.set_peers(&merge(&fixed, from_file, &own)) {
                    tracing::warn!(error = %storefs_castore::Report(&e), "--peers-file changed; keeping the peers as they were");
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "--peers-file changed; keeping the peers as they were"
                )
            }
        }
    }
}

/// `base`, with `peers` (where chunks came from, each peer's figures) and
/// `peer_server` (what this mount served to its peers) added.
pub fn extra(
    base: ExtraStats,
    set: Option<PeerSet>,
    served: Option<Arc<PeerServerFigures>>,
) -> ExtraStats {
    if set.is_none() && served.is_none() {
        return base;
    }
    Arc::new(move || {
        let mut m = base();
        if let Some(set) = &set {
            m.insert("peers".into(), peers_json(set));
        }
        if let Some(s) = &served {
            let (chunks, bytes, misses) = s.snapshot();
            let (lingered, wait_misses) = s.lingered();
            m.insert(
                "peer_server".into(),
                json!({
                    "chunks": chunks, "bytes": bytes, "misses": misses,
                    "from_fetches_in_flight": s.joined(),
                    "from_own_reads_awaited": lingered,
                    "waits_in_vain": wait_misses,
                }),
            );
        }
        m
    })
}

/// The `peers` section of `user.storefs.stats`.
fn peers_json(set: &PeerSet) -> Value {
    let f = set.figures();
    let list: Vec<Value> = f
        .peers
        .iter()
        .map(|p| {
            json!({
                "endpoint": p.endpoint,
                "state": p.state,
                "requests": p.requests,
                "chunks_asked": p.chunks_asked,
                "chunks": p.chunks,
                "bytes": p.bytes,
                "misses": p.misses,
                "failures": p.failures,
                "verification_failures": p.verification_failures,
                "shunned_for_ms": p.shunned_for_ms,
            })
        })
        .collect();
    json!({
        "peer_chunks": f.peer_chunks,
        "peer_bytes": f.peer_bytes,
        "service_chunks": f.service_chunks,
        "service_bytes": f.service_bytes,
        "verification_failures": f.verification_failures,
        "list": list,
    })
}

/// One line on stderr as the mount ends: where its chunks came from.
pub fn report(set: Option<&PeerSet>, served: Option<&PeerServerFigures>) {
    if let Some(set) = set {
        let f = set.figures();
        eprintln!(
            "storefs: chunks from peers: {} ({} bytes); from the service: {} ({} bytes); verification failures: {}",
            f.peer_chunks, f.peer_bytes, f.service_chunks, f.service_bytes, f.verification_failures
        );
    }
    if let Some(s) = served {
        let (chunks, bytes, misses) = s.snapshot();
        eprintln!(
            "storefs: served to peers: {chunks} chunks ({bytes} bytes); {misses} asked for were not cached"
        );
    }
}

/// The peer lines of `storefs status` (none without peers).
pub fn summary(m: &serde_json::Map<String, Value>) -> String {
    let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = String::new();
    if let Some(p) = m.get("peers") {
        out += &format!(
            "  peers:         {} bytes in {} chunks from peers, {} bytes in {} chunks from the service, {} verification failures\n",
            get(p, "peer_bytes"),
            get(p, "peer_chunks"),
            get(p, "service_bytes"),
            get(p, "service_chunks"),
            get(p, "verification_failures"),
        );
        for peer in p
            .get("list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out += &format!(
                "    {} {}: {} bytes, {} misses, {} failures\n",
                peer.get("endpoint").and_then(Value::as_str).unwrap_or("?"),
                peer.get("state").and_then(Value::as_str).unwrap_or("?"),
                get(peer, "bytes"),
                get(peer, "misses"),
                get(peer, "failures"),
            );
        }
    }
    if let Some(s) = m.get("peer_server") {
        out += &format!(
            "  served peers:  {} bytes in {} chunks, {} asked for not cached\n",
            get(s, "bytes"),
            get(s, "chunks"),
            get(s, "misses"),
        );
    }
    out
}
