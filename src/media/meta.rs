//! Capture dates from inside files: EXIF (JPEG, HEIC/HEIF, TIFF raws, CR3, PNG, WebP)
//! and container creation times (QuickTime/MP4/3GP, Matroska/WebM), read with `nom-exif`.
//!
//! Files come from phones and are untrusted. Guards:
//! - every read goes through [`Budget`], which ends the input after [`READ_BUDGET`] bytes
//!   whatever sizes the file claims, so a hostile box cannot make the parser read (and keep)
//!   gigabytes, and after [`READ_TIME`], so that no structure can keep it busy for long;
//! - the parser starts again from the top of its buffer each time it needs more bytes,
//!   so a file of many tiny parts costs it time quadratic in the file's size (a 6 MB JPEG
//!   of 4-byte APP segments: minutes). The parts it would walk are walked here first, in
//!   one linear pass capped at [`MAX_SEGMENTS`] JPEG segments or [`MAX_BOXES`] top-level
//!   boxes: a JPEG hands the parser only its EXIF segment, an ISO-BMFF file (HEIC, MOV,
//!   MP4) has the boxes before its `meta`/`moov` shown as one `free` box. Past a cap the
//!   file has no metadata date, and the next rule dates it;
//! - the parse runs under `catch_unwind`: a panic in the parser means "no date", not a crash;
//! - a fresh `MediaParser` per file, so a parser left half-way by a panic is never reused.
//!
//! `nom-exif` may still *reserve* address space from a declared size before reading
//! (at most 1 GiB, its own cap); that memory is never touched, so it costs no RAM.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

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
/// Most JPEG segments walked looking for the EXIF one. Cameras and phones write a few
/// dozen before the image data (the most: an ICC profile or extended XMP split into
/// 64 KiB pieces); a file with more is taken as having no EXIF.
pub(super) const MAX_SEGMENTS: usize = 4096;
/// Most top-level ISO-BMFF boxes walked looking for `meta` or `moov`. Real files have
/// a handful (`ftyp`, `wide`, `free`, `mdat`, `moov`, `meta`, `uuid`).
pub(super) const MAX_BOXES: usize = 4096;
/// Longest the reading of one file's metadata may go on: then its input ends. Real
/// files take milliseconds; this is the net under every structure not walked here first
/// (Matroska, TIFF raws, CR3).
const READ_TIME: Duration = Duration::from_secs(3);
/// Read-ahead of a walk: a few tiny parts per read, and little read for nothing when
/// the parts are large and their bodies are skipped (the reads count against the budget).
const WALK_BUFFER: usize = 1 << 10;
/// Bytes looked at to tell the file's format.
const HEAD: usize = 128;

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
    let mut head = [0u8; HEAD];
    let n = read_full(&mut file, &mut head).ok()?;
    file.rewind().ok()?;
    let magic = &head[..n];
    let mut file = Budget::new(file, READ_BUDGET, READ_TIME);
    // nom-exif reads EXIF from PNG and WebP only once it is handed the TIFF block.
    let reader: Box<dyn ReadSeek> = if magic.starts_with(b"\x89PNG\r\n\x1A\n") {
        Box::new(Cursor::new(png_exif(&mut file)?))
    } else if magic.starts_with(b"RIFF") && magic.get(8..12) == Some(b"WEBP") {
        Box::new(Cursor::new(webp_exif(&mut file)?))
    } else if magic.starts_with(b"\xFF\xD8") {
        let walked = jpeg_exif(&mut file);
        log_walk(path, "JPEG segments", &walked);
        Box::new(Cursor::new(exif_only_jpeg(walked.found?)))
    } else if magic.get(4..8) == Some(b"ftyp") {
        // HEIF keeps its EXIF through `meta`, video its dates in `moov`; a Canon CR3 is
        // read by nom-exif's own walk of its `moov`.
        let want = match (magic.get(8..12), MediaSource::seekable(Cursor::new(magic))) {
            (Some(b"crx "), _) => *b"moov",
            (_, Ok(s)) if s.has_exif() => *b"meta",
            _ => *b"moov",
        };
        let walked = bmff_find(&mut file, &want);
        log_walk(path, "top-level boxes", &walked);
        let (first_end, at) = walked.found?;
        file.rewind().ok()?;
        Box::new(Overlay::free_box(file, first_end, at)?)
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

/// What a walk over a file's parts found, and how far it went.
#[derive(Debug, PartialEq, Eq)]
struct Walked<T> {
    found: Option<T>,
    /// Parts (segments, boxes) looked at.
    walked: usize,
    /// True when the walk stopped at its cap, not at the end of the parts.
    gave_up: bool,
}

impl<T> Walked<T> {
    fn found(found: T, walked: usize) -> Self {
        Walked {
            found: Some(found),
            walked,
            gave_up: false,
        }
    }

    fn absent(walked: usize) -> Self {
        Walked {
            found: None,
            walked,
            gave_up: false,
        }
    }

    fn gave_up(walked: usize) -> Self {
        Walked {
            found: None,
            walked,
            gave_up: true,
        }
    }
}

/// How far a walk went, for `-v` and for tests that bound the work done on a file.
fn log_walk<T>(path: &Path, what: &str, w: &Walked<T>) {
    let outcome = match (&w.found, w.gave_up) {
        (Some(_), _) => "found",
        (None, true) => "gave up",
        (None, false) => "not there",
    };
    tracing::debug!(
        "metadata walk: {} {what} walked in {}: {outcome}",
        w.walked,
        path.display()
    );
}

/// The payload (from its `Exif\0\0` header on) of a JPEG's EXIF APP1 segment, walking
/// the segments from the start of the file to the image data, at most [`MAX_SEGMENTS`].
/// Segment payloads are skipped, not read: the work is linear in the segments walked.
fn jpeg_exif<R: Read + Seek>(r: &mut R) -> Walked<Vec<u8>> {
    let mut r = io::BufReader::with_capacity(WALK_BUFFER, r);
    let mut walked = 0;
    let mut soi = [0u8; 2];
    if r.read_exact(&mut soi).is_err() || soi != [0xFF, 0xD8] {
        return Walked::absent(0);
    }
    loop {
        if walked == MAX_SEGMENTS {
            return Walked::gave_up(walked);
        }
        let Some(code) = jpeg_marker(&mut r) else {
            return Walked::absent(walked);
        };
        walked += 1;
        match code {
            // Markers without a payload.
            0xD8 | 0xD0..=0xD7 | 0x01 => continue,
            // End of image, start of the image data: EXIF comes before either.
            0xD9 | 0xDA => return Walked::absent(walked),
            _ => {}
        }
        let mut len = [0u8; 2];
        if r.read_exact(&mut len).is_err() {
            return Walked::absent(walked);
        }
        let Some(payload) = u16::from_be_bytes(len).checked_sub(2) else {
            return Walked::absent(walked);
        };
        let mut skip = i64::from(payload);
        if code == 0xE1 && payload >= 6 {
            let mut ident = [0u8; 6];
            if r.read_exact(&mut ident).is_err() {
                return Walked::absent(walked);
            }
            if &ident == b"Exif\0\0" {
                let mut data = ident.to_vec();
                return match r.take(u64::from(payload) - 6).read_to_end(&mut data) {
                    Ok(_) if data.len() == usize::from(payload) => Walked::found(data, walked),
                    _ => Walked::absent(walked),
                };
            }
            skip -= 6;
        }
        if r.seek_relative(skip).is_err() {
            return Walked::absent(walked);
        }
    }
}

/// The code of the next JPEG marker: `0xFF`, any fill bytes (`0xFF`), the code.
/// `None` at the end of the input or where no marker is.
fn jpeg_marker<R: Read>(r: &mut R) -> Option<u8> {
    /// Fill bytes allowed before a marker: a few in real files.
    const MAX_FILL: usize = 1 << 16;
    let mut b = [0u8];
    r.read_exact(&mut b).ok()?;
    if b[0] != 0xFF {
        return None;
    }
    for _ in 0..MAX_FILL {
        r.read_exact(&mut b).ok()?;
        match b[0] {
            0xFF => {}
            0x00 => return None,
            code => return Some(code),
        }
    }
    None
}

/// A JPEG made of only the EXIF APP1 segment `payload` (as [`jpeg_exif`] gives it), for
/// the parser to read the EXIF from without walking the rest of the file.
fn exif_only_jpeg(payload: Vec<u8>) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 2).expect("a segment's payload fits its length");
    let mut jpeg = Vec::with_capacity(payload.len() + 8 + HEAD);
    jpeg.extend_from_slice(b"\xFF\xD8\xFF\xE1");
    jpeg.extend_from_slice(&len.to_be_bytes());
    jpeg.extend(payload);
    jpeg.extend_from_slice(b"\xFF\xD9");
    // nom-exif takes its first bytes to tell the format, then fails unless more follow.
    jpeg.resize(jpeg.len() + HEAD, 0);
    jpeg
}

