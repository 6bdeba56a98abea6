//! `offload backup`: list each source, plan against the catalog, copy what is new in
//! one pass, commit in durable batches, report.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use indicatif::DecimalBytes;

use crate::args::BackupArgs;
use crate::catalog::{Catalog, CloudOnly, RunCounts, CATALOG_FILE};
use crate::commit::{Batch, Outcome};
use crate::config::{self, Dest};
use crate::error::{fail, Exit};
use crate::events::{Event, Events};
use crate::filter::Filter;
use crate::plan::{self, Item, Plan};
use crate::report::{DeviceReport, Progress, RunReport};
use crate::source::detect::{detect, Blocked, DetectOptions};
use crate::source::folder::FolderSource;
use crate::source::{DeviceInfo, Entry, Listing, Skipped, Source, SourceError};
use crate::stop::Stop;
use crate::store::template::{Template, DEFAULT_TEMPLATE};
use crate::store::{Store, StoreError, IDENTITY_FILE};
use crate::transfer::Copied;
use crate::transfer::{self, CopyError};

/// Opens the catalog of an existing store for writing, with every check of
/// [`crate::catalog_files::open`]: writable, present and not empty, not damaged; else
/// exit 4 with the way out.
pub fn open_catalog(store: &Store) -> Result<Catalog> {
    crate::catalog_files::open(store, false)
}

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
    /// Asked between files and reads: a stopped run commits what it finished.
    pub stop: Stop,
}

