//! Selections: `--only`, `--exclude`, `--since`, `--until`, `--album`, `--favorites`.
//!
//! A selection is decided twice. At plan time, before a byte is read, only the name,
//! the folder, the device's library and a first guess of the date are known: a file is
//! left out then only when it is *certainly* outside the selection. After the copy the
//! content, the metadata and the true capture date are known, and the selection is
//! decided again, for good. A file left out at either point is not recorded as backed
//! up, so that a later run without the filter copies it.

use jiff::civil::{Date, DateTime};
use jiff::ToSpan;

use crate::media::{Categories, Category, Examined, Tag};

/// Which files a backup or an export takes. Files left out are not marked as backed
/// up: a later run without the filter copies them.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct FilterArgs {
    /// Only these categories or tags, a comma list: photo (Live Photos included),
    /// video, screenshot, screen-recording, raw, live, other; edited, burst, selfie,
    /// slo-mo, time-lapse, panorama, messaging, download, favorite, hidden, album:NAME.
    #[arg(long, value_name = "CATS", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Leave out these categories or tags (same words as --only).
    #[arg(long, value_name = "CATS", value_delimiter = ',')]
    pub exclude: Vec<String>,

    /// Taken on or after DATE: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM (the local
    /// time of the shot).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    /// Taken on or before DATE (the whole year, month or day it names).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,

    /// Only files in this album of the phone's library (iPhone). May be repeated.
    #[arg(long, value_name = "NAME")]
    pub album: Vec<String>,

    /// Only the phone's favourites (iPhone).
    #[arg(long)]
    pub favorites: bool,
}

/// One word of `--only`/`--exclude`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    /// `photo`: a still photo, Live Photos included (a Live Photo is a photo that moves).
    Photo,
    Primary(Category),
    Tag(Tag),
}

impl Term {
    fn parse(word: &str) -> Option<Term> {
        let word = word.trim();
        if let Some(album) = word
            .strip_prefix("album:")
            .or_else(|| word.strip_prefix("Album:"))
        {
            return (!album.is_empty()).then(|| Term::Tag(Tag::Album(album.to_string())));
        }
        let lower = word.to_ascii_lowercase();
        let canonical = match lower.as_str() {
            "favourite" | "favourites" | "favorites" => "favorite",
            "slomo" | "slow-motion" | "slowmo" => "slo-mo",
            "timelapse" => "time-lapse",
            "screenrecording" | "screen-recordings" | "screenrecordings" => "screen-recording",
            "raws" => "raw",
            other => other,
        };
        let singular = canonical.strip_suffix('s').unwrap_or(canonical);
        for w in [canonical, singular] {
            if w == "photo" {
                return Some(Term::Photo);
            }
            if let Some(c) = Category::parse(w) {
                return Some(Term::Primary(c));
            }
            if let Some(t) = Tag::parse(w).filter(|t| !matches!(t, Tag::Album(_))) {
                return Some(Term::Tag(t));
            }
        }
        None
    }

    fn matches(&self, c: &Categories) -> bool {
        match self {
            Term::Photo => matches!(c.primary, Category::Photo | Category::Live),
            Term::Primary(p) => c.primary == *p,
            Term::Tag(Tag::Album(name)) => has_album(c, name),
            Term::Tag(t) => c.tags.contains(t),
        }
    }

    /// Whether reading the file could make this term match when its name and the
    /// device's library do not: the content decides what a file of unknown extension
    /// is, an Android motion photo may have any name, and the lens is in the EXIF.
    fn content_may_reveal(&self, c: &Categories, library: bool) -> bool {
        if c.primary == Category::Other {
            return !matches!(self, Term::Tag(_));
        }
        match self {
            Term::Tag(Tag::Selfie) => true,
            Term::Primary(Category::Live) => !library && c.primary == Category::Photo,
            _ => false,
        }
    }
}

