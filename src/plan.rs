//! Planning: which listed files need copying. Joins a source's listing with what the
//! catalog has seen from that source, so that a file backed up before is skipped
//! without reading a byte of it.

use std::collections::HashSet;

use crate::source::{Entry, Listing, Skipped};

/// What one source's run will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Files to read and copy, in listing order.
    pub to_copy: Vec<Entry>,
    /// Files whose (path, size, mtime) were backed up before.
    pub already_backed_up: u64,
    /// Left out by rule, with the reason.
    pub skipped: Vec<Skipped>,
    /// Could not even be listed: reported as failures.
    pub unreadable: Vec<Skipped>,
}

impl Plan {
    pub fn bytes_to_copy(&self) -> u64 {
        self.to_copy.iter().map(|e| e.size).sum()
    }
}

/// Splits `listing` into what is new and what was seen before. A file whose size or
/// mtime changed since is new again: its content is read, and stored if it is new.
pub fn plan(listing: Listing, seen: &HashSet<(String, u64, i64)>) -> Plan {
    let mut p = Plan {
        skipped: listing.skipped,
        unreadable: listing.unreadable,
        ..Plan::default()
    };
    for e in listing.entries {
        // The lookup key borrows nothing from the set's owned strings, so build it once.
        if seen.contains(&(e.path.clone(), e.size, e.mtime)) {
            p.already_backed_up += 1;
        } else {
            p.to_copy.push(e);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            size,
            mtime,
        }
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
        let p = plan(listing, &seen);
        assert_eq!(p.already_backed_up, 1);
        let left: Vec<_> = p
            .to_copy
            .iter()
            .map(|e| (e.path.as_str(), e.size, e.mtime))
            .collect();
        assert_eq!(left, [("b", 3, 20), ("b2", 2, 20), ("a", 1, 11)]);
        assert_eq!(p.bytes_to_copy(), 6);
    }
}
