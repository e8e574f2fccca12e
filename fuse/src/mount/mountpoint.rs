//! Is something already mounted at the mountpoint?
//!
//! A second FUSE mount on a live mountpoint stacks on top of the first;
//! unmounting it (or its process exiting) then takes both away. So
//! [`crate::mount`] refuses a mountpoint that already holds a live mount of
//! any kind. A *stale* FUSE mount (its daemon gone, `ENOTCONN`) is not
//! live: it is detached first, as before.
//!
//! Two independent signs, either one enough:
//! - `/proc/self/mountinfo` lists a mount whose mount point is the
//!   mountpoint's canonical path (this also catches bind mounts of the
//!   parent's own filesystem);
//! - the mountpoint's `st_dev` differs from its parent's (this works where
//!   `/proc` is not mounted).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A live mount found at a mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveMount {
    /// Its filesystem type (`fuse.storefs`, `tmpfs`, ...), or a
    /// description when only `st_dev` told.
    pub(crate) fstype: String,
    /// Its source (`storefs`, a device, ...), if known.
    pub(crate) source: Option<String>,
}

/// The live mount at `path`, if there is one. Call it after a stale mount
/// has been cleared: a stale mount's `stat` fails, and then this reports
/// nothing rather than guess.
pub(crate) fn live_mount_at(path: &Path) -> Option<LiveMount> {
    let canonical = std::fs::canonicalize(path).ok()?;
    if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo")
        && let Some(found) = find_in_mountinfo(&text, &canonical)
    {
        return Some(found);
    }
    let parent = canonical.parent()?;
    let here = std::fs::metadata(&canonical).ok()?;
    let above = std::fs::metadata(parent).ok()?;
    (here.dev() != above.dev()).then(|| LiveMount {
        fstype: format!(
            "filesystem (device {:#x}, its parent's is {:#x})",
            here.dev(),
            above.dev()
        ),
        source: None,
    })
}

/// The last mount listed in `mountinfo` (the format of
/// `/proc/self/mountinfo`, see proc(5)) whose mount point is `path`: the
/// last one is the top of a stack. Lines that do not parse are skipped.
fn find_in_mountinfo(mountinfo: &str, path: &Path) -> Option<LiveMount> {
    let mut found = None;
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        let Some(mount_point) = fields.nth(4) else {
            continue;
        };
        if PathBuf::from(unescape(mount_point)) != path {
            continue;
        }
        // After the optional fields, a lone "-", then type and source.
        let mut rest = fields.skip_while(|f| *f != "-").skip(1);
        let fstype = rest.next().map(unescape).unwrap_or_default();
        let source = rest.next().map(unescape);
        found = Some(LiveMount { fstype, source });
    }
    found
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`). A backslash not followed by three octal digits stays as it is.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && octal.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = octal
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
61 22 0:52 / /tmp/a\\040b rw,nosuid - tmpfs tmpfs rw,size=1024k
62 22 0:53 / /mnt/store rw,nosuid,nodev,relatime shared:40 master:2 - fuse.storefs storefs rw,user_id=0
63 62 0:54 / /mnt/store rw - fuse.other other rw
garbage
";

    #[test]
    fn finds_the_top_mount_and_unescapes() {
        let m = find_in_mountinfo(SAMPLE, Path::new("/mnt/store")).unwrap();
        assert_eq!(m.fstype, "fuse.other");
        assert_eq!(m.source.as_deref(), Some("other"));
        let m = find_in_mountinfo(SAMPLE, Path::new("/tmp/a b")).unwrap();
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(find_in_mountinfo(SAMPLE, Path::new("/mnt")), None);
        assert_eq!(find_in_mountinfo(SAMPLE, Path::new("/tmp/a\\040b")), None);
    }

    #[test]
    fn unescape_leaves_stray_backslashes() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\9"), "a\\9");
        assert_eq!(unescape("end\\"), "end\\");
        assert_eq!(unescape("\\777"), "\\777");
    }

    #[test]
    fn a_plain_directory_holds_no_mount() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(live_mount_at(dir.path()), None);
        assert!(live_mount_at(Path::new("/proc")).is_some());
    }
}