/// `offload backup`: every run's report (one per destination reached) is added to
/// `reports`, also when the run fails.
pub fn run(args: &BackupArgs, reports: &mut Vec<RunReport>) -> Result<Exit> {
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
    let mut blocked = Vec::new();
    for from in &args.from {
        match FolderSource::open(from) {
            Ok(s) => sources.push(Box::new(s)),
            // One folder that cannot be read does not keep the others from their backup.
            Err(e) if args.from.len() > 1 || args.phones || args.device.is_some() => {
                blocked.push(not_read(
                    &from.display().to_string(),
                    "folder",
                    &from.display().to_string(),
                    e,
                ))
            }
            Err(e) => return Err(source_fail(e)),
        }
    }
    if args.from.is_empty() || args.phones || args.device.is_some() {
        let found = detect(&DetectOptions {
            include_app_media: args.include_app_media || cfg.include_app_media,
            device: args.device.clone(),
            ..DetectOptions::default()
        });
        let phones = found.sources.len();
        sources.extend(found.sources);
        blocked.extend(found.blocked);
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
            errln!("note: iPhones cannot be seen: {m}");
        }
    }
    let opts = Options {
        template,
        filter,
        dry_run: args.dry_run,
        json: args.json,
        names: cfg.names.clone(),
        stop: Stop::new(),
    };
    let mut progress = Progress::new(args.json);
    backup_to_all(
        &mut sources,
        &blocked,
        &dests,
        &opts,
        reports,
        &mut progress,
    )
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
    reports: &mut Vec<RunReport>,
    events: &mut dyn Events,
) -> Result<Exit> {
    let mut code = Exit::Done;
    let mut first_error = None;
    let mut used = 0;
    for d in dests {
        // After a stop the other destinations are caught up on the next run.
        if used > 0 && opts.stop.requested() {
            break;
        }
        let result = d
            .locate()
            .and_then(|path| backup(sources, blocked, &path, d.create, opts, reports, events));
        match result {
            Ok(c) => {
                used += 1;
                code = code.max(c);
            }
            Err(e) if dests.len() > 1 && is_destination_error(&e) => {
                errln!(
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

/// A source that could not be opened or listed, as the report shows it beside the
/// others: the run goes on with them, and ends with exit 3 (or 5 if it went away).
fn not_read(id: &str, kind: &str, name: &str, e: SourceError) -> Blocked {
    let (state, message) = match e {
        SourceError::Gone(m) => ("gone", m),
        SourceError::Blocked(m) | SourceError::File(m) => ("blocked", m),
    };
    Blocked {
        id: id.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        state: state.to_string(),
        message,
    }
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

/// One source's part of a run: its catalog id, its `{device}` folder, its plan and its
/// report so far, and which of the run's sources it is.
struct SourcePlan {
    index: usize,
    source_id: i64,
    folder: String,
    plan: Plan,
    report: DeviceReport,
}

/// Backs up every source into the store at `dest` (creating it only when `create`);
/// `blocked` phones (found but unreadable) are reported. Returns the exit code.
///
/// A source that cannot be listed is reported with the blocked ones and the others go
/// on. A stop ([`Options::stop`]) ends the copy between two reads: every file already
/// read completely is committed as usual, the run is recorded as stopped, and the exit
/// code is 130 (SIGINT) or 143 (SIGTERM, SIGHUP).
pub fn backup(
    sources: &mut [Box<dyn Source>],
    blocked: &[Blocked],
    dest: &Path,
    create: bool,
    opts: &Options,
    reports: &mut Vec<RunReport>,
    events: &mut dyn Events,
) -> Result<Exit> {
    let started = Instant::now();
    let announce = format!("Backing up to {}", dest.display());
    if opts.json {
        errln!("{announce}");
    } else {
        outln!("{announce}");
    }
    let mut blocked = blocked.to_vec();
    let (store, mut catalog, plans) = open_and_plan(sources, &mut blocked, dest, create, opts)?;
    let planned: u64 = plans.iter().map(|p| p.plan.bytes_to_copy()).sum();
    let mut code = blocked
        .iter()
        .map(|b| match b.state.as_str() {
            "gone" => Exit::Gone,
            _ => Exit::NoSource,
        })
        .max()
        .unwrap_or(Exit::Done);
    let (devices, dest_error) =
        copy_sources(sources, plans, store.as_ref(), &mut catalog, opts, events);
    for d in &devices {
        if d.interrupted.is_some() {
            code = code.max(Exit::Gone);
        } else if !d.failed.is_empty() && code == Exit::Done {
            code = Exit::SomeFailed;
        }
    }
    // A copy of the catalog as of this run, for the day the drive damages the catalog.
    // Not after the drive failed: the copy would fail too (or half-fill a full disk),
    // and its warning would only hide the error that matters.
    if let (Some(s), None) = (&store, &dest_error) {
        keep_catalog_copy(s, &catalog);
    }
    let report = RunReport {
        destination: dest.display().to_string(),
        elapsed_s: started.elapsed().as_secs_f64(),
        dry_run: opts.dry_run,
        devices,
        blocked,
        stopped: (opts.stop.requested() && !opts.dry_run).then(|| opts.stop.reason().to_string()),
    };
    print_report(&report, opts)?;
    if let (Some(e), Some(store)) = (dest_error, &store) {
        let saved: u64 = report.devices.iter().map(|d| d.copied).sum();
        let saved_bytes: u64 = report.devices.iter().map(|d| d.bytes_copied).sum();
        reports.push(report);
        return Err(dest_failure(
            store,
            &e,
            saved,
            planned.saturating_sub(saved_bytes),
        ));
    }
    let stopped = report.stopped.is_some();
    reports.push(report);
    if stopped {
        return Ok(opts.stop.exit());
    }
    Ok(code)
}

/// Opens the store (none for a dry run) and its catalog, lists and plans every source,
/// and checks the destination has room for the plan.
///
/// A new store is listed and planned before it is made, so that a drive without room
/// for the run is refused with nothing left on it. Any other store is opened (locked,
/// its catalog checked) before the phones are listed.
fn open_and_plan(
    sources: &mut [Box<dyn Source>],
    blocked: &mut Vec<Blocked>,
    dest: &Path,
    create: bool,
    opts: &Options,
) -> Result<(Option<Store>, Catalog, Vec<SourcePlan>)> {
    // A store this run creates starts with an empty catalog; any other must have its own.
    let meta = dest.join(crate::store::META_DIR);
    let new_store =
        create && !meta.join(IDENTITY_FILE).exists() && !meta.join(CATALOG_FILE).exists();
    let plan_first = new_store && !opts.dry_run;
    let mut listed = Vec::new();
    if plan_first {
        listed = list_sources(sources, opts, blocked);
        plan_new_store(&mut listed, dest, &opts.filter)?;
    }
    // A store is not made for nothing: with no source listed (all blocked) or after a
    // stop, a new store would hold an empty catalog that later runs refuse as lost.
    let leave_uncreated = plan_first && (listed.is_empty() || opts.stop.requested());
    let store = if opts.dry_run || leave_uncreated {
        None
    } else {
        Some(Store::open(dest, create).map_err(store_fail)?)
    };
    let mut catalog = match &store {
        Some(s) => {
            let catalog = crate::catalog_files::open(s, new_store)?;
            report_dead_runs(&catalog);
            catalog
        }
        None => {
            let path = meta.join(CATALOG_FILE);
            if path.exists() {
                Catalog::open_read_only(&path)?
            } else {
                Catalog::in_memory()?
            }
        }
    };
    if !plan_first {
        listed = list_sources(sources, opts, blocked);
    }
    let plans = plan_sources(listed, &mut catalog, store.as_ref(), opts)?;
    if leave_uncreated {
        // Nothing is copied: what was planned is left for the next run.
        let plans = plans
            .into_iter()
            .map(|mut p| {
                p.report.left = p.plan.to_copy.len() as u64;
                p.plan.to_copy.clear();
                p
            })
            .collect();
        return Ok((None, catalog, plans));
    }
    if let Some(store) = &store {
        check_space(store, plans.iter().map(|p| p.plan.bytes_to_copy()).sum())?;
    }
    Ok((store, catalog, plans))
}

/// Copies each source's plan in turn into `store` (a dry run copies nothing and
/// reports the plan). After a stop or a destination failure the remaining sources are
/// reported with their files left for the next run. Returns the reports, and the
/// destination failure if there was one.
fn copy_sources(
    sources: &mut [Box<dyn Source>],
    plans: Vec<SourcePlan>,
    store: Option<&Store>,
    catalog: &mut Catalog,
    opts: &Options,
    events: &mut dyn Events,
) -> (Vec<DeviceReport>, Option<anyhow::Error>) {
    let mut devices = Vec::new();
    let mut dest_error = None;
    for p in plans {
        let mut report = p.report;
        match store {
            None => {
                report.copied = p.plan.to_copy.len() as u64;
                report.bytes_copied = p.plan.bytes_to_copy();
            }
            Some(_) if opts.stop.requested() || dest_error.is_some() => {
                report.left = p.plan.to_copy.len() as u64;
            }
            Some(store) => {
                let run = Run {
                    store,
                    source_id: p.source_id,
                    folder: &p.folder,
                };
                let source = sources[p.index].as_mut();
                if let Err(e) =
                    copy_source(source, catalog, &run, opts, p.plan, &mut report, events)
                {
                    dest_error = Some(e);
                }
            }
        }
        devices.push(report);
    }
    events.event(Event::RunDone);
    (devices, dest_error)
}

/// Copies the catalog beside it (see `catalog_files::keep_copy`); a failure only warns.
fn keep_catalog_copy(store: &Store, catalog: &Catalog) {
    match crate::catalog_files::keep_copy(store, catalog) {
        Ok(None) => {}
        Ok(Some(warning)) => errln!("offload: warning: {warning}"),
        Err(e) => tracing::warn!(
            "could not copy the catalog to {}: {e:#}",
            crate::catalog_files::COPY_FILE
        ),
    }
}

/// The run's summary on stdout (or its JSON), and on stderr what stopped it early.
fn print_report(report: &RunReport, opts: &Options) -> Result<()> {
    if opts.json {
        outln!("{}", serde_json::to_string_pretty(report)?);
        if let Some(line) = report.stopped_line() {
            errln!("{line}");
        }
    } else {
        out!("{}", report.human());
    }
    for d in &report.devices {
        if let Some(why) = &d.interrupted {
            errln!(
                "offload: {why} {} files were saved; nothing partial was kept.",
                d.copied
            );
        }
    }
    Ok(())
}

/// Says which earlier runs of this store never finished (killed, or the computer lost
/// power) and records them as interrupted. Called with the store's lock held, so none
/// of them can still be going.
fn report_dead_runs(catalog: &Catalog) {
    match catalog.close_dead_runs() {
        Ok(dead) => {
            for (name, started) in dead {
                errln!(
                    "note: the backup of {} started {started} was interrupted (offload was \
                     killed or the computer stopped); the files it had stored are kept, the rest \
                     is copied now.",
                    crate::term::shown(&name)
                );
            }
        }
        Err(e) => tracing::warn!("could not look for interrupted runs: {e:#}"),
    }
}

/// A source's files as listed, then as planned, with the name it goes by in this run.
struct Listed {
    /// Which of the run's sources it is.
    index: usize,
    info: DeviceInfo,
    stage: Stage,
}

enum Stage {
    Listed(Listing),
    /// Planned against an empty catalog (a store this run creates).
    Planned(Plan),
}

/// Lists every source. One that cannot be listed joins `blocked` (said on stderr at
/// once) and the others go on; a stop ends the listing.
fn list_sources(
    sources: &mut [Box<dyn Source>],
    opts: &Options,
    blocked: &mut Vec<Blocked>,
) -> Vec<Listed> {
    let mut listed = Vec::new();
    for (index, source) in sources.iter_mut().enumerate() {
        if opts.stop.requested() {
            break;
        }
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
        match source.list() {
            Ok(listing) => listed.push(Listed {
                index,
                info,
                stage: Stage::Listed(listing),
            }),
            Err(e) => {
                let b = not_read(&info.id, info.kind.as_str(), &info.name, e);
                errln!(
                    "offload: {} ({}): not read: {}",
                    crate::term::shown(&b.name),
                    b.id,
                    b.message
                );
                blocked.push(b);
            }
        }
    }
    listed
}

/// Plans every listed source for a store that does not exist yet (its catalog is
/// empty: everything selected is new), and refuses with exit 4 when the filesystem
/// that would hold it, measured at `dest`'s nearest existing folder, lacks the room.
/// Called before the store is created, so that a refusal leaves nothing behind.
fn plan_new_store(listed: &mut [Listed], dest: &Path, filter: &Filter) -> Result<()> {
    let none = std::collections::HashSet::new();
    for l in listed.iter_mut() {
        let stage = std::mem::replace(&mut l.stage, Stage::Planned(Plan::default()));
        l.stage = match stage {
            Stage::Listed(listing) => Stage::Planned(plan::plan(listing, &none, filter)),
            planned => planned,
        };
    }
    let Some(existing) = dest
        .ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.is_dir())
    else {
        return Ok(());
    };
    // Unknown here is left to the check after the store is opened, as for any store.
    let Ok(fs) = crate::store::fsinfo::FsInfo::of(existing) else {
        return Ok(());
    };
    let limit = fs.max_file_size.unwrap_or(u64::MAX);
    let needed: u64 = listed
        .iter()
        .filter_map(|l| match &l.stage {
            Stage::Planned(p) => Some(p),
            Stage::Listed(_) => None,
        })
        .flat_map(|p| &p.to_copy)
        .map(|i| i.entry.size)
        .filter(|&size| size <= limit)
        .sum();
    if fs.total_bytes > 0 && needed > 0 && needed + space_reserve(fs.total_bytes) > fs.free_bytes {
        let shown = std::path::absolute(dest).unwrap_or_else(|_| dest.to_path_buf());
        return Err(no_room(&shown, &fs, needed));
    }
    Ok(())
}

/// Plans every listed source against the catalog (what it has seen is skipped) and
/// the filter, and takes out what the destination's filesystem cannot hold.
fn plan_sources(
    listed: Vec<Listed>,
    catalog: &mut Catalog,
    store: Option<&Store>,
    opts: &Options,
) -> Result<Vec<SourcePlan>> {
    let mut plans = Vec::new();
    for Listed { index, info, stage } in listed {
        let (source_id, folder) = if opts.dry_run {
            (
                catalog.source_id(&info.id)?.unwrap_or(-1),
                info.name.clone(),
            )
        } else {
            catalog.upsert_source(&info)?
        };
        let mut plan = match stage {
            Stage::Planned(plan) => plan,
            Stage::Listed(listing) => {
                let seen = catalog.sightings(source_id)?;
                plan::plan(listing, &seen, &opts.filter)
            }
        };
        let mut report = DeviceReport::new(&info);
        report.already_backed_up = plan.already_backed_up;
        report.filtered = plan.filtered;
        report.skipped = std::mem::take(&mut plan.skipped);
        report.failed = std::mem::take(&mut plan.unreadable);
        report.cloud_only = cloud_records(&plan.cloud_only);
        report.warnings.append(&mut plan.warnings);
        if let Some(store) = store {
            refuse_too_large(store, &mut plan, &mut report);
        }
        plans.push(SourcePlan {
            index,
            source_id,
            folder,
            plan,
            report,
        });
    }
    Ok(plans)
}

/// Takes out of the plan the files larger than the destination's filesystem allows
/// (FAT32: 4 GiB − 1), each reported with the reason; the rest are copied.
fn refuse_too_large(store: &Store, plan: &mut Plan, report: &mut DeviceReport) {
    let Some(limit) = store.fs.max_file_size else {
        return;
    };
    let fstype = store.fs.fstype.clone();
    plan.to_copy.retain(|Item { entry: e, .. }| {
        if e.size <= limit {
            return true;
        }
        report.failed.push(Skipped {
            path: e.path.clone(),
            reason: format!(
                "{} is larger than the {} filesystem of the destination allows ({}); \
                 back it up to an exFAT, NTFS or ext4 drive",
                DecimalBytes(e.size),
                fstype,
                DecimalBytes(limit)
            ),
        });
        false
    });
}

/// Refuses a run whose planned bytes (plus a reserve) do not fit on the drive: nothing
/// is copied, and the message says how much is needed and how much is free.
fn check_space(store: &Store, needed: u64) -> Result<()> {
    // A filesystem that reports no size at all (some FUSE drivers) cannot be
    // checked ahead; a full disk is then caught, cleanly, by the first failed write.
    let known = store.fs.total_bytes > 0;
    if known && needed > 0 && needed + space_reserve(store.fs.total_bytes) > store.fs.free_bytes {
        return Err(no_room(store.root(), &store.fs, needed));
    }
    Ok(())
}

/// The refusal of a run whose `needed` bytes the filesystem `fs` holding `dest` lacks.
fn no_room(dest: &Path, fs: &crate::store::fsinfo::FsInfo, needed: u64) -> anyhow::Error {
    fail(
        Exit::Destination,
        format!(
            "Not enough space on the drive holding {} ({} mounted at {}): {} needed, \
             {} free. Nothing was copied. Free some space or use a bigger drive.",
            dest.display(),
            fs.mount_source,
            fs.mount_point.display(),
            DecimalBytes(needed + space_reserve(fs.total_bytes)),
            DecimalBytes(fs.free_bytes)
        ),
    )
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
                DecimalBytes(left + space_reserve(store.fs.total_bytes)),
                DecimalBytes(free)
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
struct Sink<'a, 'e> {
    items: &'a [Item],
    /// To the committing thread; dropped when no more files come, so that it commits
    /// what it holds at once.
    tx: Option<std::sync::mpsc::SyncSender<(Copied, Item)>>,
    events: &'a Shared<'e>,
    report: &'a mut DeviceReport,
    /// Originals that are only in iCloud.
    cloud: Vec<CloudOnly>,
    /// A destination failure, which ends the run.
    result: Result<()>,
    /// Files finished, for the progress line.
    done: usize,
}

impl transfer::Copying for Sink<'_, '_> {
    fn started(&mut self, i: usize) {
        let path = self.items[i].entry.path.clone();
        emit(self.events, Event::FileStarted { path });
    }

    fn advanced(&mut self, bytes: u64) {
        emit(self.events, Event::Progress { bytes });
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
                let read = Event::FileRead {
                    path: entry.path.clone(),
                    size: c.size,
                    done: self.done as u64,
                    files: self.items.len() as u64,
                };
                let sent = match &self.tx {
                    Some(tx) => tx.send((c, item.clone())).is_ok(),
                    None => false,
                };
                if !sent {
                    // The committing thread stopped on an error; it says which.
                    return false;
                }
                emit(self.events, read);
                true
            }
            Err(CopyError::Source(SourceError::Gone(why))) => {
                self.report.interrupted = Some(why);
                false
            }
            Err(CopyError::Source(e)) => {
                emit(
                    self.events,
                    Event::FileFailed {
                        path: entry.path.clone(),
                        reason: e.to_string(),
                    },
                );
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
            // `copy_all` reports no stopped file: it just ends.
            Err(CopyError::Stopped) => false,
        }
    }

    fn no_more_files(&mut self) {
        self.tx = None;
    }
}

/// The run's events, shared by the copying and the committing threads.
type Shared<'e> = Mutex<&'e mut dyn Events>;

/// Hands `event` to the run's consumer.
fn emit(events: &Shared<'_>, event: Event) {
    events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .event(event);
}

/// Where one source's files go: the store, and the source's place in its catalog.
struct Run<'a> {
    store: &'a Store,
    source_id: i64,
    /// What `{device}` expands to for this source.
    folder: &'a str,
}

/// Copies one source's plan. Source failures are recorded in `report` (a vanished
/// device sets `report.interrupted`); destination failures are returned, after the
/// files already copied have been committed where possible.
///
/// Two threads: this one reads from the device, hashes and writes temp files; a
/// committing thread dates each file, syncs batches, renames them into place and
/// records them. The device never waits for the disk's sync, and the sync of one batch
/// overlaps the copy of the next.
///
/// A stop ends the reading between two reads; the committing thread still commits
/// every file read completely, and `report.left` counts the files not reached.
fn copy_source(
    source: &mut dyn Source,
    catalog: &mut Catalog,
    run: &Run,
    opts: &Options,
    plan: Plan,
    report: &mut DeviceReport,
    events: &mut dyn Events,
) -> Result<()> {
    let Run {
        store,
        source_id,
        folder,
    } = *run;
    let (template, filter) = (&opts.template, &opts.filter);
    let run_id = catalog.start_run(source_id)?;
    let name = source.info().name.clone();
    let total = plan.to_copy.len();
    events.event(Event::SourceStarted {
        name: name.clone(),
        files: total as u64,
        bytes: plan.bytes_to_copy(),
    });
    let events: Shared = Mutex::new(events);
    let events = &events;

    let (copy_result, committed) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Copied, Item)>(COMMIT_QUEUE);
        let catalog = &mut *catalog;
        let committer = scope.spawn(move || {
            commit_files(
                rx,
                Batch::new(store, catalog, template, filter, folder, source_id),
                events,
            )
        });

        let mut planned = Planned {
            source,
            items: &plan.to_copy,
        };
        let mut sink = Sink {
            items: &plan.to_copy,
            tx: Some(tx),
            events,
            report,
            cloud: Vec::new(),
            result: Ok(()),
            done: 0,
        };
        transfer::copy_all(&mut planned, store, &mut Vec::new(), &mut sink, &opts.stop);
        let Sink {
            mut cloud,
            result,
            done,
            ..
        } = sink;
        report.left = total.saturating_sub(done + cloud.len()) as u64;
        let (committed, commit_result) = committer.join().expect("the committing thread panicked");
        report.cloud_only.append(&mut cloud);
        (result.and(commit_result), committed)
    });
    report.copied += committed.copied;
    report.bytes_copied += committed.bytes;
    report.duplicates += committed.duplicates;
    report.filtered += committed.filtered;
    if copy_result.is_ok() && report.interrupted.is_none() && report.left == 0 {
        // A run that saw the whole library replaces the list; a filtered one adds to it.
        if let Err(e) = catalog.record_cloud_only(source_id, &report.cloud_only, filter.is_empty())
        {
            tracing::warn!("could not record the iCloud-only files: {e:#}");
        }
    }
    finish_run(catalog, run_id, report, copy_result.is_err(), &opts.stop);
    emit(events, Event::SourceDone { name });
    copy_result
}

/// The committing side of a source's copy: adds each file read to the batch (dating
/// and naming it), and commits the batch when it is full, when it has waited long
/// enough, and when no more files come. Returns what it stored, and the first error.
fn commit_files(
    rx: std::sync::mpsc::Receiver<(Copied, Item)>,
    mut batch: Batch,
    events: &Shared<'_>,
) -> (Committed, Result<()>) {
    let mut done = Committed::default();
    let flush = |batch: &mut Batch, done: &mut Committed| -> Result<()> {
        let flushed = batch.flush();
        // A failed flush may have placed some files already: complete and kept,
        // they are among the files saved (the next run records them).
        let kept = batch.take_kept_unrecorded();
        let (mut files, mut bytes) = (0, 0);
        for s in flushed.as_deref().unwrap_or_default().iter().chain(&kept) {
            files += 1;
            bytes += s.size;
            tracing::info!("stored {} as {}", s.remote_path, s.store_path);
        }
        done.copied += files;
        done.bytes += bytes;
        if files > 0 {
            emit(events, Event::BatchCommitted { files, bytes });
        }
        flushed.map(drop)
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
}

/// Closes the source's row in the `runs` table with its counts and how it ended.
/// Best effort: the destination may be what failed.
fn finish_run(
    catalog: &Catalog,
    run_id: i64,
    report: &DeviceReport,
    dest_failed: bool,
    stop: &Stop,
) {
    let counts = RunCounts {
        copied: report.copied,
        bytes_copied: report.bytes_copied,
        already_backed_up: report.already_backed_up,
        duplicates: report.duplicates,
        skipped: report.skipped.len() as u64,
        failed: report.failed.len() as u64,
    };
    let outcome = if dest_failed {
        "destination-error"
    } else if stop.requested() {
        "stopped"
    } else if report.interrupted.is_some() {
        "interrupted"
    } else if !report.failed.is_empty() {
        "failures"
    } else {
        "ok"
    };
    let _ = catalog.finish_run(run_id, outcome, &counts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Record;

    /// A backup tells what it does as events, in order, to the consumer it is given:
    /// the source with its plan, each file started and read, the batches committed
    /// (summing to what the report says was copied), the source's end, the run's end.
    #[test]
    fn a_backup_reports_through_its_events() {
        let d = tempfile::tempdir().unwrap();
        let roll = d.path().join("roll/DCIM");
        std::fs::create_dir_all(&roll).unwrap();
        for i in 0..5 {
            std::fs::write(roll.join(format!("IMG_{i}.JPG")), vec![i as u8; 1000 + i]).unwrap();
        }
        let opts = Options {
            template: Template::parse(DEFAULT_TEMPLATE).unwrap(),
            filter: Filter::default(),
            dry_run: false,
            json: true,
            names: BTreeMap::new(),
            stop: Stop::new(),
        };
        let mut sources: Vec<Box<dyn Source>> = vec![Box::new(
            FolderSource::open(&d.path().join("roll")).unwrap(),
        )];
        let mut events = Record::default();
        let mut reports = Vec::new();
        let dest = d.path().join("store");
        let code = backup(
            &mut sources,
            &[],
            &dest,
            true,
            &opts,
            &mut reports,
            &mut events,
        )
        .unwrap();
        assert_eq!(code, Exit::Done);
        let ev = &events.0;
        assert!(
            matches!(
                &ev[0],
                Event::SourceStarted {
                    files: 5,
                    bytes: 5010,
                    ..
                }
            ),
            "{ev:?}"
        );
        let read = ev
            .iter()
            .filter(|e| matches!(e, Event::FileRead { .. }))
            .count();
        let started = ev
            .iter()
            .filter(|e| matches!(e, Event::FileStarted { .. }))
            .count();
        assert_eq!((read, started), (5, 5));
        let committed: u64 = ev
            .iter()
            .map(|e| match e {
                Event::BatchCommitted { files, .. } => *files,
                _ => 0,
            })
            .sum();
        assert_eq!(committed, reports[0].devices[0].copied);
        assert_eq!(committed, 5);
        let n = ev.len();
        assert!(matches!(ev[n - 2], Event::SourceDone { .. }), "{ev:?}");
        assert_eq!(ev[n - 1], Event::RunDone);
    }
}
