//! The C allocator's set-up, done first thing in `main`.
//!
//! glibc gives threads that meet in `malloc` arenas of their own, up to
//! eight per core, and memory freed into one arena is not handed to
//! threads of another. storefs moves chunk buffers between tokio's workers
//! and its blocking pool (up to 32 threads), so each arena ends up holding
//! freed buffers of its own: `storefs serve` peaked 41 MB higher after
//! importing the benchmark's toolchain with glibc's default (163 MB) than
//! with one arena per core (122 MB). One arena per core (at least two)
//! keeps threads on different cores out of each other's way.

/// The environment variable through which glibc users choose the arena
/// limit themselves; when it is set, storefs leaves the limit alone.
const ARENA_ENV: &str = "MALLOC_ARENA_MAX";

/// Limit glibc's malloc arenas to one per core, unless the user chose a
/// limit through `MALLOC_ARENA_MAX`. Call before any thread starts.
pub fn limit_arenas() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Some(arenas) = arena_limit(cores, std::env::var_os(ARENA_ENV).is_some()) {
        set_arena_max(arenas);
    }
}

/// The arena limit to set on a machine of `cores` cores: one per core, at
/// least two; none when the user set their own.
fn arena_limit(cores: usize, user_set: bool) -> Option<i32> {
    if user_set {
        return None;
    }
    Some(i32::try_from(cores.max(2)).unwrap_or(i32::MAX))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: i32) {
    #[allow(unsafe_code)]
    // SAFETY: mallopt takes two integers and changes a setting of glibc's
    // allocator under its own lock; it touches no memory of ours. A refusal
    // (return 0) leaves glibc's default in place, which is harmless.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_arena_per_core_at_least_two() {
        assert_eq!(arena_limit(1, false), Some(2));
        assert_eq!(arena_limit(2, false), Some(2));
        assert_eq!(arena_limit(64, false), Some(64));
    }

    #[test]
    fn a_limit_the_user_chose_is_kept() {
        assert_eq!(arena_limit(8, true), None);
    }
}
