//! `offload export`: copy a selection into a plain folder (no catalog there), from the
//! connected phones, from folders, or from a backup through its catalog.
//!
//! Each file goes through the backup's own pieces: the one-pass copy (hashed while
//! it streams into a temp file beside its destination), a sync, a re-read from the disk
//! that must give the same hash, then a rename that never replaces anything
//! (`store::place_into`). An identical file already at a candidate name counts as
//! exported, so a second export of the same selection writes nothing; a different file
//! keeps its name and the new one gets a suffix from its content.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::Result;
use indicatif::DecimalBytes;
use rustix::fs::{AtFlags, OFlags};
use serde::Serialize;

use crate::args::{ExportArgs, HeicTarget};
use crate::beneath;
use crate::catalog::{Catalog, CloudOnly, StoredFile, CATALOG_FILE};
use crate::commands::backup::{cloud_record, cloud_records};
use crate::commit::with_extension_of;
use crate::error::{fail, Exit};
use crate::events::{Event, Events};
use crate::filter::{DateKnown, Filter, Known};
use crate::media::{self, Categories, Category, Tag};
use crate::plan::{self, Item, Live};
use crate::report::{cloud_message, Progress};
use crate::source::detect::{detect, DetectOptions};
use crate::source::folder::FolderSource;
use crate::source::{Skipped, Source, SourceError};
use crate::stop::Stop;
use crate::store::fsinfo;
use crate::store::hash_from_disk;
use crate::store::template::{Fields, Template};
use crate::store::{place_into, temp_file_in, Placed, META_DIR};
use crate::transfer::{self, Copied, CopyError, TempFiles};

/// Layout of an export unless `--template` or `--flat` says otherwise.
pub const DEFAULT_EXPORT_TEMPLATE: &str = "{year}/{month}/{name}";

/// The hidden work folder inside the export folder: temp files and the lock. Removed
/// when the export ends.
const WORK_DIR: &str = ".offload-export";

/// One file's result, in `--json`.
#[derive(Debug, Serialize)]
struct ExportedFile {
    from: String,
    to: String,
    /// `exported`, or `identical` when that very file was already there.
    result: &'static str,
    converted: bool,
}

