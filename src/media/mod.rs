//! What a file is and when it was taken: category and capture date.
//!
//! - [`capture_date`]: EXIF DateTimeOriginal, else the container's creation time, else a
//!   date in the file name, else the source's mtime. Always gives an answer.
//! - [`classify`]: one primary category (photo, video, screenshot, screen-recording, raw,
//!   live, other) and any tags (edited, burst, selfie, slo-mo, time-lapse, panorama,
//!   messaging, download, favorite, hidden, album:NAME), from the content first, then the
//!   device's library, the platform's folder and name patterns and the metadata.
//! - [`examine`]: both for a file that has been read, from one parse of its metadata.

mod category;
pub mod convert;
mod meta;
mod name_date;
mod rules;

use std::path::Path;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Capture dates outside these years are taken as unset or broken clocks.
const MIN_YEAR: i16 = 1990;
const MAX_YEAR: i16 = 2100;

/// Where a capture date came from, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateSource {
    Exif,
    QuickTime,
    FileName,
    Mtime,
}

impl DateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DateSource::Exif => "exif",
            DateSource::QuickTime => "quicktime",
            DateSource::FileName => "filename",
            DateSource::Mtime => "mtime",
        }
    }
}

/// The local wall-clock time of the shot, and how it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureDate {
    pub local: jiff::civil::DateTime,
    pub source: DateSource,
}

/// Primary category of a file: what it is, one per file.
///
/// A Live Photo (an iPhone still and its `.MOV`, or an Android motion photo) is `Live`,
/// both halves alike, so that a layout by `{category}` keeps the pair in one folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Photo,
    Video,
    Screenshot,
    ScreenRecording,
    Raw,
    Live,
    Other,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Photo,
        Category::Video,
        Category::Screenshot,
        Category::ScreenRecording,
        Category::Raw,
        Category::Live,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Photo => "photo",
            Category::Video => "video",
            Category::Screenshot => "screenshot",
            Category::ScreenRecording => "screen-recording",
            Category::Raw => "raw",
            Category::Live => "live",
            Category::Other => "other",
        }
    }

    /// The category named `name` (as [`Category::as_str`] spells it).
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// Something else true of a file besides its primary category; any number per file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    /// An edited render (iPhone `IMG_E0001.JPG`, `FullSizeRender.jpg`, Android `*-edited`).
    Edited,
    /// One frame of a burst.
    Burst,
    /// Taken with the front camera.
    Selfie,
    SloMo,
    TimeLapse,
    Panorama,
    /// Received or sent through WhatsApp, Telegram or Signal.
    Messaging,
    /// Saved from a browser or app into a Download folder.
    Download,
    /// Marked as a favourite in the phone's library.
    Favorite,
    /// In the phone's Hidden album.
    Hidden,
    /// In this album of the phone's library.
    Album(String),
}

impl Tag {
    /// Every tag but albums, for help texts and parsing.
    pub const FIXED: [Tag; 10] = [
        Tag::Edited,
        Tag::Burst,
        Tag::Selfie,
        Tag::SloMo,
        Tag::TimeLapse,
        Tag::Panorama,
        Tag::Messaging,
        Tag::Download,
        Tag::Favorite,
        Tag::Hidden,
    ];

    /// The tag as stored in the catalog and written on the command line:
    /// `slo-mo`, `album:Holidays 2024`.
    pub fn name(&self) -> String {
        match self {
            Tag::Album(a) => format!("album:{a}"),
            fixed => fixed.fixed_name().to_string(),
        }
    }

