//! A mounted folder holding a camera roll: an SD card, a camera, a phone the desktop
//! has mounted. The simplest source: list with `stat`, read with `read`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::beneath;

use super::{
    skip_reason, DeviceInfo, Entry, FileRead, Listing, Skipped, Source, SourceError, SourceKind,
};

/// Why a listed file that became a symbolic link is not read.
const CHANGED_TO_LINK: &str = "was replaced (or a folder it is in was) by a symbolic link after \
     it was listed: not followed, a link could lead anywhere. Run the backup again to see what \
     is there now.";

pub struct FolderSource {
    root: PathBuf,
    /// The folder as opened: every file is reached from it, never through a link.
    root_fd: OwnedFd,
    info: DeviceInfo,
    /// Entry path → the file as listed, because a name that is not UTF-8 has no exact
    /// `String`, and because only that very file may be read.
    real: HashMap<String, Listed>,
}

/// A file as the listing saw it.
struct Listed {
    /// Its path relative to the folder.
    rel: PathBuf,
    /// Its identity (device, inode), which the opened file must have.
    dev: u64,
    ino: u64,
}

impl FolderSource {
    /// Opens the folder at `root`. Errors: `Blocked` when it does not exist, is not a
    /// folder or cannot be read.
    pub fn open(root: &Path) -> Result<FolderSource, SourceError> {
        let canon = root.canonicalize().map_err(|e| {
            SourceError::Blocked(format!(
                "Cannot read the folder {}: {e}. Check the path, and that the card or camera is mounted.",
                root.display()
            ))
        })?;
        if !canon.is_dir() {
            return Err(SourceError::Blocked(format!(
                "{} is not a folder: give the folder that holds the photos (often the one with DCIM in it).",
                root.display()
            )));
        }
        std::fs::read_dir(&canon).map_err(|e| {
            SourceError::Blocked(format!("Cannot read the folder {}: {e}", canon.display()))
        })?;
        let root_fd = beneath::open_root(&canon).map_err(|e| {
            SourceError::Blocked(format!("Cannot read the folder {}: {e}", canon.display()))
        })?;
        let info = DeviceInfo {
            id: format!("folder:{}", canon.display()),
            kind: SourceKind::Folder,
            name: display_name(&canon),
            manufacturer: None,
            model: None,
            serial: None,
            storages: vec![],
            warnings: vec![],
        };
        Ok(FolderSource {
            root: canon,
            root_fd,
            info,
            real: HashMap::new(),
        })
    }
}

/// `/media/me/CANON_SD/DCIM` → `CANON_SD`: the DCIM folder itself says nothing.
fn display_name(canon: &Path) -> String {
    let mut p = canon;
    if p.file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("DCIM"))
    {
        p = p.parent().unwrap_or(p);
    }
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "folder".to_string())
}

fn rel_string(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| component_text(c.as_os_str()))
        .collect::<Vec<_>>()
        .join("/")
}

/// A path component as text. A name that is not UTF-8 (written by an old camera or
/// another system) has no exact `String`, and its lossy spelling alone could be another
/// file's name (`IMG_\xff.jpg` reads as the real `IMG_\u{fffd}.jpg`): both became one
/// entry, so one of them was never backed up (found by the torture test of hostile
/// names). The lossy spelling gets a tag made from the name's bytes, before the extension.
fn component_text(c: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    match c.to_str() {
        Some(s) => s.to_string(),
        None => {
            let lossy = c.to_string_lossy();
            let tag = &blake3::hash(c.as_bytes()).to_hex()[..8];
            match lossy.rfind('.') {
                Some(i) if i > 0 => format!("{}~{tag}{}", &lossy[..i], &lossy[i..]),
                _ => format!("{lossy}~{tag}"),
            }
        }
    }
}

