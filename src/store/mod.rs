//! The store: a folder on the backup drive holding every photo once, under names
//! made from a template, plus `.offload/` (catalog, lock, temp files, identity).
//!
//! The store knows files and names only; it knows nothing of phones or the catalog.
//! Its promise: a file appears under its final name only complete and durable, and
//! no existing file is ever replaced.

pub mod busy;
pub mod drive;
pub mod fsinfo;
pub mod names;
pub mod template;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};

use self::fsinfo::FsInfo;
use self::names::split_ext;
use crate::beneath::{self, Link};

/// Creates a new, empty temp file `<pid>-<n>.part` in the folder `dir`, opened as
/// `dir_fd`, with `n` the next number of `counter`: never an existing file, and never
/// through a link. Returns its path (`dir` joined with the name) and the file, open for
/// writing.
pub fn temp_file_in(
    dir_fd: BorrowedFd<'_>,
    dir: &Path,
    counter: &AtomicU64,
) -> io::Result<(PathBuf, File)> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}-{n}.part", std::process::id());
    let path = dir.join(&name);
    let f = beneath::open_in(
        dir_fd,
        OsStr::new(&name),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        0o666,
        &path,
    )?;
    Ok((path, f))
}

/// Name of the folder inside the store that holds its own state.
pub const META_DIR: &str = ".offload";
pub const IDENTITY_FILE: &str = "store.json";
const TMP_DIR: &str = "tmp";
const LOCK_FILE: &str = "lock";

/// Why a store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("The destination {0} does not exist.")]
    Missing(PathBuf),
    #[error(
        "Another offload run is using {0}. Wait for it to finish (or stop it), then run again."
    )]
    Locked(PathBuf),
    /// The folder exists but holds no store: most often the empty mount point of a
    /// drive that is not plugged in.
    #[error("{0} is not an offload backup (no .offload/store.json): is the drive plugged in and mounted? To start a new backup there, run `offload backup --to {0}` once.")]
    NotAStore(PathBuf),
    /// A symbolic link where the store has a folder or a file of its own
    /// (`.offload`, `.offload/tmp`, the catalog...): nothing was written or deleted.
    #[error("{0}")]
    Link(Link),
    #[error("The destination {path} cannot be used: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Maps an error about `path` to a `StoreError`: a [`Link`] it carries stays one.
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| match beneath::into_link(source) {
        Ok(link) => StoreError::Link(link),
        Err(source) => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// What `.offload/store.json` says about the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub store_id: String,
    pub created: String,
    pub format: u32,
}

/// An open store, locked for writing by this process until dropped.
///
/// Everything inside it is reached from the descriptors opened here, one name at a
/// time and never through a symbolic link ([`beneath`]): a link put where a folder
/// belongs is refused, not written through, and nothing outside the store is deleted.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    /// Held open to keep the lock; released by the kernel even on `kill -9`.
    _lock: File,
    /// The store's folder as opened: what everything inside is reached from, the
    /// filesystem `syncfs` flushes, and the identity `still_there` compares.
    root_fd: File,
    /// `.offload/tmp`, where temp files are made and swept.
    tmp_fd: OwnedFd,
    pub fs: FsInfo,
    counter: AtomicU64,
}

/// Where a committed file ended up.
#[derive(Debug, PartialEq, Eq)]
pub enum Placed {
    /// Moved into place under this store-relative path.
    New(String),
    /// A file with exactly this content was already there under this name (left by a
    /// run that stopped before recording it): the temp file was dropped.
    AlreadyThere(String),
}

