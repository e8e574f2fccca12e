//! The command line, as clap parses it. Flags become typed config in the
//! command modules; nothing below `src/` sees argv.

use std::path::PathBuf;

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
    /// The store to use: redb:///dir, memory:, grpc://host:port, grpc+unix:///path.
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
}

/// The commands of DESIGN.md.
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
    Serve(ServeArgs),
    /// Mount the store lazily at MOUNTPOINT, in the foreground until unmounted or signalled.
    Mount(MountArgs),
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
    /// Require this bearer token (read from the file) for writes.
    #[arg(long)]
    pub write_token_file: Option<PathBuf>,
    /// Require this bearer token (read from the file) for reads.
    #[arg(long)]
    pub read_token_file: Option<PathBuf>,
    /// Sign narinfos served over HTTP with this Nix secret key file.
    #[arg(long)]
    pub sign_key_file: Option<PathBuf>,
    /// Priority announced in nix-cache-info (lower is preferred).
    #[arg(long, default_value_t = 40)]
    pub priority: u32,
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

/// Flags of `storefs mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Directory of the local cache (redb); default under the data directory.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Size quota of the local cache, e.g. 10G.
    #[arg(long)]
    pub cache_size: Option<String>,
    /// List every store path in the mount's root directory.
    #[arg(long)]
    pub list_root: bool,
    /// FUSE worker threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds after which a fetch that has not finished fails with EIO.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Answer the Nix daemon protocol on this unix socket too.
    #[arg(long)]
    pub daemon_socket: Option<PathBuf>,
    /// Let users other than the one mounting see the files.
    #[arg(long)]
    pub allow_other: bool,
}
