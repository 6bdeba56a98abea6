//! `offload free-up`: delete from the phone what is safely on the backup drive(s).
//!
//! A file is deleted only when all of these hold, checked now, not remembered:
//! - the phone lists it with exactly the path, size and mtime that were backed up, and
//!   no other object on the phone shows under that path (two names the phone's
//!   listing cannot tell apart are never deleted, either of them);
//! - it is selected (`--only`, `--since`, `--older-than`...: the same selection as
//!   `backup` and `export`); only selected files are checked further;
//! - its stored copy was re-read from the disk (around the page cache) just now and
//!   hashes as recorded, in at least `--copies` destinations that are present;
//! - `--yes` was given. Without it, the list is printed and nothing is deleted;
//! - the phone's object itself was read just now, and its BLAKE3 hash is the stored
//!   copies'. That costs one more read of what is deleted: the price of knowing that
//!   the content being deleted is the content on the drive, not a file edited in place
//!   with the same size and date. The object deleted is the one read, by its handle in
//!   the same session, never whatever its name leads to.
//!
//! iPhones are never written to: deleting over AFC leaves the Photos library
//! inconsistent, so the verified list is printed for deleting in the Photos app.

use anyhow::Result;
use indicatif::DecimalBytes;
use serde::Serialize;

use crate::args::FreeUpArgs;
use crate::catalog::Catalog;
use crate::commands::backup::open_catalog;
use crate::config;
use crate::error::{fail, Exit};
use crate::filter::{age_cutoff, DateKnown, Filter, Known};
use crate::media::{Categories, Category, Tag};
use crate::source::detect::{detect, DetectOptions};
use crate::source::{Delete, Entry, Source, SourceError, SourceKind};
use crate::stop::Stop;
use crate::store::Store;
use crate::term::shown;

#[derive(Serialize)]
struct Item {
    path: String,
    size: u64,
    captured: String,
    /// Stored copies re-read and matched now.
    verified_copies: Vec<String>,
}

#[derive(Serialize)]
struct Kept {
    path: String,
    reason: String,
}

#[derive(Serialize)]
struct DeviceResult {
    id: String,
    name: String,
    kind: String,
    /// Safe to delete as far as the backup goes (listed; with `--yes` on Android, each
    /// is read from the phone and compared before it is deleted).
    eligible: Vec<Item>,
    /// Exactly the files deleted from the phone.
    deleted: Vec<String>,
    kept: Vec<Kept>,
    bytes_freed: u64,
    /// Stored copies re-read from the drives and hashed: those of selected files only.
    stored_copies_hashed: u64,
    /// Files read from the phone and hashed before deleting (with `--yes`).
    phone_files_hashed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// What stopped the run before its end (`SIGINT`, `SIGTERM`, `SIGHUP`): no file
    /// was deleted after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
}

/// A stored copy that was re-read and matched its recorded hash.
struct Copy {
    path: String,
    hash: String,
}

/// The selection `free-up` applies: the shared filter, narrowed by `--older-than`.
fn selection(args: &FreeUpArgs) -> Result<Filter> {
    let filter = Filter::from_args(&args.filter).map_err(|e| fail(Exit::Usage, e))?;
    Ok(match &args.older_than {
        Some(text) => {
            let cutoff = age_cutoff(text, &jiff::Zoned::now())
                .map_err(|e| fail(Exit::Usage, format!("--older-than {text:?}: {e}")))?;
            filter.taken_before(cutoff)
        }
        None => filter,
    })
}

/// Whether a backed-up file is selected, by what its catalog recorded: its category,
/// tags and capture date (exact: the file was read when it was stored).
fn selected(
    filter: &Filter,
    catalog: &Catalog,
    hash: &str,
    captured: &str,
    category: &str,
) -> Result<bool> {
    if filter.is_empty() {
        return Ok(true);
    }
    let Ok(date) = captured.parse::<jiff::civil::DateTime>() else {
        // No date to decide on: never deleted on a guess.
        return Ok(false);
    };
    let categories = Categories {
        primary: Category::parse(category).unwrap_or(Category::Other),
        tags: catalog
            .tags_of(hash)?
            .iter()
            .filter_map(|t| Tag::parse(t))
            .collect(),
    };
    Ok(filter.admits(&Known {
        categories: &categories,
        date: DateKnown::Exact(date),
        read: true,
        library: true,
    }))
}

