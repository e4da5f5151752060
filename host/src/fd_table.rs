//! The process's table of open files, grown once while the process has a single thread.
//!
//! Linux grows a process's descriptor table by doubling it (64, 128, 256, 512, … slots). In a
//! process with more than one thread, a thread whose new descriptor needs a larger table waits
//! for an RCU grace period before its `open`, `socket` or `epoll_create` returns: 8 to 18 ms
//! on the 2-core machine of BENCHMARKS.md. Each plugin's tokio runtime holds three
//! descriptors (its epoll instance, a copy of it and its waker; six when the plugin's tokio
//! has its `signal` feature), so a host crosses 64, 128 and 256 while it loads and creates
//! 50 plugins — one of those growths alone was a quarter of its start-up — and a reload that
//! crosses the next size is that much slower.
//!
//! Grown before the first thread starts, the table takes no grace period; 1,024 slots cost
//! 8 KiB of kernel memory. A process that then opens more than that grows it as before.

use std::os::raw::c_int;

/// The slots the table is grown to: room for 50 plugins through a reload (the old and the new
/// generation side by side hold at most about 660 descriptors) and the connections they serve.
pub const SLOTS: c_int = 1024;

/// Grows the table to [`SLOTS`] slots, or to the soft limit on open files when that is lower.
///
/// Call before any thread is spawned; later it still works, at the price of the wait it is
/// there to avoid. A failure costs only that wait, so it is not reported.
pub fn grow_while_single_threaded() {
    let Some(highest) = highest_slot() else {
        return;
    };
    // Any open descriptor will do as the one duplicated; stdin, stdout or stderr may be closed.
    for fd in 0..=2 {
        // SAFETY: F_DUPFD_CLOEXEC reads no memory; it duplicates `fd` (if open) into the lowest
        // free slot at or above `highest`, which this function closes again at once.
        let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, highest) };
        if duplicate >= 0 {
            // SAFETY: `duplicate` was opened just above and nothing else knows it.
            unsafe { libc::close(duplicate) };
            return;
        }
    }
}

/// The highest slot to open: `SLOTS - 1`, or below the soft limit on open files; `None`
/// when the limit cannot be read or leaves nothing to grow.
fn highest_slot() -> Option<c_int> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let soft = c_int::try_from(limit.rlim_cur).unwrap_or(c_int::MAX);
    let highest = soft.min(SLOTS) - 1;
    (highest > 64).then_some(highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slots of this process's table, as the kernel reports them.
    fn table_size() -> c_int {
        let status = std::fs::read_to_string("/proc/self/status").expect("own status");
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("FDSize:"))
            .expect("an FDSize line");
        line.trim().parse().expect("a number")
    }

    #[test]
    fn the_table_holds_its_slots_afterwards_and_the_duplicate_is_closed() {
        grow_while_single_threaded();
        let expected = highest_slot().map_or(0, |highest| highest + 1);
        assert!(table_size() >= expected, "{} < {expected}", table_size());
        let high_open: Vec<c_int> = std::fs::read_dir("/proc/self/fd")
            .expect("own descriptors")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd >= expected - 1)
            .collect();
        assert!(high_open.is_empty(), "left open: {high_open:?}");
    }
}