impl Store {
    /// Opens the store at `root`, creating it (folder and `.offload/`) when `create` is
    /// set, takes the single-writer lock and sweeps temp files a crashed run left.
    /// `root` itself may be reached through a link (it is the path the user gave);
    /// nothing inside it is.
    ///
    /// Errors: `Missing` when `root` does not exist and `create` is false; `NotAStore`
    /// when it holds no `.offload/store.json` and `create` is false; `Link` when
    /// `.offload`, `.offload/tmp` or any name directly in `.offload` is a symbolic link
    /// (nothing is written, nothing deleted); `Locked` when another run holds the
    /// store; `Io` for anything the filesystem refuses.
    pub fn open(root: &Path, create: bool) -> Result<Store, StoreError> {
        if !root.exists() {
            if !create {
                return Err(StoreError::Missing(root.to_path_buf()));
            }
            fs::create_dir_all(root).map_err(io_err(root))?;
        }
        let root = root.canonicalize().map_err(io_err(root))?;
        let root_fd = File::from(beneath::open_root(&root).map_err(io_err(&root))?);
        let meta_path = root.join(META_DIR);
        let meta = if create {
            beneath::create_dirs(root_fd.as_fd(), &root, Path::new(META_DIR))
        } else {
            beneath::open_dir(root_fd.as_fd(), &root, Path::new(META_DIR))
        };
        let meta = match meta {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore(root))
            }
            other => other.map_err(io_err(&meta_path))?,
        };
        // Offload makes no links in `.offload/`: one there (a catalog, lock or
        // temp folder pointing elsewhere) would have offload write or delete outside
        // the store, so the store is refused before anything is opened by name.
        for (name, kind) in beneath::entries(meta.as_fd()).map_err(io_err(&meta_path))? {
            if kind.is_symlink() {
                return Err(StoreError::Link(Link {
                    path: meta_path.join(&name),
                    expected: if name == TMP_DIR {
                        beneath::Expected::Folder
                    } else {
                        beneath::Expected::File
                    },
                }));
            }
            if !create && name == IDENTITY_FILE && !kind.is_file() {
                return Err(StoreError::NotAStore(root));
            }
        }
        if !create
            && beneath::kind_at(meta.as_fd(), OsStr::new(IDENTITY_FILE))
                .map_err(io_err(&meta_path))?
                .is_none()
        {
            return Err(StoreError::NotAStore(root));
        }
        let tmp = meta_path.join(TMP_DIR);
        let tmp_fd = beneath::create_dirs(meta.as_fd(), &meta_path, Path::new(TMP_DIR))
            .map_err(io_err(&tmp))?;
        let lock_path = meta_path.join(LOCK_FILE);
        let lock = beneath::open_in(
            meta.as_fd(),
            OsStr::new(LOCK_FILE),
            OFlags::WRONLY | OFlags::CREATE,
            0o666,
            &lock_path,
        )
        .map_err(io_err(&lock_path))?;
        // `status` and `doctor` take a shared lock for an instant to see whether a run
        // holds the store: a run starting in that instant waits it out. A run holding
        // the store holds it for far longer than these 200 ms.
        let mut tries = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if tries < 10 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(root)),
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
            }
        }
        load_or_create_identity(meta.as_fd(), &meta_path)?;
        let fs = FsInfo::of(&root).map_err(io_err(&root))?;
        let store = Store {
            root,
            tmp,
            _lock: lock,
            root_fd,
            tmp_fd,
            fs,
            counter: AtomicU64::new(0),
        };
        store.sweep_tmp().map_err(io_err(&store.tmp))?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// False once the store's path no longer leads to the folder that was opened: the
    /// drive was unmounted or unplugged, and the path now ends at the empty mount point
    /// (or nowhere).
    pub fn still_there(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(&self.root), self.root_fd.metadata()) {
            (Ok(now), Ok(opened)) => now.dev() == opened.dev() && now.ino() == opened.ino(),
            _ => false,
        }
    }

    /// Path of a file inside `.offload/`.
    pub fn meta_path(&self, name: &str) -> PathBuf {
        self.root.join(META_DIR).join(name)
    }

    /// Removes what an interrupted run left in `.offload/tmp/`, relative to the folder's
    /// descriptor (a link left there is removed as a link). Safe because the lock is
    /// held: no other run is writing there.
    fn sweep_tmp(&self) -> io::Result<usize> {
        let n = beneath::remove_contents(self.tmp_fd.as_fd())?;
        if n > 0 {
            tracing::info!("removed {n} temporary files left by an interrupted run");
        }
        Ok(n)
    }

    /// Creates a new, empty temp file on the store's filesystem (so that the final
    /// rename is atomic), in `.offload/tmp` as opened. Returns its path (for messages
    /// and for [`Store::place`]) and the file.
    pub fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        temp_file_in(self.tmp_fd.as_fd(), &self.tmp, &self.counter)
    }

    /// The folder a temp file is reached from and its name there: `.offload/tmp` as
    /// opened for the store's own temp files, the working directory for any other path.
    fn temp_at<'a>(&'a self, temp: &'a Path) -> (BorrowedFd<'a>, &'a Path) {
        match (temp.parent(), temp.file_name()) {
            (Some(dir), Some(name)) if dir == self.tmp => (self.tmp_fd.as_fd(), Path::new(name)),
            _ => (rustix::fs::CWD, temp),
        }
    }

    /// Removes a temp file made by [`Store::temp_file`], relative to `.offload/tmp` as
    /// opened. Errors: as `unlinkat(2)`.
    pub fn remove_temp(&self, temp: &Path) -> io::Result<()> {
        let (dir, name) = self.temp_at(temp);
        Ok(rustix::fs::unlinkat(
            dir,
            name,
            rustix::fs::AtFlags::empty(),
        )?)
    }

    /// Makes the data of the given (closed) temp files durable. One `syncfs` covers
    /// them all where the filesystem honours it; elsewhere each file is synced.
    pub fn sync_data(&self, files: &[&Path]) -> io::Result<()> {
        if self.fs.syncfs_is_trustworthy() {
            fsinfo::syncfs(&self.root_fd)
        } else {
            // fsync flushes the file's pages whichever descriptor asks.
            files.iter().try_for_each(|p| {
                let (dir, name) = self.temp_at(p);
                beneath::open_in(dir, name.as_os_str(), OFlags::RDONLY, 0, p)?.sync_data()
            })
        }
    }

    /// Moves the (synced) temp file to `wanted` (store-relative, already sanitised),
    /// never replacing anything. When `wanted` is taken (`taken` says so for names the
    /// caller has reserved, the filesystem for the rest) by different content, the name
    /// gets a suffix from the content hash, `IMG_0001~1a2b3c4d.JPG`, then a counter.
    /// Returns the final name; the caller syncs the directories it returns in batch
    /// with [`Store::sync_dirs`].
    ///
    /// Errors: a [`Link`] when a folder of `wanted` is a symbolic link (nothing is
    /// written through it); `NotFound` when the store's drive went away; else as the
    /// filesystem says.
    pub fn place(
        &self,
        temp: &Path,
        wanted: &str,
        hash: &blake3::Hash,
        size: u64,
        taken: &dyn Fn(&str) -> bool,
    ) -> io::Result<Placed> {
        // A drive unplugged or unmounted mid-run leaves the store's path leading to the
        // empty mount point: creating folders there would write onto the computer's own
        // disk (found by the torture test of a vanishing destination).
        if !self.still_there() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is no longer the store's drive", self.root.display()),
            ));
        }
        let (from_dir, from) = self.temp_at(temp);
        place_at(
            self.root_fd.as_fd(),
            &self.root,
            (from_dir, from),
            wanted,
            hash,
            size,
            taken,
        )
    }

    /// Syncs the parent folders of the given store-relative paths (each once), so that
    /// the renames into them survive a power cut. Errors: a [`Link`] when one of those
    /// folders is a symbolic link; else as `fsync`.
    pub fn sync_dirs<'a>(&self, rel_paths: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        // New folders were linked into their own parents: sync those up to the root
        // (the empty path).
        let mut all: Vec<&Path> = Vec::new();
        for p in rel_paths {
            let mut dir = Path::new(p).parent();
            while let Some(d) = dir {
                all.push(d);
                dir = d.parent();
            }
        }
        all.sort();
        all.dedup();
        all.iter().try_for_each(|d| {
            let fd = beneath::open_dir(self.root_fd.as_fd(), &self.root, d)?;
            fsinfo::sync_dir_fd(fd.as_fd())
        })
    }

    /// Opens the stored file `rel` (store-relative) for reading, no folder of it
    /// followed through a link. Errors: a [`Link`] naming the link; `NotFound`.
    pub fn open_stored(&self, rel: &str) -> io::Result<File> {
        beneath::open_file(
            self.root_fd.as_fd(),
            &self.root,
            Path::new(rel),
            OFlags::RDONLY,
        )
    }

    /// [`hash_from_disk`] of the stored file `rel`, reached as [`Store::open_stored`].
    pub fn hash_stored(
        &self,
        rel: &str,
        buf: &mut [u8],
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<(u64, blake3::Hash)> {
        hash_open_file(self.open_stored(rel)?, buf, progress)
    }
}

