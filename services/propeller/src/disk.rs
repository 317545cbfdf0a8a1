//! Disk pressure on the work directory: attempts that write there (process and container tasks) wait while
//! its filesystem has less than `--min-free-disk` free, as a kubelet stops admitting pods under disk
//! pressure, and a task that fails while the filesystem is full failed for want of disk, not by its own
//! fault: a system error, retried once space returns.

use std::path::PathBuf;

use aloft_core::quantity::human_bytes;

/// Free space below which no attempt that writes to the work directory starts, unless told otherwise.
pub const DEFAULT_MIN_FREE_DISK: u64 = 64 * 1024 * 1024;

/// The work directory's filesystem and the free space an attempt needs to start there.
#[derive(Debug, Clone)]
pub struct DiskGuard {
    pub work_dir: PathBuf,
    pub min_free_bytes: u64,
}

impl DiskGuard {
    /// Bytes an unprivileged writer may still use on the work directory's filesystem; `None` when it cannot
    /// be read (then nothing is held back for it).
    pub fn free_bytes(&self) -> Option<u64> {
        let stats = nix::sys::statvfs::statvfs(&self.work_dir).ok()?;
        Some(stats.blocks_available().saturating_mul(stats.fragment_size()))
    }

    /// Why an attempt that writes to the work directory cannot start now, or `None` when there is room.
    pub fn shortage(&self) -> Option<String> {
        let free = self.free_bytes()?;
        (free < self.min_free_bytes).then(|| {
            format!(
                "disk: the work directory {} has {} free, less than the {} an attempt needs (--min-free-disk)",
                self.work_dir.display(),
                human_bytes(free),
                human_bytes(self.min_free_bytes)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filesystem_with_less_free_than_asked_for_is_a_shortage_naming_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = DiskGuard {
            work_dir: dir.path().to_path_buf(),
            min_free_bytes: 1,
        };
        assert!(roomy.free_bytes().is_some_and(|free| free > 0));
        assert_eq!(roomy.shortage(), None);
        let greedy = DiskGuard {
            work_dir: dir.path().to_path_buf(),
            min_free_bytes: u64::MAX,
        };
        let shortage = greedy.shortage().unwrap();
        assert!(
            shortage.contains(&dir.path().display().to_string()) && shortage.contains("--min-free-disk"),
            "{shortage}"
        );
        let nowhere = DiskGuard {
            work_dir: dir.path().join("missing"),
            min_free_bytes: u64::MAX,
        };
        assert_eq!(
            nowhere.shortage(),
            None,
            "an unreadable filesystem holds nothing back"
        );
    }
}