    fn fixed_name(&self) -> &'static str {
        match self {
            Tag::Edited => "edited",
            Tag::Burst => "burst",
            Tag::Selfie => "selfie",
            Tag::SloMo => "slo-mo",
            Tag::TimeLapse => "time-lapse",
            Tag::Panorama => "panorama",
            Tag::Messaging => "messaging",
            Tag::Download => "download",
            Tag::Favorite => "favorite",
            Tag::Hidden => "hidden",
            Tag::Album(_) => "album",
        }
    }

    /// The tag named `name` ([`Tag::name`]'s spelling); `album:` keeps the rest verbatim.
    pub fn parse(name: &str) -> Option<Tag> {
        if let Some(album) = name.strip_prefix("album:") {
            return (!album.is_empty()).then(|| Tag::Album(album.to_string()));
        }
        Tag::FIXED.into_iter().find(|t| t.fixed_name() == name)
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A file's primary category and its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Categories {
    pub primary: Category,
    pub tags: std::collections::BTreeSet<Tag>,
}

impl Categories {
    /// Tag names, sorted, as stored in the catalog.
    pub fn tag_names(&self) -> Vec<String> {
        self.tags.iter().map(Tag::name).collect()
    }
}

/// Everything known about a file when it is categorised. Before it is read only the
/// path and what the device said are known; after the copy, its first bytes and
/// the camera's lens too.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clues<'a> {
    /// Path on the source, `/`-separated (folders and name both count).
    pub path: &'a str,
    /// Up to the first 64 KiB of content; `None` before the file is read.
    pub head: Option<&'a [u8]>,
    /// EXIF LensModel (or the camera model), when the file has been read.
    pub lens: Option<&'a str>,
    /// What the device's own library says the file is (iPhone: Photos.sqlite).
    pub device_kind: Option<Category>,
    /// Tags the device's library gives it.
    pub device_tags: &'a [Tag],
    /// Half of a Live Photo pair (a still and a `.MOV` with one stem in one folder).
    pub live_pair: bool,
}

/// Primary category and tags from every clue there is. Content decides what a file
/// is (never the extension alone); the device's library, the platform's folder and
/// name patterns and the metadata refine it.
pub fn classify(clues: &Clues) -> Categories {
    category::classify(clues)
}

/// True when a lens or camera model names the front camera
/// ("iPhone 12 front camera 2.71mm f/2.2").
pub fn is_front_camera(lens: &str) -> bool {
    rules::is_front_camera(lens)
}

/// True when `head` starts a HEIF/HEIC still image (what `--convert-heic` converts).
pub fn is_heif(head: &[u8]) -> bool {
    category::is_heif(head)
}

/// Live Photo pairs among the paths of one listing: a still (HEIC, HEIF, JPEG) and a
/// QuickTime `.MOV` with the same stem (any case) in the same folder, as an iPhone
/// stores them. Returns (still index, motion index) pairs, each path in one pair at most.
pub fn live_pairs<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<(usize, usize)> {
    const STILLS: &[&str] = &["heic", "heif", "jpg", "jpeg"];
    let mut stills: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut motions: Vec<(String, usize)> = Vec::new();
    for (i, p) in paths.into_iter().enumerate() {
        let Some((stem, ext)) = p.rsplit_once('.') else {
            continue;
        };
        let (ext, key) = (ext.to_ascii_lowercase(), stem.to_lowercase());
        if STILLS.contains(&ext.as_str()) {
            stills.entry(key).or_insert(i);
        } else if ext == "mov" {
            motions.push((key, i));
        }
    }
    let mut pairs: Vec<(usize, usize)> = motions
        .into_iter()
        .filter_map(|(key, m)| stills.get(&key).map(|s| (*s, m)))
        .collect();
    pairs.sort();
    pairs
}

/// Capture date of the local file `path` (the copy being made), whose name on the
/// source is `name` and whose source mtime is `mtime` (Unix seconds). Local times are
/// those of the computer's time zone (`TZ` is honoured).
pub fn capture_date(path: &Path, name: &str, mtime: i64) -> CaptureDate {
    capture_date_in(path, name, mtime, &TimeZone::system())
}

/// [`capture_date`] with an explicit local time zone, used for the times that are UTC
/// (QuickTime, Pixel file names, mtime).
pub fn capture_date_in(path: &Path, name: &str, mtime: i64, tz: &TimeZone) -> CaptureDate {
    inspect_in(path, name, mtime, tz).date
}

