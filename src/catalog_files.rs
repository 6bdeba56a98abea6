//! The catalog's files in a store's `.offload/`: which catalog a command may write to,
//! the copies kept after each run, and where `reindex` sets an old catalog aside.
//!
//! The record of every phone backed up to a store lives in its catalog; the copies are
//! the way back when the catalog is lost or damaged. So none of them is ever replaced
//! silently: a store that lost its catalog is refused rather than given a new, empty
//! one; the copy of the last run is kept as a dated generation when the next copy is
//! made (a few of them, and never pruned while holding more than the catalog); a
//! catalog set aside gets a name of its own.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::catalog::{Catalog, Counts, CATALOG_FILE, REINDEX_NOTE};
use crate::error::{fail, Exit, Fail};
use crate::store::fsinfo::{rename_noreplace_at, sync_dir};
use crate::store::{Store, IDENTITY_FILE, META_DIR};

/// The copy of the catalog made after each run, in `.offload/`.
pub const COPY_FILE: &str = "catalog.sqlite.bak";

/// Older copies kept beside [`COPY_FILE`], at most (beyond those holding more than the
/// catalog, which are never pruned): `catalog-<UTC time of the copy>[-N].sqlite.bak`.
pub const GENERATIONS: usize = 5;

const GENERATION_PREFIX: &str = "catalog-";
const GENERATION_SUFFIX: &str = ".sqlite.bak";

/// Opens the catalog of `store` for writing, after checking that it is the store's own:
///
/// - `.offload/` and the catalog can be written, else exit 4 naming the file and the fix;
/// - it exists and records something, unless `new_store` (this run created the store):
///   a store with `store.json` but a missing or empty catalog lost its record, and a
///   new catalog would forget every phone and file in it (and the next copy would
///   replace the good one). Exit 4 with the ways out: the copy, or `offload reindex`;
/// - it passes `PRAGMA quick_check`, else exit 4 with the same ways out.
/// - it was not written by a newer `offload`, else exit 4 saying so.
///
/// Nothing is written to a catalog that fails a check.
pub fn open(store: &Store, new_store: bool) -> Result<Catalog> {
    check_writable(store)?;
    let path = store.meta_path(CATALOG_FILE);
    if !new_store && !path.try_exists().unwrap_or(true) {
        return Err(lost(store.root(), "is missing"));
    }
    // An empty file is an empty database to SQLite: say so before it writes a schema.
    // Its write-ahead log or hot rollback journal, if any, may hold the records of a
    // run that crashed.
    let len = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
    let sides_empty = SIDE_FILES.iter().all(|s| len(&side_file(&path, s)) == 0);
    if !new_store && len(&path) == 0 && sides_empty {
        return Err(lost(store.root(), "is empty"));
    }
    let checked =
        Catalog::open(&path, store.fs.supports_wal()).and_then(|c| match c.quick_check()? {
            None => Ok(c),
            Some(problem) => Err(anyhow::anyhow!(problem)),
        });
    let catalog = checked.map_err(|e| {
        // Already said for the user (a catalog of a newer offload): not damage.
        if e.is::<Fail>() {
            return e;
        }
        fail(
            Exit::Destination,
            format!(
                "The catalog {} is damaged ({e:#}). Nothing was changed. {}",
                path.display(),
                ways_out(store.root())
            ),
        )
    })?;
    if !new_store && catalog.counts()?.is_empty() {
        return Err(lost(store.root(), "is empty"));
    }
    // A rebuild that was stopped knows only part of the store: writing to it would
    // store again what it does not know.
    if catalog.note(REINDEX_NOTE)?.as_deref() == Some("incomplete") {
        return Err(fail(
            Exit::Destination,
            format!(
                "The catalog of {root} is being rebuilt: `offload reindex` was stopped before \
                 its end. Run `offload reindex --to {root}` to finish it (it goes on where it \
                 stopped), then run this again.",
                root = store.root().display()
            ),
        ));
    }
    Ok(catalog)
}

