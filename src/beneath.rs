//! Folders and files beneath a folder held open, reached one name at a time without
//! ever following a symbolic link.
//!
//! Every step starts from the descriptor of the folder before it and opens the next
//! name with `O_NOFOLLOW`, so no path is resolved again later, when a link could have
//! been put in its place. (One `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` would
//! do the same on Linux 5.6 and later, but it cannot say which name was the link, and
//! the user needs that name to fix the store.) A link where a folder or a file of
//! offload's belongs stops with a [`Link`] error naming it; links found while sweeping
//! are removed as links, never what they point to.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// What offload expected where it found a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Folder,
    File,
    /// A folder or a file: found while walking a tree that holds only those.
    Entry,
}

/// A symbolic link where offload expects a folder or a file: nothing is read, written
/// or deleted through it.
#[derive(Debug)]
pub struct Link {
    pub path: PathBuf,
    pub expected: Expected,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expected {
            Expected::Folder => write!(
                f,
                "{} is a symbolic link where offload expects a folder; offload never writes or \
                 deletes through links. Remove the link (and move what it points to into place \
                 if it belongs to the backup), then run again.",
                self.path.display()
            ),
            Expected::File => write!(
                f,
                "{} is a symbolic link where offload expects a file; offload never reads, writes \
                 or deletes through links. Remove the link (and move the file it points to into \
                 place if it belongs there), then run again.",
                self.path.display()
            ),
            Expected::Entry => write!(
                f,
                "{} is a symbolic link where offload expects only folders and files; offload \
                 never reads, writes or deletes through links. Remove the link (and move what it \
                 points to into place if it belongs to the backup), then run again.",
                self.path.display()
            ),
        }
    }
}

impl std::error::Error for Link {}

impl From<Link> for io::Error {
    fn from(link: Link) -> io::Error {
        io::Error::other(link)
    }
}

/// The [`Link`] an error is or carries (inside an `io::Error`), if any. Meant for each
/// cause of an error chain.
pub fn link_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Link> {
    if let Some(link) = e.downcast_ref::<Link>() {
        return Some(link);
    }
    e.downcast_ref::<io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<Link>())
}

/// The [`Link`] in any cause of `e`.
pub fn link_in(e: &anyhow::Error) -> Option<&Link> {
    e.chain().find_map(link_of)
}

/// Takes the [`Link`] out of an `io::Error` that carries one; gives other errors back.
pub fn into_link(e: io::Error) -> Result<Link, io::Error> {
    if link_of(&e).is_none() {
        return Err(e);
    }
    let inner = e.into_inner().expect("a link error has an inner error");
    Ok(*inner.downcast::<Link>().expect("checked above"))
}

/// Opens the folder at `path` itself. A link in `path` is followed: the path is the
/// one the user gave; only what lies beneath it is held to the no-link rule.
/// Errors: as `open(2)` (`NotFound`, `ENOTDIR`...).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names of `rel`, which must be relative and made of plain names only (no `..`,
/// no root); an empty `rel` has none. Errors: `InvalidInput` otherwise.
fn names(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            )),
        })
        .collect()
}

/// `rel` split into its folder and its last name. Errors: `InvalidInput` when `rel`
/// is not plain (see [`names`]) or has no last name.
pub fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    names(rel)?;
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", rel.display()),
        )),
    }
}