/// Reads a listed object from the phone to its end: its size and BLAKE3 hash; `None`
/// when a stop came first.
fn hash_on_phone(
    deleter: &mut dyn Delete,
    entry: &Entry,
    stop: &Stop,
) -> Result<Option<(u64, String)>, SourceError> {
    let mut reader = deleter.open_listed(entry)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = Vec::new();
    let mut size = 0u64;
    loop {
        if stop.requested() {
            return Ok(None);
        }
        let n = match reader.read_chunk(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SourceError::from_io(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Some((size, hasher.finalize().to_hex().to_string())))
}

pub fn run(args: &FreeUpArgs) -> Result<Exit> {
    let cfg = config::load()?;
    let filter = selection(args)?;
    if args.copies == 0 {
        return Err(fail(Exit::Usage, "--copies must be at least 1"));
    }
    let stores = open_stores(args, &cfg)?;
    let sources = find_phones(args)?;

    let stop = Stop::new();
    let mut check = Check {
        stores: &stores,
        filter: &filter,
        args,
        stop: &stop,
        buf: vec![0u8; 1 << 20],
        code: Exit::Done,
    };
    let mut results = Vec::new();
    for mut source in sources {
        results.push(check.free_up(source.as_mut())?);
    }
    let code = if stop.requested() {
        stop.exit()
    } else {
        check.code
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_human(&results, args);
    }
    Ok(code)
}

/// The stores named for this run, each locked with its catalog open: no backup may
/// change them while they vouch for deletions. Stores that are absent are said and
/// left out; exit 4 when fewer than `--copies` are present.
fn open_stores(args: &FreeUpArgs, cfg: &config::Config) -> Result<Vec<(Store, Catalog)>> {
    let mut stores: Vec<(Store, Catalog)> = Vec::new();
    for d in config::destinations(&args.dest, cfg, true)? {
        match d.locate().and_then(|p| {
            Store::open(&p, false).map_err(|e| fail(Exit::Destination, e.to_string()))
        }) {
            Ok(store) => {
                let catalog = open_catalog(&store)?;
                stores.push((store, catalog));
            }
            Err(e) => errln!("offload: {} is not available: {e}", d.describe()),
        }
    }
    if stores.is_empty() {
        return Err(fail(
            Exit::Destination,
            "No backup drive is available: nothing can be verified, so nothing is deleted.",
        ));
    }
    if stores.len() < args.copies as usize {
        return Err(fail(
            Exit::Destination,
            format!(
                "--copies {} asks for verified copies on {} drives, but only {} {} present.",
                args.copies,
                args.copies,
                stores.len(),
                if stores.len() == 1 { "is" } else { "are" }
            ),
        ));
    }
    Ok(stores)
}

/// The connected phones (`--device` narrows them); exit 3 with each blocked phone's
/// fix, or how to connect one, when there is none.
fn find_phones(args: &FreeUpArgs) -> Result<Vec<Box<dyn Source>>> {
    let found = detect(&DetectOptions {
        device: args.device.clone(),
        trust_timeout: None,
        ..DetectOptions::default()
    });
    if found.sources.is_empty() {
        let why = found
            .blocked
            .iter()
            .map(|b| format!("{}: {}", b.name, b.message))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(fail(
            Exit::NoSource,
            if why.is_empty() {
                "No phone found: connect the phone to free up.".to_string()
            } else {
                why
            },
        ));
    }
    Ok(found.sources)
}

/// One run's checks, phone after phone; `code` is the exit code so far.
struct Check<'a> {
    stores: &'a [(Store, Catalog)],
    filter: &'a Filter,
    args: &'a FreeUpArgs,
    stop: &'a Stop,
    buf: Vec<u8>,
    code: Exit,
}

/// What became of one verified file when it was to be deleted.
enum Deletion {
    Deleted,
    /// Left on the phone, with the reason; the run ends with exit 1.
    Kept(String),
    /// The phone went away (exit 5): nothing more is tried on it.
    Gone(String),
    /// A stop came while the file was read: it is not deleted.
    Stopped,
    /// Deleted from the phone, but the deletion could not be logged in a catalog
    /// (the reason): reported as deleted, and the run ends with exit 1.
    DeletedUnlogged(String),
}

impl Check<'_> {
    /// One phone: its files checked against the stores, the selected ones verified
    /// there, and with `--yes` each read from the phone and deleted on a match.
    fn free_up(&mut self, source: &mut dyn Source) -> Result<DeviceResult> {
        let info = source.info().clone();
        let mut res = DeviceResult {
            id: info.id.clone(),
            name: info.name.clone(),
            kind: info.kind.as_str().into(),
            eligible: Vec::new(),
            deleted: Vec::new(),
            kept: Vec::new(),
            bytes_freed: 0,
            stored_copies_hashed: 0,
            phone_files_hashed: 0,
            note: None,
            stopped: None,
        };
        if self.stop.requested() {
            res.stopped = Some(self.stop.reason().into());
            return Ok(res);
        }
        let listing = match source.list() {
            Ok(l) => l,
            Err(e) => {
                let exit = match e {
                    SourceError::Gone(_) => Exit::Gone,
                    _ => Exit::NoSource,
                };
                self.code = self.code.max(exit);
                res.note = Some(e.to_string());
                return Ok(res);
            }
        };
        let mut eligible: Vec<(Entry, Vec<Copy>)> = Vec::new();
        for entry in listing.entries {
            if self.stop.requested() {
                res.stopped = Some(self.stop.reason().into());
                break;
            }
            if let Some(copies) = self.verified_copies(&info.id, &entry, &mut res)? {
                res.eligible.push(Item {
                    path: entry.path.clone(),
                    size: entry.size,
                    captured: copies.1,
                    verified_copies: copies.0.iter().map(|c| c.path.clone()).collect(),
                });
                eligible.push((entry, copies.0));
            }
        }
        if self.args.yes {
            match source.deleter() {
                None => res.note = Some(cannot_delete(info.kind)),
                Some(deleter) => self.delete_verified(deleter, &info.id, &eligible, &mut res)?,
            }
        }
        Ok(res)
    }

    /// The stored copies of `entry` re-read now and matched, with its capture date,
    /// when it is selected, backed up as it is listed, not ambiguous on the phone and
    /// verified on at least `--copies` stores; otherwise `None`, and where the user
    /// should know why, the reason in `res.kept`.
    fn verified_copies(
        &mut self,
        device: &str,
        entry: &Entry,
        res: &mut DeviceResult,
    ) -> Result<Option<(Vec<Copy>, String)>> {
        // What each store recorded of the file as it is listed now: the catalog alone,
        // nothing read yet.
        let mut records = Vec::new();
        for (i, (_, catalog)) in self.stores.iter().enumerate() {
            if let Some(found) = catalog.backed_up(device, &entry.path, entry.size, entry.mtime)? {
                records.push((i, found));
            }
        }
        let Some((first, (hash, _, captured, category))) = records.first() else {
            res.kept.push(Kept {
                path: entry.path.clone(),
                reason: "not backed up as it is now (new, or changed since the backup)".into(),
            });
            return Ok(None);
        };
        let captured = captured.clone();
        if !selected(
            self.filter,
            &self.stores[*first].1,
            hash,
            &captured,
            category,
        )? {
            return Ok(None);
        }
        if entry.object.is_some_and(|o| o.ambiguous) {
            res.kept.push(Kept {
                path: entry.path.clone(),
                reason: "the phone lists another file with the same name in this folder \
                         (a name that is not valid text, or too long for USB), so which \
                         one was backed up cannot be told: rename them on the phone, back \
                         up again, then free up"
                    .into(),
            });
            return Ok(None);
        }
        // Selected: its stored copies are re-read now, and only its.
        let mut copies = Vec::new();
        let mut damaged = Vec::new();
        for (i, (hash, path, _, _)) in records {
            let store = &self.stores[i].0;
            let abs = store.root().join(&path);
            tracing::info!(
                "re-reading the stored copy {}",
                shown(&abs.to_string_lossy())
            );
            res.stored_copies_hashed += 1;
            match store.hash_stored(&path, &mut self.buf, &mut |_| {}) {
                Ok((n, h)) if n == entry.size && h.to_hex().as_str() == hash => copies.push(Copy {
                    path: abs.display().to_string(),
                    hash,
                }),
                _ => damaged.push(abs.display().to_string()),
            }
        }
        if copies.len() >= self.args.copies as usize {
            return Ok(Some((copies, captured)));
        }
        let mut reason = format!(
            "{} verified cop{} (--copies {} needed)",
            copies.len(),
            if copies.len() == 1 { "y" } else { "ies" },
            self.args.copies
        );
        if !damaged.is_empty() {
            reason.push_str(&format!(
                "; the stored copy does not match any more: {}",
                damaged.join(", ")
            ));
            self.code = self.code.max(Exit::SomeFailed);
        }
        res.kept.push(Kept {
            path: entry.path.clone(),
            reason,
        });
        Ok(None)
    }

    /// Deletes each verified file whose content on the phone, read now from the very
    /// object listed, matches the stored copies. Deletions done are kept; none is begun
    /// after a stop, or after the phone went away.
    fn delete_verified(
        &mut self,
        deleter: &mut dyn Delete,
        device: &str,
        eligible: &[(Entry, Vec<Copy>)],
        res: &mut DeviceResult,
    ) -> Result<()> {
        for (entry, copies) in eligible {
            if self.stop.requested() {
                res.stopped = Some(self.stop.reason().into());
                break;
            }
            res.phone_files_hashed += 1;
            match self.delete_one(deleter, device, entry, copies)? {
                Deletion::Deleted => {
                    res.deleted.push(entry.path.clone());
                    res.bytes_freed += entry.size;
                }
                Deletion::Kept(reason) => {
                    self.code = self.code.max(Exit::SomeFailed);
                    res.kept.push(Kept {
                        path: entry.path.clone(),
                        reason,
                    });
                }
                Deletion::DeletedUnlogged(why) => {
                    errln!("offload: {why}");
                    self.code = self.code.max(Exit::SomeFailed);
                    res.deleted.push(entry.path.clone());
                    res.bytes_freed += entry.size;
                }
                Deletion::Gone(why) => {
                    self.code = self.code.max(Exit::Gone);
                    res.note = Some(why);
                    break;
                }
                Deletion::Stopped => {
                    res.stopped = Some(self.stop.reason().into());
                    break;
                }
            }
        }
        Ok(())
    }

    /// Reads `entry` from the phone, compares it with its verified `copies`, and on a
    /// match deletes it and logs the deletion in every store's catalog.
    fn delete_one(
        &self,
        deleter: &mut dyn Delete,
        device: &str,
        entry: &Entry,
        copies: &[Copy],
    ) -> Result<Deletion> {
        let on_phone = match hash_on_phone(deleter, entry, self.stop) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Deletion::Stopped),
            Err(SourceError::Gone(m)) => return Ok(Deletion::Gone(m)),
            Err(e) => {
                return Ok(Deletion::Kept(format!(
                    "not deleted: it could not be read from the phone to compare with the \
                     backup ({e})"
                )))
            }
        };
        // Nothing is deleted after a stop, even a file read to its end.
        if self.stop.requested() {
            return Ok(Deletion::Stopped);
        }
        let matching: Vec<&Copy> = copies
            .iter()
            .filter(|c| on_phone.0 == entry.size && on_phone.1 == c.hash)
            .collect();
        if matching.len() < self.args.copies as usize {
            return Ok(Deletion::Kept(
                "not deleted: its content on the phone differs from the backup although its \
                 size and date are the same (edited in place since). A backup skips it by its \
                 size and date: keep it, or copy it with `offload export` before deleting it \
                 by hand"
                    .into(),
            ));
        }
        match deleter.delete(entry) {
            Ok(()) => {
                // The file is gone from the phone whatever happens next: it is reported
                // as deleted even if a log entry cannot be written.
                for (store, catalog) in self.stores {
                    if let Err(e) = catalog.record_deletion(
                        device,
                        &entry.path,
                        entry.size,
                        entry.mtime,
                        &matching[0].hash,
                        &matching[0].path,
                    ) {
                        return Ok(Deletion::DeletedUnlogged(format!(
                            "{} was deleted from the phone, but the deletion could not be \
                             logged in the catalog of {}: {e:#}",
                            shown(&entry.path),
                            store.root().display()
                        )));
                    }
                }
                Ok(Deletion::Deleted)
            }
            Err(SourceError::Gone(m)) => Ok(Deletion::Gone(m)),
            Err(e) => Ok(Deletion::Kept(format!("not deleted: {e}"))),
        }
    }
}