/// Refuses, with exit 4 and the fix, a `.offload/` folder or catalog (or its
/// write-ahead files) that this process may not write: SQLite would otherwise open the
/// catalog read-only without a word and fail at the first change.
pub fn check_writable(store: &Store) -> Result<()> {
    use rustix::fs::{accessat, Access, AtFlags, CWD};
    let catalog = store.meta_path(CATALOG_FILE);
    let meta = catalog.parent().expect("in .offload").to_path_buf();
    let mut candidates = vec![meta];
    candidates.extend(SIDE_FILES.iter().map(|s| side_file(&catalog, s)));
    candidates.push(catalog);
    for path in candidates {
        // The effective user's rights, as the kernel will apply them: root ignores a
        // file's mode but not an immutable flag or a read-only mount.
        match accessat(CWD, &path, Access::WRITE_OK, AtFlags::EACCESS) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(unwritable(&path, e)),
        }
    }
    Ok(())
}

/// The error for a file or folder in `.offload/` that cannot be written.
fn unwritable(path: &Path, errno: rustix::io::Errno) -> anyhow::Error {
    use rustix::io::Errno;
    let p = path.display();
    let what = if path.is_dir() {
        "The folder"
    } else {
        "The file"
    };
    let (why, fix) = match errno {
        Errno::PERM => (
            "it is marked immutable".to_string(),
            format!("clear the flag with `sudo chattr -i {p}`"),
        ),
        Errno::ROFS => (
            "the drive is mounted read-only".to_string(),
            "mount it read-write (if Linux made it read-only after an error, check it \
             first: fsck or the disk tool)"
                .to_string(),
        ),
        Errno::ACCESS => (
            "its permissions do not let you write it".to_string(),
            format!("`chmod u+w {p}` (or, if another user owns it, `sudo chown $USER {p}`)"),
        ),
        e => (
            std::io::Error::from(e).to_string(),
            "make it writable".to_string(),
        ),
    };
    fail(
        Exit::Destination,
        format!(
            "{what} {p} cannot be written: {why}. offload records every run in the catalog \
             there, so nothing was changed. Fix: {fix}; then run offload again."
        ),
    )
}

/// The error for the store at `root` (it has `store.json`) whose catalog `state`
/// ("is missing", "is empty").
pub fn lost(root: &Path, state: &str) -> anyhow::Error {
    let meta = root.join(META_DIR);
    fail(
        Exit::Destination,
        format!(
            "The catalog {} {state}, but {} is an offload backup (it has {}): a new catalog \
             would forget every phone and file recorded there. Nothing was changed. {}",
            meta.join(CATALOG_FILE).display(),
            root.display(),
            meta.join(IDENTITY_FILE).display(),
            ways_out(root)
        ),
    )
}

/// The ways back to a good catalog for the store at `root`, naming its copies.
fn ways_out(root: &Path) -> String {
    let meta = root.join(META_DIR);
    let catalog = meta.join(CATALOG_FILE);
    let copy = meta.join(COPY_FILE);
    let reindex = format!(
        "rebuild it from the store with `offload reindex --to {}`",
        root.display()
    );
    let older = generations(&meta).ok().unwrap_or_default();
    let older = match older.last() {
        Some(newest) => format!(
            " (older copies: {} and the other catalog-*.sqlite.bak files there)",
            newest.display()
        ),
        None => String::new(),
    };
    if copy.exists() {
        format!(
            "Restore the copy made after the last good run: `cp {} {}`{older}, or {reindex}.",
            copy.display(),
            catalog.display()
        )
    } else {
        let mut s = reindex;
        s[..1].make_ascii_uppercase();
        format!("{s}{older}.")
    }
}

/// The files SQLite keeps beside a database: the write-ahead log and its index (WAL
/// mode), the rollback journal (the mode used where shared memory maps are not
/// trusted: FUSE and network filesystems). A hot journal left beside a catalog that is
/// moved away could no longer roll it back.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `path` with `suffix` appended to its name (`catalog.sqlite-wal`).
fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The source key under which `offload reindex` records the files it finds.
pub const REINDEXED_KEY: &str = "store:reindexed";

