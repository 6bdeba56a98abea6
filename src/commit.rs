//! Committing copied files in batches: make the data durable, move each file to its
//! final name without replacing anything, sync the folders, then record the batch in
//! the catalog in one transaction.
//!
//! Batching is what makes durability cheap: one `syncfs` and one transaction cover
//! many files, where syncing each file on its own costs a journal commit per photo.
//! The order (data sync → rename → folder sync → catalog) means a crash at any instant
//! leaves either a temp file (swept next run) or a complete file under its final name
//! (adopted next run if the catalog missed it), never a partial file under a final name.
//!
//! Each file is dated and categorised here, from its copy, and the selection is decided
//! again with what the copy revealed: a file outside it is dropped and not recorded, so
//! that a later run copies it. The motion half of a Live Photo follows its still: kept
//! or dropped with it, and named with its stem in its folder.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::catalog::{Catalog, NewFile, Sighting};
use crate::filter::Filter;
use crate::media::{self, Categories};
use crate::plan::{Item, Live};
use crate::source::Entry;
use crate::store::names::{clash_key, sanitize_component, split_ext};
use crate::store::template::{Fields, Template};
use crate::store::{Placed, Store};
use crate::transfer::Copied;

/// A batch is flushed at the latest this long after its first file was queued.
///
/// Every flush costs a journal commit and a flush of the drive's cache, and while they
/// run the reads still under way stall too: on the benchmark's disk each extra `syncfs`
/// in the middle of a run cost about 0.4 s of copying. The bound is what a crash can
/// cost: the copies of at most this many seconds, which the next run repeats (nothing
/// recorded is ever at risk). The kernel itself keeps written data up to 30 s before
/// writing it back; half of that keeps the repeated work small even on a slow phone.
pub const FLUSH_AFTER: Duration = Duration::from_secs(15);

/// A batch is also flushed when it holds this many files, which bounds the temp files
/// waiting in one folder and the memory their records take (~1 KiB each).
const MAX_FILES: usize = 4096;

/// Overrides [`MAX_FILES`] (a positive number), so that tests can make small rolls
/// span several batches and crash them between two.
pub const BATCH_FILES_ENV: &str = "OFFLOAD_BATCH_FILES";

struct Pending {
    copied: Copied,
    entry: Entry,
    wanted: String,
    captured: String,
    date_source: media::DateSource,
    categories: Categories,
    tags: Vec<String>,
    /// The still's remote path, for the motion half of a Live Photo.
    follows: Option<String>,
    /// The still of a Live Photo.
    is_still: bool,
    /// The still's hash, for either half of a Live Photo.
    live_pair: Option<String>,
}

/// A time limit that starts with the first thing waiting and ends when it is dealt with.
struct Deadline {
    after: Duration,
    since: Option<Instant>,
}

impl Deadline {
    fn new(after: Duration) -> Deadline {
        Deadline { after, since: None }
    }

    /// Starts the clock unless it runs already: the oldest waiting thing counts.
    fn start(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }

    /// Time left (zero once due); `None` while nothing waits.
    fn due_in(&self) -> Option<Duration> {
        self.since.map(|t| self.after.saturating_sub(t.elapsed()))
    }

    fn clear(&mut self) {
        self.since = None;
    }
}

/// What became of the still of a Live Photo in this run, for its motion half.
struct Still {
    kept: bool,
    hash: String,
    /// Its store path, once placed (or found stored).
    placed: Option<String>,
}

/// What a copy revealed of its file, for [`Batch::add`].
struct Judged {
    /// Still selected once read (or following its still).
    keep: bool,
    /// The capture date, when judging needed it.
    found: Option<media::CaptureDate>,
    categories: Categories,
    tags: Vec<String>,
}

/// What happened to a file handed to the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// New content, queued for the store.
    Queued,
    /// The content is already stored (under this path, or queued in this batch).
    Duplicate,
    /// Outside the selection once read: dropped, not recorded, left for a later run.
    Filtered,
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
    filter: &'a Filter,
    device_name: String,
    source_id: i64,
    pending: Vec<Pending>,
    /// Stills of Live Photos seen in this run, by remote path.
    stills: HashMap<String, Still>,
    /// When the batch is due: [`FLUSH_AFTER`] after its oldest file or sighting.
    deadline: Deadline,
    max_files: usize,
    /// Hashes queued in this batch, so that a second copy within the batch is a duplicate.
    queued_hashes: HashSet<blake3::Hash>,
    /// Sightings of duplicates, recorded with the batch (their content may be queued),
    /// with the tags this source gives them.
    sightings: Vec<(Entry, String, Vec<String>)>,
    /// Files a failed flush had already moved into place: complete and kept, but not
    /// recorded (the next run finds them under their names and records them).
    kept_unrecorded: Vec<Stored>,
}

