//! Facts about the filesystem a store lives on, and the few system calls the atomic
//! commit needs: free space, file-size limit, rename without replacing, directory sync.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// The filesystem holding a path, as the kernel reports it.
#[derive(Clone, Debug)]
pub struct FsInfo {
    /// Filesystem type from /proc/self/mountinfo (`ext4`, `vfat`, `exfat`, `fuseblk`...).
    pub fstype: String,
    /// Where that filesystem is mounted.
    pub mount_point: PathBuf,
    /// What is mounted there (`/dev/sdb1`, `tmpfs`...).
    pub mount_source: String,
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Largest file the filesystem can hold, when it is smaller than any photo or
    /// video could plausibly be (FAT: 4 GiB − 1).
    pub max_file_size: Option<u64>,
}

/// FAT12/16/32 store a file's size in 32 bits.
pub const FAT_MAX_FILE: u64 = u32::MAX as u64;

impl FsInfo {
    /// Reads the facts for the filesystem that holds `path` (which must exist).
    pub fn of(path: &Path) -> io::Result<FsInfo> {
        let st = rustix::fs::statvfs(path)?;
        let free_bytes = st.f_bavail.saturating_mul(st.f_frsize);
        let total_bytes = st.f_blocks.saturating_mul(st.f_frsize);
        let canon = path.canonicalize()?;
        let Mount {
            mount_point,
            fstype,
            source: mount_source,
        } = mount_of(&canon).unwrap_or_else(|| Mount {
            mount_point: PathBuf::from("/"),
            fstype: String::new(),
            source: String::new(),
        });
        let max_file_size = max_file_size_for(&fstype, &mount_source);
        Ok(FsInfo {
            fstype,
            mount_point,
            mount_source,
            free_bytes,
            total_bytes,
            max_file_size,
        })
    }

    /// True where SQLite's write-ahead log can work: it needs shared memory maps,
    /// which FUSE and network filesystems may not provide.
    pub fn supports_wal(&self) -> bool {
        !(self.fstype.starts_with("fuse")
            || matches!(
                self.fstype.as_str(),
                "nfs" | "nfs4" | "cifs" | "smb3" | "9p" | "sshfs"
            ))
    }

    /// True where `syncfs` is known to flush file data to the device. Network and FUSE
    /// filesystems may accept `syncfs` and do nothing, so files there are synced one by one.
    pub fn syncfs_is_trustworthy(&self) -> bool {
        matches!(
            self.fstype.as_str(),
            "ext2"
                | "ext3"
                | "ext4"
                | "xfs"
                | "btrfs"
                | "f2fs"
                | "vfat"
                | "msdos"
                | "exfat"
                | "ntfs3"
                | "tmpfs"
                | "hfsplus"
                | "jfs"
                | "nilfs2"
        )
    }
}

/// FAT (through the kernel or FUSE) limits a file to 4 GiB − 1.
fn max_file_size_for(fstype: &str, _source: &str) -> Option<u64> {
    match fstype {
        "vfat" | "msdos" | "fat" | "umsdos" | "fuse.fusefat" | "fusefat" => Some(FAT_MAX_FILE),
        _ => None,
    }
}

/// Finds the mount that holds `path` (already canonical): the longest mount point
/// that is a prefix of it, the last listed of equals (a mount over another comes after
/// it, and `max_by_key` keeps the last maximum).
fn mount_of(path: &Path) -> Option<Mount> {
    mounts()
        .into_iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// One line of `/proc/self/mountinfo`, unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    pub mount_point: PathBuf,
    /// `ext4`, `vfat`, `fuseblk`...
    pub fstype: String,
    /// What is mounted (`/dev/sdb1`, `tmpfs`...).
    pub source: String,
}

/// Every mount of this process's namespace, in the kernel's order (a mount over
/// another comes after it); none when `/proc` cannot be read.
pub(crate) fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default()
}

