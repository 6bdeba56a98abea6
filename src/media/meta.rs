//! Capture dates from inside files: EXIF (JPEG, HEIC/HEIF, TIFF raws, CR3, PNG, WebP)
//! and container creation times (QuickTime/MP4/3GP, Matroska/WebM), read with `nom-exif`.
//!
//! Files come from phones and are untrusted. Guards:
//! - every read goes through [`Budget`], which ends the input after [`READ_BUDGET`] bytes
//!   whatever sizes the file claims, so a hostile box cannot make the parser read (and keep)
//!   gigabytes;
//! - the parse runs under `catch_unwind`: a panic in the parser means "no date", not a crash;
//! - a fresh `MediaParser` per file, so a parser left half-way by a panic is never reused.
//!
//! `nom-exif` may still *reserve* address space from a declared size before reading
//! (at most 1 GiB, its own cap); that memory is never touched, so it costs no RAM.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use nom_exif::{
    EntryValue, Exif, ExifIter, ExifTag, MediaParser, MediaSource, TrackInfo, TrackInfoTag,
};

use super::{CaptureDate, DateSource};

/// Most bytes read from one file for its metadata. Real metadata is a few MB at most
/// (the `moov` of an hour of 4K video is ~10 MB); seeks over media data cost nothing.
const READ_BUDGET: u64 = 32 << 20;
/// Largest EXIF block accepted from a PNG or WebP chunk.
const MAX_EXIF_CHUNK: u64 = 4 << 20;
/// Most PNG/RIFF chunks walked looking for EXIF.
const MAX_CHUNKS: usize = 100_000;

/// What the file's own metadata says.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub date: Option<CaptureDate>,
    /// EXIF LensModel, else the camera Model (phones name the front camera in either).
    pub lens: Option<String>,
}

/// The capture date and lens stored in the file, as far as they can be read.
pub(super) fn read(path: &Path, tz: &TimeZone) -> Found {
    catch_unwind(AssertUnwindSafe(|| read_inner(path, tz)))
        .ok()
        .flatten()
        .unwrap_or_default()
}

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

fn read_inner(path: &Path, tz: &TimeZone) -> Option<Found> {
    let mut file = File::open(path).ok()?;
    let mut magic = [0u8; 12];
    let n = read_full(&mut file, &mut magic).ok()?;
    file.rewind().ok()?;
    let magic = &magic[..n];
    let mut file = Budget::new(file, READ_BUDGET);
    // nom-exif reads EXIF from PNG and WebP only once it is handed the TIFF block.
    let reader: Box<dyn ReadSeek> = if magic.starts_with(b"\x89PNG\r\n\x1A\n") {
        Box::new(Cursor::new(png_exif(&mut file)?))
    } else if magic.starts_with(b"RIFF") && magic.get(8..12) == Some(b"WEBP") {
        Box::new(Cursor::new(webp_exif(&mut file)?))
    } else {
        Box::new(file)
    };
    let source = MediaSource::seekable(reader).ok()?;
    if source.has_exif() {
        exif_found(source)
    } else if source.has_track() {
        Some(Found {
            date: track_date(source, tz),
            lens: None,
        })
    } else {
        None
    }
}

/// EXIF DateTimeOriginal and the lens, from one parse.
fn exif_found(source: MediaSource<Box<dyn ReadSeek>>) -> Option<Found> {
    let iter: ExifIter = MediaParser::new().parse(source).ok()?;
    let exif: Exif = iter.into();
    let text = |tag| match exif.get(tag) {
        Some(EntryValue::Text(t)) => Some(t.trim_matches(['\0', ' ']).to_string()),
        _ => None,
    };
    let lens = text(ExifTag::LensModel)
        .filter(|t| !t.is_empty())
        .or_else(|| text(ExifTag::Model).filter(|t| !t.is_empty()));
    Some(Found {
        date: exif_date(&exif),
        lens,
    })
}

/// EXIF DateTimeOriginal, as the local wall-clock time it states (OffsetTimeOriginal,
/// when present, only says which zone that was).
fn exif_date(exif: &Exif) -> Option<CaptureDate> {
    let local = match exif.get(ExifTag::DateTimeOriginal)? {
        EntryValue::Text(text) => exif_text(text)?,
        value => {
            let (naive, _offset) = value.as_time_components()?;
            // The naive value's fields, read through a Unix timestamp taken "as if UTC".
            Timestamp::from_second(naive.and_utc().timestamp())
                .ok()?
                .to_zoned(TimeZone::UTC)
                .datetime()
        }
    };
    plausible(local).then_some(CaptureDate {
        local,
        source: DateSource::Exif,
    })
}

