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

use crate::catalog::{Catalog, NewFile, CATALOG_FILE};
use crate::cli::ReindexArgs;
use crate::config;
use crate::error::{fail, Exit};
use crate::media;
use crate::report::Progress;
use crate::source::{DeviceInfo, SourceKind};
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
}

pub fn run(args: &ReindexArgs) -> Result<u8> {
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
    // Walked before the old catalog is moved aside: a store that cannot be walked
    // (a link inside it) keeps its catalog.
    let files = list_files(store.root())?;
    let catalog_path = store.meta_path(CATALOG_FILE);
    // Never delete a catalog, even a broken one: move it (and its WAL files) aside.
    let mut previous = None;
    if catalog_path.exists() {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let aside = store.meta_path(&format!("{CATALOG_FILE}.before-reindex-{stamp}"));
        std::fs::rename(&catalog_path, &aside)
            .with_context(|| format!("moving the old catalog to {}", aside.display()))?;
        for suffix in ["-wal", "-shm"] {
            let side = store.meta_path(&format!("{CATALOG_FILE}{suffix}"));
            if side.exists() {
                std::fs::rename(&side, format!("{}{suffix}", aside.display()))?;
            }
        }
        previous = Some(aside.display().to_string());
    }
    let catalog = Catalog::open(&catalog_path, store.fs.supports_wal())?;
    let (source_id, _) = catalog.upsert_source(&DeviceInfo {
        id: "store:reindexed".into(),
        kind: SourceKind::Folder,
        name: "reindexed".into(),
        manufacturer: None,
        model: None,
        serial: None,
        storages: vec![],
        warnings: vec![],
    })?;

    let mut progress = Progress::new(args.json);
    progress.start("reindex", files.len(), 0);
    let mut report = ReindexReport {
        destination: store.root().display().to_string(),
        files: 0,
        bytes: 0,
        same_content: Vec::new(),
        previous_catalog: previous,
    };
    let mut buf = vec![0u8; 1 << 20];
    let n = files.len();
    for (i, rel) in files.iter().enumerate() {
        let path = store.root().join(rel);
        let mut f = store
            .open_stored(rel)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut h = blake3::Hasher::new();
        let mut head = Vec::new();
        let mut size = 0u64;
        loop {
            let k = f.read(&mut buf)?;
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
        let found = media::inspect(&path, name, mtime);
        let date = found.date;
        // The phone's library is not at hand: the content, the name and the lens decide.
        let categories = media::classify(&media::Clues {
            path: rel,
            head: Some(&head),
            lens: found.lens.as_deref(),
            ..media::Clues::default()
        });
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
        if added {
            report.files += 1;
            report.bytes += size;
        } else {
            report.same_content.push(rel.clone());
        }
        progress.file_done(i + 1, n, rel);
    }
    progress.finish();
    catalog.backup_to(&store.meta_path(&format!("{CATALOG_FILE}.bak")))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Rebuilt the catalog of {}: {} files, {} bytes.",
            report.destination, report.files, report.bytes
        );
        for s in &report.same_content {
            println!("  {s}: same content as another stored file (left in place, recorded once)");
        }
        if let Some(p) = &report.previous_catalog {
            println!("The previous catalog was moved to {p}.");
        }
        println!(
            "The next backup of each phone reads its files once more to learn where they are; \
             nothing already stored is copied again."
        );
    }
    Ok(0)
}