#[derive(Debug, Default, Serialize)]
struct ExportReport {
    destination: String,
    elapsed_s: f64,
    exported: u64,
    bytes: u64,
    /// Already in the folder, byte for byte: nothing written.
    identical: u64,
    converted: u64,
    /// Outside the selection.
    filtered: u64,
    failed: Vec<Skipped>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cloud_only: Vec<CloudOnly>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<String>,
    /// What stopped the export before its end (`SIGINT`, `SIGTERM`, `SIGHUP`).
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
    /// Selected files not reached because of the stop.
    #[serde(skip_serializing_if = "is_zero")]
    left: u64,
    files: Vec<ExportedFile>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The export folder, locked for this run, with its work folder for temp files. The
/// work folder is made, swept and removed relative to descriptors, never through a
/// link (a link in its place would have the sweep delete what it points to).
struct ExportDir {
    root: PathBuf,
    work: PathBuf,
    root_fd: OwnedFd,
    work_fd: OwnedFd,
    lock: Option<File>,
    counter: AtomicU64,
}

impl ExportDir {
    /// Creates `root` if needed, takes its lock and clears what an interrupted export
    /// left in the work folder. Errors (exit 4): the folder cannot be used, the work
    /// folder or its lock is a symbolic link, another export holds the lock.
    fn open(root: &Path) -> Result<ExportDir> {
        let unusable = |e: io::Error| match beneath::link_of(&e) {
            Some(link) => fail(Exit::Destination, link.to_string()),
            None => fail(
                Exit::Destination,
                format!("The export folder {} cannot be used: {e}", root.display()),
            ),
        };
        fs::create_dir_all(root).map_err(unusable)?;
        let root = root.canonicalize().map_err(unusable)?;
        let work = root.join(WORK_DIR);
        let root_fd = beneath::open_root(&root).map_err(unusable)?;
        let work_fd =
            beneath::create_dirs(root_fd.as_fd(), &root, Path::new(WORK_DIR)).map_err(unusable)?;
        let lock = beneath::open_in(
            work_fd.as_fd(),
            OsStr::new("lock"),
            OFlags::WRONLY | OFlags::CREATE,
            0o666,
            &work.join("lock"),
        )
        .map_err(unusable)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(fail(
                    Exit::Destination,
                    format!(
                        "Another offload export is writing into {}. Wait for it to finish, then run again.",
                        root.display()
                    ),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(unusable(e)),
        }
        for (name, kind) in beneath::entries(work_fd.as_fd()).map_err(unusable)? {
            if name != "lock" && !kind.is_dir() {
                let _ = rustix::fs::unlinkat(&work_fd, &name, AtFlags::empty());
            }
        }
        Ok(ExportDir {
            root,
            work,
            root_fd,
            work_fd,
            lock: Some(lock),
            counter: AtomicU64::new(0),
        })
    }

    /// Removes the work folder: the export folder is left holding the photos only.
    fn finish(mut self) {
        let _ = rustix::fs::unlinkat(&self.work_fd, "lock", AtFlags::empty());
        self.lock.take();
        let _ = rustix::fs::unlinkat(&self.root_fd, WORK_DIR, AtFlags::REMOVEDIR);
    }
}

impl TempFiles for ExportDir {
    fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        temp_file_in(self.work_fd.as_fd(), &self.work, &self.counter)
    }
}

/// How one file is to be written, decided once its copy is read.
struct Target {
    wanted: String,
    /// Turn this HEIC into a JPEG first.
    convert: bool,
    /// The modification time the exported file keeps (see [`media::copy_time`]).
    modified: Option<std::time::SystemTime>,
}

/// Everything shared by the files of one export.
struct Exporter<'a> {
    out: &'a ExportDir,
    template: Template,
    filter: Filter,
    convert: Option<HeicTarget>,
    report: ExportReport,
    pool: Vec<Vec<u8>>,
    /// Where each Live Photo still was written (or whether it was left out), by its
    /// path at the source, for its motion half.
    stills: HashMap<String, Option<String>>,
    /// Asked between files and reads: a stopped export keeps what it placed.
    stop: Stop,
}

pub fn run(args: &ExportArgs) -> Result<Exit> {
    let started = Instant::now();
    let filter = Filter::from_args(&args.filter).map_err(|e| fail(Exit::Usage, e))?;
    let template_text = match (&args.template, args.flat) {
        (_, true) => "{name}".to_string(),
        (Some(t), false) => t.clone(),
        (None, false) => DEFAULT_EXPORT_TEMPLATE.to_string(),
    };
    let template = Template::parse(&template_text).map_err(|e| fail(Exit::Usage, e.to_string()))?;
    if args.convert_heic.is_some() && !media::convert::AVAILABLE {
        return Err(fail(
            Exit::Usage,
            "--convert-heic needs HEIC support, which this offload was built without: rebuild \
             it with `cargo build --release --features heic` (Debian: apt install libheif-dev), \
             or export without --convert-heic to copy the HEIC files as they are",
        ));
    }
    let out = ExportDir::open(&args.to)?;
    let announce = format!("Exporting to {}", out.root.display());
    if args.json {
        errln!("{announce}");
    } else {
        outln!("{announce}");
    }
    let mut ex = Exporter {
        out: &out,
        template,
        filter,
        convert: args.convert_heic,
        report: ExportReport {
            destination: out.root.display().to_string(),
            ..ExportReport::default()
        },
        pool: Vec::new(),
        stills: HashMap::new(),
        stop: Stop::new(),
    };
    let mut progress = Progress::new(args.json);
    let outcome = match &args.from_store {
        Some(store) => ex.export_store(store, &mut progress),
        None => ex.export_sources(args, &mut progress),
    };
    progress.event(Event::RunDone);
    let ex_stop = ex.stop.clone();
    let mut report = ex.report;
    out.finish();
    outcome?;
    report.elapsed_s = started.elapsed().as_secs_f64();
    if ex_stop.requested() {
        report.stopped = Some(ex_stop.reason().to_string());
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        if let Some(line) = stopped_line(&report) {
            errln!("{line}");
        }
    } else {
        out!("{}", human(&report));
    }
    if report.stopped.is_some() {
        return Ok(ex_stop.exit());
    }
    Ok(if report.interrupted.is_some() {
        Exit::Gone
    } else if !report.failed.is_empty() {
        Exit::SomeFailed
    } else {
        Exit::Done
    })
}

