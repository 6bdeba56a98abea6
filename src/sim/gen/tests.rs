//! Generated files are valid, deterministic, and read back (by our own media module) as
//! the dates and categories the roll promises.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use jiff::civil::date;
use jiff::tz::TimeZone;

use super::*;
use crate::media::{capture_date, capture_date_in, categorize, CaptureDate};

/// The offsets of SOI, the APP1 `Exif` segment, SOS and EOI; panics unless `bytes` is a
/// well-formed JPEG (segment lengths, entropy data, EOI). Returns the end of EOI.
fn jpeg_structure(bytes: &[u8]) -> (usize, usize) {
    assert_eq!(&bytes[..2], b"\xFF\xD8", "SOI");
    let mut p = 2;
    let mut exif_at = None;
    loop {
        assert_eq!(bytes[p], 0xFF, "marker at {p}");
        let marker = bytes[p + 1];
        let len = usize::from(u16::from_be_bytes([bytes[p + 2], bytes[p + 3]]));
        assert!(len >= 2, "segment length");
        if marker == 0xE1 && bytes[p + 4..].starts_with(b"Exif\0\0") {
            exif_at = Some(p);
        }
        p += 2 + len;
        if marker == 0xDA {
            break;
        }
    }
    // Entropy-coded data: 0xFF is followed by 0x00 (stuffing) or a restart marker.
    while !(bytes[p] == 0xFF && bytes[p + 1] == 0xD9) {
        if bytes[p] == 0xFF {
            let next = bytes[p + 1];
            assert!(
                next == 0x00 || (0xD0..=0xD7).contains(&next),
                "marker {next:#x} inside the scan"
            );
            p += 1;
        }
        p += 1;
    }
    (exif_at.expect("an APP1 Exif segment"), p + 2)
}

fn mtime_of(path: &Path) -> i64 {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    Timestamp::try_from(modified).unwrap().as_second()
}

fn head_of(path: &Path) -> Vec<u8> {
    let mut head = Vec::new();
    File::open(path)
        .unwrap()
        .take(64 * 1024)
        .read_to_end(&mut head)
        .unwrap();
    head
}

/// Every file of a roll reads back as the roll says.
fn check_roll(dir: &Path, roll: &[RollFile]) {
    for f in roll {
        let path = dir.join(&f.path);
        let name = f.path.rsplit('/').next().unwrap();
        let got = capture_date(&path, name, mtime_of(&path));
        assert_eq!(
            got,
            CaptureDate {
                local: f.local,
                source: f.date_source
            },
            "{}",
            f.path
        );
        assert_eq!(
            categorize(&f.path, &head_of(&path)),
            f.category,
            "{}",
            f.path
        );
    }
}

#[test]
fn demo_roll_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let roll = demo_roll(tmp.path()).unwrap();
    check_roll(tmp.path(), &roll);

    // Every file on disk is described, and the other way round.
    let on_disk: BTreeSet<String> = walkdir::WalkDir::new(tmp.path())
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(tmp.path()).unwrap();
            rel.to_str().unwrap().replace('\\', "/")
        })
        .collect();
    let described: BTreeSet<String> = roll.iter().map(|f| f.path.clone()).collect();
    assert_eq!(on_disk, described);
    assert!((20..=30).contains(&roll.len()), "{} files", roll.len());

    // What the roll is for.
    let months: BTreeSet<(i16, i8)> = roll
        .iter()
        .filter(|f| f.date_source == DateSource::Exif)
        .map(|f| (f.local.year(), f.local.month()))
        .collect();
    assert!(months.len() >= 4, "{months:?}");
    assert!(months.iter().any(|m| m.0 == 2023) && months.iter().any(|m| m.0 == 2024));
    for source in [
        DateSource::Exif,
        DateSource::QuickTime,
        DateSource::FileName,
        DateSource::Mtime,
    ] {
        assert!(
            roll.iter().any(|f| f.stored && f.date_source == source),
            "{source:?}"
        );
    }
    for category in [Category::Photo, Category::Video, Category::Screenshot] {
        assert!(roll.iter().any(|f| f.category == category), "{category:?}");
    }
    let read = |p: &str| std::fs::read(tmp.path().join(p)).unwrap();
    assert_eq!(
        read("DCIM/Camera/IMG_20240412_090807.jpg"),
        read("Download/IMG_20240412_090807.jpg"),
        "the duplicate"
    );
    assert_ne!(
        read("DCIM/Camera/IMG_0001.JPG"),
        read("DCIM/100MEDIA/IMG_0001.JPG"),
        "the clash"
    );
    let clash: Vec<_> = roll
        .iter()
        .filter(|f| f.path.ends_with("/IMG_0001.JPG"))
        .collect();
    assert_eq!(clash.len(), 2);
    assert_eq!(
        (clash[0].local.year(), clash[0].local.month()),
        (clash[1].local.year(), clash[1].local.month())
    );
    let skipped: Vec<&str> = roll
        .iter()
        .filter(|f| !f.stored)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        skipped,
        [
            "DCIM/Camera/.nomedia",
            "DCIM/.thumbnails/1712345678901.jpg",
            "DCIM/Camera/.trashed-1717171717-IMG_20240110_081500.jpg"
        ]
    );
    for f in &roll {
        let len = std::fs::metadata(tmp.path().join(&f.path)).unwrap().len();
        assert!(len <= 500_000, "{} is {len} bytes", f.path);
    }

    // Deterministic: a second roll is byte for byte the same.
    let again = tempfile::tempdir().unwrap();
    assert_eq!(demo_roll(again.path()).unwrap(), roll);
    for f in &roll {
        assert_eq!(
            std::fs::read(again.path().join(&f.path)).unwrap(),
            read(&f.path),
            "{}",
            f.path
        );
    }
}

