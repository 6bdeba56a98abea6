//! `offload backup`: list each source, plan against the catalog, copy what is new in
//! one pass, commit in durable batches, report.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Instant;

use anyhow::Result;

use crate::catalog::{Catalog, CloudOnly, RunCounts, CATALOG_FILE};
use crate::cli::BackupArgs;
use crate::commit::{Batch, Outcome};
use crate::config::{self, Dest};
use crate::error::{fail, Exit};
use crate::filter::Filter;
use crate::plan::{self, Item, Plan};
use crate::report::{DeviceReport, Progress, RunReport};
use crate::source::detect::{detect, Blocked, DetectOptions};
use crate::source::folder::FolderSource;
use crate::source::{Entry, Skipped, Source, SourceError};
use crate::store::fsinfo::human_bytes;
use crate::store::template::{Template, DEFAULT_TEMPLATE};
use crate::store::{Store, StoreError};
use crate::transfer::Copied;
use crate::transfer::{self, CopyError};

/// Opens the store's catalog and checks it (`PRAGMA quick_check`). A damaged one ends
/// the command with exit 4 and the two ways out: the copy from the last good run, or
/// `offload reindex`. Nothing is written to a damaged catalog.
pub fn open_catalog(store: &Store) -> Result<Catalog> {
    let path = store.meta_path(CATALOG_FILE);
    let checked =
        Catalog::open(&path, store.fs.supports_wal()).and_then(|c| match c.quick_check()? {
            None => Ok(c),
            Some(problem) => Err(anyhow::anyhow!(problem)),
        });
    checked.map_err(|e| {
        fail(
            Exit::Destination,
            format!(
                "The catalog {} is damaged ({e:#}). Nothing was copied. Restore the copy made after \
                 the last good run ({}) over it, or rebuild it from the store with \
                 `offload reindex --to {}`.",
                path.display(),
                store.meta_path(BACKUP_FILE).display(),
                store.root().display()
            ),
        )
    })
}

/// The catalog's copy after each run, in `.offload/`.
const BACKUP_FILE: &str = "catalog.sqlite.bak";

/// Space kept free beyond the planned bytes, for the catalog and folder entries: 1% of
/// the drive, between 1 MiB and 64 MiB.
fn space_reserve(total: u64) -> u64 {
    (total / 100).clamp(1 << 20, 64 << 20)
}

/// Everything a backup run needs besides its sources and destination.
pub struct Options {
    pub template: Template,
    /// The selection; files outside it are left for a later run.
    pub filter: Filter,
    pub dry_run: bool,
    pub json: bool,
    /// `{device}` names for phones seen for the first time, by serial or UDID.
    pub names: BTreeMap<String, String>,
}

pub fn run(args: &BackupArgs) -> Result<u8> {
    let cfg = config::load()?;
    let dests = config::destinations(&args.dest, &cfg, args.require_store)?;
    let template_text = args
        .template
        .clone()
        .or(cfg.template.clone())
        .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string());
    let template = Template::parse(&template_text).map_err(|e| fail(Exit::Usage, e.to_string()))?;
    let filter = Filter::from_args(&args.filter).map_err(|e| fail(Exit::Usage, e))?;

    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    for from in &args.from {
        let s = FolderSource::open(from).map_err(source_fail)?;
        sources.push(Box::new(s));
    }
    let mut blocked = Vec::new();
    if args.from.is_empty() || args.phones || args.device.is_some() {
        let found = detect(&DetectOptions {
            include_app_media: args.include_app_media || cfg.include_app_media,
            device: args.device.clone(),
            ..DetectOptions::default()
        });
        let phones = found.sources.len();
        sources.extend(found.sources);
        blocked = found.blocked;
        for note in &found.notes {
            tracing::info!("{note}");
        }
        if sources.is_empty() {
            return Err(no_phone(
                &blocked,
                found.no_usbmuxd.as_deref(),
                args.device.as_deref(),
            ));
        }
        // usbmuxd missing matters only when no phone at all was found; with Android
        // phones in this run, say it once and go on.
        if let (Some(m), true) = (&found.no_usbmuxd, phones > 0) {
            eprintln!("note: iPhones cannot be seen: {m}");
        }
    }
    let opts = Options {
        template,
        filter,
        dry_run: args.dry_run,
        json: args.json,
        names: cfg.names.clone(),
    };
    backup_to_all(&mut sources, &blocked, &dests, &opts)
}

