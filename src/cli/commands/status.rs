//! `offload status`: per source, the last backup, what is stored, counts per category
//! and tag, and what the phone's library holds only in iCloud.

use std::path::{Path, PathBuf};

use anyhow::Result;
use indicatif::DecimalBytes;
use serde::Serialize;

use crate::args::StatusArgs;
use crate::catalog::{Catalog, SourceStatus, CATALOG_FILE};
use crate::config;
use crate::error::{fail, Exit};
use crate::report::cloud_message;
use crate::store::{IDENTITY_FILE, META_DIR};

#[derive(Serialize)]
struct StatusReport {
    destination: String,
    files: u64,
    bytes: u64,
    sources: Vec<SourceStatus>,
}

/// iCloud-only files named one by one in the human output; `--json` has them all.
const CLOUD_LISTED: usize = 20;

pub fn run(args: &StatusArgs) -> Result<Exit> {
    let cfg = config::load()?;
    let dest = config::destination(&args.dest, &cfg)?;
    let path = catalog_at(&dest)?;
    let report = read_report(&dest, &path)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Exit::Done);
    }
    print_human(&report);
    Ok(Exit::Done)
}

/// The catalog file of the backup at `dest`. `Err`, saying what to do, when it is not
/// there: a store whose catalog is lost, or no backup at all (often: the drive is not
/// plugged in).
fn catalog_at(dest: &Path) -> Result<PathBuf> {
    let path = dest.join(META_DIR).join(CATALOG_FILE);
    if !path.exists() {
        if dest.join(META_DIR).join(IDENTITY_FILE).exists() {
            return Err(crate::catalog_files::lost(dest, "is missing"));
        }
        return Err(fail(
            Exit::Destination,
            format!(
                "There is no offload backup at {}. Check the drive is plugged in, or pass --to DEST.",
                dest.display()
            ),
        ));
    }
    Ok(path)
}

/// Reads the totals and the status of each source from the catalog at `path`, of the
/// backup at `dest`.
fn read_report(dest: &Path, path: &Path) -> Result<StatusReport> {
    // Read-only and lock-free: status may run while a backup is writing.
    let catalog = Catalog::open_read_only(path)?;
    let (files, bytes) = catalog.totals()?;
    let mut sources = catalog.status()?;
    // A run still marked running on a store nobody holds was killed, or its computer
    // stopped: it is shown as what it is, not as running forever.
    if !crate::store::busy::in_use(dest) {
        for r in sources.iter_mut().filter_map(|s| s.last_run.as_mut()) {
            if r.result == "running" {
                r.result = "interrupted".into();
            }
        }
    }
    Ok(StatusReport {
        destination: dest.display().to_string(),
        files,
        bytes,
        sources,
    })
}

/// Prints `report` for a person: the backup's totals, then a block per source.
fn print_human(report: &StatusReport) {
    outln!(
        "Backup at {}: {} files, {}",
        report.destination,
        report.files,
        DecimalBytes(report.bytes)
    );
    for s in &report.sources {
        print_source(s);
    }
}

/// Prints one source's block: its last backup, what is stored, counts per category and
/// tag, and what its library holds only in iCloud.
fn print_source(s: &SourceStatus) {
    outln!(
        "\n{} ({}, {})",
        crate::term::shown(&s.name),
        s.kind,
        crate::term::shown(&s.id)
    );
    match &s.last_run {
        Some(r) => outln!(
            "  last backup   {} ({}: {} copied, {} failed)",
            r.finished.as_deref().unwrap_or(&r.started),
            r.result,
            r.copied,
            r.failed
        ),
        None => outln!("  last backup   never"),
    }
    outln!(
        "  stored        {} files, {}",
        s.files,
        DecimalBytes(s.bytes)
    );
    let cats: Vec<String> = s
        .categories
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    if !cats.is_empty() {
        outln!("  categories    {}", cats.join(", "));
    }
    let tags: Vec<String> = s.tags.iter().map(|(t, n)| format!("{t} {n}")).collect();
    if !tags.is_empty() {
        outln!("  tags          {}", tags.join(", "));
    }
    print_cloud_only(s);
}

/// Prints the source's iCloud-only files, if any: why they were not copied, and the
/// first `CLOUD_LISTED` of them by path.
fn print_cloud_only(s: &SourceStatus) {
    let Some(m) = cloud_message(&s.cloud_only) else {
        return;
    };
    outln!("  iCloud only   {m}");
    for c in s.cloud_only.iter().take(CLOUD_LISTED) {
        outln!("                {}", crate::term::shown(&c.path));
    }
    if s.cloud_only.len() > CLOUD_LISTED {
        outln!(
            "                … and {} more (`offload status --json` lists them all)",
            s.cloud_only.len() - CLOUD_LISTED
        );
    }
}