#[test]
fn demo_roll_manifest_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let roll = demo_roll(tmp.path()).unwrap();
    let json = serde_json::to_string(&roll).unwrap();
    assert!(json.contains("\"date_source\":\"exif\""), "{json}");
    assert!(json.contains("\"category\":\"screenshot\""), "{json}");
    let back: Vec<RollFile> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, roll);
}

#[test]
fn bulk_roll_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let roll = bulk_roll(tmp.path(), 1001, 6_000, 3, 50_000, 7).unwrap();
    assert_eq!(roll.len(), 1004);
    check_roll(tmp.path(), &roll);
    assert_eq!(roll[999].path, "DCIM/100MEDIA/IMG_1000.JPG");
    assert_eq!(roll[1000].path, "DCIM/101MEDIA/IMG_1001.JPG");
    assert_eq!(roll[1001].path, "DCIM/100VIDEO/VID_0001.MP4");
    for f in &roll {
        let len = std::fs::metadata(tmp.path().join(&f.path)).unwrap().len();
        let want = if f.category == Category::Video {
            50_000
        } else {
            6_000
        };
        assert_eq!(len, want, "{}", f.path);
    }
    let months: BTreeSet<i8> = roll.iter().map(|f| f.local.month()).collect();
    assert!(months.len() >= 5, "{months:?}");
    // Another seed, other bytes.
    let other = tempfile::tempdir().unwrap();
    bulk_roll(other.path(), 2, 6_000, 1, 50_000, 8).unwrap();
    for p in ["DCIM/100MEDIA/IMG_0001.JPG", "DCIM/100VIDEO/VID_0001.MP4"] {
        assert_ne!(
            std::fs::read(tmp.path().join(p)).unwrap(),
            std::fs::read(other.path().join(p)).unwrap(),
            "{p}"
        );
    }
}

#[test]
fn jpegs_are_well_formed_and_padded() {
    let when = date(2024, 2, 29).at(23, 59, 58, 0);
    for (size, offset) in [
        (0, None),
        (10_000, Some("+05:30")),
        (123_457, Some("-08:00")),
    ] {
        let bytes = jpeg(Some(when), offset, 42, size);
        let (exif_at, end) = jpeg_structure(&bytes);
        assert!(exif_at < 30, "EXIF near the start");
        assert_eq!(bytes.len(), size.max(end));
        let exif = &bytes[exif_at..];
        let has = |needle: &[u8]| exif.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"2024:02:29 23:59:58\0"));
        assert_eq!(offset.is_some_and(|o| has(o.as_bytes())), offset.is_some());
    }
    let no_date = jpeg(None, None, 42, 0);
    jpeg_structure(&no_date);
}

#[test]
fn jpeg_dates_read_back_in_any_zone() {
    let when = date(2023, 6, 30).at(22, 10, 0, 0);
    let tmp = tempfile::tempdir().unwrap();
    for (i, offset) in [None, Some("+09:00"), Some("-03:30")]
        .into_iter()
        .enumerate()
    {
        let path = tmp.path().join(format!("{i}.jpg"));
        std::fs::write(&path, jpeg(Some(when), offset, i as u64, 20_000)).unwrap();
        for tz in [TimeZone::UTC, TimeZone::get("Pacific/Auckland").unwrap()] {
            assert_eq!(
                capture_date_in(&path, "x.jpg", 0, &tz),
                CaptureDate {
                    local: when,
                    source: DateSource::Exif
                }
            );
        }
    }
}

