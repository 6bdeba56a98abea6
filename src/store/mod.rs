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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use self::fsinfo::FsInfo;
use self::names::split_ext;

/// Name of the folder inside the store that holds its own state.
pub const META_DIR: &str = ".offload";
pub const IDENTITY_FILE: &str = "store.json";

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
    #[error("The destination {path} cannot be used: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
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
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    /// Held open to keep the lock; released by the kernel even on `kill -9`.
    _lock: File,
    /// Any file on the store's filesystem, for `syncfs`.
    root_fd: File,
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
    ///
    /// Errors: `Missing` when `root` does not exist and `create` is false; `Locked`
    /// when another run holds the store; `Io` for anything the filesystem refuses.
    pub fn open(root: &Path, create: bool) -> Result<Store, StoreError> {
        if !root.exists() {
            if !create {
                return Err(StoreError::Missing(root.to_path_buf()));
            }
            fs::create_dir_all(root).map_err(io_err(root))?;
        }
        let root = root.canonicalize().map_err(io_err(root))?;
        let meta = root.join(META_DIR);
        if !create && !meta.join(IDENTITY_FILE).exists() {
            return Err(StoreError::NotAStore(root));
        }
        let tmp = meta.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let lock_path = meta.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(root)),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        load_or_create_identity(&meta)?;
        let root_fd = File::open(&root).map_err(io_err(&root))?;
        let fs = FsInfo::of(&root).map_err(io_err(&root))?;
        let store = Store {
            root,
            tmp,
            _lock: lock,
            root_fd,
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

    /// Removes what an interrupted run left in `.offload/tmp/`. Safe because the lock
    /// is held: no other run is writing there.
    fn sweep_tmp(&self) -> io::Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(&self.tmp)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
            n += 1;
        }
        if n > 0 {
            tracing::info!("removed {n} temporary files left by an interrupted run");
        }
        Ok(n)
    }

    /// Creates a new, empty temp file on the store's filesystem (so that the final
    /// rename is atomic).
    pub fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("{}-{n}.part", std::process::id()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, f))
    }

    /// Makes the data of the given (closed) temp files durable. One `syncfs` covers
    /// them all where the filesystem honours it; elsewhere each file is synced.
    pub fn sync_data(&self, files: &[&Path]) -> io::Result<()> {
        if self.fs.syncfs_is_trustworthy() {
            fsinfo::syncfs(&self.root_fd)
        } else {
            // fsync flushes the file's pages whichever descriptor asks.
            files.iter().try_for_each(|p| File::open(p)?.sync_data())
        }
    }

    /// Moves the (synced) temp file to `wanted` (store-relative, already sanitised),
    /// never replacing anything. When `wanted` is taken (`taken` says so for names the
    /// caller has reserved, the filesystem for the rest) by different content, the name
    /// gets a suffix from the content hash, `IMG_0001~1a2b3c4d.JPG`, then a counter.
    /// Returns the final name; the caller syncs the directories it returns in batch
    /// with [`Store::sync_dirs`].
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
        place_into(&self.root, temp, wanted, hash, size, taken)
    }

    /// Syncs the parent folders of the given store-relative paths (each once), so that
    /// the renames into them survive a power cut.
    pub fn sync_dirs<'a>(&self, rel_paths: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let mut dirs: Vec<PathBuf> = rel_paths
            .into_iter()
            .filter_map(|p| self.root.join(p).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        // New folders were linked into their own parents: sync those up to the root.
        let mut all = dirs.clone();
        for d in &dirs {
            let mut p = d.as_path();
            while let Some(parent) = p.parent() {
                if !parent.starts_with(&self.root) {
                    break;
                }
                all.push(parent.to_path_buf());
                if parent == self.root {
                    break;
                }
                p = parent;
            }
        }
        all.sort();
        all.dedup();
        all.iter().try_for_each(|d| fsinfo::sync_dir(d))
    }
}

/// [`Store::place`] for any folder `root` on the temp file's filesystem (an export
/// folder too): the same names, the same suffixes, never a replaced file, and a file
/// with exactly this content already under a candidate name is taken as placed.
pub fn place_into(
    root: &Path,
    temp: &Path,
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
        let dest = root.join(&candidate);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        if fsinfo::rename_noreplace(temp, &dest)? {
            return Ok(Placed::New(candidate));
        }
        // The name exists on disk but not in the catalog: a run that stopped between
        // its rename and its catalog commit (or, in an export, an earlier export).
        // Same content → adopt it.
        if same_content(&dest, size, hash)? {
            fs::remove_file(temp)?;
            return Ok(Placed::AlreadyThere(candidate));
        }
    }
    Err(io::Error::other(format!(
        "could not find a free name for {wanted} after 1000 tries"
    )))
}

/// Every regular file in the store outside `.offload/`, as store-relative paths,
/// sorted. Symbolic links are not followed.
pub fn list_files(root: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || e.file_name() != META_DIR);
    for e in walk {
        let e = e.map_err(io::Error::other)?;
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(root).unwrap_or(e.path());
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(out)
}

/// Hashes a file as it is on the disk, not as the page cache remembers it: clean cached
/// pages are dropped before reading, so a bit flipped on the medium is seen.
pub fn hash_from_disk(
    path: &std::path::Path,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64),
) -> io::Result<(u64, blake3::Hash)> {
    let mut f = File::open(path)?;
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

/// True when the file at `path` has exactly `size` bytes hashing to `hash`.
pub fn same_content(path: &Path, size: u64, hash: &blake3::Hash) -> io::Result<bool> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() || meta.len() != size {
        return Ok(false);
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path)?)?;
    Ok(&h.finalize() == hash)
}

fn load_or_create_identity(meta: &Path) -> Result<Identity, StoreError> {
    let path = meta.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let now = jiff::Timestamp::now();
            let seed = format!("{now}-{}-{}", std::process::id(), meta.display());
            let id = Identity {
                store_id: blake3::hash(seed.as_bytes()).to_hex()[..16].to_string(),
                created: now.to_string(),
                format: 1,
            };
            let tmp = meta.join("store.json.tmp");
            let body = serde_json::to_vec_pretty(&id).expect("serialisable");
            (|| {
                let mut f = File::create(&tmp)?;
                io::Write::write_all(&mut f, &body)?;
                f.sync_all()?;
                fs::rename(&tmp, &path)?;
                fsinfo::sync_dir(meta)
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
