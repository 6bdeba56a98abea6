//! What a file is and when it was taken: category and capture date.
//!
//! (Interface first; the readers land with the media module.)

use std::path::Path;

use serde::{Deserialize, Serialize};

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
/// source is `name` and whose source mtime is `mtime` (Unix seconds).
pub fn capture_date(_path: &Path, _name: &str, _mtime: i64) -> CaptureDate {
    todo!()
}

/// Category from the source path and the first bytes of the content.
pub fn categorize(_source_path: &str, _head: &[u8]) -> Category {
    todo!()
}
