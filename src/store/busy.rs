//! Whether a run holds a store's lock right now, asked from outside it (`status`,
//! `doctor`), without taking the lock.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// True while some process holds the lock of the store at `root` (a backup, verify,
/// reindex or free-up under way). A `running` run in the catalog of a store nobody
/// holds is one that was killed or whose computer stopped.
///
/// The check takes a shared lock for an instant; a run starting in that instant would
/// see the store as busy and say so, which is why only commands that write hold it
/// longer. A lock that is a symbolic link is not opened: it is not the store's.
pub fn in_use(root: &Path) -> bool {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(root.join(super::META_DIR).join("lock"))
        .is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
}