/// Backs up every source to each destination in turn, each with its own catalog. A
/// destination that cannot be used (a drive not plugged in) is reported and left for a
/// later run, where its own catalog shows what it lacks; the run fails (exit 4) only
/// when no destination could be used.
pub fn backup_to_all(
    sources: &mut [Box<dyn Source>],
    blocked: &[Blocked],
    dests: &[Dest],
    opts: &Options,
) -> Result<u8> {
    let mut code = 0u8;
    let mut first_error = None;
    let mut used = 0;
    for d in dests {
        let result = d
            .locate()
            .and_then(|path| backup(sources, blocked, &path, d.create, opts));
        match result {
            Ok(c) => {
                used += 1;
                code = code.max(c);
            }
            Err(e) if dests.len() > 1 && is_destination_error(&e) => {
                eprintln!(
                    "offload: skipped {}: {e}. It is caught up on the next run where it is present.",
                    d.describe()
                );
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (used, first_error) {
        (0, Some(e)) => Err(e),
        _ => Ok(code),
    }
}

fn is_destination_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::error::Fail>()
        .is_some_and(|f| f.code == Exit::Destination)
}

/// The iCloud-only files of a plan, as the report and the catalog keep them.
pub fn cloud_records(entries: &[Entry]) -> Vec<CloudOnly> {
    entries.iter().map(cloud_record).collect()
}

pub fn cloud_record(e: &Entry) -> CloudOnly {
    CloudOnly {
        path: e.path.clone(),
        kind: if e.facts.is_video { "video" } else { "photo" }.into(),
        captured: e.facts.captured.map(|d| d.to_string()),
    }
}

/// The error for a run that found nothing it could read: each blocked phone's fix, or
/// how to connect one.
fn no_phone(blocked: &[Blocked], no_usbmuxd: Option<&str>, device: Option<&str>) -> anyhow::Error {
    if !blocked.is_empty() {
        let lines: Vec<String> = blocked
            .iter()
            .map(|b| format!("{} ({}): {}", b.name, b.id, b.message))
            .collect();
        return fail(Exit::NoSource, lines.join("\n"));
    }
    let mut msg = match device {
        Some(d) => format!("No connected phone matches {d:?}: `offload devices` lists them."),
        None => "No phone found. Connect it with a USB data cable, unlock it, and choose \
                 'File transfer' in the USB notification (Android) or tap 'Trust' (iPhone). \
                 To back up a folder, use --from PATH."
            .to_string(),
    };
    if let Some(m) = no_usbmuxd {
        msg.push_str(&format!("\nFor iPhones: {m}"));
    }
    fail(Exit::NoSource, msg)
}

/// A source that cannot be opened or listed ends the run with exit 3 (or 5 if gone).
fn source_fail(e: SourceError) -> anyhow::Error {
    match e {
        SourceError::Gone(m) => fail(Exit::Gone, m),
        SourceError::Blocked(m) | SourceError::File(m) => fail(Exit::NoSource, m),
    }
}

fn store_fail(e: StoreError) -> anyhow::Error {
    fail(Exit::Destination, e.to_string())
}

/// Backs up every source into the store at `dest` (creating it only when `create`);
/// `blocked` phones (found but unreadable) are reported. Returns the exit code.
pub fn backup(
    sources: &mut [Box<dyn Source>],
    blocked: &[Blocked],
    dest: &Path,
    create: bool,
    opts: &Options,
) -> Result<u8> {
    let started = Instant::now();
    let announce = format!("Backing up to {}", dest.display());
    if opts.json {
        eprintln!("{announce}");
    } else {
        println!("{announce}");
        let _ = std::io::stdout().flush();
    }

    let store = if opts.dry_run {
        None
    } else {
        Some(Store::open(dest, create).map_err(store_fail)?)
    };
    let mut catalog = match &store {
        Some(s) => open_catalog(s)?,
        None => {
            let path = dest.join(crate::store::META_DIR).join(CATALOG_FILE);
            if path.exists() {
                Catalog::open_read_only(&path)?
            } else {
                Catalog::in_memory()?
            }
        }
    };

    // List and plan every source before copying anything, so that the space check
    // covers the whole run.
    let mut plans: Vec<(i64, String, Plan, DeviceReport)> = Vec::new();
    for source in sources.iter_mut() {
        let mut info = source.info().clone();
        // A name from the config, for a phone this store has not seen yet.
        let tail = info
            .id
            .split_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_default();
        if let Some(n) = [Some(&tail), info.serial.as_ref(), Some(&info.id)]
            .into_iter()
            .flatten()
            .find_map(|k| opts.names.get(k))
        {
            info.name = n.clone();
        }
        let (source_id, folder) = if opts.dry_run {
            (
                catalog.source_id(&info.id)?.unwrap_or(-1),
                info.name.clone(),
            )
        } else {
            catalog.upsert_source(&info)?
        };
        let listing = source.list().map_err(source_fail)?;
        let seen = catalog.sightings(source_id)?;
        let mut plan = plan::plan(listing, &seen, &opts.filter);
        let mut report = DeviceReport::new(&info);
        report.already_backed_up = plan.already_backed_up;
        report.filtered = plan.filtered;
        report.skipped = std::mem::take(&mut plan.skipped);
        report.failed = std::mem::take(&mut plan.unreadable);
        report.cloud_only = cloud_records(&plan.cloud_only);
        report.warnings.append(&mut plan.warnings);
        if let Some(limit) = store.as_ref().and_then(|s| s.fs.max_file_size) {
            let fstype = store
                .as_ref()
                .map(|s| s.fs.fstype.clone())
                .unwrap_or_default();
            plan.to_copy.retain(|Item { entry: e, .. }| {
                if e.size > limit {
                    report.failed.push(Skipped {
                        path: e.path.clone(),
                        reason: format!(
                            "{} is larger than the {} filesystem of the destination allows ({}); \
                             back it up to an exFAT, NTFS or ext4 drive",
                            human_bytes(e.size),
                            fstype,
                            human_bytes(limit)
                        ),
                    });
                    false
                } else {
                    true
                }
            });
        }
        plans.push((source_id, folder, plan, report));
    }

    let planned: u64 = plans.iter().map(|(_, _, p, _)| p.bytes_to_copy()).sum();
    if let Some(store) = &store {
        let needed = planned;
        // A filesystem that reports no size at all (some FUSE drivers) cannot be
        // checked ahead; a full disk is then caught, cleanly, by the first failed write.
        let known = store.fs.total_bytes > 0;
        if known && needed > 0 && needed + space_reserve(store.fs.total_bytes) > store.fs.free_bytes
        {
            return Err(fail(
                Exit::Destination,
                format!(
                    "Not enough space on the drive holding {} ({} mounted at {}): {} needed, \
                     {} free. Nothing was copied. Free some space or use a bigger drive.",
                    store.root().display(),
                    store.fs.mount_source,
                    store.fs.mount_point.display(),
                    human_bytes(needed + space_reserve(store.fs.total_bytes)),
                    human_bytes(store.fs.free_bytes)
                ),
            ));
        }
    }

    let mut progress = Progress::new(opts.json);
    let mut devices = Vec::new();
    let mut code = 0u8;
    if !blocked.is_empty() {
        code = Exit::NoSource as u8;
    }
    let blocked = blocked.to_vec();
    let mut dest_error = None;
    for (source, (source_id, folder, plan, mut report)) in sources.iter_mut().zip(plans) {
        match &store {
            None => {
                report.copied = plan.to_copy.len() as u64;
                report.bytes_copied = plan.bytes_to_copy();
            }
            Some(store) => {
                let outcome = copy_source(
                    source.as_mut(),
                    store,
                    &mut catalog,
                    &opts.template,
                    &opts.filter,
                    source_id,
                    &folder,
                    plan,
                    &mut report,
                    &mut progress,
                );
                if let Err(e) = outcome {
                    dest_error = Some(e);
                }
            }
        }
        if report.interrupted.is_some() {
            code = code.max(Exit::Gone as u8);
        } else if !report.failed.is_empty() && code == 0 {
            code = code.max(Exit::SomeFailed as u8);
        }
        devices.push(report);
        if dest_error.is_some() {
            break;
        }
    }
    progress.finish();
    // A copy of the catalog as of this run, for the day the drive damages the catalog.
    // Not after the drive failed: the copy would fail too (or half-fill a full disk),
    // and its warning would only hide the error that matters.
    if let (Some(s), None) = (&store, &dest_error) {
        if let Err(e) = catalog.backup_to(&s.meta_path(BACKUP_FILE)) {
            tracing::warn!("could not copy the catalog to {}: {e:#}", BACKUP_FILE);
        }
    }

    let report = RunReport {
        destination: dest.display().to_string(),
        elapsed_s: started.elapsed().as_secs_f64(),
        dry_run: opts.dry_run,
        devices,
        blocked,
    };
    crate::notify::record(&report);
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    if let (Some(e), Some(store)) = (dest_error, &store) {
        let saved: u64 = report.devices.iter().map(|d| d.copied).sum();
        let saved_bytes: u64 = report.devices.iter().map(|d| d.bytes_copied).sum();
        return Err(dest_failure(
            store,
            &e,
            saved,
            planned.saturating_sub(saved_bytes),
        ));
    }
    for d in &report.devices {
        if let Some(why) = &d.interrupted {
            eprintln!(
                "offload: {why} {} files were saved; nothing partial was kept.",
                d.copied
            );
        }
    }
    Ok(code)
}

/// What stopped a run on the destination's side.
#[derive(Debug, PartialEq, Eq)]
enum DestProblem {
    /// No space left (the filesystem's, or a quota).
    Full,
    /// The filesystem turned read-only (Linux does that to a drive with errors).
    ReadOnly,
    /// The store's folder is no longer the one opened: unmounted or unplugged.
    Gone,
    Other,
}

fn dest_problem(store: &Store, e: &anyhow::Error) -> DestProblem {
    use std::io::ErrorKind;
    if !store.still_there() {
        return DestProblem::Gone;
    }
    // A drive that turned read-only may first answer a sync with a plain I/O error.
    if rustix::fs::statvfs(store.root())
        .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
    {
        return DestProblem::ReadOnly;
    }
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match (io.kind(), io.raw_os_error()) {
                (ErrorKind::StorageFull | ErrorKind::QuotaExceeded, _) => return DestProblem::Full,
                (_, Some(libc::ENOSPC | libc::EDQUOT)) => return DestProblem::Full,
                (ErrorKind::ReadOnlyFilesystem, _) | (_, Some(libc::EROFS)) => {
                    return DestProblem::ReadOnly
                }
                _ => {}
            }
        }
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = cause.downcast_ref::<rusqlite::Error>()
        {
            match f.code {
                rusqlite::ErrorCode::DiskFull => return DestProblem::Full,
                rusqlite::ErrorCode::ReadOnly => return DestProblem::ReadOnly,
                _ => {}
            }
        }
    }
    DestProblem::Other
}