/// The mounts of mountinfo's `text`; lines it cannot read are passed over.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // Optional fields run up to the " - " separator: the fifth field before it is
            // the mount point, the first two after it the type and the source.
            let (left, right) = line.split_once(" - ")?;
            let mount_point = PathBuf::from(unescape_mountinfo(left.split(' ').nth(4)?));
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or("").to_string();
            let source = unescape_mountinfo(right.next().unwrap_or(""));
            Some(Mount {
                mount_point,
                fstype,
                source,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Renames `from` (relative to the folder `from_dir`) to `to` (relative to `to_dir`)
/// only if `to` does not exist; a link named `to` counts as existing and is left as it
/// is. Returns `Ok(false)` when it exists. Uses `renameat2(RENAME_NOREPLACE)`; where the
/// filesystem lacks it, a hard link (atomic, fails on an existing name) and then, where
/// links are unsupported too (FAT, exFAT), a check and a plain rename, which is safe
/// because the store lock makes this process the only writer.
pub fn rename_noreplace_at(
    from_dir: BorrowedFd<'_>,
    from: &Path,
    to_dir: BorrowedFd<'_>,
    to: &Path,
) -> io::Result<bool> {
    use rustix::fs::{linkat, renameat, renameat_with, statat, unlinkat, AtFlags, RenameFlags};
    use rustix::io::Errno;
    match renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(true),
        Err(Errno::EXIST) => return Ok(false),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
        Err(e) => return Err(e.into()),
    }
    match linkat(from_dir, from, to_dir, to, AtFlags::empty()) {
        Ok(()) => {
            unlinkat(from_dir, from, AtFlags::empty())?;
            return Ok(true);
        }
        Err(Errno::EXIST) => return Ok(false),
        Err(_) => {}
    }
    if statat(to_dir, to, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
        return Ok(false);
    }
    renameat(from_dir, from, to_dir, to)?;
    Ok(true)
}

/// Makes a directory's entries (new names, renames) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    sync_dir_fd(File::open(dir)?.as_fd())
}

/// [`sync_dir`] for a folder already open.
pub fn sync_dir_fd(dir: BorrowedFd<'_>) -> io::Result<()> {
    match rustix::fs::fsync(dir) {
        // Some filesystems (FUSE, vfat on old kernels) refuse fsync on a directory;
        // the data itself was synced, and there is nothing more to ask of them.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::NOTSUP) => {
            Ok(())
        }
        other => other.map_err(Into::into),
    }
}

/// Flushes every dirty page of the filesystem holding `fd`, reporting any write-back
/// error since `fd` was opened.
pub fn syncfs(fd: &File) -> io::Result<()> {
    rustix::fs::syncfs(fd).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mountinfo(r"/media/me/MY\040DRIVE"),
            "/media/me/MY DRIVE"
        );
        assert_eq!(unescape_mountinfo(r"/a\134b"), r"/a\b");
        assert_eq!(unescape_mountinfo(r"/x\04"), r"/x\04");
    }

    #[test]
    fn mountinfo_lines() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 8:17 / /media/me/MY\\040DRIVE rw,nosuid master:2 - vfat /dev/sdb1 rw,uid=1000
99 22 0:50 / /mnt/no\\011tab rw - fuse.sshfs me@host:/a\\040b rw
not a mountinfo line
";
        let m = parse_mountinfo(text);
        let at = |mp: &str, fstype: &str, source: &str| Mount {
            mount_point: PathBuf::from(mp),
            fstype: fstype.into(),
            source: source.into(),
        };
        assert_eq!(
            m,
            [
                at("/", "ext4", "/dev/sda1"),
                at("/media/me/MY DRIVE", "vfat", "/dev/sdb1"),
                at("/mnt/no\ttab", "fuse.sshfs", "me@host:/a b"),
            ]
        );
    }

    #[test]
    fn fat_has_a_limit() {
        assert_eq!(max_file_size_for("vfat", "/dev/sdb1"), Some(4294967295));
        assert_eq!(max_file_size_for("ext4", "/dev/sda1"), None);
    }

    #[test]
    fn noreplace_never_replaces() {
        let rename_noreplace =
            |a: &Path, b: &Path| rename_noreplace_at(rustix::fs::CWD, a, rustix::fs::CWD, b);
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(&a, "new").unwrap();
        std::fs::write(&b, "old").unwrap();
        assert!(!rename_noreplace(&a, &b).unwrap());
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old");
        std::fs::remove_file(&b).unwrap();
        assert!(rename_noreplace(&a, &b).unwrap());
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new");
        assert!(!a.exists());
    }

    #[test]
    fn fsinfo_of_tmp() {
        let d = tempfile::tempdir().unwrap();
        let info = FsInfo::of(d.path()).unwrap();
        assert!(info.total_bytes > 0);
        assert!(!info.fstype.is_empty());
    }
}
