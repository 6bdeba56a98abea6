//! `offload reindex`: rebuild a lost or damaged catalog from the store itself.
//!
//! The store is the truth: every file in it is hashed again and its capture date and
//! category are derived again from its content. Where each file came from (the
//! sightings) cannot be recovered from the files; the next backup of each phone reads
//! its files once more to learn them again, and stores no second copy of anything
//! (their content is already known).

use std::io::Read;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::args::ReindexArgs;
use crate::catalog::{Catalog, NewFile, CATALOG_FILE, REINDEX_NOTE};
use crate::config;
use crate::error::{fail, Exit};
use crate::events::{Event, Events};
use crate::media;
use crate::report::Progress;
use crate::source::{DeviceInfo, SourceKind};
use crate::stop::Stop;
use crate::store::names::clash_key;
use crate::store::{list_files, Store, StoreError};
use crate::transfer::HEAD;

#[derive(Serialize)]
struct ReindexReport {
    destination: String,
    files: u64,
    bytes: u64,
    /// Files whose content another stored file already has: left in place, recorded once.
    same_content: Vec<String>,
    /// Where the previous catalog was moved, if there was one.
    previous_catalog: Option<String>,
    /// Files a stopped rebuild had already indexed: not read again.
    #[serde(skip_serializing_if = "is_zero")]
    resumed: u64,
    /// What stopped the rebuild before its end (`SIGINT`, `SIGTERM`, `SIGHUP`).
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
    /// Files not indexed because of the stop.
    #[serde(skip_serializing_if = "is_zero")]
    left: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// True when the catalog at `path` is a rebuild that was stopped before its end.
fn is_unfinished_rebuild(path: &std::path::Path) -> bool {
    Catalog::open_read_only(path)
        .and_then(|c| c.note(REINDEX_NOTE))
        .is_ok_and(|n| n.as_deref() == Some("incomplete"))
}

pub fn run(args: &ReindexArgs) -> Result<Exit> {
    let cfg = config::load()?;
    let dest = config::destination(&args.dest, &cfg)?;
    // Explicitly asked for: a folder of photos whose `.offload/` was lost entirely
    // becomes a store again.
    let store = Store::open(&dest, true).map_err(|e| match e {
        StoreError::Missing(_) => fail(
            Exit::Destination,
            format!(
                "There is no folder {}. Check the drive is plugged in, or pass --to DEST.",
                dest.display()
            ),
        ),
        other => fail(Exit::Destination, other.to_string()),
    })?;
    crate::catalog_files::check_writable(&store)?;
    // Walked before the old catalog is moved aside: a store that cannot be walked
    // (a link inside it) keeps its catalog.
    let files = list_files(store.root())?;
    let catalog_path = store.meta_path(CATALOG_FILE);
    // A rebuild that was stopped goes on where it stopped.
    let resuming = catalog_path.exists() && is_unfinished_rebuild(&catalog_path);
    // Never delete a catalog, even a broken one: move it (and its WAL files) aside.
    let previous = if resuming {
        None
    } else {
        crate::catalog_files::set_aside(&store, "before-reindex")?.map(|p| p.display().to_string())
    };
    let catalog = Catalog::open(&catalog_path, store.fs.supports_wal())?;
    catalog.set_note(REINDEX_NOTE, Some("incomplete"))?;
    let mut report = ReindexReport {
        destination: store.root().display().to_string(),
        files: 0,
        bytes: 0,
        same_content: Vec::new(),
        previous_catalog: previous,
        resumed: 0,
        stopped: None,
        left: 0,
    };
    let stop = Stop::new();
    let mut progress = Progress::new(args.json);
    index_files(
        &store,
        &catalog,
        &files,
        resuming,
        &mut progress,
        &stop,
        &mut report,
    )?;
    if report.stopped.is_none() {
        catalog.set_note(REINDEX_NOTE, None)?;
        if let Some(warning) = crate::catalog_files::keep_copy(&store, &catalog)? {
            errln!("offload: warning: {warning}");
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    if report.stopped.is_some() {
        return Ok(stop.exit());
    }
    Ok(Exit::Done)
}

/// Records each of the store's `files` in `catalog`, under the `reindexed` source:
/// hashed again, dated and classified again from its content. When `resuming` a
/// stopped rebuild, the files it recorded are not read again. A stop ends it between
/// two files.
fn index_files(
    store: &Store,
    catalog: &Catalog,
    files: &[String],
    resuming: bool,
    events: &mut dyn Events,
    stop: &Stop,
    report: &mut ReindexReport,
) -> Result<()> {
    let done_before = if resuming {
        catalog.stored_keys()?
    } else {
        Default::default()
    };
    let (source_id, _) = catalog.upsert_source(&DeviceInfo {
        id: crate::catalog_files::REINDEXED_KEY.into(),
        kind: SourceKind::Folder,
        name: "reindexed".into(),
        manufacturer: None,
        model: None,
        serial: None,
        storages: vec![],
        warnings: vec![],
    })?;
    events.event(Event::SourceStarted {
        name: "reindex".to_string(),
        files: files.len() as u64,
        bytes: 0,
    });
    let mut buf = vec![0u8; 1 << 20];
    let n = files.len();
    for (i, rel) in files.iter().enumerate() {
        if stop.requested() {
            report.stopped = Some(stop.reason().to_string());
            report.left = (n - i) as u64;
            break;
        }
        if done_before.contains(&clash_key(rel)) {
            report.resumed += 1;
            continue;
        }
        let (size, added) = index_file(store, catalog, source_id, rel, &mut buf)?;
        if added {
            report.files += 1;
            report.bytes += size;
        } else {
            report.same_content.push(rel.clone());
        }
        events.event(Event::FileDone {
            path: rel.to_string(),
            done: (i + 1) as u64,
            files: n as u64,
        });
    }
    events.event(Event::RunDone);
    Ok(())
}

/// Reads one stored file (`rel`, store-relative), hashes it, dates and classifies it
/// from its content, name and lens (the phone's library is not at hand), and records
/// it. Returns its size, and false when that content was already recorded.
fn index_file(
    store: &Store,
    catalog: &Catalog,
    source_id: i64,
    rel: &str,
    buf: &mut [u8],
) -> Result<(u64, bool)> {
    let path = store.root().join(rel);
    let mut f = store
        .open_stored(rel)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut head = Vec::new();
    let mut size = 0u64;
    loop {
        let k = f.read(buf)?;
        if k == 0 {
            break;
        }
        if head.len() < HEAD {
            head.extend_from_slice(&buf[..k.min(HEAD - head.len())]);
        }
        h.update(&buf[..k]);
        size += k as u64;
    }
    let mtime = f
        .metadata()?
        .modified()
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map_or(0, |t| t.as_second());
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let clues = media::Clues {
        path: rel,
        head: Some(&head),
        ..media::Clues::default()
    };
    let media::Examined { date, categories } = media::examine(&path, name, mtime, clues);
    let tags = categories.tag_names();
    let hash = h.finalize().to_hex().to_string();
    let captured = date.local.to_string();
    let key = clash_key(rel);
    let added = catalog.add_reindexed(
        source_id,
        &NewFile {
            hash: &hash,
            size,
            path: rel,
            path_key: &key,
            captured: &captured,
            date_source: date.source.as_str(),
            category: categories.primary.as_str(),
            tags: &tags,
            live_pair: None,
        },
    )?;
    Ok((size, added))
}

/// The human report: what was rebuilt (or how far a stopped rebuild got), and what
/// the next backup does.
fn print_human(report: &ReindexReport) {
    if let Some(why) = &report.stopped {
        outln!(
            "Stopped: {} files indexed, {} left ({why}). The catalog of {} is incomplete: \
             run `offload reindex` again to finish it (it goes on where it stopped); until \
             then backups to this store are refused.",
            report.files + report.resumed,
            report.left,
            report.destination
        );
        return;
    }
    outln!(
        "Rebuilt the catalog of {}: {} files, {} bytes.",
        report.destination,
        report.files + report.resumed,
        report.bytes
    );
    for s in &report.same_content {
        outln!(
            "  {}: same content as another stored file (left in place, recorded once)",
            crate::term::shown(s)
        );
    }
    if let Some(p) = &report.previous_catalog {
        outln!("The previous catalog was moved to {p}.");
    }
    outln!(
        "The next backup of each phone reads its files once more to learn where they are; \
         nothing already stored is copied again."
    );
}