/// `YYYY:MM:DD HH:MM:SS` when the parser left the value as text.
fn exif_text(text: &str) -> Option<DateTime> {
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |a, &c| {
            c.is_ascii_digit().then(|| a * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() < 19 || b[4] != b':' || b[7] != b':' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    super::name_date::build(
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

/// Container creation time. A UTC time (`mvhd`, Matroska `DateUTC`) becomes the local
/// time of `tz`. Apple's `com.apple.quicktime.creationdate` carries the phone's own
/// offset: like EXIF, its wall-clock time is kept as written, so that a Live Photo's
/// video lands beside its photo whatever zone the computer is in. (An Apple date at
/// +00:00 cannot be told from UTC and is shown in `tz`; the instant is right either way.)
fn track_date(source: MediaSource<Box<dyn ReadSeek>>, tz: &TimeZone) -> Option<CaptureDate> {
    let info: TrackInfo = MediaParser::new().parse(source).ok()?;
    let EntryValue::Time(time) = info.get(TrackInfoTag::CreateDate)? else {
        return None;
    };
    let instant = Timestamp::from_second(time.timestamp()).ok()?;
    // "Not set": the 1904 (QuickTime), 1970 (Unix) and 2001 (Matroska) epochs.
    if [-2_082_844_800, 0, 978_307_200].contains(&instant.as_second()) {
        return None;
    }
    let offset_seconds = time.offset().local_minus_utc();
    let local = if offset_seconds == 0 {
        instant.to_zoned(tz.clone()).datetime()
    } else {
        let offset = Offset::from_seconds(offset_seconds).ok()?;
        offset.to_datetime(instant)
    };
    plausible(local).then_some(CaptureDate {
        local,
        source: DateSource::QuickTime,
    })
}

fn plausible(local: DateTime) -> bool {
    (super::MIN_YEAR..=super::MAX_YEAR).contains(&local.year())
}

/// The TIFF bytes of a PNG `eXIf` chunk.
fn png_exif<R: Read + Seek>(r: &mut R) -> Option<Vec<u8>> {
    r.seek(SeekFrom::Start(8)).ok()?;
    for _ in 0..MAX_CHUNKS {
        let mut header = [0u8; 8];
        r.read_exact(&mut header).ok()?;
        let len = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        match &header[4..8] {
            b"eXIf" => return exif_chunk(r, len),
            b"IEND" => return None,
            _ => {
                r.seek(SeekFrom::Current(i64::try_from(len).ok()? + 4))
                    .ok()?;
            }
        }
    }
    None
}

/// The TIFF bytes of a WebP `EXIF` chunk.
fn webp_exif<R: Read + Seek>(r: &mut R) -> Option<Vec<u8>> {
    r.seek(SeekFrom::Start(12)).ok()?;
    for _ in 0..MAX_CHUNKS {
        let mut header = [0u8; 8];
        r.read_exact(&mut header).ok()?;
        let len = u64::from(u32::from_le_bytes([
            header[4], header[5], header[6], header[7],
        ]));
        if &header[..4] == b"EXIF" {
            return exif_chunk(r, len);
        }
        r.seek(SeekFrom::Current(i64::try_from(len + (len & 1)).ok()?))
            .ok()?;
    }
    None
}

fn exif_chunk<R: Read>(r: &mut R, len: u64) -> Option<Vec<u8>> {
    if len > MAX_EXIF_CHUNK {
        return None;
    }
    let mut data = Vec::new();
    r.take(len).read_to_end(&mut data).ok()?;
    // Some writers keep the JPEG APP1 prefix.
    if data.starts_with(b"Exif\0\0") {
        data.drain(..6);
    }
    Some(data)
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A reader that ends (reads 0 bytes) once it has given out its budget. Seeking is free.
struct Budget<R> {
    inner: R,
    left: u64,
}

impl<R> Budget<R> {
    fn new(inner: R, left: u64) -> Self {
        Budget { inner, left }
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_ends_the_input() {
        let mut r = Budget::new(Cursor::new(vec![7u8; 1000]), 100);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 100);
        // Seeking is free, reading stays over.
        r.seek(SeekFrom::Start(0)).unwrap();
        assert_eq!(r.read(&mut [0u8; 10]).unwrap(), 0);
    }

    #[test]
    fn exif_text_values() {
        let want = jiff::civil::date(2024, 1, 31).at(23, 59, 59, 0);
        assert_eq!(exif_text("2024:01:31 23:59:59"), Some(want));
        assert_eq!(exif_text(" 2024:01:31 23:59:59\0"), Some(want));
        assert_eq!(exif_text("0000:00:00 00:00:00"), None);
        assert_eq!(exif_text("2024:02:30 10:00:00"), None);
        assert_eq!(exif_text("2024-01-31"), None);
        assert_eq!(exif_text(""), None);
    }
}