/// The error for a run the destination stopped, saying what happened to the drive and
/// what to do. `saved` files were stored before it; `left` bytes of the plan were not.
fn dest_failure(store: &Store, e: &anyhow::Error, saved: u64, left: u64) -> anyhow::Error {
    let dest = store.root().display();
    let mount = store.fs.mount_point.display();
    let kept = format!("{saved} files were saved; nothing partial was kept.");
    if let Some(link) = crate::beneath::link_in(e) {
        return fail(Exit::Destination, format!("{link} {kept}"));
    }
    let message = match dest_problem(store, e) {
        DestProblem::Full => {
            let free = crate::store::fsinfo::FsInfo::of(store.root())
                .map(|f| f.free_bytes)
                .unwrap_or(0);
            format!(
                "The drive holding {dest} (mounted at {mount}) is full: {} more needed, {} free. \
                 {kept} Free some space or use a bigger drive, then run offload again to copy \
                 the rest.",
                human_bytes(left + space_reserve(store.fs.total_bytes)),
                human_bytes(free)
            )
        }
        DestProblem::ReadOnly => format!(
            "The drive holding {dest} (mounted at {mount}) became read-only during the run \
             ({e:#}). Linux does this to a drive with errors: check it (fsck, or the disk tool), \
             then run offload again. {kept}"
        ),
        DestProblem::Gone => format!(
            "The destination {dest} went away during the run (the drive was unplugged or \
             unmounted): {e:#}. {kept} Plug it back in and run offload again to copy the rest."
        ),
        DestProblem::Other => format!(
            "Writing to {dest} failed: {e:#}. {kept} Fix the drive and run offload again to \
             copy the rest."
        ),
    };
    fail(Exit::Destination, message)
}

