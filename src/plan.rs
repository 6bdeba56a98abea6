//! Planning: which listed files need copying. Joins a source's listing with what the
//! catalog has seen from that source, so that a file backed up before is skipped
//! without reading a byte of it, and applies the selection (`--only`, `--since`...)
//! as far as it can be decided before reading (see `filter.rs`).
//!
//! Live Photo pairs are planned as one: the still decides for both halves, the
//! motion half is copied right after its still, and neither is left without the other
//! by a filter.

use std::collections::{HashMap, HashSet};

use crate::filter::{DateKnown, Filter, Known};
use crate::media::{self, Categories, DateSource};
use crate::source::{Entry, Listing, Skipped};

/// A file's part in a Live Photo pair; each names the other half's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    Still { motion: String },
    Motion { still: String },
}

/// One file to copy.
#[derive(Clone, Debug)]
pub struct Item {
    pub entry: Entry,
    pub live: Option<Live>,
}

impl Item {
    /// The still this file is the motion half of, if it is one.
    pub fn still(&self) -> Option<&str> {
        match &self.live {
            Some(Live::Motion { still }) => Some(still),
            _ => None,
        }
    }
}

/// What one source's run will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Files to read and copy, in listing order, the motion half of a Live Photo right
    /// after its still.
    pub to_copy: Vec<Item>,
    /// Files whose (path, size, mtime) were backed up before.
    pub already_backed_up: u64,
    /// Left for a later run by the selection (not recorded as backed up).
    pub filtered: u64,
    /// Left out by rule, with the reason.
    pub skipped: Vec<Skipped>,
    /// Could not even be listed: reported as failures.
    pub unreadable: Vec<Skipped>,
    /// Selected files whose original is only in iCloud: reported, never read.
    pub cloud_only: Vec<Entry>,
    /// The listing's warnings, passed on.
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn bytes_to_copy(&self) -> u64 {
        self.to_copy.iter().map(|i| i.entry.size).sum()
    }
}

/// What is known of an entry before reading it: its categories (name, folder, the
/// library's facts) and a first idea of its date.
pub fn known_before_reading(entry: &Entry, live_pair: bool) -> (Categories, DateKnown) {
    let categories = media::classify(&entry.clues(None, live_pair));
    let date = match entry.facts.captured {
        Some(d) => DateKnown::Exact(d),
        None => {
            let d = media::date_before_reading(entry.file_name(), entry.mtime);
            match d.source {
                DateSource::Mtime => DateKnown::NotAfter(d.local),
                _ => DateKnown::Near(d.local),
            }
        }
    };
    (categories, date)
}

/// Splits `listing` into what is new and selected, what was seen before, and what the
/// selection leaves for later. A file whose size or mtime changed since is new again:
/// its content is read, and stored if it is new.
pub fn plan(listing: Listing, seen: &HashSet<(String, u64, i64)>, filter: &Filter) -> Plan {
    let mut p = Plan {
        skipped: listing.skipped,
        unreadable: listing.unreadable,
        warnings: listing.warnings,
        ..Plan::default()
    };
    let entries = listing.entries;
    let live = live_roles(&entries);
    let index: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    let selected = selected_before_reading(&entries, &live, &index, filter);
    let new = sort_out(entries, seen, &selected, &live, &mut p);
    p.to_copy = in_copy_order(new, &index);
    p.cloud_only
        .extend(selected_cloud_only(listing.cloud_only, filter));
    p
}

/// Each half of a Live Photo pair in `entries`, by position, with the other half's
/// path.
fn live_roles(entries: &[Entry]) -> HashMap<usize, Live> {
    let mut live: HashMap<usize, Live> = HashMap::new();
    for (s, m) in media::live_pairs(entries.iter().map(|e| e.path.as_str())) {
        let still = &entries[s].facts;
        // The library knows better than names: a still it says is not live has no pair.
        if still.in_library && still.kind != Some(media::Category::Live) {
            continue;
        }
        live.insert(
            s,
            Live::Still {
                motion: entries[m].path.clone(),
            },
        );
        live.insert(
            m,
            Live::Motion {
                still: entries[s].path.clone(),
            },
        );
    }
    live
}

/// Whether the selection takes each entry, as far as it can tell before reading.
/// `index` gives an entry's position by path.
fn selected_before_reading(
    entries: &[Entry],
    live: &HashMap<usize, Live>,
    index: &HashMap<String, usize>,
    filter: &Filter,
) -> Vec<bool> {
    let admitted: Vec<bool> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (categories, date) = known_before_reading(e, live.contains_key(&i));
            filter.admits(&Known {
                categories: &categories,
                date,
                read: e.facts.cloud_only,
                library: e.facts.in_library,
            })
        })
        .collect();
    // A pair is selected by its still.
    (0..entries.len())
        .map(|i| match live.get(&i) {
            Some(Live::Motion { still }) => admitted[index[still]],
            _ => admitted[i],
        })
        .collect()
}

/// Counts what was backed up before and what the selection leaves, sets aside the
/// selected files that are only in iCloud, and returns the rest as items to copy, in
/// listing order (`None` where an entry was counted or set aside).
fn sort_out(
    entries: Vec<Entry>,
    seen: &HashSet<(String, u64, i64)>,
    selected: &[bool],
    live: &HashMap<usize, Live>,
    p: &mut Plan,
) -> Vec<Option<Item>> {
    let mut new: Vec<Option<Item>> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        // The key borrows nothing from the set's owned strings, so build it once.
        if seen.contains(&(e.path.clone(), e.size, e.mtime)) {
            p.already_backed_up += 1;
            new.push(None);
        } else if !selected[i] {
            p.filtered += 1;
            new.push(None);
        } else if e.facts.cloud_only {
            p.cloud_only.push(e);
            new.push(None);
        } else {
            new.push(Some(Item {
                entry: e,
                live: live.get(&i).cloned(),
            }));
        }
    }
    new
}