impl Source for FolderSource {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn list(&mut self) -> Result<Listing, SourceError> {
        let mut listing = Listing::default();
        self.real.clear();
        let mut walk = walkdir::WalkDir::new(&self.root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = walk.next() {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    let path = e
                        .path()
                        .map(|p| rel_string(&self.root, p))
                        .unwrap_or_default();
                    listing.unreadable.push(Skipped {
                        path,
                        reason: format!("cannot be listed: {e}"),
                    });
                    continue;
                }
            };
            if item.depth() == 0 {
                continue;
            }
            if self.list_item(&item, &mut listing) {
                walk.skip_current_dir();
            }
        }
        super::provider::provider().after_listing();
        Ok(listing)
    }

    fn open<'a>(
        &'a mut self,
        entry: &Entry,
        offset: u64,
    ) -> Result<Box<dyn FileRead + 'a>, SourceError> {
        let Some(listed) = self.real.get(&entry.path) else {
            return Err(SourceError::File(
                "is not in this folder's listing: list the folder again".into(),
            ));
        };
        // The file may have been swapped since it was listed: never follow a link
        // (its target could be anything, /etc/passwd say), and never wait on a FIFO
        // (O_NONBLOCK makes its open return at once); then only the very file that
        // was listed, a regular file, is read.
        let mut f = beneath::open_file(
            self.root_fd.as_fd(),
            &self.root,
            &listed.rel,
            OFlags::RDONLY | OFlags::NONBLOCK,
        )
        .map_err(|e| match beneath::link_of(&e) {
            Some(_) => SourceError::File(CHANGED_TO_LINK.into()),
            None => self.classify(e),
        })?;
        let meta = f.metadata().map_err(|e| self.classify(e))?;
        if !meta.is_file() || meta.dev() != listed.dev || meta.ino() != listed.ino {
            let now = if meta.is_file() {
                "another file"
            } else {
                "not a regular file"
            };
            return Err(SourceError::File(format!(
                "was replaced after it was listed (it is now {now}): not read. Run the backup \
                 again to read what is there now."
            )));
        }
        // Reads of a regular file never block anyway; clear the flag all the same.
        rustix::fs::fcntl_setfl(&f, OFlags::empty()).map_err(|e| self.classify(e.into()))?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| self.classify(e))?;
        }
        Ok(Box::new(FolderReader {
            file: f,
            root: self.root.clone(),
        }))
    }
}

impl FolderSource {
    /// Puts one item the walk met below the root where it belongs in `listing`: a
    /// regular file in `entries` (see [`FolderSource::list_file`]); a hidden or trash
    /// item, a link or a special file in `skipped`; a plain folder nowhere, its files
    /// speak for it.
    ///
    /// Returns `true` when the item is a folder the walk must not go into.
    fn list_item(&mut self, item: &walkdir::DirEntry, listing: &mut Listing) -> bool {
        let name = item.file_name().to_string_lossy();
        let rel = rel_string(&self.root, item.path());
        let ft = item.file_type();
        if let Some(reason) = skip_reason(&name) {
            if ft.is_dir() {
                listing.skipped.push(Skipped {
                    path: format!("{rel}/"),
                    reason: format!("{reason} folder"),
                });
                return true;
            }
            listing.skipped.push(Skipped {
                path: rel,
                reason: reason.to_string(),
            });
            return false;
        }
        if ft.is_dir() {
            return false;
        }
        if ft.is_symlink() {
            // Never followed: a link could lead out of the folder (or loop).
            listing.skipped.push(Skipped {
                path: rel,
                reason: "symbolic link (not followed)".into(),
            });
            return false;
        }
        if !ft.is_file() {
            listing.skipped.push(Skipped {
                path: rel,
                reason: "not a regular file".into(),
            });
            return false;
        }
        match self.list_file(item, rel) {
            Ok(entry) => listing.entries.push(entry),
            Err(unreadable) => listing.unreadable.push(unreadable),
        }
        false
    }

