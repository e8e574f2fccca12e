//! `storefs status [MOUNTPOINT…] [--json]`: what a mount is doing, read
//! from the mount itself (the `user.storefs.stats` xattr of its root):
//! the remote and its health, the local cache against its quota, the hit
//! rate, bytes fetched and the slowest recent fetches. Without a
//! mountpoint, every storefs mount of this machine (`/proc/self/mountinfo`).
//!
//! The mount adds to its xattr what only its owner knows ([`extra`]): the
//! remote's URL and health, the quota, the slow fetches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use storefs_castore::{CacheStats, RedbBlobService};
use storefs_fuse::ExtraStats;
use storefs_grpc::Replicas;

/// How many of the slowest recent fetches the mount reports.
const SLOWEST: usize = 5;

/// The mount owner's figures for `user.storefs.stats`: `remote` (the store
/// URL), `remotes` (each replica of a gRPC store, in the order given:
/// docs/replicas.md), `prefetch` (a replay's progress), and with a local
/// cache `remote_health`, the quota and the slowest recent fetches. All read from atomics: the FUSE thread that
/// answers the xattr never waits.
pub fn extra(
    remote: String,
    cache: Option<(Arc<CacheStats>, Arc<RedbBlobService>)>,
    replicas: Option<Replicas>,
    prefetch: Option<Arc<super::prefetch::Progress>>,
) -> ExtraStats {
    Arc::new(move || {
        let mut m = Map::new();
        m.insert("remote".into(), Value::String(remote.clone()));
        if let Some(r) = &replicas {
            let remotes = r
                .figures()
                .iter()
                .map(|f| {
                    json!({
                        "endpoint": f.endpoint,
                        "state": f.state(),
                        "requests": f.requests,
                        "failures": f.failures,
                        "bytes": f.bytes,
                        "consecutive_failures": f.consecutive_failures,
                        "shunned_for_ms": f.shunned_for_ms,
                    })
                })
                .collect();
            m.insert("remotes".into(), Value::Array(remotes));
        }
        if let Some(p) = &prefetch {
            m.insert("prefetch".into(), p.json());
        }
        let Some((stats, blobs)) = &cache else {
            return m;
        };
        let c = stats.snapshot();
        m.insert(
            "remote_health".into(),
            json!({
                "up": c.far_last_error == 0 || c.far_last_ok >= c.far_last_error,
                "last_ok_unix": c.far_last_ok,
                "last_error_unix": c.far_last_error,
                "errors": c.far_errors,
                "in_flight": c.far_in_flight,
            }),
        );
        if let Some(q) = blobs.quota_figures() {
            m.insert("cache_quota_bytes".into(), q.max_bytes.into());
            m.insert("cache_used_bytes".into(), q.used_bytes.into());
            m.insert("cache_evictions".into(), q.evicted_chunks.into());
        }
        let slow: Vec<Value> = stats
            .slowest_fetches(SLOWEST)
            .iter()
            .map(|f| {
                json!({
                    "digest": f.digest.to_hex(),
                    "chunks": f.chunks,
                    "bytes": f.bytes,
                    "ms": u64::try_from(f.took.as_millis()).unwrap_or(u64::MAX),
                    "at_unix": f.at_unix,
                    "failed": f.failed,
                })
            })
            .collect();
        m.insert("slowest_fetches".into(), Value::Array(slow));
        m
    })
}

/// Print the status of `mountpoints` (none: every storefs mount here).
pub fn run(mountpoints: &[PathBuf], as_json: bool) -> anyhow::Result<()> {
    let targets = if mountpoints.is_empty() {
        let found = storefs_mounts()?;
        if found.is_empty() {
            bail!("no storefs mount on this machine (give a MOUNTPOINT)");
        }
        found
    } else {
        mountpoints.to_vec()
    };
    let mut all = Vec::new();
    for mp in &targets {
        let stats = read_stats(mp)?;
        all.push((mp.clone(), stats));
    }
    if as_json {
        let out: Vec<Value> = all
            .into_iter()
            .map(|(mp, mut stats)| {
                if let Value::Object(m) = &mut stats {
                    m.insert("mountpoint".into(), mp.display().to_string().into());
                    m.insert("cache_hit_rate".into(), hit_rate(m).into());
                }
                stats
            })
            .collect();
        let text = if mountpoints.len() == 1 {
            serde_json::to_string_pretty(&out[0])?
        } else {
            serde_json::to_string_pretty(&out)?
        };
        println!("{text}");
    } else {
        for (i, (mp, stats)) in all.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", summary(mp, stats));
        }
    }
    Ok(())
}

/// The root's `user.storefs.stats`, parsed.
pub fn read_stats(mountpoint: &Path) -> anyhow::Result<Value> {
    let mut buf = vec![0u8; 64 << 10];
    let n = rustix::fs::getxattr(mountpoint, storefs_fuse::xattr::STATS, &mut buf).with_context(
        || {
            format!(
                "{} is not a storefs mount (no {} xattr)",
                mountpoint.display(),
                storefs_fuse::xattr::STATS
            )
        },
    )?;
    buf.truncate(n);
    serde_json::from_slice(&buf).with_context(|| {
        format!(
            "the {} xattr of {} is not JSON",
            storefs_fuse::xattr::STATS,
            mountpoint.display()
        )
    })
}