fn has_album(c: &Categories, name: &str) -> bool {
    c.tags.iter().any(|t| match t {
        Tag::Album(a) => a.eq_ignore_ascii_case(name),
        _ => false,
    })
}

/// How well a capture date is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateKnown {
    /// The true capture date (read from the file, or the library's own record).
    Exact(DateTime),
    /// Within a day of this (a date in the file name: EXIF may say otherwise, and
    /// zones shift a name's UTC time).
    Near(DateTime),
    /// Taken at most a day after this (the file's modification time: a file is written
    /// after the shot, or copied later, never before).
    NotAfter(DateTime),
}

/// What is known of a file when the selection is decided.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    pub categories: &'a Categories,
    pub date: DateKnown,
    /// The file has been read: its categories are final.
    pub read: bool,
    /// The device's library described it (its tags and kind are the library's).
    pub library: bool,
}

/// A parsed selection. The default selects everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    only: Vec<Term>,
    exclude: Vec<Term>,
    since: Option<DateTime>,
    /// Exclusive: `--until 2024` ends before 2025-01-01T00:00.
    until: Option<DateTime>,
    albums: Vec<String>,
    favorites: bool,
}

/// The words `--only` and `--exclude` take, for error messages and help.
pub fn known_words() -> String {
    let mut words: Vec<String> = Category::ALL.iter().map(|c| c.as_str().into()).collect();
    words.extend(Tag::FIXED.iter().map(Tag::name));
    words.push("album:NAME".into());
    words.join(", ")
}

impl Filter {
    /// Parses the command line's filter flags. The error names the bad value and
    /// what is accepted.
    pub fn from_args(a: &FilterArgs) -> Result<Filter, String> {
        let terms = |flag: &str, words: &[String]| -> Result<Vec<Term>, String> {
            words
                .iter()
                .filter(|w| !w.trim().is_empty())
                .map(|w| {
                    Term::parse(w).ok_or_else(|| {
                        format!(
                            "--{flag} {w:?}: not a category or tag; use {}",
                            known_words()
                        )
                    })
                })
                .collect()
        };
        let since = match &a.since {
            Some(s) => Some(period(s).map_err(|e| format!("--since {s:?}: {e}"))?.0),
            None => None,
        };
        let until = match &a.until {
            Some(s) => Some(period(s).map_err(|e| format!("--until {s:?}: {e}"))?.1),
            None => None,
        };
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(format!(
                    "--since {} is after --until {}: nothing could match",
                    a.since.as_deref().unwrap_or_default(),
                    a.until.as_deref().unwrap_or_default()
                ));
            }
        }
        Ok(Filter {
            only: terms("only", &a.only)?,
            exclude: terms("exclude", &a.exclude)?,
            since,
            until,
            albums: a.album.clone(),
            favorites: a.favorites,
        })
    }

    /// Narrows the selection to files taken before `cutoff` (the local time of the
    /// shot, exclusive): `free-up --older-than`, on top of `--until` if both are given.
    pub fn taken_before(mut self, cutoff: DateTime) -> Filter {
        self.until = Some(self.until.map_or(cutoff, |u| u.min(cutoff)));
        self
    }

    /// True when the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.only.is_empty()
            && self.exclude.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.albums.is_empty()
            && !self.favorites
    }

    /// False when the file is certainly outside the selection, given what is known;
    /// true when it is in, or may be (then it is read and decided again with
    /// `read` set and the exact date).
    pub fn admits(&self, k: &Known) -> bool {
        let c = k.categories;
        if !self.only.is_empty()
            && !self.only.iter().any(|t| t.matches(c))
            && (k.read || !self.only.iter().any(|t| t.content_may_reveal(c, k.library)))
        {
            return false;
        }
        if self.exclude.iter().any(|t| t.matches(c)) {
            return false;
        }
        if !self.albums.is_empty() && !self.albums.iter().any(|a| has_album(c, a)) {
            return false;
        }
        if self.favorites && !c.tags.contains(&Tag::Favorite) {
            return false;
        }
        self.date_admits(k.date)
    }

    /// The decision, for good, on a file that has been read: its categories and its
    /// capture date are those `examined` found; `library` as [`Known::library`] says.
    pub fn admits_read(&self, examined: &Examined, library: bool) -> bool {
        self.admits(&Known {
            categories: &examined.categories,
            date: DateKnown::Exact(examined.date.local),
            read: true,
            library,
        })
    }

    fn date_admits(&self, date: DateKnown) -> bool {
        let day = |d: DateTime, sign: i64| d.checked_add((sign * 24).hours()).unwrap_or(d);
        let after_since = |d: DateTime| self.since.is_none_or(|s| d >= s);
        let before_until = |d: DateTime| self.until.is_none_or(|u| d < u);
        match date {
            DateKnown::Exact(d) => after_since(d) && before_until(d),
            DateKnown::Near(d) => after_since(day(d, 1)) && before_until(day(d, -1)),
            // Only "too old" is certain: the shot may be any time before the mtime.
            DateKnown::NotAfter(d) => after_since(day(d, 1)),
        }
    }
}