/// [`Store::place`] for any folder `root` on the temp file's filesystem (an export
/// folder too): the same names, the same suffixes, never a replaced file, and a file
/// with exactly this content already under a candidate name is taken as placed.
/// `root` itself is opened as given; the folders beneath it are created and entered
/// without following links. Errors: a [`Link`] when a folder of `wanted` is a
/// symbolic link; else as the filesystem says.
pub fn place_into(
    root: &Path,
    temp: &Path,
    wanted: &str,
    hash: &blake3::Hash,
    size: u64,
    taken: &dyn Fn(&str) -> bool,
) -> io::Result<Placed> {
    let root_fd = beneath::open_root(root)?;
    place_at(
        root_fd.as_fd(),
        root,
        (rustix::fs::CWD, temp),
        wanted,
        hash,
        size,
        taken,
    )
}

/// [`place_into`] from a folder already open (`root`, whose path is `root_path`), the
/// temp file being `from.1` relative to the folder `from.0`.
fn place_at(
    root: BorrowedFd<'_>,
    root_path: &Path,
    from: (BorrowedFd<'_>, &Path),
    wanted: &str,
    hash: &blake3::Hash,
    size: u64,
    taken: &dyn Fn(&str) -> bool,
) -> io::Result<Placed> {
    let hex = hash.to_hex();
    for attempt in 0..1000u32 {
        let candidate = match attempt {
            0 => wanted.to_string(),
            1 => with_suffix(wanted, &hex[..8]),
            n => with_suffix(wanted, &format!("{}-{n}", &hex[..8])),
        };
        if taken(&candidate) {
            continue;
        }
        let (folder, name) = beneath::split(Path::new(&candidate))?;
        let dir = beneath::create_dirs(root, root_path, folder)?;
        if fsinfo::rename_noreplace_at(from.0, from.1, dir.as_fd(), Path::new(name))? {
            return Ok(Placed::New(candidate));
        }
        // The name exists on disk but not in the catalog: a run that stopped between
        // its rename and its catalog commit (or, in an export, an earlier export).
        // Same content → adopt it.
        if same_content_in(dir.as_fd(), name, size, hash)? {
            rustix::fs::unlinkat(from.0, from.1, rustix::fs::AtFlags::empty())?;
            return Ok(Placed::AlreadyThere(candidate));
        }
    }
    Err(io::Error::other(format!(
        "could not find a free name for {wanted} after 1000 tries"
    )))
}

/// Every regular file in the store outside `.offload/`, as store-relative paths,
/// sorted. Walked from descriptors, never through a symbolic link. Errors: a [`Link`]
/// naming the first link found (offload makes none: one there hides what it leads to
/// from the walk, or leads outside the store); else as the filesystem says.
pub fn list_files(root: &Path) -> io::Result<Vec<String>> {
    let fd = beneath::open_root(root)?;
    let mut out = Vec::new();
    walk_files(fd.as_fd(), root, "", &mut out)?;
    Ok(out)
}

fn walk_files(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    prefix: &str,
    out: &mut Vec<String>,
) -> io::Result<()> {
    for (name, kind) in beneath::entries(dir)? {
        if prefix.is_empty() && name == META_DIR {
            continue;
        }
        let text = name.to_string_lossy();
        let rel = if prefix.is_empty() {
            text.into_owned()
        } else {
            format!("{prefix}/{text}")
        };
        if kind.is_dir() {
            let sub = beneath::open_dir(dir, dir_path, Path::new(&name))?;
            walk_files(sub.as_fd(), &dir_path.join(&name), &rel, out)?;
        } else if kind.is_file() {
            out.push(rel);
        } else if kind.is_symlink() {
            return Err(Link {
                path: dir_path.join(&name),
                expected: beneath::Expected::Entry,
            }
            .into());
        }
    }
    Ok(())
}

/// Hashes a file as it is on the disk, not as the page cache remembers it: clean cached
/// pages are dropped before reading, so a bit flipped on the medium is seen. For a
/// stored file, use [`Store::hash_stored`], which follows no link.
pub fn hash_from_disk(
    path: &std::path::Path,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64),
) -> io::Result<(u64, blake3::Hash)> {
    hash_open_file(File::open(path)?, buf, progress)
}