impl<'a> Batch<'a> {
    pub fn new(
        store: &'a Store,
        catalog: &'a mut Catalog,
        template: &'a Template,
        filter: &'a Filter,
        device_name: &str,
        source_id: i64,
    ) -> Batch<'a> {
        Batch {
            store,
            catalog,
            template,
            filter,
            device_name: device_name.to_string(),
            source_id,
            pending: Vec::new(),
            stills: HashMap::new(),
            deadline: Deadline::new(FLUSH_AFTER),
            max_files: std::env::var(BATCH_FILES_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or(MAX_FILES),
            queued_hashes: HashSet::new(),
            sightings: Vec::new(),
            kept_unrecorded: Vec::new(),
        }
    }

    /// Takes the files that failed flushes left in place, complete but unrecorded: a
    /// run that stops on the error still counts them among the files it saved.
    pub fn take_kept_unrecorded(&mut self) -> Vec<Stored> {
        std::mem::take(&mut self.kept_unrecorded)
    }

    /// Takes a freshly copied file: dates and categorises it from its copy, decides the
    /// selection again, then drops a duplicate's temp file at once or queues new
    /// content for the flush under its wanted name.
    pub fn add(&mut self, copied: Copied, item: Item) -> Result<Outcome> {
        let Item { entry, live } = item;
        let hex = copied.hash.to_hex().to_string();
        let duplicate =
            self.queued_hashes.contains(&copied.hash) || self.catalog.path_of_hash(&hex)?.is_some();
        let still_path = match &live {
            Some(Live::Motion { still }) => Some(still.clone()),
            _ => None,
        };
        if let Some(still) = &still_path {
            self.recall_stored_still(still)?;
        }
        let judged = self.judge(
            &copied,
            &entry,
            live.is_some(),
            still_path.as_deref(),
            duplicate,
        );
        let is_still = matches!(live, Some(Live::Still { .. }));
        if is_still {
            self.stills.insert(
                entry.path.clone(),
                Still {
                    kept: judged.keep,
                    hash: hex.clone(),
                    placed: None,
                },
            );
        }
        if !judged.keep {
            self.store.remove_temp(&copied.temp)?;
            return Ok(Outcome::Filtered);
        }
        if duplicate {
            self.sight_duplicate(&copied, entry, hex, judged.tags, is_still)?;
            return Ok(Outcome::Duplicate);
        }
        self.queue(copied, entry, hex, judged, still_path, is_still);
        Ok(Outcome::Queued)
    }

    /// Makes `still` known to the batch when an earlier run stored it, with its store
    /// path and hash; does nothing when it is known already or was never stored.
    fn recall_stored_still(&mut self, still: &str) -> Result<()> {
        if self.stills.contains_key(still) {
            return Ok(());
        }
        if let Some((path, hash)) = self.catalog.stored_sighting(self.source_id, still)? {
            self.stills.insert(
                still.to_string(),
                Still {
                    kept: true,
                    hash,
                    placed: Some(path),
                },
            );
        }
        Ok(())
    }

    /// Decides from the copy whether the file stays selected, and what it is. The
    /// motion half of a Live Photo (`still` names its still) follows its still, once
    /// that is known.
    fn judge(
        &self,
        copied: &Copied,
        entry: &Entry,
        live: bool,
        still: Option<&str>,
        duplicate: bool,
    ) -> Judged {
        let clues = entry.clues(Some(&copied.head), live);
        // A duplicate needs no date unless the selection asks for one.
        let examined = (!duplicate || !self.filter.is_empty())
            .then(|| media::examine(&copied.temp, entry.file_name(), entry.mtime, clues));
        let keep = match still.and_then(|s| self.stills.get(s)) {
            // The motion half goes where its still goes.
            Some(still) => still.kept,
            None => examined
                .as_ref()
                .is_none_or(|e| self.filter.admits_read(e, entry.facts.in_library)),
        };
        let (found, categories) = match examined {
            Some(e) => (Some(e.date), e.categories),
            None => (None, media::classify(&clues)),
        };
        let tags = categories.tag_names();
        Judged {
            keep,
            found,
            categories,
            tags,
        }
    }