    /// The entry for the regular file `item`, at entry path `rel`. Remembers its
    /// relative path and identity in `self.real`, so that `open` reads that very file.
    ///
    /// Errors: the `unreadable` record when its metadata cannot be read.
    fn list_file(&mut self, item: &walkdir::DirEntry, rel: String) -> Result<Entry, Skipped> {
        let meta = match item.metadata() {
            Ok(m) => m,
            Err(e) => {
                return Err(Skipped {
                    path: rel,
                    reason: format!("cannot be read: {e}"),
                })
            }
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| jiff::Timestamp::try_from(t).ok())
            .map(|t| t.as_second())
            .unwrap_or(0);
        let listed = Listed {
            rel: item
                .path()
                .strip_prefix(&self.root)
                .unwrap_or(item.path())
                .to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        self.real.insert(rel.clone(), listed);
        Ok(Entry::new(rel, meta.len(), mtime))
    }

    fn classify(&self, e: io::Error) -> SourceError {
        classify(&self.root, e)
    }
}

/// A read error on a card that was pulled out is the end of the run, not of one file.
fn classify(root: &Path, e: io::Error) -> SourceError {
    if !root.exists() {
        SourceError::Gone(format!(
            "The folder {} is gone (card removed or unmounted): put it back and run offload again.",
            root.display()
        ))
    } else {
        SourceError::File(e.to_string())
    }
}

struct FolderReader {
    file: File,
    root: PathBuf,
}

impl FileRead for FolderReader {}

impl Read for FolderReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file
            .read(buf)
            .map_err(|e| classify(&self.root, e).into_io())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn lists_files_and_skips_by_rule() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("CARD");
        std::fs::create_dir_all(root.join("DCIM/100MEDIA")).unwrap();
        std::fs::create_dir_all(root.join("DCIM/.thumbnails")).unwrap();
        std::fs::write(root.join("DCIM/100MEDIA/IMG_1.JPG"), b"abc").unwrap();
        std::fs::write(root.join("DCIM/.thumbnails/t.jpg"), b"t").unwrap();
        std::fs::write(root.join("DCIM/.trashed-1-IMG.jpg"), b"t").unwrap();
        std::fs::write(root.join(".DS_Store"), b"t").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("DCIM/link.jpg")).unwrap();
        let mut s = FolderSource::open(&root).unwrap();
        assert_eq!(s.info().name, "CARD");
        let l = s.list().unwrap();
        let paths: Vec<_> = l.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["DCIM/100MEDIA/IMG_1.JPG"]);
        let skipped: Vec<_> = l.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            skipped,
            [
                ".DS_Store",
                "DCIM/.thumbnails/",
                "DCIM/.trashed-1-IMG.jpg",
                "DCIM/link.jpg"
            ]
        );
        let e = l.entries[0].clone();
        let mut buf = String::new();
        s.open(&e, 1).unwrap().read_to_string(&mut buf).unwrap();
        assert_eq!(buf, "bc");
    }

    #[test]
    fn names_that_are_not_utf8_never_share_an_entry() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let raw = std::ffi::OsStr::from_bytes(b"IMG_\xff.jpg");
        std::fs::write(d.path().join(raw), b"raw bytes").unwrap();
        std::fs::write(d.path().join("IMG_\u{fffd}.jpg"), b"real name").unwrap();
        let mut s = FolderSource::open(d.path()).unwrap();
        let l = s.list().unwrap();
        let paths: Vec<_> = l.entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(paths.len(), 2);
        assert_ne!(paths[0], paths[1]);
        for (e, want) in l
            .entries
            .iter()
            .zip([b"real name".as_slice(), b"raw bytes"])
        {
            let mut got = Vec::new();
            s.open(e, 0).unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(got, want, "{}", e.path);
        }
    }

    #[test]
    fn a_file_swapped_after_listing_is_not_read() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"abc").unwrap();
        for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] {
            fs::write(d.path().join(name), b"abc").unwrap();
        }
        let mut s = FolderSource::open(d.path()).unwrap();
        let l = s.list().unwrap();
        fs::remove_file(d.path().join("a.jpg")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("a.jpg")).unwrap();
        fs::remove_file(d.path().join("b.jpg")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("b.jpg"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        fs::write(outside.path().join("other"), b"abc").unwrap();
        fs::rename(outside.path().join("other"), d.path().join("c.jpg")).unwrap();
        let why = |i: usize, s: &mut FolderSource| match s.open(&l.entries[i], 0) {
            Err(SourceError::File(m)) => m,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("{} was opened", l.entries[i].path),
        };
        assert!(why(0, &mut s).contains("symbolic link"));
        assert!(why(1, &mut s).contains("not a regular file"));
        assert!(why(2, &mut s).contains("another file"));
        let mut got = String::new();
        s.open(&l.entries[3], 0)
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "abc");
    }

    #[test]
    fn dcim_takes_its_parents_name() {
        assert_eq!(display_name(Path::new("/media/me/SD/DCIM")), "SD");
        assert_eq!(display_name(Path::new("/")), "folder");
    }
}