/// Files handed from the copying thread to the committing one, at most. Bounds the
/// temp files waiting for their sync; each holds no open descriptor.
const COMMIT_QUEUE: usize = 256;

/// What the committing thread did.
#[derive(Default)]
struct Committed {
    copied: u64,
    bytes: u64,
    duplicates: u64,
    filtered: u64,
}

/// The plan's files, read from the source on the copy's reading thread.
struct Planned<'a> {
    source: &'a mut dyn Source,
    items: &'a [Item],
}

impl transfer::Files for Planned<'_> {
    fn count(&self) -> usize {
        self.items.len()
    }

    fn expected(&self, i: usize) -> u64 {
        self.items[i].entry.size
    }

    fn open(&mut self, i: usize) -> Result<Box<dyn crate::source::FileRead + '_>, SourceError> {
        self.source.open(&self.items[i].entry, 0)
    }
}

/// Where each copied file goes: to the committing thread, or into the report.
struct Sink<'a> {
    items: &'a [Item],
    tx: std::sync::mpsc::SyncSender<(Copied, Item)>,
    progress: &'a mut Progress,
    report: &'a mut DeviceReport,
    /// Originals that are only in iCloud.
    cloud: Vec<CloudOnly>,
    /// A destination failure, which ends the run.
    result: Result<()>,
    /// Files finished, for the progress line.
    done: usize,
}