    /// Drops the temp file of content already stored or queued, and keeps the sighting
    /// for the flush to record. A duplicate still's stored name is noted, for its
    /// motion half to take.
    fn sight_duplicate(
        &mut self,
        copied: &Copied,
        entry: Entry,
        hex: String,
        tags: Vec<String>,
        is_still: bool,
    ) -> Result<()> {
        self.store.remove_temp(&copied.temp)?;
        if is_still {
            let placed = self.catalog.path_of_hash(&hex)?;
            if let Some(s) = self.stills.get_mut(&entry.path) {
                s.placed = placed;
            }
        }
        self.sightings.push((entry, hex, tags));
        self.deadline.start();
        Ok(())
    }

    /// Queues new content for the flush under the name the template gives it, with
    /// its capture date found now if the judging did not need it. `follows` is the
    /// still of a motion half.
    fn queue(
        &mut self,
        copied: Copied,
        entry: Entry,
        hex: String,
        judged: Judged,
        follows: Option<String>,
        is_still: bool,
    ) {
        let Judged {
            found,
            categories,
            tags,
            ..
        } = judged;
        let date = found
            .unwrap_or_else(|| media::capture_date(&copied.temp, entry.file_name(), entry.mtime));
        // Set before the flush syncs and renames it, so that the file appears with it.
        media::keep_copy_time(&copied.temp, entry.mtime, &date);
        let wanted = self.template.render(&Fields {
            device: &self.device_name,
            date: date.local,
            category: categories.primary.as_str(),
            name: entry.file_name(),
            hash: &copied.hash,
        });
        let live_pair = if is_still {
            Some(hex)
        } else {
            follows
                .as_ref()
                .and_then(|s| self.stills.get(s))
                .map(|st| st.hash.clone())
        };
        self.queued_hashes.insert(copied.hash);
        self.deadline.start();
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
            categories,
            tags,
            follows,
            is_still,
            live_pair,
        });
    }

    /// True when the batch should be flushed before taking more.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.max_files || self.due_in() == Some(Duration::ZERO)
    }

    /// How long until the batch is due for a flush; `None` while it is empty. A caller
    /// waiting for the next file waits no longer than this, so that files copied before
    /// a long one (a 4 GB video over USB 2) are not left unsynced while it arrives.
    pub fn due_in(&self) -> Option<Duration> {
        self.deadline.due_in()
    }

    /// Makes every queued file durable under its final name and records the batch.
    /// Returns the files stored. Errors are the destination's (disk full, drive gone,
    /// catalog unwritable): the caller stops the run; whatever was not recorded is
    /// found again (and adopted, not duplicated) by the next run. Files already moved
    /// into place when the error came are kept: [`Batch::take_kept_unrecorded`].
    pub fn flush(&mut self) -> Result<Vec<Stored>> {
        if self.pending.is_empty() && self.sightings.is_empty() {
            return Ok(Vec::new());
        }
        // This order is what makes a crash safe (see the module doc): data synced before
        // any file takes its final name, names synced before the catalog records them.
        self.sync_data()?;
        let mut placed = Vec::with_capacity(self.pending.len());
        let done = self
            .place_all(&mut placed)
            .and_then(|()| self.sync_folders(&placed))
            .and_then(|()| self.record(&placed));
        if let Err(e) = done {
            self.keep_unrecorded(placed);
            return Err(e);
        }
        let stored = stored_of(&self.pending, placed);
        self.clear();
        Ok(stored)
    }

    /// Syncs the content of every queued temp file to the drive.
    fn sync_data(&self) -> Result<()> {
        let files: Vec<&std::path::Path> = self
            .pending
            .iter()
            .map(|p| p.copied.temp.as_path())
            .collect();
        self.store.sync_data(&files)?;
        Ok(())
    }

    /// Moves the queued files to their final names, in queue order, never replacing a
    /// file. Each one placed is appended to `placed` (its index in `pending`, its name)
    /// at once, so that on an error `placed` holds exactly the files already moved.
    fn place_all(&mut self, placed: &mut Vec<(usize, String)>) -> Result<()> {
        let mut placed_keys: HashSet<String> = HashSet::new();
        for (i, p) in self.pending.iter().enumerate() {
            let name = self.place(p, &placed_keys)?;
            // Known before the next file is placed: its motion half may be next.
            if p.is_still {
                if let Some(s) = self.stills.get_mut(&p.entry.path) {
                    s.placed = Some(name.clone());
                }
            }
            placed_keys.insert(clash_key(&name));
            placed.push((i, name));
        }
        Ok(())
    }

    /// Moves one queued file into place and returns its final name. A name is taken
    /// when the catalog has it or `placed_keys` (this flush's names) holds its key.
    fn place(&self, p: &Pending, placed_keys: &HashSet<String>) -> io::Result<String> {
        let catalog = &*self.catalog;
        let taken = |candidate: &str| {
            let key = clash_key(candidate);
            // On a catalog error, call the name taken: a suffix is harmless.
            placed_keys.contains(&key) || catalog.name_taken(&key).unwrap_or(true)
        };
        // The motion half of a Live Photo takes its still's folder and stem (suffix
        // included), so that the pair stays a pair on the drive.
        let beside_still = p
            .follows
            .as_ref()
            .and_then(|s| self.stills.get(s))
            .and_then(|s| s.placed.as_deref())
            .map(|still| with_extension_of(still, p.entry.file_name()));
        let wanted = beside_still.as_deref().unwrap_or(&p.wanted);
        match self.store.place(
            &p.copied.temp,
            wanted,
            &p.copied.hash,
            p.copied.size,
            &taken,
        )? {
            Placed::New(n) | Placed::AlreadyThere(n) => Ok(n),
        }
    }

    /// Syncs the folders the placed files were moved into, so that their names last.
    fn sync_folders(&self, placed: &[(usize, String)]) -> Result<()> {
        self.store
            .sync_dirs(placed.iter().map(|(_, n)| n.as_str()))
            .map_err(|e| io::Error::new(e.kind(), format!("syncing folders: {e}")).into())
    }

    /// Records the placed files and every sighting of the batch (of new files and of
    /// duplicates) in one catalog transaction.
    fn record(&mut self, placed: &[(usize, String)]) -> Result<()> {
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
                    category: p.categories.primary.as_str(),
                    tags: &p.tags,
                    live_pair: p.live_pair.as_deref(),
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
                tags: &[],
            })
            .collect();
        sightings.extend(self.sightings.iter().map(|(e, h, tags)| Sighting {
            remote_path: &e.path,
            size: e.size,
            mtime: e.mtime,
            hash: h,
            tags,
        }));
        self.catalog.record(self.source_id, &new_files, &sightings)
    }

    /// Keeps the files a failed flush had already moved into place, for
    /// [`Batch::take_kept_unrecorded`].
    fn keep_unrecorded(&mut self, placed: Vec<(usize, String)>) {
        self.kept_unrecorded
            .extend(stored_of(&self.pending, placed));
    }

    /// Empties the batch once it is recorded. The stills stay known: their motion
    /// halves may come in a later batch.
    fn clear(&mut self) {
        self.pending.clear();
        self.deadline.clear();
        self.queued_hashes.clear();
        self.sightings.clear();
    }
}

