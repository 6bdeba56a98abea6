//! Sample camera rolls: valid JPEG, PNG, MP4 and MOV files with known capture dates,
//! written deterministically from a seed.
//!
//! Each file is small real media (a 64×48 image, a movie header) padded with seeded
//! bytes up to the size asked for: after the JPEG's EOI (readers ignore trailing data,
//! as in motion photos), in a private PNG chunk, or in the MP4's `mdat`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::SystemTime;

use jiff::civil::{date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::media::{Category, DateSource};

const WIDTH: u16 = 64;
const HEIGHT: u16 = 48;
/// Seconds from 1904-01-01 (QuickTime's epoch) to 1970-01-01.
const QT_EPOCH_OFFSET: i64 = 2_082_844_800;
/// Padding is written in pieces of this size, so that a large file never sits in memory.
const CHUNK: usize = 1 << 16;

/// One generated file and what a backup should find out about it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RollFile {
    /// Relative to the roll's folder, `/`-separated.
    pub path: String,
    /// The capture date `crate::media::capture_date` must give, in the zone of the
    /// process that generated the roll (`TZ` is honoured).
    pub local: DateTime,
    pub date_source: DateSource,
    pub category: Category,
    /// Tags a backup must find (`favorite`, `album:Summer 2024`, `slo-mo`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// False for files a backup must skip: hidden files and the trash.
    pub stored: bool,
}

/// Seeded bytes: the same seed always gives the same stream.
fn stream(seed: u64) -> blake3::OutputReader {
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
}