/// What the copy at `path` records, and whether that is nothing `now` lacks (then
/// nothing is lost with it). Sources are compared by key, files by content hash (the
/// `reindexed` stand-in of a rebuilt catalog is no source of its own). `None` when the
/// copy cannot be read.
fn compare_copy(path: &Path, now: &(HashSet<String>, HashSet<String>)) -> Option<(Counts, bool)> {
    let copy = Catalog::open_copy(path).ok()?;
    let counts = copy.counts().ok()?;
    let (keys, hashes) = copy.keys_and_hashes().ok()?;
    let sources_kept = keys
        .iter()
        .filter(|k| k.as_str() != REINDEXED_KEY)
        .all(|k| now.0.contains(k));
    Some((counts, sources_kept && hashes.is_subset(&now.1)))
}

/// Copies the catalog to [`COPY_FILE`] after a run. The copy it replaces is kept as a
/// dated generation; generations beyond [`GENERATIONS`] are pruned, oldest first, but
/// only those recording no more than the catalog now does. Returns a warning for the
/// user when the replaced copy recorded more files or sources than the catalog (or
/// could not be read): where it was kept, and how to use it.
///
/// Needs the store's lock (no other run writes `.offload/`).
pub fn keep_copy(store: &Store, catalog: &Catalog) -> Result<Option<String>> {
    let copy = store.meta_path(COPY_FILE);
    let meta = store.meta_path("");
    let fresh = side_file(&copy, ".new");
    // Left by a run that stopped while writing it.
    let _ = fs::remove_file(&fresh);
    catalog.write_copy(&fresh)?;
    let now = catalog.counts()?;
    let now_sets = catalog.keys_and_hashes()?;

    let mut warning = None;
    if copy.exists() {
        let before = compare_copy(&copy, &now_sets);
        let kept = set_aside_as_generation(&copy)?;
        match before {
            Some((_, true)) => {}
            Some((b, false)) => {
                warning = Some(format!(
                    "the catalog now records fewer files or sources ({now}) than its copy from \
                     the run before ({b}). That copy is kept as {}. If `offload status` misses \
                     phones or files it should know, restore it over {} (while no backup \
                     runs), or run `offload reindex`.",
                    kept.display(),
                    store.meta_path(CATALOG_FILE).display()
                ))
            }
            None => {
                warning = Some(format!(
                    "the previous copy of the catalog could not be read; it is kept as {}.",
                    kept.display()
                ))
            }
        }
    }
    if !rename_noreplace(&fresh, &copy).with_context(|| format!("renaming {}", fresh.display()))? {
        anyhow::bail!("{} appeared during the copy", copy.display());
    }
    sync_dir(&meta)?;
    prune(&meta, &now_sets)?;
    Ok(warning)
}

/// Renames the copy at `copy` to a generation dated by its modification time (the
/// time of that copy), unique even within one second. Returns the new path.
fn set_aside_as_generation(copy: &Path) -> Result<PathBuf> {
    let meta = copy.parent().expect("in .offload");
    let when = fs::metadata(copy)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let stamp = when.strftime("%Y%m%dT%H%M%SZ").to_string();
    for n in 1..10_000u32 {
        let name = match n {
            1 => format!("{GENERATION_PREFIX}{stamp}{GENERATION_SUFFIX}"),
            n => format!("{GENERATION_PREFIX}{stamp}-{n}{GENERATION_SUFFIX}"),
        };
        let to = meta.join(name);
        if rename_noreplace(copy, &to).with_context(|| format!("keeping {}", to.display()))? {
            return Ok(to);
        }
    }
    anyhow::bail!(
        "no free name for an older copy of the catalog in {}",
        meta.display()
    )
}

