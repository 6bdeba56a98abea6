//! Committing copied files in batches: make the data durable, move each file to its
//! final name without replacing anything, sync the folders, then record the batch in
//! the catalog in one transaction.
//!
//! Batching is what makes durability cheap: one `syncfs` and one transaction cover
//! many files, where syncing each file on its own costs a journal commit per photo.
//! The order (data sync → rename → folder sync → catalog) means a crash at any instant
//! leaves either a temp file (swept next run) or a complete file under its final name
//! (adopted next run if the catalog missed it), never a partial file under a final name.

use std::collections::{HashMap, HashSet};
use std::io;

use anyhow::Result;

use crate::catalog::{Catalog, NewFile, Sighting};
use crate::media;
use crate::source::Entry;
use crate::store::names::clash_key;
use crate::store::template::{Fields, Template};
use crate::store::{Placed, Store};
use crate::transfer::Copied;

/// A batch is flushed when it holds this many files or bytes. Bounded so that a crash
/// loses little work and open temp files stay few.
const MAX_FILES: usize = 256;
const MAX_BYTES: u64 = 1 << 30;

struct Pending {
    copied: Copied,
    entry: Entry,
    wanted: String,
    captured: String,
    date_source: media::DateSource,
    category: media::Category,
}

/// What happened to a file handed to the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// New content, queued for the store.
    Queued,
    /// The content is already stored (under this path, or queued in this batch).
    Duplicate,
}

/// A file stored by a flush, for reporting.
pub struct Stored {
    pub remote_path: String,
    pub store_path: String,
    pub size: u64,
}

/// Files of one source waiting to be committed.
pub struct Batch<'a> {
    store: &'a Store,
    catalog: &'a mut Catalog,
    template: &'a Template,
    device_name: String,
    source_id: i64,
    pending: Vec<Pending>,
    pending_bytes: u64,
    /// Hashes queued in this batch, so that a second copy within the batch is a duplicate.
    queued_hashes: HashSet<blake3::Hash>,
    /// Sightings of duplicates, recorded with the batch (their content may be queued).
    sightings: Vec<(Entry, String)>,
}

impl<'a> Batch<'a> {
    pub fn new(
        store: &'a Store,
        catalog: &'a mut Catalog,
        template: &'a Template,
        device_name: &str,
        source_id: i64,
    ) -> Batch<'a> {
        Batch {
            store,
            catalog,
            template,
            device_name: device_name.to_string(),
            source_id,
            pending: Vec::new(),
            pending_bytes: 0,
            queued_hashes: HashSet::new(),
            sightings: Vec::new(),
        }
    }

    /// Takes a freshly copied file. A duplicate's temp file is dropped at once; new
    /// content gets its date, category and wanted name, and waits for the flush.
    pub fn add(&mut self, copied: Copied, entry: Entry) -> Result<Outcome> {
        let hex = copied.hash.to_hex().to_string();
        if self.queued_hashes.contains(&copied.hash) || self.catalog.path_of_hash(&hex)?.is_some() {
            std::fs::remove_file(&copied.temp)?;
            self.sightings.push((entry, hex));
            return Ok(Outcome::Duplicate);
        }
        let date = media::capture_date(&copied.temp, entry.name(), entry.mtime);
        let category = media::categorize(&entry.path, &copied.head);
        let wanted = self.template.render(&Fields {
            device: &self.device_name,
            date: date.local,
            category: category.as_str(),
            name: entry.name(),
            hash: &copied.hash,
        });
        self.queued_hashes.insert(copied.hash);
        self.pending_bytes += copied.size;
        // The head was only needed for the category; do not hold it for the whole batch.
        let copied = Copied {
            head: Vec::new(),
            ..copied
        };
        self.pending.push(Pending {
            copied,
            entry,
            wanted,
            captured: date.local.to_string(),
            date_source: date.source,
            category,
        });
        Ok(Outcome::Queued)
    }

    /// True when the batch should be flushed before taking more.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= MAX_FILES || self.pending_bytes >= MAX_BYTES
    }

    /// Makes every queued file durable under its final name and records the batch.
    /// Returns the files stored. Errors are the destination's (disk full, drive gone,
    /// catalog unwritable): the caller stops the run; whatever was not recorded is
    /// found again (and adopted, not duplicated) by the next run.
    pub fn flush(&mut self) -> Result<Vec<Stored>> {
        if self.pending.is_empty() && self.sightings.is_empty() {
            return Ok(Vec::new());
        }
        let files: Vec<&std::path::Path> = self
            .pending
            .iter()
            .map(|p| p.copied.temp.as_path())
            .collect();
        self.store.sync_data(&files)?;

        let mut placed_keys: HashSet<String> = HashSet::new();
        let mut placed: Vec<(usize, String)> = Vec::with_capacity(self.pending.len());
        for (i, p) in self.pending.iter().enumerate() {
            let catalog = &*self.catalog;
            let taken = |candidate: &str| {
                let key = clash_key(candidate);
                // On a catalog error, call the name taken: a suffix is harmless.
                placed_keys.contains(&key) || catalog.name_taken(&key).unwrap_or(true)
            };
            let name = match self.store.place(
                &p.copied.temp,
                &p.wanted,
                &p.copied.hash,
                p.copied.size,
                &taken,
            )? {
                Placed::New(n) | Placed::AlreadyThere(n) => n,
            };
            placed_keys.insert(clash_key(&name));
            placed.push((i, name));
        }
        self.store
            .sync_dirs(placed.iter().map(|(_, n)| n.as_str()))
            .map_err(|e| io::Error::new(e.kind(), format!("syncing folders: {e}")))?;

        let hexes: Vec<String> = self
            .pending
            .iter()
            .map(|p| p.copied.hash.to_hex().to_string())
            .collect();
        let keys: HashMap<usize, String> = placed.iter().map(|(i, n)| (*i, clash_key(n))).collect();
        let new_files: Vec<NewFile> = placed
            .iter()
            .map(|(i, name)| {
                let p = &self.pending[*i];
                NewFile {
                    hash: &hexes[*i],
                    size: p.copied.size,
                    path: name,
                    path_key: &keys[i],
                    captured: &p.captured,
                    date_source: p.date_source.as_str(),
                    category: p.category.as_str(),
                }
            })
            .collect();
        let mut sightings: Vec<Sighting> = self
            .pending
            .iter()
            .zip(&hexes)
            .map(|(p, h)| Sighting {
                remote_path: &p.entry.path,
                size: p.entry.size,
                mtime: p.entry.mtime,
                hash: h,
            })
            .collect();
        sightings.extend(self.sightings.iter().map(|(e, h)| Sighting {
            remote_path: &e.path,
            size: e.size,
            mtime: e.mtime,
            hash: h,
        }));
        self.catalog
            .record(self.source_id, &new_files, &sightings)?;

        let stored = placed
            .into_iter()
            .map(|(i, name)| Stored {
                remote_path: self.pending[i].entry.path.clone(),
                store_path: name,
                size: self.pending[i].copied.size,
            })
            .collect();
        self.pending.clear();
        self.pending_bytes = 0;
        self.queued_hashes.clear();
        self.sightings.clear();
        Ok(stored)
    }
}