#[test]
fn pngs_decode_and_are_padded() {
    for size in [0, 5_000, 77_777] {
        let bytes = png(3, size);
        if size > 1000 {
            assert_eq!(bytes.len(), size);
            assert!(bytes.windows(4).any(|w| w == b"ofFl"));
        }
        let decoder = ::png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (64, 48));
        assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
    }
}

#[test]
fn movies_read_back() {
    let created = date(2024, 7, 20)
        .at(17, 30, 15, 0)
        .to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp();
    let tmp = tempfile::tempdir().unwrap();
    let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
    for quicktime in [false, true] {
        for size in [0, 100_000] {
            let bytes = mp4(created, 5, size, quicktime);
            assert_eq!(bytes.len(), size.max(bytes.len()));
            if size > 0 {
                assert_eq!(bytes.len(), size);
            }
            let brand: &[u8] = if quicktime { b"qt  " } else { b"isom" };
            assert_eq!(&bytes[4..12], [&b"ftyp"[..], brand].concat());
            let path = tmp.path().join(format!("v{size}.mov"));
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                capture_date_in(&path, "x.mov", 0, &tokyo),
                CaptureDate {
                    local: date(2024, 7, 21).at(2, 30, 15, 0),
                    source: DateSource::QuickTime
                }
            );
            assert_eq!(categorize("DCIM/x.mov", &bytes), Category::Video);
        }
    }
}

#[test]
fn large_movie_is_streamed_and_reads_back() {
    // Bigger than the metadata read budget, with the moov after the mdat: only seeks
    // may cross the media data.
    let created = Timestamp::from_second(1_700_000_000).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big.MOV");
    let size = 48 << 20;
    put(tmp.path(), "big.MOV", created, |w| {
        write_mp4(w, created, 9, size, true)
    })
    .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert_eq!(mtime_of(&path), 1_700_000_000);
    let got = capture_date_in(&path, "big.MOV", 0, &TimeZone::UTC);
    assert_eq!(got.source, DateSource::QuickTime);
    assert_eq!(got.local, date(2023, 11, 14).at(22, 13, 20, 0));
}

#[test]
fn motion_photos_are_jpeg_then_mp4() {
    let when = date(2024, 3, 15).at(11, 15, 30, 0);
    let bytes = motion_photo(Some(when), 11, 200_000);
    assert_eq!(bytes.len(), 200_000);
    let (_, end) = jpeg_structure(&bytes);
    assert_eq!(&bytes[end + 4..end + 8], b"ftyp");
    let video_len = bytes.len() - end;
    let xmp = String::from_utf8_lossy(&bytes[..end]);
    assert!(
        xmp.contains(&format!("Item:Length=\"{video_len:010}\"")),
        "{xmp}"
    );
    assert!(xmp.contains("GCamera:MotionPhoto=\"1\""));
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &bytes).unwrap();
    assert_eq!(
        capture_date_in(
            tmp.path(),
            "PXL_20240315_101530123.MP.jpg",
            0,
            &TimeZone::UTC
        ),
        CaptureDate {
            local: when,
            source: DateSource::Exif
        }
    );
    assert_eq!(
        categorize("DCIM/Camera/PXL_20240315_101530123.MP.jpg", &bytes),
        Category::Live
    );
    // By its content alone, too.
    assert_eq!(categorize("DCIM/Camera/x.jpg", &bytes), Category::Live);
}

#[test]
fn seeds_decide_the_bytes() {
    let when = Some(date(2024, 1, 1).at(0, 0, 0, 0));
    let t = Timestamp::from_second(1_700_000_000).unwrap();
    assert_eq!(jpeg(when, None, 1, 5000), jpeg(when, None, 1, 5000));
    assert_ne!(jpeg(when, None, 1, 5000), jpeg(when, None, 2, 5000));
    // Not only the padding: the pictures differ.
    let (_, end1) = jpeg_structure(&jpeg(when, None, 1, 0));
    let (_, end2) = jpeg_structure(&jpeg(when, None, 2, 0));
    assert_ne!(
        jpeg(when, None, 1, 0)[..end1],
        jpeg(when, None, 2, 0)[..end2]
    );
    assert_eq!(png(1, 4000), png(1, 4000));
    assert_ne!(png(1, 4000), png(2, 4000));
    assert_eq!(mp4(t, 1, 4000, false), mp4(t, 1, 4000, false));
    assert_ne!(mp4(t, 1, 4000, false), mp4(t, 2, 4000, false));
    assert_ne!(motion_photo(when, 1, 9000), motion_photo(when, 2, 9000));
}
