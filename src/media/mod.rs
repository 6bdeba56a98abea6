//! What a file is and when it was taken: category and capture date.
//!
//! - [`capture_date`]: EXIF DateTimeOriginal, else the container's creation time, else a
//!   date in the file name, else the source's mtime. Always gives an answer.
//! - [`categorize`]: photo, video, screenshot, raw or other, from the content first.

mod category;
mod meta;
mod name_date;

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

/// Primary category of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Photo,
    Video,
    Screenshot,
    Raw,
    Other,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Photo => "photo",
            Category::Video => "video",
            Category::Screenshot => "screenshot",
            Category::Raw => "raw",
            Category::Other => "other",
        }
    }
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
    if let Some(found) = meta::read(path, tz) {
        return found;
    }
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

/// Category from the source path (`/`-separated) and up to the first 64 KiB of content
/// (may be empty: then the name decides). Content decides; the extension breaks ties.
pub fn categorize(source_path: &str, head: &[u8]) -> Category {
    category::categorize(source_path, head)
}

#[cfg(test)]
mod tests;