impl transfer::Copying for Sink<'_> {
    fn started(&mut self, i: usize) {
        self.progress.current(&self.items[i].entry.path);
    }

    fn advanced(&mut self, bytes: u64) {
        self.progress.advance(bytes);
    }

    fn not_opened(&mut self, i: usize, error: SourceError) -> bool {
        let entry = &self.items[i].entry;
        match error {
            // A file the library knows that will not even open is an original left in
            // iCloud (the phone lists a placeholder): reported as such, not as a
            // failure. A read that fails later is a failure like any other.
            SourceError::File(why) if entry.facts.in_library => {
                tracing::info!("{} is only in iCloud: {why}", entry.path);
                self.cloud.push(cloud_record(entry));
                true
            }
            e => self.finished(i, Err(CopyError::Source(e))),
        }
    }

    fn finished(&mut self, i: usize, result: Result<Copied, CopyError>) -> bool {
        let item = &self.items[i];
        let entry = &item.entry;
        self.done += 1;
        match result {
            Ok(c) => {
                let line = format!("copied {} ({})", entry.path, human_bytes(c.size));
                if self.tx.send((c, item.clone())).is_err() {
                    // The committing thread stopped on an error; it says which.
                    return false;
                }
                self.progress.file_done(self.done, self.items.len(), &line);
                true
            }
            Err(CopyError::Source(SourceError::Gone(why))) => {
                self.report.interrupted = Some(why);
                false
            }
            Err(CopyError::Source(e)) => {
                self.progress
                    .println(&format!("failed: {}: {e}", entry.path));
                self.report.failed.push(Skipped {
                    path: entry.path.clone(),
                    reason: e.to_string(),
                });
                true
            }
            Err(CopyError::Dest(e)) => {
                self.result = Err(e.into());
                false
            }
        }
    }
}

