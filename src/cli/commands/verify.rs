//! `offload verify`: re-read stored files from the disk and compare them with the
//! catalog's hashes; report missing, corrupt and unknown files.

use anyhow::Result;
use serde::Serialize;

use crate::args::VerifyArgs;
use crate::beneath::link_of;
use crate::config;
use crate::error::{fail, Exit};
use crate::events::{Event, Events};
use crate::report::Progress;
use crate::stop::Stop;
use crate::store::names::clash_key;
use crate::store::{list_files, Store, StoreError};

#[derive(Debug, Serialize)]
struct Problem {
    path: String,
    problem: String,
}

#[derive(Debug, Serialize)]
struct VerifyReport {
    destination: String,
    checked: u64,
    bytes_checked: u64,
    intact: u64,
    missing: Vec<Problem>,
    corrupt: Vec<Problem>,
    /// Files in the store the catalog does not know (not checked: nothing to compare).
    unknown: Vec<String>,
    sampled_percent: Option<f64>,
    /// What stopped the check before its end (`SIGINT`, `SIGTERM`, `SIGHUP`).
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
    /// Files not checked because of the stop.
    #[serde(skip_serializing_if = "is_zero")]
    left: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Exit 0 only when every checked file is intact and nothing is unknown; 1 otherwise.
pub fn run(args: &VerifyArgs) -> Result<Exit> {
    let cfg = config::load()?;
    let dest = config::destination(&args.dest, &cfg)?;
    if let Some(p) = args.sample {
        if !(p > 0.0 && p <= 100.0) {
            return Err(fail(
                Exit::Usage,
                "--sample takes a percentage above 0 and at most 100",
            ));
        }
    }
    // Hold the store's lock: a backup committing meanwhile would look like unknown files.
    let store = Store::open(&dest, false).map_err(|e| match e {
        StoreError::Missing(_) => fail(
            Exit::Destination,
            format!(
                "There is no offload backup at {}. Check the drive is plugged in, or pass --to DEST.",
                dest.display()
            ),
        ),
        other => fail(Exit::Destination, other.to_string()),
    })?;
    let catalog = crate::commands::backup::open_catalog(&store)?;
    let mut files = catalog.stored_files(args.device.as_deref())?;
    if let Some(p) = args.sample {
        sample(&mut files, p);
    }
    let stop = Stop::new();
    let mut progress = Progress::new(args.json);
    let mut report = check_files(&store, &files, args, &stop, &mut progress)?;
    if args.device.is_none() && args.sample.is_none() && report.stopped.is_none() {
        let known = catalog.stored_keys()?;
        report.unknown = list_files(store.root())?
            .into_iter()
            .filter(|p| !known.contains(&clash_key(p)))
            .collect();
    }
    let ok = report.missing.is_empty() && report.corrupt.is_empty() && report.unknown.is_empty();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report, ok);
    }
    if report.stopped.is_some() {
        return Ok(stop.exit());
    }
    Ok(if ok { Exit::Done } else { Exit::SomeFailed })
}

/// Keeps a random `percent` of `files`, a fresh share each run, so that repeated
/// quick checks cover the store.
fn sample(files: &mut Vec<(String, u64, String)>, percent: f64) {
    let seed = blake3::hash(jiff::Timestamp::now().to_string().as_bytes());
    files.retain(|(path, _, _)| {
        let h = blake3::keyed_hash(seed.as_bytes(), path.as_bytes());
        let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        (x as f64 / u64::MAX as f64) * 100.0 < percent
    });
}

/// Re-reads each of `files` (store path, size, hash) from the disk and compares it
/// with what was stored; a stop ends the check between two files. A link inside the
/// store ends it with exit 4: what the link leads to is not the stored copy.
fn check_files(
    store: &Store,
    files: &[(String, u64, String)],
    args: &VerifyArgs,
    stop: &Stop,
    events: &mut dyn Events,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        destination: store.root().display().to_string(),
        checked: 0,
        bytes_checked: 0,
        intact: 0,
        missing: Vec::new(),
        corrupt: Vec::new(),
        unknown: Vec::new(),
        sampled_percent: args.sample,
        stopped: None,
        left: 0,
    };
    let total_bytes: u64 = files.iter().map(|f| f.1).sum();
    events.event(Event::SourceStarted {
        name: "verify".to_string(),
        files: files.len() as u64,
        bytes: total_bytes,
    });
    let mut buf = vec![0u8; 1 << 20];
    let n = files.len();
    for (i, (path, size, hash)) in files.iter().enumerate() {
        if stop.requested() {
            report.stopped = Some(stop.reason().to_string());
            report.left = (n - i) as u64;
            break;
        }
        events.event(Event::FileStarted {
            path: path.to_string(),
        });
        report.checked += 1;
        let problem = match store.hash_stored(path, &mut buf, &mut |b| {
            events.event(Event::Progress { bytes: b })
        }) {
            Err(e) if link_of(&e).is_some() => return Err(fail(Exit::Destination, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some((false, "missing from the store".to_string()))
            }
            Err(e) => Some((true, format!("cannot be read: {e}"))),
            Ok((got_size, got)) => {
                report.bytes_checked += got_size;
                if got_size != *size {
                    Some((
                        true,
                        format!("size is {got_size} bytes, {size} were stored"),
                    ))
                } else if got.to_hex().as_str() != hash {
                    let why = "content differs from what was stored (hash mismatch)";
                    Some((true, why.to_string()))
                } else {
                    None
                }
            }
        };
        match problem {
            None => report.intact += 1,
            Some((corrupt, problem)) => {
                let p = Problem {
                    path: path.clone(),
                    problem,
                };
                if corrupt {
                    report.corrupt.push(p);
                } else {
                    report.missing.push(p);
                }
            }
        }
        events.event(Event::FileDone {
            path: path.to_string(),
            done: (i + 1) as u64,
            files: n as u64,
        });
    }
    events.event(Event::RunDone);
    Ok(report)
}

/// The human report: the counts, each problem, and what to do about them.
fn print_human(report: &VerifyReport, ok: bool) {
    outln!(
        "Verified {} files ({} bytes) in {}: {} intact, {} missing, {} corrupt, {} unknown",
        report.checked,
        report.bytes_checked,
        report.destination,
        report.intact,
        report.missing.len(),
        report.corrupt.len(),
        report.unknown.len()
    );
    for p in report.missing.iter().chain(&report.corrupt) {
        outln!("  {}: {}", crate::term::shown(&p.path), p.problem);
    }
    for u in &report.unknown {
        outln!(
            "  {}: not in the catalog (`offload reindex` adds it)",
            crate::term::shown(u)
        );
    }
    if let Some(why) = &report.stopped {
        outln!(
            "Stopped: {} files checked, {} left unchecked ({why}). Nothing was changed; run \
             `offload verify` again to check them all.",
            report.checked,
            report.left
        );
    }
    if !ok {
        outln!(
            "Damaged or missing files cannot be repaired from this drive: back them up again \
             from the phone (`offload backup` copies what the store lacks) or from another copy."
        );
    }
}