/// Writes `n` seeded bytes from `bytes`.
fn pad<W: Write>(w: &mut W, bytes: &mut blake3::OutputReader, mut n: u64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    while n > 0 {
        let k = n.min(CHUNK as u64) as usize;
        bytes.fill(&mut buf[..k]);
        w.write_all(&buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// A seed per file of a roll, so that neighbouring rolls and files never share bytes.
fn mix(seed: u64, index: u64) -> u64 {
    let mut out = [0u8; 8];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .update(&index.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    u64::from_le_bytes(out)
}

// ---------------------------------------------------------------------------------------
// JPEG

/// A valid baseline JPEG (64×48, colours from `seed`) with an EXIF block (Make, Model and,
/// when `date` is given, DateTimeOriginal, plus OffsetTimeOriginal such as `"+02:00"`
/// when `offset` is given), then seeded bytes after EOI up to `size` bytes in all (never
/// less than the image itself).
#[cfg(test)]
pub fn jpeg(date: Option<DateTime>, offset: Option<&str>, seed: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    write_jpeg(&mut out, date, offset, seed, size as u64).expect("writing to memory");
    out
}

/// [`jpeg`] into a writer; returns the bytes written.
pub fn write_jpeg<W: Write>(
    w: &mut W,
    date: Option<DateTime>,
    offset: Option<&str>,
    seed: u64,
    size: u64,
) -> io::Result<u64> {
    write_jpeg_with_lens(w, date, offset, None, seed, size)
}

/// [`write_jpeg`] with an EXIF LensModel (`"iPhone 12 front camera 2.71mm f/2.2"`).
pub fn write_jpeg_with_lens<W: Write>(
    w: &mut W,
    date: Option<DateTime>,
    offset: Option<&str>,
    lens: Option<&str>,
    seed: u64,
    size: u64,
) -> io::Result<u64> {
    let mut bytes = stream(seed);
    let image = encode_jpeg(&mut bytes, &[exif_app1(date, offset, lens)]);
    w.write_all(&image)?;
    let padding = size.saturating_sub(image.len() as u64);
    pad(w, &mut bytes, padding)?;
    Ok(image.len() as u64 + padding)
}

/// Encodes the 64×48 picture with the given APP1 segments.
fn encode_jpeg(bytes: &mut blake3::OutputReader, app1: &[Vec<u8>]) -> Vec<u8> {
    let mut colours = [0u8; 6];
    bytes.fill(&mut colours);
    let mut noise = vec![0u8; 48];
    bytes.fill(&mut noise);
    let (w, h) = (usize::from(WIDTH), usize::from(HEIGHT));
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let t = ((x + y) * 255 / (w + h - 2)) as u16;
            let block = noise[(y / 8) * (w / 8) + x / 8];
            for c in 0..3 {
                let (a, b) = (u16::from(colours[c]), u16::from(colours[c + 3]));
                let v = (a * (255 - t) + b * t) / 255;
                pixels.push((v as u8).wrapping_add(block / 4));
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
    for segment in app1 {
        encoder
            .add_app_segment(1, segment)
            .expect("APP1 segment fits");
    }
    encoder
        .encode(&pixels, WIDTH, HEIGHT, jpeg_encoder::ColorType::Rgb)
        .expect("a 64x48 RGB image encodes");
    out
}

/// One IFD entry: tag, type, count, value bytes (little-endian).
type Entry = (u16, u16, u32, Vec<u8>);

const ASCII: u16 = 2;
const SHORT: u16 = 3;
const LONG: u16 = 4;
const UNDEFINED: u16 = 7;

fn ascii(tag: u16, text: &str) -> Entry {
    let mut v = text.as_bytes().to_vec();
    v.push(0);
    (tag, ASCII, v.len() as u32, v)
}

/// Encodes an IFD that starts at `start` in the TIFF block: entries, next-IFD offset 0,
/// then the values too long to sit in their entry.
fn ifd(start: u32, entries: &[Entry]) -> Vec<u8> {
    let mut head = (entries.len() as u16).to_le_bytes().to_vec();
    let mut data = Vec::new();
    let data_start = start + 2 + 12 * entries.len() as u32 + 4;
    for (tag, kind, count, value) in entries {
        head.extend_from_slice(&tag.to_le_bytes());
        head.extend_from_slice(&kind.to_le_bytes());
        head.extend_from_slice(&count.to_le_bytes());
        if value.len() <= 4 {
            let mut inline = [0u8; 4];
            inline[..value.len()].copy_from_slice(value);
            head.extend_from_slice(&inline);
        } else {
            head.extend_from_slice(&(data_start + data.len() as u32).to_le_bytes());
            data.extend_from_slice(value);
            if data.len() % 2 == 1 {
                data.push(0);
            }
        }
    }
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&data);
    head
}

/// The APP1 payload: `Exif\0\0`, a little-endian TIFF header, IFD0 (Make, Model,
/// Orientation, pointer to the Exif IFD) and the Exif IFD (ExifVersion, DateTimeOriginal,
/// OffsetTimeOriginal, LensModel).
fn exif_app1(date: Option<DateTime>, offset: Option<&str>, lens: Option<&str>) -> Vec<u8> {
    let ifd0 = |exif_at: u32| -> Vec<Entry> {
        vec![
            ascii(0x010F, "offload"),
            ascii(0x0110, "Sample Camera"),
            (0x0112, SHORT, 1, 1u16.to_le_bytes().to_vec()),
            (0x8769, LONG, 1, exif_at.to_le_bytes().to_vec()),
        ]
    };
    let mut exif: Vec<Entry> = vec![(0x9000, UNDEFINED, 4, b"0232".to_vec())];
    if let Some(date) = date {
        exif.push(ascii(
            0x9003,
            &date.strftime("%Y:%m:%d %H:%M:%S").to_string(),
        ));
    }
    if let Some(offset) = offset {
        exif.push(ascii(0x9011, offset));
    }
    // Tags in ascending order, as TIFF wants them.
    if let Some(lens) = lens {
        exif.push(ascii(0xA434, lens));
    }
    let exif_at = 8 + ifd(8, &ifd0(0)).len() as u32;
    let mut out = b"Exif\0\0II\x2A\0\x08\0\0\0".to_vec();
    out.extend_from_slice(&ifd(8, &ifd0(exif_at)));
    out.extend_from_slice(&ifd(exif_at, &exif));
    out
}

// ---------------------------------------------------------------------------------------
// PNG

/// A valid PNG (a 64×48 "screenshot", colours from `seed`), padded to `size` bytes with a
/// private ancillary chunk `ofFl` of seeded bytes.
pub fn png(seed: u64, size: usize) -> Vec<u8> {
    let mut bytes = stream(seed);
    let (w, h) = (u32::from(WIDTH), u32::from(HEIGHT));
    let mut colours = [0u8; 6];
    bytes.fill(&mut colours);
    let mut pixels = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            // A status bar and a page, like a phone screen.
            let c = if y < 6 { &colours[..3] } else { &colours[3..] };
            pixels.extend(c.iter().map(|v| v.wrapping_add((x / 16) as u8)));
        }
    }
    let mut filler = Vec::new();
    let encode = |filler: &[u8]| -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = ::png::Encoder::new(&mut out, w, h);
        encoder.set_color(::png::ColorType::Rgb);
        encoder.set_depth(::png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("PNG header");
        writer.write_image_data(&pixels).expect("PNG data");
        if !filler.is_empty() {
            writer
                .write_chunk(::png::chunk::ChunkType(*b"ofFl"), filler)
                .expect("PNG chunk");
        }
        writer.finish().expect("PNG end");
        out
    };
    let bare = encode(&[]);
    // A chunk costs 12 bytes besides its data.
    if size >= bare.len() + 12 {
        filler.resize(size - bare.len() - 12, 0);
        bytes.fill(&mut filler);
        encode(&filler)
    } else {
        bare
    }
}

// ---------------------------------------------------------------------------------------
// MP4 / MOV

/// An ISO-BMFF movie: `ftyp` (`isom`, or `qt  ` when `quicktime`), `moov` with `mvhd`
/// (creation and modification time `created_utc`) and one video `trak`, and an `mdat` of
/// seeded bytes so that the file is `size` bytes (never less than its headers). A MOV has
/// its `moov` after the `mdat`, as an iPhone writes it; an MP4 has it first.
pub fn mp4(created_utc: Timestamp, seed: u64, size: usize, quicktime: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    write_mp4(&mut out, created_utc, seed, size as u64, quicktime).expect("writing to memory");
    out
}

/// [`mp4`] into a writer, streaming the `mdat`; returns the bytes written.
pub fn write_mp4<W: Write>(
    w: &mut W,
    created_utc: Timestamp,
    seed: u64,
    size: u64,
    quicktime: bool,
) -> io::Result<u64> {
    let ftyp = if quicktime {
        boxed(b"ftyp", &[b"qt  ", &[0, 0, 0, 0][..], b"qt  "].concat())
    } else {
        boxed(
            b"ftyp",
            &[
                b"isom",
                &[0, 0, 2, 0][..],
                b"isom",
                b"iso2",
                b"avc1",
                b"mp41",
            ]
            .concat(),
        )
    };
    let wide = if quicktime {
        boxed(b"wide", &[])
    } else {
        vec![]
    };
    let duration_ms = 1000 + (seed % 9000) as u32;
    let moov = moov(created_utc, duration_ms);
    let fixed = (ftyp.len() + wide.len() + moov.len()) as u64;
    let mut payload = size.saturating_sub(fixed + 8);
    let mdat_header = if payload + 8 <= u64::from(u32::MAX) {
        [&(payload as u32 + 8).to_be_bytes()[..], b"mdat"].concat()
    } else {
        payload = size.saturating_sub(fixed + 16);
        [
            &1u32.to_be_bytes()[..],
            b"mdat",
            &(payload + 16).to_be_bytes(),
        ]
        .concat()
    };
    let mut bytes = stream(seed);
    w.write_all(&ftyp)?;
    if quicktime {
        w.write_all(&wide)?;
        w.write_all(&mdat_header)?;
        pad(w, &mut bytes, payload)?;
        w.write_all(&moov)?;
    } else {
        w.write_all(&moov)?;
        w.write_all(&mdat_header)?;
        pad(w, &mut bytes, payload)?;
    }
    Ok(fixed + mdat_header.len() as u64 + payload)
}

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// A full box: version 0 and `flags`.
fn full(kind: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
    boxed(kind, &[&flags.to_be_bytes()[..], body].concat())
}

fn moov(created_utc: Timestamp, duration_ms: u32) -> Vec<u8> {
    // Version 0 holds times up to 2040-02-06; later ones are left unset (0).
    let time = u32::try_from(created_utc.as_second() + QT_EPOCH_OFFSET).unwrap_or(0);
    let be = |v: u32| v.to_be_bytes();
    let matrix: Vec<u8> = [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let mvhd = full(
        b"mvhd",
        0,
        &[
            &be(time)[..],
            &be(time),
            &be(1000),
            &be(duration_ms),
            &be(0x0001_0000), // rate 1.0
            &[0x01, 0x00],    // volume 1.0
            &[0; 10],
            &matrix,
            &[0; 24],
            &be(2), // next track ID
        ]
        .concat(),
    );
    let tkhd = full(
        b"tkhd",
        3, // enabled, in movie
        &[
            &be(time)[..],
            &be(time),
            &be(1), // track ID
            &[0; 4],
            &be(duration_ms),
            &[0; 8],
            &[0; 8], // layer, alternate group, volume, reserved
            &matrix,
            &be(u32::from(WIDTH) << 16),
            &be(u32::from(HEIGHT) << 16),
        ]
        .concat(),
    );
    let mdhd = full(
        b"mdhd",
        0,
        &[
            &be(time)[..],
            &be(time),
            &be(1000),
            &be(duration_ms),
            &[0x55, 0xC4, 0, 0], // language "und"
        ]
        .concat(),
    );
    let hdlr = full(
        b"hdlr",
        0,
        &[&[0; 4][..], b"vide", &[0; 12], b"VideoHandler\0"].concat(),
    );
    let empty_table = |kind: &[u8; 4]| full(kind, 0, &be(0));
    let stbl = boxed(
        b"stbl",
        &[
            empty_table(b"stsd"),
            empty_table(b"stts"),
            empty_table(b"stsc"),
            full(b"stsz", 0, &[0; 8]),
            empty_table(b"stco"),
        ]
        .concat(),
    );
    let dinf = boxed(
        b"dinf",
        &full(b"dref", 0, &[&be(1)[..], &full(b"url ", 1, &[])].concat()),
    );
    let minf = boxed(b"minf", &[full(b"vmhd", 1, &[0; 8]), dinf, stbl].concat());
    let mdia = boxed(b"mdia", &[mdhd, hdlr, minf].concat());
    let trak = boxed(b"trak", &[tkhd, mdia].concat());
    boxed(b"moov", &[mvhd, trak].concat())
}

// ---------------------------------------------------------------------------------------
// Motion photo

/// A Pixel-style motion photo (`*.MP.jpg`): a JPEG with EXIF (DateTimeOriginal `date`) and
/// the Google Camera XMP that points at the video, followed by an MP4 (its creation time
/// is `date` read as UTC, or unset); `size` bytes in all (never less than both headers).
pub fn motion_photo(date: Option<DateTime>, seed: u64, size: usize) -> Vec<u8> {
    let xmp = |video_len: u64| -> Vec<u8> {
        format!(
            "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\
             <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\
             <rdf:Description rdf:about=\"\" \
             xmlns:GCamera=\"http://ns.google.com/photos/1.0/camera/\" \
             xmlns:Container=\"http://ns.google.com/photos/1.0/container/\" \
             xmlns:Item=\"http://ns.google.com/photos/1.0/container/item/\" \
             GCamera:MotionPhoto=\"1\" GCamera:MotionPhotoVersion=\"1\" \
             GCamera:MotionPhotoPresentationTimestampUs=\"0\">\
             <Container:Directory><rdf:Seq>\
             <rdf:li rdf:parseType=\"Resource\"><Container:Item Item:Mime=\"image/jpeg\" \
             Item:Semantic=\"Primary\" Item:Length=\"0\" Item:Padding=\"0\"/></rdf:li>\
             <rdf:li rdf:parseType=\"Resource\"><Container:Item Item:Mime=\"video/mp4\" \
             Item:Semantic=\"MotionPhoto\" Item:Length=\"{video_len:010}\" Item:Padding=\"0\"/>\
             </rdf:li></rdf:Seq></Container:Directory>\
             </rdf:Description></rdf:RDF></x:xmpmeta>"
        )
        .into_bytes()
    };
    let exif = exif_app1(date, None, None);
    // The XMP names the video's length, which depends on the JPEG's: the length field
    // has a fixed width, so one trial encoding gives the JPEG's final size.
    let jpeg_len = encode_jpeg(&mut stream(seed), &[exif.clone(), xmp(0)]).len();
    let created = date
        .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
        .map_or(Timestamp::UNIX_EPOCH, |z| z.timestamp());
    let video = mp4(created, mix(seed, 1), size.saturating_sub(jpeg_len), false);
    let mut out = encode_jpeg(&mut stream(seed), &[exif, xmp(video.len() as u64)]);
    debug_assert_eq!(out.len(), jpeg_len);
    out.extend_from_slice(&video);
    out
}

// ---------------------------------------------------------------------------------------
// Rolls

/// Creates `dir/rel` (and its folders) with what `write` writes, then sets its mtime.
fn put(
    dir: &Path,
    rel: &str,
    mtime: Timestamp,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<u64>,
) -> io::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    write(&mut w)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.set_modified(SystemTime::from(mtime))?;
    Ok(())
}

/// The instant of a local wall-clock time: at `offset` when known, else in `tz`.
fn instant(local: DateTime, offset: Option<&str>, tz: &TimeZone) -> Timestamp {
    let zone = offset
        .and_then(parse_offset)
        .map_or_else(|| tz.clone(), TimeZone::fixed);
    zone.to_ambiguous_zoned(local)
        .compatible()
        .expect("a date in range")
        .timestamp()
}

/// `+HH:MM` / `-HH:MM`, as in OffsetTimeOriginal.
fn parse_offset(text: &str) -> Option<Offset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = text.get(1..)?.split_once(':')?;
    let seconds = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    Offset::from_seconds(sign * seconds).ok()
}

fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> Timestamp {
    date(y, mo, d)
        .at(h, mi, s, 0)
        .to_zoned(TimeZone::UTC)
        .expect("a valid UTC time")
        .timestamp()
}

fn file(path: &str, local: DateTime, source: DateSource, category: Category) -> RollFile {
    RollFile {
        path: path.to_string(),
        local,
        date_source: source,
        category,
        tags: Vec::new(),
        stored: true,
    }
}

/// A small realistic roll (about 25 files, a few hundred KB each) as a phone or SD card
/// holds it: camera photos over several months of 2023–2024 (some with
/// OffsetTimeOriginal), a motion photo, a Pixel photo without EXIF date, screenshots,
/// MP4 and MOV videos, a WhatsApp image, a name clash (`IMG_0001.JPG` in two folders, same
/// month), a duplicate (same bytes, two names), a photo dated only by its mtime, and
/// files a backup must skip (`.nomedia`, `.thumbnails`, `.trashed-*`).
/// Returns what a backup should find for every file, in the system time zone.
pub fn demo_roll(dir: &Path) -> io::Result<Vec<RollFile>> {
    use Category::{Other, Photo, Screenshot, Video};
    use DateSource::{Exif, FileName, Mtime, QuickTime};
    let tz = TimeZone::system();
    let at = |y, mo, d, h, mi, s| date(y, mo, d).at(h, mi, s, 0);
    let mut roll = Vec::new();
    let mut seed = 0u64;
    let mut next_seed = || {
        seed += 1;
        mix(0xD3A0, seed)
    };

    // Camera photos with EXIF dates: (path, local time, OffsetTimeOriginal).
    let photos: &[(&str, DateTime, Option<&str>)] = &[
        (
            "DCIM/Camera/IMG_20230314_091502.jpg",
            at(2023, 3, 14, 9, 15, 2),
            Some("+01:00"),
        ),
        (
            "DCIM/Camera/IMG_20230314_091730.jpg",
            at(2023, 3, 14, 9, 17, 30),
            None,
        ),
        (
            "DCIM/Camera/IMG_20230702_183344.jpg",
            at(2023, 7, 2, 18, 33, 44),
            Some("+02:00"),
        ),
        (
            "DCIM/Camera/IMG_20230702_183410.jpg",
            at(2023, 7, 2, 18, 34, 10),
            None,
        ),
        (
            "DCIM/Camera/20231031_201500.jpg",
            at(2023, 10, 31, 20, 15, 0),
            Some("+01:00"),
        ),
        (
            "DCIM/Camera/IMG_20231224_190102.jpg",
            at(2023, 12, 24, 19, 1, 2),
            Some("-05:00"),
        ),
        (
            "DCIM/Camera/IMG_20240101_000512.jpg",
            at(2024, 1, 1, 0, 5, 12),
            Some("+01:00"),
        ),
        (
            "DCIM/Camera/IMG_20240412_090807.jpg",
            at(2024, 4, 12, 9, 8, 7),
            None,
        ),
        (
            "DCIM/Camera/IMG_20240825_160000.jpg",
            at(2024, 8, 25, 16, 0, 0),
            Some("+09:00"),
        ),
        // A clash: the same name in two folders, the same month, different photos.
        ("DCIM/Camera/IMG_0001.JPG", at(2024, 5, 3, 14, 0, 0), None),
        (
            "DCIM/100MEDIA/IMG_0001.JPG",
            at(2024, 5, 19, 10, 20, 30),
            None,
        ),
        (
            "DCIM/100MEDIA/IMG_0002.JPG",
            at(2024, 5, 19, 10, 21, 0),
            None,
        ),
    ];
    for &(path, local, offset) in photos {
        let s = next_seed();
        let size = 40_000 + (s % 160_000) as usize;
        let mtime = instant(local, offset, &tz);
        put(dir, path, mtime, |w| {
            write_jpeg(w, Some(local), offset, s, size as u64)
        })?;
        roll.push(file(path, local, Exif, Photo));
    }

    // A duplicate: the same bytes downloaded again under another folder, a day later.
    let original = "DCIM/Camera/IMG_20240412_090807.jpg";
    let copy = "Download/IMG_20240412_090807.jpg";
    let bytes = fs::read(dir.join(original))?;
    let local = at(2024, 4, 12, 9, 8, 7);
    put(
        dir,
        copy,
        instant(local, None, &tz) + SignedDuration::from_hours(24),
        |w| w.write_all(&bytes).map(|()| bytes.len() as u64),
    )?;
    roll.push(RollFile {
        tags: vec!["download".into()],
        ..file(copy, local, Exif, Photo)
    });

    // A Pixel motion photo: the name is UTC, EXIF has the local time (the phone at +01:00).
    let path = "DCIM/Camera/PXL_20240315_101530123.MP.jpg";
    let local = at(2024, 3, 15, 11, 15, 30);
    let s = next_seed();
    put(dir, path, utc(2024, 3, 15, 10, 15, 30), |w| {
        let b = motion_photo(Some(local), s, 250_000);
        w.write_all(&b).map(|()| b.len() as u64)
    })?;
    roll.push(file(path, local, Exif, Category::Live));

    // A Pixel photo whose EXIF has no date: the UTC time in its name, shown locally.
    let path = "DCIM/Camera/PXL_20231224_183000456.jpg";
    let taken = utc(2023, 12, 24, 18, 30, 0);
    let s = next_seed();
    put(dir, path, taken, |w| write_jpeg(w, None, None, s, 90_000))?;
    roll.push(file(
        path,
        taken.to_zoned(tz.clone()).datetime(),
        FileName,
        Photo,
    ));

    // WhatsApp: no EXIF date, the day in the name.
    let path = "Android/media/com.whatsapp/WhatsApp/Media/WhatsApp Images/IMG-20240214-WA0007.jpg";
    let s = next_seed();
    put(
        dir,
        path,
        instant(at(2024, 2, 14, 20, 41, 7), None, &tz),
        |w| write_jpeg(w, None, None, s, 60_000),
    )?;
    roll.push(RollFile {
        tags: vec!["messaging".into()],
        ..file(path, at(2024, 2, 14, 0, 0, 0), FileName, Photo)
    });

    // An edited photo with no date inside or in its name: the mtime decides.
    let path = "Pictures/Edited/beach.jpg";
    let mtime = instant(at(2023, 8, 19, 17, 45, 0), None, &tz);
    let s = next_seed();
    put(dir, path, mtime, |w| write_jpeg(w, None, None, s, 120_000))?;
    roll.push(file(
        path,
        mtime.to_zoned(tz.clone()).datetime(),
        Mtime,
        Photo,
    ));

    // Screenshots (PNG, local time in the name, two naming styles).
    for (path, local) in [
        (
            "Pictures/Screenshots/Screenshot_20240607-142233.png",
            at(2024, 6, 7, 14, 22, 33),
        ),
        (
            "Pictures/Screenshots/Screenshot_2023-09-15-08-05-59.png",
            at(2023, 9, 15, 8, 5, 59),
        ),
    ] {
        let s = next_seed();
        put(dir, path, instant(local, None, &tz), |w| {
            let b = png(s, 30_000 + (s % 50_000) as usize);
            w.write_all(&b).map(|()| b.len() as u64)
        })?;
        roll.push(file(path, local, FileName, Screenshot));
    }

    // Videos: creation times are UTC (an MP4 from an Android phone at +02:00, a MOV).
    for (path, created, quicktime) in [
        (
            "DCIM/Camera/VID_20240720_193015.mp4",
            utc(2024, 7, 20, 17, 30, 15),
            false,
        ),
        (
            "DCIM/Camera/VID_20230803_121212.mp4",
            utc(2023, 8, 3, 10, 12, 12),
            false,
        ),
        (
            "DCIM/100APPLE/IMG_0042.MOV",
            utc(2023, 11, 5, 8, 12, 44),
            true,
        ),
    ] {
        let s = next_seed();
        let size = 300_000 + (s % 100_000);
        put(dir, path, created, |w| {
            write_mp4(w, created, s, size, quicktime)
        })?;
        roll.push(file(
            path,
            created.to_zoned(tz.clone()).datetime(),
            QuickTime,
            Video,
        ));
    }

    // Files a backup skips.
    let hidden_mtime = utc(2023, 1, 5, 12, 0, 0);
    let hidden_local = hidden_mtime.to_zoned(tz.clone()).datetime();
    put(dir, "DCIM/Camera/.nomedia", hidden_mtime, |_| Ok(0))?;
    roll.push(RollFile {
        stored: false,
        ..file("DCIM/Camera/.nomedia", hidden_local, Mtime, Other)
    });
    let path = "DCIM/.thumbnails/1712345678901.jpg";
    let s = next_seed();
    put(dir, path, hidden_mtime, |w| write_jpeg(w, None, None, s, 0))?;
    roll.push(RollFile {
        stored: false,
        ..file(path, hidden_local, Mtime, Photo)
    });
    let path = "DCIM/Camera/.trashed-1717171717-IMG_20240110_081500.jpg";
    let local = at(2024, 1, 10, 8, 15, 0);
    let s = next_seed();
    put(dir, path, instant(local, None, &tz), |w| {
        write_jpeg(w, Some(local), None, s, 80_000)
    })?;
    roll.push(RollFile {
        stored: false,
        ..file(path, local, Exif, Photo)
    });

    Ok(roll)
}

/// Many same-sized files for benchmarks: `photos` JPEGs of `photo_size` bytes in
/// `DCIM/100MEDIA`, `DCIM/101MEDIA`... (at most 1000 per folder) and `videos` MP4s of
/// `video_size` bytes in `DCIM/100VIDEO`..., dated over six months from January 2023.
/// Files are streamed to disk; nothing large is held in memory.
pub fn bulk_roll(
    dir: &Path,
    photos: usize,
    photo_size: usize,
    videos: usize,
    video_size: usize,
    seed: u64,
) -> io::Result<Vec<RollFile>> {
    const PER_FOLDER: usize = 1000;
    const SPAN_SECONDS: i64 = 182 * 24 * 3600;
    let tz = TimeZone::system();
    let start = date(2023, 1, 2).at(8, 0, 0, 0);
    let mut roll = Vec::with_capacity(photos + videos);
    let step = |count: usize| SPAN_SECONDS / count.max(1) as i64;

    let photo_step = step(photos).max(1);
    for i in 0..photos {
        let path = format!("DCIM/{}MEDIA/IMG_{:04}.JPG", 100 + i / PER_FOLDER, i + 1);
        let local = start + SignedDuration::from_secs(photo_step * i as i64);
        let s = mix(seed, i as u64);
        put(dir, &path, instant(local, None, &tz), |w| {
            write_jpeg(w, Some(local), None, s, photo_size as u64)
        })?;
        roll.push(file(&path, local, DateSource::Exif, Category::Photo));
    }

    let start_utc = utc(2023, 1, 2, 9, 30, 0);
    let video_step = step(videos).max(1);
    for j in 0..videos {
        let path = format!("DCIM/{}VIDEO/VID_{:04}.MP4", 100 + j / PER_FOLDER, j + 1);
        let created = start_utc + SignedDuration::from_secs(video_step * j as i64);
        let s = mix(seed, (1 << 63) | j as u64);
        put(dir, &path, created, |w| {
            write_mp4(w, created, s, video_size as u64, false)
        })?;
        let local = created.to_zoned(tz.clone()).datetime();
        roll.push(file(&path, local, DateSource::QuickTime, Category::Video));
    }
    Ok(roll)
}

mod rolls;
pub use rolls::{camera_card, iphone_roll};

#[cfg(test)]
mod tests;
