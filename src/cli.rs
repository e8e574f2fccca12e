//! The command line, as clap parses it. Flags become typed config in the
//! command modules; nothing below `src/` sees argv.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// storefs: a Nix or Guix store, mounted lazily from a content-addressed store service.
#[derive(Debug, Parser)]
#[command(name = "storefs", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The store to use: redb:///dir, memory:, grpc://host:port, grpc+unix:///path,
    /// s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT&region=R, file:///dir.
    /// Replicas of a gRPC store, tried in turn: grpc://a:7070,b:7070.
    /// Default: the embedded store under $STOREFS_DATA, else $XDG_DATA_HOME/storefs.
    #[arg(long, global = true, env = "STOREFS_STORE")]
    pub store: Option<String>,
    /// The store directory paths live in: /nix/store, or /gnu/store for Guix.
    #[arg(
        long,
        global = true,
        default_value = "/nix/store",
        env = "STOREFS_STORE_DIR"
    )]
    pub store_dir: String,
    /// A file holding the bearer token for a gRPC store (else $STOREFS_TOKEN).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// S3 credentials for an s3:// store: aws_access_key_id = … and
    /// aws_secret_access_key = … lines (else $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY).
    #[arg(long, global = true)]
    pub s3_credentials_file: Option<PathBuf>,
}