/// "Stopped: 12 files exported, 30 left for the next run." for a stopped export.
fn stopped_line(r: &ExportReport) -> Option<String> {
    let why = r.stopped.as_ref()?;
    Some(format!(
        "Stopped: {} files exported, {} left for the next run ({why}).",
        r.exported, r.left
    ))
}

fn human(r: &ExportReport) -> String {
    let mut out = format!(
        "  {:<18} {} files, {}\n  {:<18} {}\n",
        "exported",
        r.exported,
        DecimalBytes(r.bytes),
        "already there",
        r.identical
    );
    if r.converted > 0 {
        out.push_str(&format!("  {:<18} {}\n", "HEIC to JPEG", r.converted));
    }
    if r.filtered > 0 {
        out.push_str(&format!("  {:<18} {}\n", "not selected", r.filtered));
    }
    if !r.failed.is_empty() {
        out.push_str(&format!("  {:<18} {}\n", "failed", r.failed.len()));
        for f in &r.failed {
            out.push_str(&format!(
                "    {}: {}\n",
                crate::term::shown(&f.path),
                crate::term::shown(&f.reason)
            ));
        }
    }
    if let Some(m) = cloud_message(&r.cloud_only) {
        out.push_str(&format!("  {m}\n"));
    }
    for w in &r.warnings {
        out.push_str(&format!("  warning: {}\n", crate::term::shown(w)));
    }
    if let Some(why) = &r.interrupted {
        out.push_str(&format!("  stopped: {why}\n"));
    }
    if let Some(line) = stopped_line(r) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "Done in {:.1} s to {}\n",
        r.elapsed_s, r.destination
    ));
    out
}

