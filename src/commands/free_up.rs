//! `offload free-up`: delete from the phone what is safely on the backup drive(s).
//!
//! A file is deleted only when all of these hold, checked now, not remembered:
//! - the phone's file has exactly the path, size and mtime that were backed up;
//! - its stored copy was re-read from the disk (around the page cache) just now and
//!   hashes as recorded, in at least `--copies` destinations that are present;
//! - `--yes` was given. Without it, the list is printed and nothing is deleted.
//!
//! iPhones are never written to: deleting over AFC leaves the Photos library
//! inconsistent, so the verified list is printed for deleting in the Photos app.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::cli::FreeUpArgs;
use crate::commands::backup::open_catalog;
use crate::config;
use crate::error::{fail, Exit};
use crate::source::detect::{detect, DetectOptions};
use crate::source::{Entry, SourceError, SourceKind};
use crate::store::fsinfo::human_bytes;
use crate::store::Store;

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
    /// Safe to delete (listed; deleted too with `--yes` on Android).
    eligible: Vec<Item>,
    deleted: Vec<String>,
    kept: Vec<Kept>,
    bytes_freed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

pub fn run(args: &FreeUpArgs) -> Result<u8> {
    let cfg = config::load()?;
    let cutoff = match &args.older_than {
        Some(text) => Some(cutoff(text)?),
        None => None,
    };
    let only: Option<BTreeSet<String>> = args.only.as_ref().map(|s| {
        s.split(',')
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty())
            .collect()
    });
    if args.copies == 0 {
        return Err(fail(Exit::Usage, "--copies must be at least 1"));
    }

    // The stores, locked: no backup may change them while they vouch for deletions.
    let mut stores: Vec<(Store, Catalog)> = Vec::new();
    for d in config::destinations(&args.dest, &cfg, true)? {
        match d.locate().and_then(|p| {
            Store::open(&p, false).map_err(|e| fail(Exit::Destination, e.to_string()))
        }) {
            Ok(store) => {
                let catalog = open_catalog(&store)?;
                stores.push((store, catalog));
            }
            Err(e) => eprintln!("offload: {} is not available: {e}", d.describe()),
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

    let mut results = Vec::new();
    let mut code = 0u8;
    let mut buf = vec![0u8; 1 << 20];
    for mut source in found.sources {
        let info = source.info().clone();
        let mut res = DeviceResult {
            id: info.id.clone(),
            name: info.name.clone(),
            kind: info.kind.as_str().into(),
            eligible: Vec::new(),
            deleted: Vec::new(),
            kept: Vec::new(),
            bytes_freed: 0,
            note: None,
        };
        let listing = match source.list() {
            Ok(l) => l,
            Err(e) => {
                res.note = Some(e.to_string());
                code = code.max(if matches!(e, SourceError::Gone(_)) {
                    5
                } else {
                    3
                });
                results.push(res);
                continue;
            }
        };
        let mut eligible: Vec<(Entry, String, Vec<String>)> = Vec::new();
        for entry in listing.entries {
            let mut facts = None;
            let mut copies = Vec::new();
            let mut damaged = Vec::new();
            for (store, catalog) in &stores {
                let Some((hash, path, captured, category)) =
                    catalog.backed_up(&info.id, &entry.path, entry.size, entry.mtime)?
                else {
                    continue;
                };
                let abs = store.root().join(&path);
                match store.hash_stored(&path, &mut buf, &mut |_| {}) {
                    Ok((n, h)) if n == entry.size && h.to_hex().as_str() == hash => {
                        copies.push(abs.display().to_string())
                    }
                    _ => damaged.push(abs.display().to_string()),
                }
                facts = Some((hash, captured, category));
            }
            let Some((hash, captured, category)) = facts else {
                res.kept.push(Kept {
                    path: entry.path.clone(),
                    reason: "not backed up as it is now (new, or changed since the backup)".into(),
                });
                continue;
            };
            if let Some(set) = &only {
                if !set.contains(&category) {
                    continue;
                }
            }
            if let Some(cut) = &cutoff {
                if captured.as_str() >= cut.as_str() {
                    continue;
                }
            }
            if copies.len() < args.copies as usize {
                let mut reason = format!(
                    "{} verified cop{} (--copies {} needed)",
                    copies.len(),
                    if copies.len() == 1 { "y" } else { "ies" },
                    args.copies
                );
                if !damaged.is_empty() {
                    reason.push_str(&format!(
                        "; the stored copy does not match any more: {}",
                        damaged.join(", ")
                    ));
                    code = code.max(Exit::SomeFailed as u8);
                }
                res.kept.push(Kept {
                    path: entry.path.clone(),
                    reason,
                });
                continue;
            }
            res.eligible.push(Item {
                path: entry.path.clone(),
                size: entry.size,
                captured: captured.clone(),
                verified_copies: copies.clone(),
            });
            eligible.push((entry, hash, copies));
        }

        if args.yes {
            match source.deleter() {
                None => {
                    res.note = Some(match info.kind {
                        SourceKind::Iphone => "iPhone files are not deleted over USB: deleting through AFC leaves \
                            the Photos library inconsistent (photos that show but cannot open). Delete the \
                            listed photos in the Photos app; each was verified on the backup drive just now."
                            .into(),
                        _ => "This source does not support deleting.".into(),
                    });
                }
                Some(deleter) => {
                    for (entry, hash, copies) in &eligible {
                        match deleter.delete(entry) {
                            Ok(()) => {
                                for (_, catalog) in &stores {
                                    catalog.record_deletion(
                                        &info.id,
                                        &entry.path,
                                        entry.size,
                                        entry.mtime,
                                        hash,
                                        &copies[0],
                                    )?;
                                }
                                res.deleted.push(entry.path.clone());
                                res.bytes_freed += entry.size;
                            }
                            Err(SourceError::Gone(m)) => {
                                res.note = Some(m);
                                code = code.max(Exit::Gone as u8);
                                break;
                            }
                            Err(e) => {
                                res.kept.push(Kept {
                                    path: entry.path.clone(),
                                    reason: format!("not deleted: {e}"),
                                });
                                code = code.max(Exit::SomeFailed as u8);
                            }
                        }
                    }
                }
            }
        }
        results.push(res);
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(code);
    }
    for r in &results {
        let bytes: u64 = r.eligible.iter().map(|i| i.size).sum();
        println!("{} ({}, {}):", r.name, r.kind, r.id);
        if args.yes && r.kind == "android" {
            println!(
                "  deleted {} files, {} freed",
                r.deleted.len(),
                human_bytes(r.bytes_freed)
            );
        } else {
            println!(
                "  {} files ({}) are verified on the backup and can be deleted:",
                r.eligible.len(),
                human_bytes(bytes)
            );
            for i in &r.eligible {
                println!("    {}  {}  {}", i.captured, human_bytes(i.size), i.path);
            }
        }
        if !r.kept.is_empty() {
            println!("  kept on the phone: {}", r.kept.len());
            for k in r.kept.iter().take(20) {
                println!("    {}: {}", k.path, k.reason);
            }
            if r.kept.len() > 20 {
                println!(
                    "    ... and {} more (--json lists them all)",
                    r.kept.len() - 20
                );
            }
        }
        if let Some(n) = &r.note {
            println!("  {n}");
        }
        if !args.yes && !r.eligible.is_empty() && r.kind == "android" {
            println!("  Nothing was deleted. Run again with --yes to delete them from the phone.");
        }
    }
    Ok(code)
}

/// "90d", "12w", "6mo", "1y", "48h" → the local capture time before which files count
/// as old enough, in the catalog's `captured` format.
fn cutoff(text: &str) -> Result<String> {
    let span: jiff::Span = text.trim().parse().map_err(|e| {
        fail(
            Exit::Usage,
            format!("--older-than {text:?} is not a duration (like 90d, 12w, 6mo, 1y): {e}"),
        )
    })?;
    let now = jiff::Zoned::now();
    let then = now
        .checked_sub(span)
        .map_err(|e| fail(Exit::Usage, format!("--older-than {text:?}: {e}")))?;
    Ok(then.datetime().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for ok in ["90d", "12w", "6mo", "1y", "48h", "1 year"] {
            assert!(cutoff(ok).is_ok(), "{ok}");
        }
        assert!(cutoff("soon").is_err());
        assert!(cutoff("90d").unwrap() < cutoff("1d").unwrap());
    }
}