/// Where the top-level box `want` of an ISO-BMFF file starts, and where the first box
/// ends: `(first_end, start)`. Walks at most [`MAX_BOXES`] box headers, seeking over
/// the bodies. A size of 0 ("to the end of the file") or below 8 ends the walk.
fn bmff_find<R: Read + Seek>(r: &mut R, want: &[u8; 4]) -> Walked<(u64, u64)> {
    let mut r = io::BufReader::with_capacity(WALK_BUFFER, r);
    let (mut pos, mut first_end) = (0u64, 0u64);
    for walked in 0..MAX_BOXES {
        let mut header = [0u8; 8];
        if r.read_exact(&mut header).is_err() {
            return Walked::absent(walked);
        }
        let mut size = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let mut header_len = 8;
        if size == 1 {
            let mut large = [0u8; 8];
            if r.read_exact(&mut large).is_err() {
                return Walked::absent(walked + 1);
            }
            size = u64::from_be_bytes(large);
            header_len = 16;
        }
        if size < header_len {
            return Walked::absent(walked + 1);
        }
        if &header[4..8] == want {
            return Walked::found((first_end, pos), walked + 1);
        }
        let (Some(next), Ok(skip)) = (pos.checked_add(size), i64::try_from(size - header_len))
        else {
            return Walked::absent(walked + 1);
        };
        if walked == 0 {
            first_end = next;
        }
        if r.seek_relative(skip).is_err() {
            return Walked::absent(walked + 1);
        }
        pos = next;
    }
    Walked::gave_up(MAX_BOXES)
}