/// Copies one source's plan. Source failures are recorded in `report` (a vanished
/// device sets `report.interrupted`); destination failures are returned, after the
/// files already copied have been committed where possible.
///
/// Two threads: this one reads from the device, hashes and writes temp files; a
/// committing thread dates each file, syncs batches, renames them into place and
/// records them. The device never waits for the disk's sync, and the sync of one batch
/// overlaps the copy of the next.
#[allow(clippy::too_many_arguments)]
fn copy_source(
    source: &mut dyn Source,
    store: &Store,
    catalog: &mut Catalog,
    template: &Template,
    filter: &Filter,
    source_id: i64,
    folder: &str,
    plan: Plan,
    report: &mut DeviceReport,
    progress: &mut Progress,
) -> Result<()> {
    let run_id = catalog.start_run(source_id)?;
    let name = source.info().name.clone();
    let total = plan.to_copy.len();
    progress.start(&name, total, plan.bytes_to_copy());

    let (copy_result, committed) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Copied, Item)>(COMMIT_QUEUE);
        let catalog = &mut *catalog;
        let committer = scope.spawn(move || -> (Committed, Result<()>) {
            let mut done = Committed::default();
            let mut batch = Batch::new(store, catalog, template, filter, folder, source_id);
            let flush = |batch: &mut Batch, done: &mut Committed| -> Result<()> {
                for s in batch.flush()? {
                    done.copied += 1;
                    done.bytes += s.size;
                    tracing::info!("stored {} as {}", s.remote_path, s.store_path);
                }
                Ok(())
            };
            loop {
                // Waits for the next file no longer than the batch may stay unsynced.
                let next = match batch.due_in() {
                    Some(wait) => rx.recv_timeout(wait),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok((copied, item)) => match batch.add(copied, item) {
                        Ok(Outcome::Duplicate) => done.duplicates += 1,
                        Ok(Outcome::Filtered) => done.filtered += 1,
                        Ok(Outcome::Queued) => {}
                        Err(e) => return (done, Err(e)),
                    },
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if batch.is_full() {
                    if let Err(e) = flush(&mut batch, &mut done) {
                        return (done, Err(e));
                    }
                }
            }
            let r = flush(&mut batch, &mut done);
            (done, r)
        });

        let mut planned = Planned {
            source,
            items: &plan.to_copy,
        };
        let mut sink = Sink {
            items: &plan.to_copy,
            tx,
            progress,
            report,
            cloud: Vec::new(),
            result: Ok(()),
            done: 0,
        };
        transfer::copy_all(&mut planned, store, &mut Vec::new(), &mut sink);
        let Sink {
            tx,
            mut cloud,
            result,
            ..
        } = sink;
        drop(tx);
        let (committed, commit_result) = committer.join().expect("the committing thread panicked");
        report.cloud_only.append(&mut cloud);
        (result.and(commit_result), committed)
    });
    report.copied += committed.copied;
    report.bytes_copied += committed.bytes;
    report.duplicates += committed.duplicates;
    report.filtered += committed.filtered;
    if copy_result.is_ok() && report.interrupted.is_none() {
        // A run that saw the whole library replaces the list; a filtered one adds to it.
        if let Err(e) = catalog.record_cloud_only(source_id, &report.cloud_only, filter.is_empty())
        {
            tracing::warn!("could not record the iCloud-only files: {e:#}");
        }
    }

    let counts = RunCounts {
        copied: report.copied,
        bytes_copied: report.bytes_copied,
        already_backed_up: report.already_backed_up,
        duplicates: report.duplicates,
        skipped: report.skipped.len() as u64,
        failed: report.failed.len() as u64,
    };
    let outcome = if copy_result.is_err() {
        "destination-error"
    } else if report.interrupted.is_some() {
        "interrupted"
    } else if !report.failed.is_empty() {
        "failures"
    } else {
        "ok"
    };
    // Best effort: the destination may be what failed.
    let _ = catalog.finish_run(run_id, outcome, &counts);
    copy_result
}