/// What `name` in `dir` is, itself (a link is a link). `None` when there is nothing
/// by that name. Errors: as `fstatat(2)`.
pub fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    matches!(kind_at(dir, name), Ok(Some(t)) if t.is_symlink())
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the folder `name` in `dir`; `shown` is its path, for messages.
fn open_child_dir(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> io::Result<OwnedFd> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(_) if is_link_at(dir, name) => Err(Link {
            path: shown.to_path_buf(),
            expected: Expected::Folder,
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Opens the existing folder `rel` beneath `root` (whose path, for messages, is
/// `root_path`); an empty `rel` opens `root` again. Errors: a [`Link`] naming the
/// first name of `rel` that is a link; `NotFound`, `ENOTDIR` as `openat(2)`;
/// `InvalidInput` for a `rel` that is not plain.
pub fn open_dir(root: BorrowedFd<'_>, root_path: &Path, rel: &Path) -> io::Result<OwnedFd> {
    walk(root, root_path, rel, false)
}

/// [`open_dir`], creating each missing folder of `rel` on the way (`mkdir -p`).
pub fn create_dirs(root: BorrowedFd<'_>, root_path: &Path, rel: &Path) -> io::Result<OwnedFd> {
    walk(root, root_path, rel, true)
}

fn walk(root: BorrowedFd<'_>, root_path: &Path, rel: &Path, create: bool) -> io::Result<OwnedFd> {
    let mut cur = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    let mut shown = root_path.to_path_buf();
    for name in names(rel)? {
        shown.push(name);
        if create {
            match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o777)) {
                // Whatever holds the name (a folder, or a link refused just below).
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        cur = open_child_dir(cur.as_fd(), name, &shown)?;
    }
    Ok(cur)
}

/// Opens the file `name` in `dir` with `flags` (and `mode` when it creates it), never
/// through a link; `shown` is its path, for messages. Errors: a [`Link`] when `name`
/// is one; else as `openat(2)`.
pub fn open_in(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
    mode: u32,
    shown: &Path,
) -> io::Result<File> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(_) if is_link_at(dir, name) => Err(Link {
            path: shown.to_path_buf(),
            expected: Expected::File,
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Opens the existing file `rel` beneath `root` with `flags` (`O_RDONLY`, say), no
/// name of it followed through a link. Errors: as [`open_dir`] and [`open_in`].
pub fn open_file(
    root: BorrowedFd<'_>,
    root_path: &Path,
    rel: &Path,
    flags: OFlags,
) -> io::Result<File> {
    let (parent, name) = split(rel)?;
    let dir = open_dir(root, root_path, parent)?;
    open_in(dir.as_fd(), name, flags, 0, &root_path.join(rel))
}

/// The names in the folder `dir` (without `.` and `..`) with what each is (a link
/// is a link), sorted by name. Errors: as `getdents(2)` and `fstatat(2)`.
pub fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for e in Dir::read_from(dir)? {
        let e = e?;
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let kind = match e.file_type() {
            // Some filesystems do not say in the listing.
            FileType::Unknown => match kind_at(dir, name)? {
                Some(k) => k,
                None => continue,
            },
            k => k,
        };
        out.push((name.to_os_string(), kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Removes everything inside the folder `dir`, not the folder itself: files, links
/// (the links themselves, never what they point to) and subfolders with all they hold,
/// each relative to its folder's descriptor. Returns how many names `dir` held.
/// Errors: the first removal the filesystem refuses.
pub fn remove_contents(dir: BorrowedFd<'_>) -> io::Result<usize> {
    let all = entries(dir)?;
    for (name, kind) in &all {
        if kind.is_dir() {
            // Opened without following: a folder swapped for a link meanwhile fails
            // here instead of being emptied.
            let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?;
            remove_contents(sub.as_fd())?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
    }
    Ok(all.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn root(d: &Path) -> OwnedFd {
        open_root(d).unwrap()
    }

    fn link_path(e: io::Error) -> PathBuf {
        into_link(e).expect("a link error").path
    }

    #[test]
    fn create_dirs_makes_folders_and_refuses_a_link_on_the_way() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let r = root(d.path());
        create_dirs(r.as_fd(), d.path(), Path::new("a/b/c")).unwrap();
        assert!(d.path().join("a/b/c").is_dir());
        symlink(elsewhere.path(), d.path().join("a/link")).unwrap();
        let e = create_dirs(r.as_fd(), d.path(), Path::new("a/link/x")).unwrap_err();
        assert_eq!(link_path(e), d.path().join("a/link"));
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        // A dangling link is a link too, and nothing is created where it points.
        symlink(elsewhere.path().join("nowhere"), d.path().join("dangling")).unwrap();
        let e = create_dirs(r.as_fd(), d.path(), Path::new("dangling")).unwrap_err();
        assert_eq!(link_path(e), d.path().join("dangling"));
        assert!(!elsewhere.path().join("nowhere").exists());
    }

    #[test]
    fn open_dir_and_open_file_never_follow() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("x")).unwrap();
        fs::write(d.path().join("x/f"), b"in").unwrap();
        fs::write(elsewhere.path().join("f"), b"out").unwrap();
        symlink(elsewhere.path(), d.path().join("y")).unwrap();
        symlink(elsewhere.path().join("f"), d.path().join("x/g")).unwrap();
        let r = root(d.path());
        assert!(open_dir(r.as_fd(), d.path(), Path::new("x")).is_ok());
        let e = open_dir(r.as_fd(), d.path(), Path::new("y")).unwrap_err();
        assert_eq!(link_path(e), d.path().join("y"));
        let e = open_dir(r.as_fd(), d.path(), Path::new("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let mut s = String::new();
        io::Read::read_to_string(
            &mut open_file(r.as_fd(), d.path(), Path::new("x/f"), OFlags::RDONLY).unwrap(),
            &mut s,
        )
        .unwrap();
        assert_eq!(s, "in");
        let e = open_file(r.as_fd(), d.path(), Path::new("y/f"), OFlags::RDONLY).unwrap_err();
        assert_eq!(link_path(e), d.path().join("y"));
        let e = open_file(r.as_fd(), d.path(), Path::new("x/g"), OFlags::RDONLY).unwrap_err();
        let link = into_link(e).unwrap();
        assert_eq!(link.path, d.path().join("x/g"));
        assert_eq!(link.expected, Expected::File);
        assert!(link.to_string().contains("symbolic link"));
        for bad in ["../x", "/etc", "x/../../y"] {
            let e = open_dir(r.as_fd(), d.path(), Path::new(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn open_in_creates_without_following() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let r = root(d.path());
        symlink(elsewhere.path().join("t"), d.path().join("lock")).unwrap();
        let e = open_in(
            r.as_fd(),
            OsStr::new("lock"),
            OFlags::WRONLY | OFlags::CREATE,
            0o666,
            &d.path().join("lock"),
        )
        .unwrap_err();
        assert_eq!(link_path(e), d.path().join("lock"));
        assert!(!elsewhere.path().join("t").exists());
        open_in(
            r.as_fd(),
            OsStr::new("new"),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            0o666,
            &d.path().join("new"),
        )
        .unwrap();
        assert!(d.path().join("new").is_file());
    }

    #[test]
    fn remove_contents_removes_links_not_their_targets() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("keep"), b"precious").unwrap();
        fs::create_dir_all(d.path().join("sub/deeper")).unwrap();
        fs::write(d.path().join("sub/deeper/part"), b"x").unwrap();
        fs::write(d.path().join("a.part"), b"x").unwrap();
        symlink(elsewhere.path(), d.path().join("dirlink")).unwrap();
        symlink(elsewhere.path(), d.path().join("sub/inner-link")).unwrap();
        let r = root(d.path());
        assert_eq!(remove_contents(r.as_fd()).unwrap(), 3);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        assert_eq!(
            fs::read(elsewhere.path().join("keep")).unwrap(),
            b"precious"
        );
    }

    #[test]
    fn entries_are_sorted_and_say_what_each_is() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("b"), b"").unwrap();
        fs::create_dir(d.path().join("a")).unwrap();
        symlink("/", d.path().join("c")).unwrap();
        let r = root(d.path());
        let got: Vec<(String, bool, bool, bool)> = entries(r.as_fd())
            .unwrap()
            .into_iter()
            .map(|(n, k)| {
                (
                    n.to_string_lossy().into_owned(),
                    k.is_dir(),
                    k.is_file(),
                    k.is_symlink(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), true, false, false),
                ("b".into(), false, true, false),
                ("c".into(), false, false, true)
            ]
        );
    }
}