/// Mountpoints of `fuse.storefs` mounts, from `/proc/self/mountinfo`.
fn storefs_mounts() -> anyhow::Result<Vec<PathBuf>> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mountpoint = pre.split(' ').nth(4)?;
            (fstype == "fuse.storefs").then(|| unescape(mountpoint))
        })
        .map(PathBuf::from)
        .collect())
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or(""), 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn num(m: &Map<String, Value>, k: &str) -> u64 {
    m.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Chunks served by the disk cache over all chunks read through it
/// (0 when nothing was read).
fn hit_rate(m: &Map<String, Value>) -> f64 {
    let hits = num(m, "cache_hit_chunks");
    let misses = num(m, "chunks_fetched");
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

/// Bytes for people: B, KiB, MiB, GiB.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The human summary of one mount.
fn summary(mountpoint: &Path, stats: &Value) -> String {
    let empty = Map::new();
    let m = stats.as_object().unwrap_or(&empty);
    let mut out = format!("storefs mount at {}\n", mountpoint.display());
    let remote = m
        .get("remote")
        .and_then(Value::as_str)
        .unwrap_or("(unknown)");
    let health = match m.get("remote_health") {
        Some(h) => {
            let up = h.get("up").and_then(Value::as_bool).unwrap_or(true);
            let errors = h.get("errors").and_then(Value::as_u64).unwrap_or(0);
            let in_flight = h.get("in_flight").and_then(Value::as_u64).unwrap_or(0);
            format!(
                "{} ({errors} failed requests, {in_flight} in flight)",
                if up {
                    "up"
                } else {
                    "DOWN (last request failed)"
                }
            )
        }
        None => "local store, nothing fetched".to_owned(),
    };
    out += &format!("  remote:        {remote}: {health}\n");
    if let (Some(q), Some(u)) = (
        m.get("cache_quota_bytes").and_then(Value::as_u64),
        m.get("cache_used_bytes").and_then(Value::as_u64),
    ) {
        let pct = if q == 0 {
            0.0
        } else {
            u as f64 * 100.0 / q as f64
        };
        out += &format!(
            "  cache:         {} of {} ({pct:.1}%), {} evictions\n",
            human(u),
            human(q),
            num(m, "cache_evictions")
        );
    }
    out += &format!(
        "  hit rate:      {:.1}% of chunks from the disk cache ({} hits, {} fetched)\n",
        hit_rate(m) * 100.0,
        num(m, "cache_hit_chunks"),
        num(m, "chunks_fetched")
    );
    out += &format!(
        "  fetched:       {} in {} chunks; {} read in all\n",
        human(num(m, "bytes_fetched")),
        num(m, "chunks_fetched"),
        human(num(m, "blob_bytes_read"))
    );
    out += &format!(
        "  operations:    {} lookups, {} open files, {} errors, {} timeouts\n",
        num(m, "lookups"),
        num(m, "open_files"),
        num(m, "errors"),
        num(m, "timeouts")
    );
    if let Some(p) = m.get("prefetch") {
        let get = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        out += &format!(
            "  prefetch:      {} of {} entries{}, {} failed, stood aside {} times\n",
            get("done"),
            get("entries"),
            if p.get("finished").and_then(Value::as_bool) == Some(true) {
                " (finished)"
            } else {
                ""
            },
            get("failed"),
            get("yielded_to_demand")
        );
    }
    out += &super::peers::summary(m);
    if let Some(slow) = m.get("slowest_fetches").and_then(Value::as_array)
        && !slow.is_empty()
    {
        out += "  slowest recent fetches:\n";
        for f in slow {
            let get = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
            let digest = f.get("digest").and_then(Value::as_str).unwrap_or("");
            out += &format!(
                "    {:>6} ms  {:>3} chunks  {:>10}  {}{}\n",
                get("ms"),
                get("chunks"),
                human(get("bytes")),
                &digest[..digest.len().min(16)],
                if f.get("failed").and_then(Value::as_bool) == Some(true) {
                    "  (failed)"
                } else {
                    ""
                }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_and_sizes() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }

    #[test]
    fn the_summary_says_rate_quota_and_remote() {
        let v = json!({
            "remote": "grpc://h:1", "cache_hit_chunks": 3, "chunks_fetched": 1,
            "bytes_fetched": 2048, "cache_quota_bytes": 1024, "cache_used_bytes": 512,
            "remote_health": {"up": true, "errors": 0, "in_flight": 0},
        });
        let s = summary(Path::new("/m"), &v);
        assert!(s.contains("75.0% of chunks"), "{s}");
        assert!(s.contains("512 B of 1.0 KiB (50.0%)"), "{s}");
        assert!(s.contains("grpc://h:1: up"), "{s}");
    }
}
