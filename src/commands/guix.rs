//! The Guix side of the command line: the Guix flavour of `serve --http`
//! and `storefs guix-generate-key`.

use std::path::Path;

use anyhow::{Context, bail};
use storefs_http::HttpConfig;
use storefs_http::guix::{GuixCompression, GuixHttpConfig};
use storefs_store::StoreDir;
use storefs_store::guix::{Acl, SecretKey};

use crate::cli::GuixServeArgs;

/// The Guix store directory; `--http-flavour auto` picks Guix for it.
const GUIX_STORE_DIR: &str = "/gnu/store";

/// The Guix flavour's config when `serve --http` should speak it.
pub fn http_config(
    args: &GuixServeArgs,
    store_dir: &StoreDir,
    nix: &HttpConfig,
) -> anyhow::Result<Option<GuixHttpConfig>> {
    let guix = match args.http_flavour.as_str() {
        "guix" => true,
        "nix" => false,
        _ => store_dir.as_str() == GUIX_STORE_DIR,
    };
    if !guix {
        if args.guix_sign_key_file.is_some() {
            bail!(
                "--guix-sign-key-file needs the Guix flavour (--http-flavour guix, or --store-dir /gnu/store)"
            );
        }
        return Ok(None);
    }
    if nix.sign_key.is_some() {
        bail!("--sign-key-file takes a Nix key; the Guix flavour signs with --guix-sign-key-file");
    }
    let sign_key = match &args.guix_sign_key_file {
        Some(f) => {
            let text = std::fs::read(f)
                .with_context(|| format!("reading --guix-sign-key-file {}", f.display()))?;
            Some(
                SecretKey::parse(&text)
                    .with_context(|| format!("--guix-sign-key-file {}", f.display()))?,
            )
        }
        None => {
            eprintln!(
                "storefs: warning: no --guix-sign-key-file; narinfos are unsigned and Guix clients will refuse them"
            );
            None
        }
    };
    let mut compressions = Vec::new();
    for c in &args.guix_compression {
        let Some(parsed) = GuixCompression::parse(c) else {
            bail!("--guix-compression {c:?}: not one of none, zstd, gzip");
        };
        if !compressions.contains(&parsed) {
            compressions.push(parsed);
        }
    }
    if compressions.is_empty() {
        bail!("--guix-compression: offer at least one compression");
    }
    let host = match &args.guix_host_name {
        Some(h) => h.clone(),
        None => host_name(),
    };
    if host.contains(';') || host.contains('\n') {
        bail!("host name {host:?} cannot go in a Guix signature (it contains ';' or a newline)");
    }
    let mut config = GuixHttpConfig::new(sign_key, host);
    config.compressions = compressions;
    Ok(Some(config))
}

/// This machine's host name, as `guix publish` puts it in signatures.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Write `signing-key.pub` and `signing-key.sec` into `dir`, refusing to
/// overwrite a key pair (as `guix archive --generate-key` does).
pub fn generate_key(dir: &Path) -> anyhow::Result<()> {
    let public = dir.join("signing-key.pub");
    let secret = dir.join("signing-key.sec");
    if public.exists() || secret.exists() {
        bail!("key pair exists under {}; remove it first", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = SecretKey::generate();
    write_private(&secret, key.to_file_text().as_bytes())?;
    std::fs::write(&public, key.public().to_file_text())
        .with_context(|| format!("writing {}", public.display()))?;
    println!("{}", public.display());
    Ok(())
}

/// Write a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The keys of `storefs import --authorized-keys …` (a `guix publish`
/// source): every ACL or key file read into one ACL.
pub fn authorized_keys(args: &super::import::ImportArgs) -> anyhow::Result<Acl> {
    if args.no_check_sigs || !args.trusted_public_keys.is_empty() {
        bail!(
            "--authorized-keys (Guix signatures) does not go with --no-check-sigs or --trusted-public-key (Nix signatures)"
        );
    }
    let mut acl = Acl::default();
    for f in &args.authorized_keys {
        let text = std::fs::read(f)
            .with_context(|| format!("reading --authorized-keys {}", f.display()))?;
        let one = Acl::parse_acl_or_key(&text)
            .with_context(|| format!("--authorized-keys {}", f.display()))?;
        if one.skipped() > 0 {
            eprintln!(
                "storefs: {}: skipped {} key(s) of a type storefs does not verify (RSA or EdDSA)",
                f.display(),
                one.skipped()
            );
        }
        for k in one.keys() {
            acl.add(k.clone());
        }
    }
    Ok(acl)
}