/// What reading a file's metadata tells: its capture date (always an answer, as
/// [`capture_date`] gives it) and the lens that took it, if the file says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inspected {
    date: CaptureDate,
    lens: Option<String>,
}

/// [`capture_date`] and the lens, from one parse of the file.
fn inspect(path: &Path, name: &str, mtime: i64) -> Inspected {
    inspect_in(path, name, mtime, &TimeZone::system())
}

/// What a file is and when it was taken, once it has been read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Examined {
    pub date: CaptureDate,
    pub categories: Categories,
}

/// Dates and categorises the local file `path` (a copy, or a stored file) from one
/// parse of its metadata: its capture date as [`capture_date`] gives it (`name` and
/// `mtime` are the source's), and its categories from `clues` with the lens the file
/// names (any lens in `clues` is replaced by the file's own, or none).
pub fn examine(path: &Path, name: &str, mtime: i64, clues: Clues) -> Examined {
    let found = inspect(path, name, mtime);
    let categories = classify(&Clues {
        lens: found.lens.as_deref(),
        ..clues
    });
    Examined {
        date: found.date,
        categories,
    }
}

fn inspect_in(path: &Path, name: &str, mtime: i64, tz: &TimeZone) -> Inspected {
    let found = meta::read(path, tz);
    let date = found
        .date
        .unwrap_or_else(|| date_before_reading_in(name, mtime, tz));
    Inspected {
        date,
        lens: found.lens,
    }
}

/// The capture date as far as it can be told without reading the file: a date in its
/// name, else its mtime (in the computer's zone).
pub fn date_before_reading(name: &str, mtime: i64) -> CaptureDate {
    date_before_reading_in(name, mtime, &TimeZone::system())
}

fn date_before_reading_in(name: &str, mtime: i64, tz: &TimeZone) -> CaptureDate {
    if let Some(local) = name_date::date_from_name_in(name, tz) {
        return CaptureDate {
            local,
            source: DateSource::FileName,
        };
    }
    let instant = Timestamp::from_second(mtime).unwrap_or(Timestamp::UNIX_EPOCH);
    CaptureDate {
        local: instant.to_zoned(tz.clone()).datetime(),
        source: DateSource::Mtime,
    }
}

/// The modification time a copy of a file keeps: the source's `mtime` (Unix seconds),
/// as `cp -p` and `rsync -a` keep it; where the source gives none (0 or less), the
/// capture `date` in the computer's zone. `None` when neither is known (the date is
/// only that missing mtime): the copy then keeps the time it was written.
pub fn copy_time(mtime: i64, date: &CaptureDate) -> Option<std::time::SystemTime> {
    let seconds = if mtime > 0 {
        mtime
    } else if date.source == DateSource::Mtime {
        return None;
    } else {
        date.local
            .to_zoned(TimeZone::system())
            .ok()?
            .timestamp()
            .as_second()
    };
    let after_epoch = std::time::Duration::from_secs(u64::try_from(seconds).ok()?);
    std::time::SystemTime::UNIX_EPOCH.checked_add(after_epoch)
}

/// Gives the file at `path` (a copy not yet synced) the time [`copy_time`] says. Best
/// effort: a filesystem that refuses is logged, and the copy keeps the time it was
/// written; its content is what matters.
pub fn keep_copy_time(path: &Path, mtime: i64, date: &CaptureDate) {
    let Some(when) = copy_time(mtime, date) else {
        return;
    };
    // The times of a file we own can be set through a read-only descriptor.
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.set_modified(when)) {
        tracing::warn!("{}: its modification time was not set: {e}", path.display());
    }
}

/// Primary category from the source path (`/`-separated) and up to the first 64 KiB of
/// content (may be empty: then the name decides), with no device facts. Content
/// decides; the extension breaks ties.
#[cfg(test)]
pub fn categorize(source_path: &str, head: &[u8]) -> Category {
    classify(&Clues {
        path: source_path,
        head: Some(head),
        ..Clues::default()
    })
    .primary
}

#[cfg(test)]
mod tests;