/// The items in listing order, each motion half moved right behind its still (when
/// the still is copied too). `index` gives an entry's position by path.
fn in_copy_order(new: Vec<Option<Item>>, index: &HashMap<String, usize>) -> Vec<Item> {
    let mut motion_of: HashMap<usize, usize> = HashMap::new();
    for (i, item) in new.iter().enumerate() {
        if let Some(still) = item.as_ref().and_then(Item::still) {
            let s = index[still];
            if new[s].is_some() {
                motion_of.insert(s, i);
            }
        }
    }
    let followers: HashSet<usize> = motion_of.values().copied().collect();
    let mut slots: Vec<Option<Item>> = new;
    let mut ordered = Vec::new();
    for i in 0..slots.len() {
        if followers.contains(&i) {
            continue;
        }
        if let Some(item) = slots[i].take() {
            ordered.push(item);
            if let Some(m) = motion_of.get(&i) {
                if let Some(motion) = slots[*m].take() {
                    ordered.push(motion);
                }
            }
        }
    }
    ordered
}

/// The files only in iCloud that the selection takes. They are never read, so all
/// that is known of them comes from the library.
fn selected_cloud_only(cloud_only: Vec<Entry>, filter: &Filter) -> Vec<Entry> {
    cloud_only
        .into_iter()
        .filter(|e| {
            let (categories, date) = known_before_reading(e, false);
            filter.admits(&Known {
                categories: &categories,
                date,
                read: true,
                library: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterArgs;

    fn entry(path: &str, size: u64, mtime: i64) -> Entry {
        Entry::new(path, size, mtime)
    }

    fn paths(p: &Plan) -> Vec<&str> {
        p.to_copy.iter().map(|i| i.entry.path.as_str()).collect()
    }

    #[test]
    fn seen_files_are_skipped_and_changed_ones_are_not() {
        let seen: HashSet<_> = [("a".to_string(), 1, 10), ("b".to_string(), 2, 20)].into();
        let listing = Listing {
            entries: vec![
                entry("a", 1, 10),
                entry("b", 3, 20),
                entry("b2", 2, 20),
                entry("a", 1, 11),
            ],
            ..Listing::default()
        };
        let p = plan(listing, &seen, &Filter::default());
        assert_eq!(p.already_backed_up, 1);
        let left: Vec<_> = p
            .to_copy
            .iter()
            .map(|i| (i.entry.path.as_str(), i.entry.size, i.entry.mtime))
            .collect();
        assert_eq!(left, [("b", 3, 20), ("b2", 2, 20), ("a", 1, 11)]);
        assert_eq!(p.bytes_to_copy(), 6);
    }

    #[test]
    fn live_pairs_travel_together_behind_their_still() {
        let listing = Listing {
            entries: vec![
                entry("DCIM/100APPLE/IMG_0002.MOV", 5, 1),
                entry("DCIM/100APPLE/IMG_0001.JPG", 1, 1),
                entry("DCIM/100APPLE/IMG_0002.HEIC", 2, 1),
                entry("DCIM/100APPLE/IMG_0004.MOV", 3, 1),
            ],
            ..Listing::default()
        };
        let p = plan(listing, &HashSet::new(), &Filter::default());
        assert_eq!(
            paths(&p),
            [
                "DCIM/100APPLE/IMG_0001.JPG",
                "DCIM/100APPLE/IMG_0002.HEIC",
                "DCIM/100APPLE/IMG_0002.MOV",
                "DCIM/100APPLE/IMG_0004.MOV"
            ]
        );
        assert_eq!(
            p.to_copy[2].live,
            Some(Live::Motion {
                still: "DCIM/100APPLE/IMG_0002.HEIC".into()
            })
        );
        assert_eq!(p.to_copy[3].live, None);

        // `--only photo` takes a Live Photo whole, and leaves the plain video.
        let only_photos = Filter::from_args(&FilterArgs {
            only: vec!["photo".into()],
            ..FilterArgs::default()
        })
        .unwrap();
        let listing = Listing {
            entries: vec![
                entry("DCIM/100APPLE/IMG_0002.HEIC", 2, 1),
                entry("DCIM/100APPLE/IMG_0002.MOV", 5, 1),
                entry("DCIM/100APPLE/IMG_0004.MOV", 3, 1),
            ],
            ..Listing::default()
        };
        let p = plan(listing, &HashSet::new(), &only_photos);
        assert_eq!(
            paths(&p),
            ["DCIM/100APPLE/IMG_0002.HEIC", "DCIM/100APPLE/IMG_0002.MOV"]
        );
        assert_eq!(p.filtered, 1);
    }

    #[test]
    fn cloud_only_files_are_reported_not_copied() {
        let mut e = entry("DCIM/100APPLE/IMG_0009.HEIC", 10, 1);
        e.facts.in_library = true;
        e.facts.cloud_only = true;
        let mut absent = entry("DCIM/100APPLE/IMG_0010.MOV", 0, 1);
        absent.facts = e.facts.clone();
        absent.facts.is_video = true;
        let listing = Listing {
            entries: vec![e, entry("DCIM/100APPLE/IMG_0001.JPG", 1, 1)],
            cloud_only: vec![absent],
            ..Listing::default()
        };
        let p = plan(listing, &HashSet::new(), &Filter::default());
        assert_eq!(paths(&p), ["DCIM/100APPLE/IMG_0001.JPG"]);
        let cloud: Vec<_> = p.cloud_only.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            cloud,
            ["DCIM/100APPLE/IMG_0009.HEIC", "DCIM/100APPLE/IMG_0010.MOV"]
        );
    }
}