impl Exporter<'_> {
    /// Exports from a backup: the catalog says what each file is, so the selection is
    /// decided before reading, exactly.
    fn export_store(&mut self, dest: &Path, events: &mut dyn Events) -> Result<()> {
        let (catalog, store_fd) = open_backup(dest)?;
        let files = catalog.stored_with_facts()?;
        let dates: Vec<Option<jiff::civil::DateTime>> =
            files.iter().map(|f| f.captured.parse().ok()).collect();
        let stills = stills_of(&files);
        let selected = self.select_stored(&files, &dates, &stills);
        let total: u64 = selected.iter().map(|i| files[*i].size).sum();
        events.event(Event::SourceStarted {
            name: dest.display().to_string(),
            files: selected.len() as u64,
            bytes: total,
        });
        let n = selected.len();
        for (done, i) in selected.into_iter().enumerate() {
            if self.stop.requested() {
                self.report.left = (n - done) as u64;
                break;
            }
            events.event(Event::FileStarted {
                path: files[i].path.to_string(),
            });
            // A Live Photo's motion half is selected through its still: when its own
            // date cannot be read, it takes the still's.
            let Some(date) = dates[i].or_else(|| stills[i].and_then(|s| dates[s])) else {
                self.report.failed.push(Skipped {
                    path: files[i].path.clone(),
                    reason: "its capture date in the catalog cannot be read; `offload \
                             reindex` dates it again"
                        .into(),
                });
                continue;
            };
            let follows = stills[i].map(|s| files[s].path.as_str());
            let ended = self.export_stored(store_fd.as_fd(), dest, &files[i], date, follows)?;
            if ended && self.stop.requested() {
                self.report.left = (n - done) as u64;
                break;
            }
            events.event(Event::FileDone {
                path: files[i].path.to_string(),
                done: (done + 1) as u64,
                files: n as u64,
            });
        }
        Ok(())
    }

    /// The stored files the selection takes, in export order: each Live Photo's still
    /// decides for its motion half, which follows it. The others count as filtered.
    fn select_stored(
        &mut self,
        files: &[StoredFile],
        dates: &[Option<jiff::civil::DateTime>],
        stills: &[Option<usize>],
    ) -> Vec<usize> {
        let admitted = |i: usize| match dates[i] {
            Some(d) => self.filter.admits(&Known {
                categories: &stored_categories(&files[i]),
                date: DateKnown::Exact(d),
                read: true,
                library: true,
            }),
            None => false,
        };
        let mut order: Vec<usize> = Vec::new();
        let mut followers: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, still) in stills.iter().enumerate() {
            match still {
                Some(s) => followers.entry(*s).or_default().push(i),
                None => order.push(i),
            }
        }
        let mut selected = Vec::new();
        let mut filtered = 0;
        for i in order {
            let take = admitted(i);
            for f in std::iter::once(i).chain(followers.remove(&i).unwrap_or_default()) {
                if take {
                    selected.push(f);
                } else {
                    filtered += 1;
                }
            }
        }
        self.report.filtered += filtered;
        selected
    }

    /// Exports one stored file `f`, read beneath the backup's folder `store_fd` (never
    /// through a link: what it leads to is not the stored copy), named from `date`;
    /// `follows` is its still's path for a Live Photo's motion half. Returns true when
    /// the export ends here (see [`Exporter::settle`]).
    fn export_stored(
        &mut self,
        store_fd: BorrowedFd<'_>,
        dest: &Path,
        f: &StoredFile,
        date: jiff::civil::DateTime,
        follows: Option<&str>,
    ) -> Result<bool> {
        let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
        let is_still = f.live_pair.as_deref() == Some(f.hash.as_str());
        let template = self.template.clone();
        let opened = beneath::open_file(store_fd, dest, Path::new(&f.path), OFlags::RDONLY)
            .map_err(|e| {
                CopyError::Source(SourceError::File(format!(
                    "cannot be read from the backup: {e}"
                )))
            });
        let written = opened.and_then(|mut file| {
            // The stored file carries its source's time.
            let modified = file.metadata().and_then(|m| m.modified()).ok();
            self.export(&mut file, f.size, &f.path, follows, |c| {
                let wanted = template.render(&Fields {
                    device: &f.device,
                    date,
                    category: &f.category,
                    name: &name,
                    hash: &c.hash,
                });
                Some(Target {
                    wanted,
                    convert: media::is_heif(&c.head),
                    modified,
                })
            })
        });
        self.settle(&f.path, is_still, written)
    }

    /// Exports from folders and phones, as `backup` would read them, with the
    /// selection decided before reading as far as it can be and again after.
    fn export_sources(&mut self, args: &ExportArgs, events: &mut dyn Events) -> Result<()> {
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for from in &args.from {
            let s = FolderSource::open(from).map_err(source_fail)?;
            sources.push(Box::new(s));
        }
        if args.from.is_empty() || args.phones || args.device.is_some() {
            let found = detect(&DetectOptions {
                include_app_media: args.include_app_media,
                device: args.device.clone(),
                ..DetectOptions::default()
            });
            for b in &found.blocked {
                errln!(
                    "{} ({}): not read: {}",
                    crate::term::shown(&b.name),
                    crate::term::shown(&b.id),
                    crate::term::shown(&b.message)
                );
            }
            if found.sources.is_empty() && sources.is_empty() {
                let mut msg = String::from(
                    "No phone found to export from. Connect it with a USB data cable and unlock it, \
                     or use --from PATH or --from-store DEST.",
                );
                if let Some(m) = &found.no_usbmuxd {
                    msg.push_str(&format!("\nFor iPhones: {m}"));
                }
                return Err(fail(Exit::NoSource, msg));
            }
            sources.extend(found.sources);
        }
        for source in sources.iter_mut() {
            if self.stop.requested() {
                break;
            }
            let info = source.info().clone();
            let listing = source.list().map_err(source_fail)?;
            let mut plan = plan::plan(listing, &Default::default(), &self.filter);
            self.report.filtered += plan.filtered;
            self.report.failed.append(&mut plan.unreadable);
            self.report
                .cloud_only
                .extend(cloud_records(&plan.cloud_only));
            self.report.warnings.append(&mut plan.warnings);
            self.report.warnings.extend(info.warnings.iter().cloned());
            events.event(Event::SourceStarted {
                name: info.name.to_string(),
                files: plan.to_copy.len() as u64,
                bytes: plan.bytes_to_copy(),
            });
            let n = plan.to_copy.len();
            for (done, item) in plan.to_copy.iter().enumerate() {
                if self.stop.requested() {
                    self.report.left += (n - done) as u64;
                    break;
                }
                events.event(Event::FileStarted {
                    path: item.entry.path.to_string(),
                });
                let ended = self.export_entry(source.as_mut(), &info.name, item)?;
                if ended && self.stop.requested() {
                    self.report.left += (n - done) as u64;
                    break;
                }
                events.event(Event::FileDone {
                    path: item.entry.path.to_string(),
                    done: (done + 1) as u64,
                    files: n as u64,
                });
                if ended {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// One file of a phone or folder. Returns true when the export ends here: the
    /// device went away, or a stop came.
    fn export_entry(&mut self, source: &mut dyn Source, device: &str, item: &Item) -> Result<bool> {
        let Item { entry, live } = item;
        let follows = match live {
            Some(Live::Motion { still }) => Some(still.as_str()),
            _ => None,
        };
        let is_still = matches!(live, Some(Live::Still { .. }));
        let filter = self.filter.clone();
        let template = self.template.clone();
        let written = match source.open(entry, 0) {
            // Listed by the library but will not open: an original left in iCloud.
            Err(SourceError::File(why)) if entry.facts.in_library => {
                tracing::info!("{} is only in iCloud: {why}", entry.path);
                self.report.cloud_only.push(cloud_record(entry));
                return Ok(false);
            }
            Err(e) => Err(CopyError::Source(e)),
            Ok(mut reader) => self.export(&mut *reader, entry.size, &entry.path, follows, |c| {
                let clues = entry.clues(Some(&c.head), live.is_some());
                let found = media::examine(&c.temp, entry.file_name(), entry.mtime, clues);
                let admitted = filter.admits_read(&found, entry.facts.in_library);
                admitted.then(|| Target {
                    wanted: template.render(&Fields {
                        device,
                        date: found.date.local,
                        category: found.categories.primary.as_str(),
                        name: entry.file_name(),
                        hash: &c.hash,
                    }),
                    convert: media::is_heif(&c.head),
                    modified: media::copy_time(entry.mtime, &found.date),
                })
            }),
        };
        self.settle(&entry.path, is_still, written)
    }

    /// Records what became of one file. Returns true when the export ends here (the
    /// device went away, or a stop came while it was read); a destination error ends
    /// the export.
    fn settle(
        &mut self,
        from: &str,
        is_still: bool,
        written: Result<Option<(Placed, u64, bool)>, CopyError>,
    ) -> Result<bool> {
        match written {
            Ok(None) => {
                self.report.filtered += 1;
                if is_still {
                    self.stills.insert(from.to_string(), None);
                }
            }
            Ok(Some((placed, size, converted))) => {
                let (to, result) = match placed {
                    Placed::New(p) => {
                        self.report.exported += 1;
                        self.report.bytes += size;
                        (p, "exported")
                    }
                    Placed::AlreadyThere(p) => {
                        self.report.identical += 1;
                        (p, "identical")
                    }
                };
                if converted {
                    self.report.converted += 1;
                }
                if is_still {
                    self.stills.insert(from.to_string(), Some(to.clone()));
                }
                self.report.files.push(ExportedFile {
                    from: from.to_string(),
                    to,
                    result,
                    converted,
                });
            }
            Err(CopyError::Source(SourceError::Gone(why))) => {
                self.report.interrupted = Some(why);
                return Ok(true);
            }
            // The file in hand when the stop came: nothing of it was kept.
            Err(CopyError::Stopped) => return Ok(true),
            Err(CopyError::Source(e)) => self.report.failed.push(Skipped {
                path: from.to_string(),
                reason: e.to_string(),
            }),
            Err(CopyError::Dest(e)) => {
                let what = match beneath::link_of(&e) {
                    Some(link) => link.to_string(),
                    None => format!("Writing to {} failed: {e}.", self.out.root.display()),
                };
                return Err(fail(
                    Exit::Destination,
                    format!(
                        "{what} {} files were exported; nothing partial was kept.",
                        self.report.exported
                    ),
                ));
            }
        }
        Ok(false)
    }

    /// Copies one file into the export folder: stream + hash into a temp file, let
    /// `decide` pick its name (or leave it out: `None`), convert it if asked, sync,
    /// re-read and compare, then place it without replacing anything.
    /// Returns where it went, its size, and whether it was converted.
    fn export(
        &mut self,
        reader: &mut (dyn Read + Send),
        expected: u64,
        from: &str,
        follows: Option<&str>,
        decide: impl FnOnce(&Copied) -> Option<Target>,
    ) -> Result<Option<(Placed, u64, bool)>, CopyError> {
        let copied = transfer::copy(
            reader,
            self.out,
            expected,
            &mut self.pool,
            &mut |_| {},
            &self.stop,
        )?;
        let dest = |e: io::Error| CopyError::Dest(e);
        // The motion half of a Live Photo goes where its still went.
        let still = follows.and_then(|s| self.stills.get(s));
        let target = match still {
            Some(None) => None,
            _ => decide(&copied),
        };
        let Some(mut target) = target else {
            fs::remove_file(&copied.temp).map_err(dest)?;
            return Ok(None);
        };
        if let Some(Some(still_to)) = still {
            target.wanted = with_extension_of(still_to, from.rsplit('/').next().unwrap_or(from));
        }
        let (mut temp, mut hash, mut size) = (copied.temp, copied.hash, copied.size);
        let mut converted = false;
        if target.convert && self.convert == Some(HeicTarget::Jpeg) {
            match self.to_jpeg(&temp) {
                Ok((jpeg, h, n)) => {
                    fs::remove_file(&temp).map_err(dest)?;
                    (temp, hash, size) = (jpeg, h, n);
                    target.wanted = jpeg_name(&target.wanted);
                    converted = true;
                }
                Err(why) => self.report.warnings.push(format!(
                    "{from} was exported as it is: it could not be converted to JPEG ({why})"
                )),
            }
        }
        File::open(&temp)
            .and_then(|f| {
                // On the descriptor, before the sync: the file appears with its time.
                if let Some(when) = target.modified {
                    if let Err(e) = f.set_modified(when) {
                        tracing::warn!("{from}: its modification time was not kept: {e}");
                    }
                }
                f.sync_all()
            })
            .map_err(dest)?;
        // What is on the disk, not what the cache remembers, must hash the same.
        let mut buf = vec![0u8; 1 << 20];
        let (disk_size, disk_hash) = hash_from_disk(&temp, &mut buf, &mut |_| {}).map_err(dest)?;
        if disk_size != size || disk_hash != hash {
            let _ = fs::remove_file(&temp);
            return Err(CopyError::Dest(io::Error::other(format!(
                "{from} read back from the disk differs from what was written"
            ))));
        }
        let placed = place_into(&self.out.root, &temp, &target.wanted, &hash, size, &|_| {
            false
        })
        .map_err(dest)?;
        let name = match &placed {
            Placed::New(n) | Placed::AlreadyThere(n) => n,
        };
        if let Some(parent) = self.out.root.join(name).parent() {
            fsinfo::sync_dir(parent).map_err(dest)?;
        }
        Ok(Some((placed, size, converted)))
    }

    /// A JPEG of the HEIC at `heic`, in a new temp file: its path, hash and size.
    fn to_jpeg(&self, heic: &Path) -> Result<(PathBuf, blake3::Hash, u64), String> {
        let jpeg = media::convert::heic_to_jpeg(heic)?;
        let (path, mut f) = self.out.temp_file().map_err(|e| e.to_string())?;
        io::Write::write_all(&mut f, &jpeg).map_err(|e| e.to_string())?;
        Ok((path, blake3::hash(&jpeg), jpeg.len() as u64))
    }
}

/// `2024/06/IMG_0001.HEIC` → `2024/06/IMG_0001.jpg`.
/// Opens the catalog of the backup at `dest` read-only (no lock: stored files never
/// change once placed) and its folder, beneath which stored files are read. Exit 3 when
/// `dest` holds no backup.
fn open_backup(dest: &Path) -> Result<(Catalog, OwnedFd)> {
    let catalog_path = dest.join(META_DIR).join(CATALOG_FILE);
    if !catalog_path.exists() {
        return Err(fail(
            Exit::NoSource,
            format!(
                "There is no offload backup at {}: --from-store takes the folder given to `offload backup --to`.",
                dest.display()
            ),
        ));
    }
    let catalog = Catalog::open_read_only(&catalog_path)?;
    let store_fd = beneath::open_root(dest).map_err(|e| {
        fail(
            Exit::NoSource,
            format!("Cannot read the backup {}: {e}", dest.display()),
        )
    })?;
    Ok((catalog, store_fd))
}

/// For each stored file, the index of its Live Photo still when it is a motion half
/// (a file is its own still's pair: that is no follower).
fn stills_of(files: &[StoredFile]) -> Vec<Option<usize>> {
    let by_hash: HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.hash.as_str(), i))
        .collect();
    (0..files.len())
        .map(|i| {
            let pair = files[i].live_pair.as_deref()?;
            by_hash.get(pair).copied().filter(|s| *s != i)
        })
        .collect()
}

fn jpeg_name(wanted: &str) -> String {
    let (dir, name) = match wanted.rfind('/') {
        Some(i) => (&wanted[..=i], &wanted[i + 1..]),
        None => ("", wanted),
    };
    let stem = crate::store::names::split_ext(name).0;
    format!("{dir}{stem}.jpg")
}

/// The categories the catalog recorded for a stored file.
fn stored_categories(f: &StoredFile) -> Categories {
    Categories {
        primary: Category::parse(&f.category).unwrap_or(Category::Other),
        tags: f.tags.iter().filter_map(|t| Tag::parse(t)).collect(),
    }
}

fn source_fail(e: SourceError) -> anyhow::Error {
    match e {
        SourceError::Gone(m) => fail(Exit::Gone, m),
        SourceError::Blocked(m) | SourceError::File(m) => fail(Exit::NoSource, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_names() {
        assert_eq!(jpeg_name("2024/06/IMG_0001.HEIC"), "2024/06/IMG_0001.jpg");
        assert_eq!(jpeg_name("x"), "x.jpg");
    }

    #[test]
    fn the_work_folder_is_locked_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let out = ExportDir::open(&d.path().join("out")).unwrap();
        assert!(ExportDir::open(&d.path().join("out")).is_err());
        let (p, _) = out.temp_file().unwrap();
        assert!(p.starts_with(d.path().join("out").join(WORK_DIR)));
        let _ = fs::remove_file(&p);
        out.finish();
        assert_eq!(fs::read_dir(d.path().join("out")).unwrap().count(), 0);
    }
}