/// A reader that shows its inner reader with a few bytes replaced at one offset.
struct Overlay<R> {
    inner: R,
    at: u64,
    bytes: Vec<u8>,
    pos: u64,
}

impl<R: Read + Seek> Overlay<R> {
    /// `inner` (at its start) with the top-level boxes in `first_end..start` shown as one
    /// `free` box, so that a parser steps over them at once. Offsets into the file (a
    /// HEIF's item locations) are unchanged.
    fn free_box(inner: R, first_end: u64, start: u64) -> Option<Self> {
        let span = start.checked_sub(first_end)?;
        let bytes = match u32::try_from(span) {
            // Nothing between, or one box: nothing to gain.
            _ if span < 16 => Vec::new(),
            Ok(small) => [&small.to_be_bytes()[..], b"free"].concat(),
            Err(_) => [&1u32.to_be_bytes()[..], b"free", &span.to_be_bytes()].concat(),
        };
        Some(Overlay {
            inner,
            at: first_end,
            bytes,
            pos: 0,
        })
    }
}

impl<R: Read + Seek> Read for Overlay<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let end = self.at + self.bytes.len() as u64;
        let n = if self.pos >= self.at && self.pos < end {
            let from = &self.bytes[(self.pos - self.at) as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            self.inner.seek(SeekFrom::Current(n as i64))?;
            n
        } else {
            let max = if self.pos < self.at {
                usize::try_from(self.at - self.pos).unwrap_or(usize::MAX)
            } else {
                usize::MAX
            };
            let max = buf.len().min(max);
            self.inner.read(&mut buf[..max])?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Overlay<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = self.inner.seek(pos)?;
        Ok(self.pos)
    }
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

/// A reader that ends (reads 0 bytes) once it has given out its budget of bytes, or
/// once its time is up. Seeking is free.
struct Budget<R> {
    inner: R,
    left: u64,
    until: Instant,
}

impl<R> Budget<R> {
    fn new(inner: R, left: u64, time: Duration) -> Self {
        Budget {
            inner,
            left,
            until: Instant::now() + time,
        }
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left > 0 && Instant::now() >= self.until {
            tracing::debug!("metadata read stopped: its time is up");
            self.left = 0;
        }
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
        let mut r = Budget::new(Cursor::new(vec![7u8; 1000]), 100, Duration::from_secs(60));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 100);
        // Seeking is free, reading stays over.
        r.seek(SeekFrom::Start(0)).unwrap();
        assert_eq!(r.read(&mut [0u8; 10]).unwrap(), 0);
    }

    #[test]
    fn budget_ends_the_input_when_its_time_is_up() {
        let mut r = Budget::new(Cursor::new(vec![7u8; 1000]), 1000, Duration::ZERO);
        assert_eq!(r.read(&mut [0u8; 10]).unwrap(), 0);
    }

    fn segment(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, code];
        s.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    #[test]
    fn the_segment_walk_finds_the_exif_app1_past_others() {
        let exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
        let mut jpeg = b"\xFF\xD8".to_vec();
        jpeg.extend(segment(0xE0, b"JFIF\0\x01\x02"));
        // An APP1 that is not EXIF (XMP), one too short to tell, fill bytes, a marker
        // without a payload.
        jpeg.extend(segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x/>"));
        jpeg.extend(segment(0xE1, b"Ex"));
        jpeg.extend_from_slice(b"\xFF\xFF\xFF");
        jpeg.extend(segment(0xE2, &[0; 300]));
        jpeg.extend_from_slice(b"\xFF\xD0");
        jpeg.extend(segment(0xE1, &exif));
        jpeg.extend(segment(0xDA, b"\0\0"));
        let w = jpeg_exif(&mut Cursor::new(&jpeg));
        assert_eq!(w, Walked::found(exif.clone(), 6));
        let made = exif_only_jpeg(exif.clone());
        assert_eq!(jpeg_exif(&mut Cursor::new(&made)), Walked::found(exif, 1));
        assert!(
            made.len() > HEAD,
            "the parser needs more than its format probe"
        );
    }

    #[test]
    fn the_segment_walk_stops_at_the_image_data_at_damage_and_at_its_cap() {
        let mut jpeg = b"\xFF\xD8".to_vec();
        jpeg.extend(segment(0xE2, b"icc"));
        jpeg.extend(segment(0xDA, b"\0\0"));
        jpeg.extend(segment(0xE1, b"Exif\0\0MM"));
        assert_eq!(jpeg_exif(&mut Cursor::new(&jpeg)), Walked::absent(2));
        // A length running past the end, a length below 2, no marker, no JPEG.
        let cut = [
            &b"\xFF\xD8\xFF\xE1\x10\x00Exif\0\0"[..],
            b"\xFF\xD8\xFF\xE2\x00\x01",
        ];
        for bad in cut {
            assert_eq!(jpeg_exif(&mut Cursor::new(bad)).found, None, "{bad:?}");
        }
        assert_eq!(
            jpeg_exif(&mut Cursor::new(b"\xFF\xD8\x12\x34")),
            Walked::absent(0)
        );
        assert_eq!(jpeg_exif(&mut Cursor::new(b"GIF89a")), Walked::absent(0));
        // Tiny segments past the cap: given up after exactly MAX_SEGMENTS, whatever follows.
        let mut bomb = b"\xFF\xD8".to_vec();
        for _ in 0..MAX_SEGMENTS {
            bomb.extend(segment(0xE3, b""));
        }
        let mut after = bomb.clone();
        after.extend(segment(0xE1, b"Exif\0\0MM\0\x2a\0\0\0\x08"));
        assert_eq!(
            jpeg_exif(&mut Cursor::new(&after)),
            Walked::gave_up(MAX_SEGMENTS)
        );
        // One fewer, and the EXIF is found.
        let mut within = b"\xFF\xD8".to_vec();
        for _ in 0..MAX_SEGMENTS - 1 {
            within.extend(segment(0xE3, b""));
        }
        within.extend(segment(0xE1, b"Exif\0\0MM\0\x2a\0\0\0\x08"));
        let w = jpeg_exif(&mut Cursor::new(&within));
        assert!(w.found.is_some() && w.walked == MAX_SEGMENTS, "{w:?}");
    }

    fn bmff_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = u32::try_from(body.len() + 8)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn the_box_walk_finds_the_box_and_shows_the_ones_before_as_one() {
        let mut file = bmff_box(b"ftyp", b"heic\0\0\0\0mif1heic");
        let first_end = file.len() as u64;
        for _ in 0..10 {
            file.extend(bmff_box(b"free", b""));
        }
        // A 64-bit size.
        file.extend_from_slice(&1u32.to_be_bytes());
        file.extend_from_slice(b"skip");
        file.extend_from_slice(&20u64.to_be_bytes());
        file.extend_from_slice(&[9; 4]);
        let at = file.len() as u64;
        file.extend(bmff_box(b"meta", b"body"));
        let w = bmff_find(&mut Cursor::new(&file), b"meta");
        assert_eq!(w, Walked::found((first_end, at), 13));

        // The overlay shows one box over the same span, and nothing else changed.
        let mut shown = Vec::new();
        let mut o = Overlay::free_box(Cursor::new(&file), first_end, at).unwrap();
        o.read_to_end(&mut shown).unwrap();
        assert_eq!(shown.len(), file.len());
        assert_eq!(shown[..first_end as usize], file[..first_end as usize]);
        assert_eq!(shown[at as usize..], file[at as usize..]);
        let w = bmff_find(&mut Cursor::new(&shown), b"meta");
        assert_eq!(w, Walked::found((first_end, at), 3));
        // Reads from anywhere, in small pieces.
        o.seek(SeekFrom::Start(first_end + 2)).unwrap();
        let mut two = [0u8; 2];
        o.read_exact(&mut two).unwrap();
        assert_eq!(&two, &shown[first_end as usize + 2..first_end as usize + 4]);

        // Not there, broken sizes, past the cap.
        assert_eq!(bmff_find(&mut Cursor::new(&file), b"moov").found, None);
        let mut zero = bmff_box(b"ftyp", b"qt  ");
        zero.extend_from_slice(b"\0\0\0\0moov");
        assert_eq!(bmff_find(&mut Cursor::new(&zero), b"moov").found, None);
        let mut bomb = bmff_box(b"ftyp", b"qt  ");
        for _ in 0..MAX_BOXES {
            bomb.extend(bmff_box(b"free", b""));
        }
        bomb.extend(bmff_box(b"moov", b""));
        assert_eq!(
            bmff_find(&mut Cursor::new(&bomb), b"moov"),
            Walked::gave_up(MAX_BOXES)
        );
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