/// The generations in `meta`, oldest first: by when each copy was written (a rename
/// keeps it), then by name. Names alone do not tell: copies made within one second
/// share a stamp, and the counter after it reuses the numbers of pruned ones.
fn generations(meta: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<((std::time::SystemTime, String, u32), PathBuf)> = Vec::new();
    for e in fs::read_dir(meta)? {
        let e = e?;
        let name = e.file_name();
        let Some(key) = name
            .to_str()
            .and_then(|n| n.strip_prefix(GENERATION_PREFIX))
            .and_then(|n| n.strip_suffix(GENERATION_SUFFIX))
        else {
            continue;
        };
        let (stamp, n) = match key.split_once('-') {
            Some((stamp, n)) => (stamp.to_string(), n.parse().unwrap_or(u32::MAX)),
            None => (key.to_string(), 1),
        };
        let written = e.metadata()?.modified()?;
        found.push(((written, stamp, n), e.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Deletes the oldest generations beyond [`GENERATIONS`], skipping any that records
/// more than `now` (or cannot be read): those are kept however many there are.
fn prune(meta: &Path, now: &(HashSet<String>, HashSet<String>)) -> Result<()> {
    let all = generations(meta)?;
    let mut excess = all.len().saturating_sub(GENERATIONS);
    for g in all {
        if excess == 0 {
            break;
        }
        if compare_copy(&g, now).is_some_and(|(_, nothing_more)| nothing_more) {
            fs::remove_file(&g).with_context(|| format!("removing {}", g.display()))?;
            excess -= 1;
        }
    }
    Ok(())
}

/// Moves the catalog of `store` (and its write-ahead files) aside under a name of its
/// own, `catalog.sqlite.<label>-<UTC time>[-N]`: never deleted, never overwritten.
/// Returns where it went, or None when there was no catalog.
///
/// Needs the store's lock.
pub fn set_aside(store: &Store, label: &str) -> Result<Option<PathBuf>> {
    let catalog = store.meta_path(CATALOG_FILE);
    if !catalog.try_exists().unwrap_or(true) {
        return Ok(None);
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let sides = SIDE_FILES;
    for n in 1..10_000u32 {
        let name = match n {
            1 => format!("{CATALOG_FILE}.{label}-{stamp}"),
            n => format!("{CATALOG_FILE}.{label}-{stamp}-{n}"),
        };
        let aside = store.meta_path(&name);
        // A name whose side files are free too, so that a log never joins another
        // catalog than its own.
        if sides
            .iter()
            .any(|s| side_file(&aside, s).symlink_metadata().is_ok())
        {
            continue;
        }
        if !rename_noreplace(&catalog, &aside)
            .with_context(|| format!("moving the old catalog to {}", aside.display()))?
        {
            continue;
        }
        for s in sides {
            let side = side_file(&catalog, s);
            if side.symlink_metadata().is_ok() {
                let to = side_file(&aside, s);
                if !rename_noreplace(&side, &to)
                    .with_context(|| format!("moving {} to {}", side.display(), to.display()))?
                {
                    anyhow::bail!("{} appeared while moving the catalog aside", to.display());
                }
            }
        }
        sync_dir(&store.meta_path(""))?;
        return Ok(Some(aside));
    }
    anyhow::bail!(
        "no free name to set the catalog aside in {}",
        store.meta_path("").display()
    )
}

/// Renames the file `from` to `to` (both in `.offload/`, whose links `Store::open`
/// refused) unless `to` exists: `Ok(false)` then. The folders are opened without
/// following a link, and the rename never replaces anything.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<bool> {
    use rustix::fs::{open, Mode, OFlags};
    use std::os::fd::AsFd;
    let split = |p: &Path| -> std::io::Result<(PathBuf, PathBuf)> {
        match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => Ok((dir.to_path_buf(), PathBuf::from(name))),
            _ => Err(std::io::Error::other(format!(
                "{} names no file",
                p.display()
            ))),
        }
    };
    let dir = |d: &Path| {
        open(
            d,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
    };
    let ((from_dir, from_name), (to_dir, to_name)) = (split(from)?, split(to)?);
    let (a, b) = (dir(&from_dir)?, dir(&to_dir)?);
    rename_noreplace_at(a.as_fd(), &from_name, b.as_fd(), &to_name)
}