/// The stored files of a flush: `placed` pairs an index into `pending` with its name.
fn stored_of(pending: &[Pending], placed: Vec<(usize, String)>) -> Vec<Stored> {
    placed
        .into_iter()
        .map(|(i, name)| Stored {
            remote_path: pending[i].entry.path.clone(),
            store_path: name,
            size: pending[i].copied.size,
        })
        .collect()
}

/// `dir/IMG_0002~1a2b3c4d.HEIC` and `IMG_0002.MOV` → `dir/IMG_0002~1a2b3c4d.MOV`: the
/// still's store path with the extension of `name` (made safe).
pub fn with_extension_of(still: &str, name: &str) -> String {
    let (dir, still_name) = match still.rfind('/') {
        Some(i) => (&still[..=i], &still[i + 1..]),
        None => ("", still),
    };
    let (stem, _) = split_ext(still_name);
    let own = sanitize_component(name);
    let (_, ext) = split_ext(&own);
    format!("{dir}{stem}{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_falls_due_after_its_oldest_file_waited_long_enough() {
        let after = Duration::from_millis(50);
        let mut d = Deadline::new(after);
        assert_eq!(d.due_in(), None, "nothing waits");
        d.start();
        let left = d.due_in().unwrap();
        assert!(left > Duration::ZERO && left <= after, "{left:?}");
        std::thread::sleep(after / 2);
        // A later file does not push the limit back.
        d.start();
        assert!(d.due_in().unwrap() <= after / 2);
        std::thread::sleep(after / 2);
        assert_eq!(d.due_in(), Some(Duration::ZERO));
        d.clear();
        assert_eq!(d.due_in(), None);
    }

    #[test]
    fn motion_halves_take_the_stills_name() {
        assert_eq!(
            with_extension_of("Phone/2024/06/IMG_0002~1a2b3c4d.HEIC", "IMG_0002.MOV"),
            "Phone/2024/06/IMG_0002~1a2b3c4d.MOV"
        );
        assert_eq!(with_extension_of("IMG_1.JPG", "IMG_1.mov"), "IMG_1.mov");
    }
}