/// An age on the command line (`90d`, `2w`, `3months`, `6mo`, `1y`, `48h`, `1 year`)
/// as the local time that long before `now`: a shot taken before it is that old. The
/// error names what is accepted; a negative age is refused.
pub fn age_cutoff(text: &str, now: &jiff::Zoned) -> Result<DateTime, String> {
    let like = "like 90d, 2w, 3months, 6mo or 1y";
    let span: jiff::Span = text
        .trim()
        .parse()
        .map_err(|_| format!("not an age ({like})"))?;
    if span.is_negative() {
        return Err(format!("an age cannot be negative ({like})"));
    }
    let then = now
        .checked_sub(span)
        .map_err(|e| format!("too far back ({e}); use an age {like}"))?;
    Ok(then.datetime())
}

/// A date on the command line as the period it names: `2024` is the year,
/// `2024-06` the month, `2024-06-01` the day, `2024-06-01T10:30` the minute (and
/// with seconds, the second). Returns its start and its (exclusive) end, local time.
pub fn period(text: &str) -> Result<(DateTime, DateTime), String> {
    let bad = || {
        "use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (local time of the shot)"
            .to_string()
    };
    let t = text.trim();
    let num = |s: &str| s.parse::<i16>().map_err(|_| bad());
    let parts: Vec<&str> = t.splitn(2, ['T', ' ']).collect();
    let ymd: Vec<&str> = parts[0].split('-').collect();
    let (y, m, d) = match ymd.as_slice() {
        [y] if y.len() == 4 => (num(y)?, None, None),
        [y, m] if y.len() == 4 => (num(y)?, Some(num(m)? as i8), None),
        [y, m, d] if y.len() == 4 => (num(y)?, Some(num(m)? as i8), Some(num(d)? as i8)),
        _ => return Err(bad()),
    };
    let start_date = Date::new(y, m.unwrap_or(1), d.unwrap_or(1)).map_err(|e| e.to_string())?;
    let start = start_date.to_datetime(jiff::civil::Time::midnight());
    let span = match (m, d, parts.get(1)) {
        (None, _, None) => 1.year(),
        (Some(_), None, None) => 1.month(),
        (Some(_), Some(_), None) => 1.day(),
        (Some(_), Some(_), Some(time)) => {
            let hms: Vec<&str> = time.split(':').collect();
            let n = |s: &str| s.parse::<i8>().map_err(|_| bad());
            let (h, mi, s, unit) = match hms.as_slice() {
                [h, mi] => (n(h)?, n(mi)?, 0, 1.minute()),
                [h, mi, s] => (n(h)?, n(mi)?, n(s)?, 1.second()),
                _ => return Err(bad()),
            };
            let at = jiff::civil::Time::new(h, mi, s, 0).map_err(|e| e.to_string())?;
            let start = start_date.to_datetime(at);
            let end = start.checked_add(unit).map_err(|e| e.to_string())?;
            return Ok((start, end));
        }
        _ => return Err(bad()),
    };
    let end = start.checked_add(span).map_err(|e| e.to_string())?;
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use std::collections::BTreeSet;

    fn cats(primary: Category, tags: &[Tag]) -> Categories {
        Categories {
            primary,
            tags: tags.iter().cloned().collect::<BTreeSet<_>>(),
        }
    }

    fn args(only: &[&str], exclude: &[&str]) -> FilterArgs {
        FilterArgs {
            only: only.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..FilterArgs::default()
        }
    }

    fn read(c: &Categories, d: DateTime) -> Known<'_> {
        Known {
            categories: c,
            date: DateKnown::Exact(d),
            read: true,
            library: false,
        }
    }

    #[test]
    fn periods() {
        let at = |y, m, d, h, mi, s| date(y, m, d).at(h, mi, s, 0);
        assert_eq!(
            period("2024").unwrap(),
            (at(2024, 1, 1, 0, 0, 0), at(2025, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            period("2024-02").unwrap(),
            (at(2024, 2, 1, 0, 0, 0), at(2024, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            period("2024-02-29").unwrap(),
            (at(2024, 2, 29, 0, 0, 0), at(2024, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            period("2024-06-01T10:30").unwrap(),
            (at(2024, 6, 1, 10, 30, 0), at(2024, 6, 1, 10, 31, 0))
        );
        for bad in ["24", "2024-13", "2023-02-29", "yesterday", "2024/01/01", ""] {
            assert!(period(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ages() {
        let now: jiff::Zoned = "2026-03-31T12:00[Europe/Paris]".parse().unwrap();
        let at = |y, m, d, h| date(y, m, d).at(h, 0, 0, 0);
        for (text, want) in [
            ("90d", at(2025, 12, 31, 12)),
            ("2w", at(2026, 3, 17, 12)),
            ("3months", at(2025, 12, 31, 12)),
            ("3 months", at(2025, 12, 31, 12)),
            ("1month", at(2026, 2, 28, 12)),
            ("6mo", at(2025, 9, 30, 12)),
            ("1y", at(2025, 3, 31, 12)),
            ("2years", at(2024, 3, 31, 12)),
            ("48h", at(2026, 3, 29, 12)),
        ] {
            assert_eq!(age_cutoff(text, &now), Ok(want), "{text}");
        }
        for bad in ["soon", "", "-3d", "3 fortnights", "90"] {
            let e = age_cutoff(bad, &now).unwrap_err();
            assert!(e.contains("like 90d"), "{bad}: {e}");
        }
        let f = Filter::default().taken_before(at(2025, 1, 1, 0));
        let photo = cats(Category::Photo, &[]);
        assert!(f.admits(&read(&photo, at(2024, 12, 31, 23))));
        assert!(!f.admits(&read(&photo, at(2025, 1, 1, 0))));
        // With --until too, the earlier bound holds.
        let until = Filter::from_args(&FilterArgs {
            until: Some("2023".into()),
            ..FilterArgs::default()
        })
        .unwrap()
        .taken_before(at(2025, 1, 1, 0));
        assert!(!until.admits(&read(&photo, at(2024, 6, 1, 0))));
        assert!(until.admits(&read(&photo, at(2023, 6, 1, 0))));
    }

    #[test]
    fn words_and_plurals() {
        let f = Filter::from_args(&args(
            &["Photos", "videos", "favourites", "album:Trip"],
            &[],
        ))
        .unwrap();
        assert_eq!(
            f.only,
            [
                Term::Photo,
                Term::Primary(Category::Video),
                Term::Tag(Tag::Favorite),
                Term::Tag(Tag::Album("Trip".into()))
            ]
        );
        let e = Filter::from_args(&args(&["pictures"], &[])).unwrap_err();
        assert!(
            e.contains("pictures") && e.contains("screen-recording"),
            "{e}"
        );
        assert!(Filter::from_args(&FilterArgs::default())
            .unwrap()
            .is_empty());
        let bad = FilterArgs {
            since: Some("2024-06".into()),
            until: Some("2024-05".into()),
            ..FilterArgs::default()
        };
        assert!(Filter::from_args(&bad).is_err());
    }

    #[test]
    fn categories_tags_albums_and_favorites() {
        let d = date(2024, 6, 1).at(12, 0, 0, 0);
        let live_fav = cats(Category::Live, &[Tag::Favorite, Tag::Album("Trip".into())]);
        let video = cats(Category::Video, &[Tag::SloMo]);
        let shot = cats(Category::Screenshot, &[]);
        let f = Filter::from_args(&args(&["photo"], &[])).unwrap();
        assert!(f.admits(&read(&live_fav, d)));
        assert!(!f.admits(&read(&video, d)));
        assert!(!f.admits(&read(&shot, d)));
        let f = Filter::from_args(&args(&["video", "screenshot"], &["slo-mo"])).unwrap();
        assert!(!f.admits(&read(&video, d)));
        assert!(f.admits(&read(&shot, d)));
        let f = Filter::from_args(&FilterArgs {
            album: vec!["trip".into()],
            favorites: true,
            ..FilterArgs::default()
        })
        .unwrap();
        assert!(f.admits(&read(&live_fav, d)));
        assert!(!f.admits(&read(&video, d)));
    }

    #[test]
    fn before_reading_only_the_certain_is_left_out() {
        let d = date(2024, 6, 1).at(12, 0, 0, 0);
        let photo = cats(Category::Photo, &[]);
        let unknown = cats(Category::Other, &[]);
        let plan = |c, date| Known {
            categories: c,
            date,
            read: false,
            library: false,
        };
        // The lens is in the EXIF: a photo may be a selfie; a JPEG may be a motion photo.
        let selfies = Filter::from_args(&args(&["selfie"], &[])).unwrap();
        assert!(selfies.admits(&plan(&photo, DateKnown::Exact(d))));
        assert!(!selfies.admits(&read(&photo, d)));
        let live = Filter::from_args(&args(&["live"], &[])).unwrap();
        assert!(live.admits(&plan(&photo, DateKnown::Exact(d))));
        let library_photo = Known {
            library: true,
            ..plan(&photo, DateKnown::Exact(d))
        };
        assert!(!live.admits(&library_photo));
        // Unknown extension: the content will tell.
        let videos = Filter::from_args(&args(&["video"], &[])).unwrap();
        assert!(videos.admits(&plan(&unknown, DateKnown::Exact(d))));
        assert!(!videos.admits(&plan(&photo, DateKnown::Exact(d))));

        let june = Filter::from_args(&FilterArgs {
            since: Some("2024-06".into()),
            until: Some("2024-06".into()),
            ..FilterArgs::default()
        })
        .unwrap();
        let may31 = date(2024, 5, 31).at(23, 0, 0, 0);
        let may1 = date(2024, 5, 1).at(0, 0, 0, 0);
        let july = date(2024, 7, 20).at(0, 0, 0, 0);
        assert!(!june.admits(&read(&photo, may31)));
        assert!(june.admits(&plan(&photo, DateKnown::Near(may31))));
        assert!(!june.admits(&plan(&photo, DateKnown::Near(may1))));
        assert!(!june.admits(&plan(&photo, DateKnown::Near(july))));
        // An mtime in July may belong to a June shot; one in early May may not.
        assert!(june.admits(&plan(&photo, DateKnown::NotAfter(july))));
        assert!(!june.admits(&plan(&photo, DateKnown::NotAfter(may1))));
    }
}
