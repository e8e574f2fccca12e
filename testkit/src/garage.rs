//! [`Garage`]: a real S3 service for the object-store tests, a
//! single-node Garage cluster on loopback in a temp directory, killed on
//! drop. `scripts/test` installs the `garage` binary when missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, pseudo_random, wait_for};

/// How long Garage may take to come up and answer its CLI.
const STARTUP: Duration = Duration::from_secs(60);

/// The region Garage signs for (its `s3_region`).
pub const REGION: &str = "garage";

/// A running single-node Garage with one key and one bucket.
pub struct Garage {
    child: Option<Child>,
    config: PathBuf,
    /// `http://127.0.0.1:PORT`, the S3 API.
    pub endpoint: String,
    /// The S3 API's port.
    pub port: u16,
    /// The key's id.
    pub access_key_id: String,
    /// The key's secret.
    pub secret_access_key: String,
    /// The bucket made at start (the key may read, write and own it).
    pub bucket: String,
    _dir: tempfile::TempDir,
}

/// The `garage` binary: `$GARAGE_BIN`, else `garage` on `PATH`, else
/// `~/.cargo/bin/garage` (where `cargo install` puts it).
pub fn garage_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("GARAGE_BIN") {
        return b.into();
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("garage");
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cargo/bin/garage")
}

impl Garage {
    /// Write a config (sqlite metadata, replication factor 1, RPC and S3 on
    /// free loopback ports, a fresh RPC secret), start `garage server`,
    /// give the node the whole layout, and make a key and a bucket.
    pub fn start() -> Self {
        let bin = garage_bin();
        assert!(
            bin.is_file(),
            "no garage binary at {} (scripts/test installs it: cargo install --locked garage \
             --no-default-features --features sqlite,bundled-libs)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let secret = hex(&pseudo_random(32, u64::from(s3)));
        let config = dir.path().join("garage.toml");
        let meta = dir.path().join("meta");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                meta = meta.display(),
                data = data.display(),
            ),
        )
        .expect("write garage.toml");
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut g = Garage {
            child: Some(child),
            config,
            endpoint: format!("http://127.0.0.1:{s3}"),
            port: s3,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            bucket: "storefs-test".into(),
            _dir: dir,
        };
        wait_for(STARTUP, "garage to answer its CLI", || {
            g.check_alive();
            g.try_cli(&["status"]).is_some()
        });
        let node = g.cli(&["node", "id", "-q"]);
        let node = node.split('@').next().unwrap_or_default().trim().to_owned();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        let key = g.cli(&["key", "create", "storefs-test-key"]);
        g.access_key_id = field(&key, "Key ID");
        g.secret_access_key = field(&key, "Secret key");
        let bucket = g.bucket.clone();
        g.create_bucket(&bucket);
        wait_for(STARTUP, "garage's S3 API to accept", || {
            g.check_alive();
            std::net::TcpStream::connect(("127.0.0.1", s3)).is_ok()
        });
        g
    }

    /// Make another bucket the key may read, write and own.
    pub fn create_bucket(&self, name: &str) {
        self.cli(&["bucket", "create", name]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            "storefs-test-key",
        ]);
    }

    /// The `--store` URL of `bucket` under `prefix` (may be empty).
    pub fn store_url(&self, bucket: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        format!(
            "s3://{bucket}{path}?endpoint={}&region={REGION}",
            self.endpoint
        )
    }

    /// Set the key on `cmd` the way users do (the AWS environment).
    pub fn credentials_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
    }

    /// Run the garage CLI against this node; its stdout. Panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run garage");
        assert!(
            out.status.success(),
            "garage {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = self.command(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(garage_bin());
        c.arg("-c").arg(&self.config).args(args);
        c.env("RUST_LOG", "error");
        c
    }

    /// Panic (with its log) if the server has exited.
    fn check_alive(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            panic!("garage server exited: {status}\n{log}");
        }
    }

    fn log_path(&self) -> PathBuf {
        self.config.with_file_name("garage.log")
    }

    /// Freeze the server (SIGSTOP): its sockets stay open and nothing
    /// answers, as an S3 that hangs. [`Garage::resume`] thaws it.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            crate::signal(c, rustix::process::Signal::STOP);
        }
    }

    /// Thaw a server frozen by [`Garage::pause`].
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            crate::signal(c, rustix::process::Signal::CONT);
        }
    }

    /// The config file (for tests that run the CLI themselves).
    pub fn config(&self) -> &Path {
        &self.config
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The value after `name:` on a line of the CLI's output.
fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name:?} in garage's output:\n{out}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