/// Why a phone's files are listed but not deleted with `--yes`.
fn cannot_delete(kind: SourceKind) -> String {
    match kind {
        SourceKind::Iphone => "iPhone files are not deleted over USB: deleting through AFC \
            leaves the Photos library inconsistent (photos that show but cannot open). Delete \
            the listed photos in the Photos app; each was verified on the backup drive just now."
            .into(),
        _ => "This source does not support deleting.".into(),
    }
}

/// The human report: per phone, what was deleted (or can be), what was kept and why.
fn print_human(results: &[DeviceResult], args: &FreeUpArgs) {
    for r in results {
        let bytes: u64 = r.eligible.iter().map(|i| i.size).sum();
        outln!("{} ({}, {}):", shown(&r.name), r.kind, shown(&r.id));
        if args.yes && r.kind == "android" {
            outln!(
                "  deleted {} file{}, {} freed{}",
                r.deleted.len(),
                if r.deleted.len() == 1 { "" } else { "s" },
                DecimalBytes(r.bytes_freed),
                if r.deleted.is_empty() { "" } else { ":" }
            );
            for p in &r.deleted {
                outln!("    {}", shown(p));
            }
        } else {
            outln!(
                "  {} files ({}) are verified on the backup and can be deleted:",
                r.eligible.len(),
                DecimalBytes(bytes)
            );
            for i in &r.eligible {
                outln!(
                    "    {}  {}  {}",
                    i.captured,
                    DecimalBytes(i.size),
                    shown(&i.path)
                );
            }
        }
        if !r.kept.is_empty() {
            outln!("  kept on the phone: {}", r.kept.len());
            for k in r.kept.iter().take(20) {
                outln!("    {}: {}", shown(&k.path), shown(&k.reason));
            }
            if r.kept.len() > 20 {
                outln!(
                    "    ... and {} more (--json lists them all)",
                    r.kept.len() - 20
                );
            }
        }
        if let Some(n) = &r.note {
            outln!("  {}", shown(n));
        }
        if let Some(why) = &r.stopped {
            outln!(
                "  Stopped: {} files deleted ({why}); nothing was deleted after the stop. Run \
                 free-up again for the rest.",
                r.deleted.len()
            );
        }
        if !args.yes && !r.eligible.is_empty() && r.kind == "android" {
            outln!(
                "  Nothing was deleted. Run again with --yes to delete them from the phone \
                 (each is read from the phone first, and deleted only if it matches the backup)."
            );
        }
    }
}
