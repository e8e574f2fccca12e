//! `storefs import`: copy closures in from a binary cache (`file://`,
//! `http(s)://`), a running nix-daemon (`unix://SOCKET`) or, with
//! `--authorized-keys`, a `guix publish` server, with a progress bar on a
//! terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use storefs_store::daemon::import_from_daemon;
use storefs_store::guix::import_from_guix;
use storefs_store::import::{ImportOptions, ImportProgress, NoProgress, import_from_binary_cache};
use storefs_store::{StoreDir, StorePath};

use crate::services::Services;

/// What `storefs import` was asked to do.
pub struct ImportArgs {
    /// The source URL.
    pub from: String,
    /// `name:base64` public keys.
    pub trusted_public_keys: Vec<String>,
    /// Accept unsigned paths.
    pub no_check_sigs: bool,
    /// Guix ACL or key files: import from a `guix publish` server.
    pub authorized_keys: Vec<PathBuf>,
    /// Roots to copy with their closures; none: everything listed.
    pub paths: Vec<String>,
}

/// Run the import and print what it did.
pub async fn run(
    services: &Services,
    store_dir: &StoreDir,
    args: ImportArgs,
) -> anyhow::Result<()> {
    let progress: Arc<dyn ImportProgress> = if std::io::stderr().is_terminal() {
        Arc::new(Bar::new())
    } else {
        Arc::new(NoProgress)
    };
    let guix_keys = if args.authorized_keys.is_empty() {
        None
    } else {
        Some(super::guix::authorized_keys(&args)?)
    };
    let options = ImportOptions {
        trusted_keys: args.trusted_public_keys,
        check_sigs: !args.no_check_sigs,
        store_dir: store_dir.clone(),
        concurrency: 4,
    };
    let into = services.clone();
    let report = match (guix_keys, daemon_socket(&args.from)) {
        (Some(acl), _) => {
            import_from_guix(
                &args.from,
                &args.paths,
                acl,
                options,
                into,
                progress.clone(),
            )
            .await
        }
        (None, Some(socket)) => {
            import_from_daemon(&socket, &args.paths, options, into, progress.clone()).await
        }
        (None, None) => {
            import_from_binary_cache(&args.from, &args.paths, options, into, progress.clone()).await
        }
    }
    .with_context(|| format!("importing from {}", args.from))?;
    drop(progress);
    for p in &report.imported {
        println!("{}", p.to_absolute(store_dir));
    }
    eprintln!(
        "storefs: imported {} paths ({} NAR bytes), {} already present",
        report.imported.len(),
        report.nar_bytes,
        report.already_present.len()
    );
    if !report.failed.is_empty() {
        for f in &report.failed {
            eprintln!("storefs: {}: {}", f.path, crate::error_chain(&f.error));
        }
        bail!(
            "{} of the paths could not be imported (listed above); nothing of them was recorded",
            report.failed.len()
        );
    }
    Ok(())
}

/// `unix:///path` or `unix:/path` → the socket path.
fn daemon_socket(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("unix:"))?;
    // Nix's store URLs may carry ?root=… and the like; the socket is the path.
    let path = rest.split('?').next().unwrap_or(rest);
    Some(PathBuf::from(path))
}

/// An indicatif bar over NAR bytes, with the path count in its message.
struct Bar {
    bar: ProgressBar,
    done: std::sync::atomic::AtomicU64,
    total: std::sync::atomic::AtomicU64,
}

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self {
            bar,
            done: Default::default(),
            total: Default::default(),
        }
    }
}

impl ImportProgress for Bar {
    fn planned(&self, paths: u64, nar_bytes: u64) {
        self.total
            .store(paths, std::sync::atomic::Ordering::Relaxed);
        self.bar.set_length(nar_bytes);
        self.bar.set_message(format!("0/{paths} paths"));
    }

    fn nar_bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    fn path_done(&self, _path: &StorePath, _error: Option<&str>) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let total = self.total.load(std::sync::atomic::Ordering::Relaxed);
        self.bar.set_message(format!("{done}/{total} paths"));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