/// The commands (README.md, "Usage").
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest local files or directories as store paths; prints one store path a line,
    /// the same as `nix-store --add`.
    Add {
        /// Store the path under this name instead of the file's own name.
        #[arg(long)]
        name: Option<String>,
        /// Files or directories to add.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write a path's NAR to stdout, byte for byte what `nix-store --dump` writes.
    Nar {
        /// A store path (full, or its base name).
        path: String,
    },
    /// Show what the store knows of paths: NAR hash and size, references, deriver,
    /// signatures, CA, root digest.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Store paths (full, or base names).
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Copy closures in from a binary cache (file://, http(s)://) or a nix-daemon (unix://SOCKET).
    Import {
        /// Where to copy from.
        #[arg(long)]
        from: String,
        /// A public key (name:base64) whose signatures are trusted; repeatable.
        #[arg(long = "trusted-public-key")]
        trusted_public_keys: Vec<String>,
        /// Accept paths without a trusted signature.
        #[arg(long)]
        no_check_sigs: bool,
        /// Import from a `guix publish` server: Guix signatures by the keys in this ACL
        /// file (/etc/guix/acl) or public key file (signing-key.pub); repeatable.
        #[arg(long = "authorized-keys")]
        authorized_keys: Vec<PathBuf>,
        /// Paths to copy with their closures; none: everything the source lists.
        paths: Vec<String>,
    },
    /// Write a new Guix key pair (signing-key.pub, signing-key.sec) into DIR, as
    /// `guix archive --generate-key` does.
    GuixGenerateKey {
        /// The directory to write the two files into.
        dir: PathBuf,
    },
    /// Run the store service: gRPC, the HTTP binary cache view, the daemon socket.
    Serve(Box<ServeArgs>),
    /// Mount the store lazily at MOUNTPOINT, in the foreground until unmounted or signalled.
    Mount(Box<MountArgs>),
    /// Serve the store lazily to virtual machines over virtio-fs: a vhost-user-fs backend on
    /// SOCKET (QEMU: -chardev socket,path=SOCKET -device vhost-user-fs-pci,tag=store), guests
    /// one after another, in the foreground until signalled.
    Virtiofs(VirtiofsArgs),
    /// Fetch store paths ahead of use: read them through a mount, or fill
    /// a mount's cache directory without one.
    Prefetch {
        /// Read the files through this mount (at low priority).
        #[arg(long, value_name = "MOUNTPOINT", conflicts_with = "cache")]
        mount: Option<PathBuf>,
        /// Fill this cache directory (as `mount --cache`; not while a mount
        /// uses it) from --store.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Size quota of --cache, e.g. 10G.
        #[arg(long, requires = "cache")]
        cache_size: Option<String>,
        /// Follow references: whole closures (asks --store).
        #[arg(long)]
        closure: bool,
        /// Store paths (with --mount also files or directories in them).
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Remove path infos from the store (their data goes at the next gc).
    /// Refuses a path that another path refers to, unless --recursive.
    Delete {
        /// Delete the paths that refer to these too (and theirs).
        #[arg(long)]
        recursive: bool,
        /// Store paths (full, or base names).
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Delete the directories, blobs and chunks no path info reaches
    /// (embedded store); prints what it freed.
    Gc {
        /// Keep whatever was written (or reused by an upload) within this
        /// long, e.g. 1h, 30m, 0s: uploads still running are younger.
        #[arg(long, visible_alias = "grace", value_name = "DURATION", default_value = "1h", value_parser = parse_age)]
        keep_since: Duration,
        /// Say what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop after deleting this many records (the next run goes on).
        #[arg(long, value_name = "N")]
        max_deletions: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that every path info's directories, blobs and chunks are in
    /// the store (embedded store).
    Verify,
    /// What a mount is doing: its remote and health, cache use against the
    /// quota, hit rate, bytes fetched, the slowest recent fetches.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Mountpoints; none: every storefs mount on this machine.
        mountpoints: Vec<PathBuf>,
    },
}

/// Flags of `storefs serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen for gRPC: host:port or unix:/path; repeatable.
    #[arg(long)]
    pub listen: Vec<String>,
    /// Where to serve the HTTP binary cache view (host:port).
    #[arg(long)]
    pub http: Option<String>,
    /// Answer the Nix daemon protocol on this unix socket.
    #[arg(long)]
    pub daemon_socket: Option<PathBuf>,
    /// Who may use the daemon socket, its mode and limits.
    #[command(flatten)]
    pub daemon_access: DaemonAccessArgs,
    /// Timeouts and limits of the HTTP view.
    #[command(flatten)]
    pub http_limits: HttpLimitArgs,
    /// Require this bearer token (read from the file) for writes.
    #[arg(long)]
    pub write_token_file: Option<PathBuf>,
    /// Require this bearer token (read from the file) for reads, over gRPC
    /// and HTTP (Bearer, or a netrc password).
    #[arg(long)]
    pub read_token_file: Option<PathBuf>,
    /// Sign narinfos served over HTTP with this Nix secret key file.
    #[arg(long)]
    pub sign_key_file: Option<PathBuf>,
    /// Priority announced in nix-cache-info (lower is preferred).
    #[arg(long, default_value_t = 40)]
    pub priority: u32,
    /// Keep a local redb cache in this directory in front of the store
    /// (for an object store or a remote: chunks, directories, path infos).
    #[arg(long)]
    pub near_cache: Option<PathBuf>,
    /// Size quota of --near-cache, e.g. 10G (default: a quarter of the free space there).
    #[arg(long, requires = "near_cache")]
    pub near_cache_size: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (host:port).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Collect garbage in the embedded store every DURATION while serving
    /// (as `storefs gc`, which cannot open a store a server holds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub gc_interval: Option<Duration>,
    /// The grace period of --gc-interval's collections.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_age, requires = "gc_interval")]
    pub gc_keep_since: Duration,
    /// The longest a request to the backing store may take (an S3 request,
    /// retries included; a gRPC remote), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub guix: GuixServeArgs,
}

/// The Guix flavour of `serve --http`.
#[derive(Debug, Args)]
pub struct GuixServeArgs {
    /// The HTTP view's flavour: nix, guix (`guix publish` layout and signatures), or auto
    /// (guix when the store directory is /gnu/store).
    #[arg(long, default_value = "auto", value_parser = ["auto", "nix", "guix"])]
    pub http_flavour: String,
    /// Sign Guix narinfos with this Guix secret key (signing-key.sec).
    #[arg(long)]
    pub guix_sign_key_file: Option<PathBuf>,
    /// The host name in Guix signatures (default: this machine's).
    #[arg(long)]
    pub guix_host_name: Option<String>,
    /// The NAR compressions offered to Guix clients, in order (none, zstd, gzip).
    #[arg(long, value_delimiter = ',', default_value = "zstd,gzip,none")]
    pub guix_compression: Vec<String>,
}

/// The lazy store's own flags, the same for `storefs mount` and `storefs virtiofs`.
#[derive(Debug, Args)]
pub struct LazyStoreArgs {
    /// Directory of the local cache (redb); default under the data directory.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Size quota of the local cache, e.g. 10G.
    #[arg(long)]
    pub cache_size: Option<String>,
    /// List every store path in the root directory.
    #[arg(long)]
    pub list_root: bool,
    /// Seconds after which a call to the service (a chunk batch, a chunk
    /// list, a directory, a path info) that has not answered fails with EIO.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// Flags of `storefs mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The store's cache, listing and timeout.
    #[command(flatten)]
    pub lazy: LazyStoreArgs,
    /// FUSE worker threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Answer the Nix daemon protocol on this unix socket too.
    #[arg(long)]
    pub daemon_socket: Option<PathBuf>,
    /// Who may use the daemon socket, its mode and limits.
    #[command(flatten)]
    pub daemon_access: DaemonAccessArgs,
    /// Let users other than the one mounting see the files.
    #[arg(long)]
    pub allow_other: bool,
    /// Never hand fully cached files to the kernel (FUSE passthrough): every
    /// read goes through the mount, and no file copies are kept beside the
    /// cache.
    #[arg(long)]
    pub no_passthrough: bool,
    /// Inodes the mount holds before it asks the kernel to drop the entries
    /// of its oldest directories, so that its memory stays bounded however
    /// much is walked (about 230 bytes each; 0: as many as the kernel keeps).
    #[arg(long, value_name = "N", default_value_t = storefs_fuse::DEFAULT_MAX_INODES)]
    pub max_inodes: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (host:port).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Write what this mount fetched (path infos, closures, chunk lists,
    /// chunks), in order, to FILE when it is unmounted: a prefetch list.
    #[arg(long, value_name = "FILE")]
    pub record_trace: Option<PathBuf>,
    /// Replay a recorded trace into the cache in the background from the
    /// start, demand reads always first.
    #[arg(long, value_name = "FILE")]
    pub prefetch_list: Option<PathBuf>,
    /// Sharing cached chunks with other mounts (docs/peers.md).
    #[command(flatten)]
    pub peers: PeerArgs,
}

/// Flags of `storefs mount` for sharing chunks between workers.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Serve the chunks this mount has cached to its peers, read-only, on
    /// ADDR (host:port or unix:PATH); repeatable.
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Vec<String>,
    /// Read chunks from this peer before the service (grpc://HOST:PORT or
    /// grpc+unix:///PATH); repeatable.
    #[arg(long, value_name = "URL")]
    pub peer: Vec<String>,
    /// Read the peers from FILE too (one URL a line, `#` comments), and
    /// again whenever it changes.
    #[arg(long, value_name = "FILE")]
    pub peers_file: Option<PathBuf>,
    /// The bearer token peers need (what this mount serves) and send (what
    /// it asks of its peers).
    #[arg(long, value_name = "FILE")]
    pub peer_token_file: Option<PathBuf>,
    /// Milliseconds a read may spend among the peers before it asks the
    /// service.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub peer_timeout: u64,
    /// Reads served to peers at once (more wait), so that peers cannot
    /// starve this mount's own programs.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub peer_max_reads: usize,
}

impl PeerArgs {
    /// Whether this mount reads from peers at all.
    pub fn reads_from_peers(&self) -> bool {
        !self.peer.is_empty() || self.peers_file.is_some()
    }
}

/// Flags of `storefs virtiofs`.
#[derive(Debug, Args)]
pub struct VirtiofsArgs {
    /// The vhost-user socket to listen on (a stale one is replaced).
    #[arg(long)]
    pub socket: PathBuf,
    /// The store's cache, listing and timeout (as `storefs mount`).
    #[command(flatten)]
    pub lazy: LazyStoreArgs,
    /// Serve one guest and exit when it goes away, instead of waiting for the next.
    #[arg(long)]
    pub once: bool,
    /// Write the figures (JSON, as the user.storefs.stats xattr) to this file after each
    /// guest and at exit.
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
}

/// Who may use the daemon socket, and how much of it (docs/access.md).
#[derive(Debug, Args)]
pub struct DaemonAccessArgs {
    /// Users who may upload through the daemon socket: uids, user names,
    /// @group, * (comma- or space-separated; repeatable). Default: root and
    /// the user running storefs.
    #[arg(long, value_name = "USERS")]
    pub trusted_users: Vec<String>,
    /// Users who may connect to the daemon socket at all (to query and read
    /// unless trusted); same forms. Default: *.
    #[arg(long, value_name = "USERS")]
    pub allowed_users: Vec<String>,
    /// Permissions of the daemon socket file, in octal.
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = parse_mode)]
    pub daemon_socket_mode: u32,
    /// Group owning the daemon socket file (name or gid); default: ours.
    #[arg(long, value_name = "GROUP")]
    pub daemon_socket_group: Option<String>,
    /// Longest time a daemon client may take for its handshake.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub daemon_handshake_timeout: Duration,
    /// Close a daemon connection on which nothing moved for this long.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub daemon_idle_timeout: Duration,
    /// Most daemon connections held at once for one uid.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub daemon_max_connections_per_user: usize,
}

/// Timeouts and limits of the HTTP view (docs/access.md).
#[derive(Debug, Args)]
pub struct HttpLimitArgs {
    /// Longest time a client may take to send a request's head (slowloris).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,
    /// Close an HTTP connection on which nothing moved for this long.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub http_idle_timeout: Duration,
    /// Most HTTP connections open at once from one client address.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub http_max_connections_per_ip: usize,
}

/// A duration: a number with a unit `ms`, `s`, `m` or `h` (no unit: seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 500ms, 30s, 5m, 1h)"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err(format!("{s:?}: a timeout must be more than zero"));
    }
    Ok(d)
}

/// An age such as `1h` or `0s` ([`parse_duration`]'s units; zero allowed).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    match s.trim().trim_end_matches(['s', 'm', 'h']) {
        "0" => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

/// A file mode in octal, such as `0660` or `660`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode (e.g. 0660)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_modes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "0s", "1d", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_age("0"), Ok(Duration::ZERO));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_age("x").is_err());
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("666"), Ok(0o666));
        for bad in ["", "8", "0x1", "77777"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }
}