fn hash_open_file(
    mut f: File,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64),
) -> io::Result<(u64, blake3::Hash)> {
    drop_cached_pages(&f);
    let mut h = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        size += n as u64;
        progress(n as u64);
    }
    // Leave the cache as we found it: a verify of a whole drive should not evict
    // everything else.
    drop_cached_pages(&f);
    Ok((size, h.finalize()))
}

#[cfg(target_os = "linux")]
fn drop_cached_pages(f: &File) {
    use rustix::fs::{fadvise, Advice};
    let _ = fadvise(f, 0, None, Advice::DontNeed);
}

#[cfg(not(target_os = "linux"))]
fn drop_cached_pages(_f: &File) {}

/// `IMG_0001.JPG` + `1a2b3c4d` → `IMG_0001~1a2b3c4d.JPG`, in the last component.
fn with_suffix(rel: &str, suffix: &str) -> String {
    let (dir, name) = match rel.rfind('/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => ("", rel),
    };
    let (stem, ext) = split_ext(name);
    let room = names::MAX_COMPONENT_BYTES.saturating_sub(ext.len() + suffix.len() + 1);
    let stem = names::truncate_keep_ext(stem, room);
    format!("{dir}{stem}~{suffix}{ext}")
}

/// True when `name` in `dir` is a regular file (not a link) of exactly `size` bytes
/// hashing to `hash`.
fn same_content_in(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    size: u64,
    hash: &blake3::Hash,
) -> io::Result<bool> {
    let f = match beneath::open_in(dir, name, OFlags::RDONLY, 0, Path::new(name)) {
        Ok(f) => f,
        // A link (or something that cannot be opened) under the name is not this file.
        Err(e) if beneath::link_of(&e).is_some() => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() != size {
        return Ok(false);
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(f)?;
    Ok(&h.finalize() == hash)
}

/// Reads `store.json` in the folder `meta` (whose path is `meta_path`), writing a new
/// identity there when there is none; never through a link.
fn load_or_create_identity(meta: BorrowedFd<'_>, meta_path: &Path) -> Result<Identity, StoreError> {
    let path = meta_path.join(IDENTITY_FILE);
    let read = beneath::open_in(meta, OsStr::new(IDENTITY_FILE), OFlags::RDONLY, 0, &path)
        .and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        });
    match read {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let now = jiff::Timestamp::now();
            let seed = format!("{now}-{}-{}", std::process::id(), meta_path.display());
            let id = Identity {
                store_id: blake3::hash(seed.as_bytes()).to_hex()[..16].to_string(),
                created: now.to_string(),
                format: 1,
            };
            let tmp_name = OsStr::new("store.json.tmp");
            let body = serde_json::to_vec_pretty(&id).expect("serialisable");
            (|| {
                let mut f = beneath::open_in(
                    meta,
                    tmp_name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
                    0o666,
                    &meta_path.join(tmp_name),
                )?;
                io::Write::write_all(&mut f, &body)?;
                f.sync_all()?;
                rustix::fs::renameat(meta, tmp_name, meta, IDENTITY_FILE)?;
                fsinfo::sync_dir_fd(meta)
            })()
            .map_err(io_err(&path))?;
            Ok(id)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(
            with_suffix("d/2024/01/IMG.JPG", "abcd1234"),
            "d/2024/01/IMG~abcd1234.JPG"
        );
        assert_eq!(with_suffix("noext", "x"), "noext~x");
        let long = format!("a/{}.jpg", "x".repeat(255 - 4));
        let s = with_suffix(&long, "abcd1234");
        assert!(s.rsplit('/').next().unwrap().len() <= 255);
        assert!(s.ends_with("~abcd1234.jpg"));
    }

    #[test]
    fn a_glance_at_the_lock_does_not_refuse_a_run() {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path(), true).unwrap());
        // What `status` does: a shared lock for an instant (here 60 ms).
        let lock = File::open(d.path().join(".offload/lock")).unwrap();
        lock.try_lock_shared().unwrap();
        let glance = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(60));
            drop(lock);
        });
        assert!(Store::open(d.path(), false).is_ok(), "refused as locked");
        glance.join().unwrap();
    }

    #[test]
    fn second_open_is_refused_and_tmp_is_swept() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), true).unwrap();
        let (p, _f) = s.temp_file().unwrap();
        assert!(matches!(
            Store::open(d.path(), false),
            Err(StoreError::Locked(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Store::open(empty.path(), false),
            Err(StoreError::NotAStore(_))
        ));
        assert_eq!(
            fs::read_dir(empty.path()).unwrap().count(),
            0,
            "nothing written"
        );
        let id = fs::read(d.path().join(".offload/store.json")).unwrap();
        drop(s);
        assert!(p.exists());
        let s = Store::open(d.path(), false).unwrap();
        assert!(!p.exists(), "stale temp file swept");
        drop(s);
        assert_eq!(
            fs::read(d.path().join(".offload/store.json")).unwrap(),
            id,
            "identity is stable"
        );
    }

    fn link_path(e: StoreError) -> PathBuf {
        match e {
            StoreError::Link(l) => l.path,
            other => panic!("not a link error: {other}"),
        }
    }

    #[test]
    fn links_in_the_store_state_are_refused_and_nothing_is_deleted() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::write(victim.path().join("keep"), b"precious").unwrap();
        drop(Store::open(d.path(), true).unwrap());
        let meta = d.path().canonicalize().unwrap().join(META_DIR);
        // .offload/tmp
        fs::remove_dir_all(meta.join("tmp")).unwrap();
        symlink(victim.path(), meta.join("tmp")).unwrap();
        for create in [false, true] {
            let e = Store::open(d.path(), create).err().unwrap();
            assert_eq!(link_path(e), meta.join("tmp"));
        }
        fs::remove_file(meta.join("tmp")).unwrap();
        // Any of offload's own files.
        for name in ["catalog.sqlite", "lock", "store.json", "catalog.sqlite.bak"] {
            let _ = fs::remove_file(meta.join(name));
            if name == "store.json" {
                // Without an identity the store is only reachable with `create`.
                symlink(victim.path().join("keep"), meta.join(name)).unwrap();
                let e = Store::open(d.path(), true).err().unwrap();
                assert_eq!(link_path(e), meta.join(name));
                fs::remove_file(meta.join(name)).unwrap();
                drop(Store::open(d.path(), true).unwrap());
                continue;
            }
            symlink(victim.path().join("keep"), meta.join(name)).unwrap();
            let e = Store::open(d.path(), false).err().unwrap();
            assert_eq!(link_path(e), meta.join(name));
            fs::remove_file(meta.join(name)).unwrap();
        }
        // .offload itself.
        fs::remove_dir_all(&meta).unwrap();
        symlink(victim.path(), &meta).unwrap();
        let e = Store::open(d.path(), true).err().unwrap();
        assert_eq!(link_path(e), meta);
        assert_eq!(
            fs::read_dir(victim.path()).unwrap().count(),
            1,
            "nothing created or deleted behind the links"
        );
        assert_eq!(fs::read(victim.path().join("keep")).unwrap(), b"precious");
    }

    #[test]
    fn place_and_list_never_go_through_a_linked_folder() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), true).unwrap();
        fs::create_dir_all(d.path().join("a")).unwrap();
        symlink(elsewhere.path(), d.path().join("a/2024")).unwrap();
        let (p, mut f) = s.temp_file().unwrap();
        io::Write::write_all(&mut f, b"photo").unwrap();
        let h = blake3::hash(b"photo");
        let e = s
            .place(&p, "a/2024/05/x.jpg", &h, 5, &|_| false)
            .unwrap_err();
        let link = beneath::into_link(e).unwrap();
        assert_eq!(link.path, s.root().join("a/2024"));
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        assert!(p.exists(), "the temp file is left for the sweep");
        let e = list_files(s.root()).unwrap_err();
        assert_eq!(beneath::into_link(e).unwrap().path, s.root().join("a/2024"));
        let e = s.open_stored("a/2024/05/x.jpg").unwrap_err();
        assert!(beneath::link_of(&e).is_some());
        // A link under a wanted name is not written through nor adopted: a suffix.
        fs::write(elsewhere.path().join("same.jpg"), b"photo").unwrap();
        symlink(elsewhere.path().join("same.jpg"), d.path().join("a/y.jpg")).unwrap();
        let placed = s.place(&p, "a/y.jpg", &h, 5, &|_| false).unwrap();
        assert_eq!(
            placed,
            Placed::New(with_suffix("a/y.jpg", &h.to_hex()[..8]))
        );
        s.sync_dirs(["a/y.jpg"]).unwrap();
        assert!(s.sync_dirs(["a/2024/05/x.jpg"]).is_err());
    }

    #[test]
    fn place_never_overwrites_and_adopts_identical() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), true).unwrap();
        let none = |_: &str| false;
        let put = |bytes: &[u8]| {
            let (p, mut f) = s.temp_file().unwrap();
            io::Write::write_all(&mut f, bytes).unwrap();
            (p, blake3::hash(bytes), bytes.len() as u64)
        };
        let (p, h, n) = put(b"one");
        assert_eq!(
            s.place(&p, "a/x.jpg", &h, n, &none).unwrap(),
            Placed::New("a/x.jpg".into())
        );
        let (p2, h2, n2) = put(b"two");
        let placed = s.place(&p2, "a/x.jpg", &h2, n2, &none).unwrap();
        assert_eq!(
            placed,
            Placed::New(with_suffix("a/x.jpg", &h2.to_hex()[..8]))
        );
        assert_eq!(fs::read(d.path().join("a/x.jpg")).unwrap(), b"one");
        let (p3, h3, n3) = put(b"one");
        assert_eq!(
            s.place(&p3, "a/x.jpg", &h3, n3, &none).unwrap(),
            Placed::AlreadyThere("a/x.jpg".into())
        );
        assert!(!p3.exists());
        let taken = |c: &str| c == "b/y.jpg";
        let (p4, h4, n4) = put(b"four");
        assert_ne!(
            s.place(&p4, "b/y.jpg", &h4, n4, &taken).unwrap(),
            Placed::New("b/y.jpg".into())
        );
    }
}
