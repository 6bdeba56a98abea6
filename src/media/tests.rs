//! Capture dates and categories of real files from real cameras and phones
//! (`../shared/fixtures/media`, see its SOURCES.md), and of hostile or odd ones.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::civil::{date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::*;

/// The shared fixtures folder, or `None` (with a loud note) when it is absent outside CI.
fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/media"
    ));
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "media fixtures missing at {}: CI must check out ../shared beside the project",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: {} is absent; real-file capture dates and categories not checked",
        dir.display()
    );
    None
}

/// The mtime given for every fixture: 2023-11-14T22:13:20Z.
const MTIME: i64 = 1_700_000_000;

#[derive(Clone, Copy)]
enum Want {
    /// A wall-clock time that does not depend on the computer's zone.
    Wall(DateTime, DateSource),
    /// A UTC instant shown in the computer's zone.
    Utc(DateTime, DateSource),
}

fn at(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> DateTime {
    date(y, mo, d).at(h, mi, s, 0)
}

/// Every fixture: expected capture date and category.
fn expectations() -> Vec<(&'static str, Want, Category)> {
    use Category::*;
    use DateSource::*;
    use Want::*;
    let mtime = Utc(at(2023, 11, 14, 22, 13, 20), Mtime);
    vec![
        (
            "iphone-13-pro-max.HEIC",
            Wall(at(2022, 2, 16, 12, 55, 41), Exif),
            Photo,
        ),
        (
            "IMG_5195.HEIC",
            Wall(at(2021, 4, 11, 15, 47, 53), Exif),
            Photo,
        ),
        // No capture date inside, none in the name.
        ("nokia-8.3-5g.heif", mtime, Photo),
        (
            "nikon-gps-DSCN0010.jpg",
            Wall(at(2008, 10, 22, 16, 28, 39), Exif),
            Photo,
        ),
        (
            "canon-40d.jpg",
            Wall(at(2008, 5, 30, 15, 56, 1), Exif),
            Photo,
        ),
        // The damage spares DateTimeOriginal.
        (
            "corrupted-exif.jpg",
            Wall(at(2015, 9, 8, 11, 2, 17), Exif),
            Photo,
        ),
        ("exif.jpg", Wall(at(2023, 7, 9, 20, 36, 33), Exif), Photo),
        // SOURCES.md says "no DateTimeOriginal", but the file has one (with an empty
        // OffsetTimeOriginal): ExifIFD 0x9003 = "2023:07:09 20:36:33".
        (
            "exif-no-tz.jpg",
            Wall(at(2023, 7, 9, 20, 36, 33), Exif),
            Photo,
        ),
        ("exif.png", Wall(at(2023, 7, 9, 20, 36, 33), Exif), Photo),
        // A JPEG with an MP4 after it: a Live Photo in all but name.
        (
            "motion-photo-pixel.MP.jpg",
            Wall(at(2023, 7, 9, 20, 36, 33), Exif),
            Live,
        ),
        // SOURCES.md gives the `mvhd` time 2024-02-02 08:09:57 UTC: that is when the clip
        // was re-muxed. The iPhone's own com.apple.quicktime.creationdate says
        // 2019-02-12T15:27:12+08:00, the real capture; its wall-clock time is kept, as for
        // EXIF, so a Live Photo's video stays beside its photo.
        (
            "meta.mov",
            Wall(at(2019, 2, 12, 15, 27, 12), QuickTime),
            Video,
        ),
        ("meta.mp4", Utc(at(2024, 2, 3, 7, 5, 38), QuickTime), Video),
        // Zero (1904) creation time: unset.
        ("clip.3gp", mtime, Video),
        // Matroska DateUTC.
        ("clip.webm", Utc(at(2009, 9, 9, 9, 9, 9), QuickTime), Video),
        ("canon-r6.cr3", Wall(at(2025, 9, 6, 20, 24, 47), Exif), Raw),
        // Truncated, but the EXIF block is whole.
        ("broken.jpg", Wall(at(2014, 9, 21, 15, 51, 22), Exif), Photo),
        (
            "endless-loop.jpg",
            Wall(at(2009, 5, 9, 15, 42, 1), Exif),
            Photo,
        ),
        ("oom-large-box.heic", mtime, Photo),
        ("crash-moov-trak.mov", mtime, Video),
        ("SOURCES.md", mtime, Other),
    ]
}

fn zones() -> Vec<TimeZone> {
    vec![
        TimeZone::UTC,
        TimeZone::get("America/New_York").unwrap(),
        TimeZone::get("Asia/Kolkata").unwrap(),
        TimeZone::fixed(jiff::tz::offset(-10)),
    ]
}

fn head(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(64 * 1024);
    bytes
}

#[test]
fn every_fixture_has_an_expectation() {
    let Some(dir) = fixtures() else { return };
    let known: Vec<&str> = expectations().iter().map(|e| e.0).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(known.contains(&name.as_str()), "no expectation for {name}");
    }
}

#[test]
fn fixture_capture_dates() {
    let Some(dir) = fixtures() else { return };
    for (name, want, _) in expectations() {
        let path = dir.join(name);
        for tz in zones() {
            let (local, source) = match want {
                Want::Wall(local, source) => (local, source),
                Want::Utc(utc, source) => {
                    let instant = utc.to_zoned(TimeZone::UTC).unwrap().timestamp();
                    (instant.to_zoned(tz.clone()).datetime(), source)
                }
            };
            let got = capture_date_in(&path, name, MTIME, &tz);
            assert_eq!(got, CaptureDate { local, source }, "{name} in {tz:?}");
        }
    }
}

#[test]
fn fixture_capture_dates_in_system_zone() {
    let Some(dir) = fixtures() else { return };
    let tz = TimeZone::system();
    for (name, _, _) in expectations() {
        let path = dir.join(name);
        assert_eq!(
            capture_date(&path, name, MTIME),
            capture_date_in(&path, name, MTIME, &tz),
            "{name}"
        );
    }
}

#[test]
fn fixture_categories() {
    let Some(dir) = fixtures() else { return };
    for (name, _, category) in expectations() {
        let head = head(&dir.join(name));
        let source_path = format!("DCIM/Camera/{name}");
        assert_eq!(categorize(&source_path, &head), category, "{name}");
        // With no content the name decides, and it agrees for these files (the motion
        // photo by its `.MP` name).
        let by_name = categorize(&source_path, &[]);
        let by_name_wanted = if name == "SOURCES.md" {
            Category::Other
        } else {
            category
        };
        assert_eq!(by_name, by_name_wanted, "{name} by name");
    }
}

/// The motion photo is one by its content too, whatever its name; the iPhones' lenses
/// are back cameras (no selfie); nothing in this folder carries a platform tag.
#[test]
fn fixture_tags_and_content_only_motion_photos() {
    let Some(dir) = fixtures() else { return };
    let motion = head(&dir.join("motion-photo-pixel.MP.jpg"));
    assert_eq!(
        categorize("DCIM/Camera/IMG_20230709_203633.jpg", &motion),
        Category::Live
    );
    for (name, _, _) in expectations() {
        let path = dir.join(name);
        let head = head(&path);
        let clues = Clues {
            path: &format!("DCIM/Camera/{name}"),
            head: Some(&head),
            ..Clues::default()
        };
        let c = examine(&path, name, MTIME, clues).categories;
        assert!(c.tags.is_empty(), "{name}: {:?}", c.tags);
    }
    let lens = inspect(&dir.join("iphone-13-pro-max.HEIC"), "x", MTIME).lens;
    assert_eq!(
        lens.as_deref(),
        Some("iPhone 13 Pro Max back triple camera 5.7mm f/1.5")
    );
    // The same photo, as a front camera would have described it.
    let head = head(&dir.join("iphone-13-pro-max.HEIC"));
    let selfie = classify(&Clues {
        path: "DCIM/100APPLE/IMG_0001.HEIC",
        head: Some(&head),
        lens: Some("iPhone 13 Pro Max front camera 2.71mm f/2.2"),
        ..Clues::default()
    });
    assert_eq!(selfie.tag_names(), ["selfie"]);
}

#[test]
fn name_then_mtime_when_metadata_has_no_date() {
    let Some(dir) = fixtures() else { return };
    let tz = TimeZone::get("Europe/Paris").unwrap();
    let path = dir.join("nokia-8.3-5g.heif");
    assert_eq!(
        capture_date_in(&path, "IMG_20220203_144407.heif", MTIME, &tz),
        CaptureDate {
            local: at(2022, 2, 3, 14, 44, 7),
            source: DateSource::FileName
        }
    );
    // A Pixel name is UTC.
    assert_eq!(
        capture_date_in(&path, "PXL_20220203_144407123.heif", MTIME, &tz),
        CaptureDate {
            local: at(2022, 2, 3, 15, 44, 7),
            source: DateSource::FileName
        }
    );
    // EXIF wins over the name.
    let exif = dir.join("canon-40d.jpg");
    assert_eq!(
        capture_date_in(&exif, "IMG_20220203_144407.jpg", MTIME, &tz).source,
        DateSource::Exif
    );
}

#[test]
fn hostile_files_end_quickly_with_a_date() {
    let Some(dir) = fixtures() else { return };
    for name in [
        "endless-loop.jpg",
        "oom-large-box.heic",
        "crash-moov-trak.mov",
        "broken.jpg",
        "corrupted-exif.jpg",
    ] {
        let start = Instant::now();
        let got = capture_date(&dir.join(name), name, MTIME);
        assert!(got.local.year() >= 1990, "{name}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            start.elapsed()
        );
    }
}

/// Writes `bytes` to a temp file and returns its capture date in UTC.
fn date_of_bytes(name: &str, bytes: &[u8]) -> CaptureDate {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    capture_date_in(file.path(), name, MTIME, &TimeZone::UTC)
}

fn by_mtime() -> CaptureDate {
    CaptureDate {
        local: Timestamp::from_second(MTIME)
            .unwrap()
            .to_zoned(TimeZone::UTC)
            .datetime(),
        source: DateSource::Mtime,
    }
}

#[test]
fn odd_files_fall_back() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![0xFF]),
        ("jpeg soi only", b"\xFF\xD8\xFF".to_vec()),
        (
            "jpeg bad app1",
            b"\xFF\xD8\xFF\xE1\xFF\xFFExif\0\0II*\0".to_vec(),
        ),
        (
            "png no exif",
            b"\x89PNG\r\n\x1A\n\0\0\0\0IEND\xAE\x42\x60\x82".to_vec(),
        ),
        (
            "png huge exif",
            b"\x89PNG\r\n\x1A\n\xFF\xFF\xFF\xF0eXIfMM\0*".to_vec(),
        ),
        ("png truncated", b"\x89PNG\r\n\x1A\n\0\0".to_vec()),
        ("webp no exif", b"RIFF\x0C\0\0\0WEBPVP8 \0\0\0\0".to_vec()),
        (
            "ftyp huge moov",
            [
                &b"\0\0\0\x14ftypisom\0\0\0\0isom"[..],
                b"\x7F\xFF\xFF\xFFmoov",
                &[0u8; 4096],
            ]
            .concat(),
        ),
        (
            "ftyp 64-bit huge box",
            [
                &b"\0\0\0\x14ftypisom\0\0\0\0isom"[..],
                b"\0\0\0\x01mdat\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
            ]
            .concat(),
        ),
        ("tiff huge ifd offset", b"II*\0\xF0\xFF\xFF\x7F".to_vec()),
        (
            "random",
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
    ];
    for (what, bytes) in cases {
        assert_eq!(date_of_bytes("x.bin", &bytes), by_mtime(), "{what}");
    }
}

#[test]
fn exif_in_png_and_webp() {
    let Some(dir) = fixtures() else { return };
    // The TIFF block of the fixture PNG's eXIf chunk, rewrapped.
    let png = std::fs::read(dir.join("exif.png")).unwrap();
    let at_chunk = png.windows(4).position(|w| w == b"eXIf").unwrap();
    let len = u32::from_be_bytes(png[at_chunk - 4..at_chunk].try_into().unwrap()) as usize;
    let tiff = &png[at_chunk + 4..at_chunk + 4 + len];
    let want = CaptureDate {
        local: at(2023, 7, 9, 20, 36, 33),
        source: DateSource::Exif,
    };

    let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0A\0\0\0\x08\0\0\0\0\0\0\0\0\0".to_vec();
    webp.extend_from_slice(b"EXIF");
    webp.extend_from_slice(&(len as u32 + 6).to_le_bytes());
    webp.extend_from_slice(b"Exif\0\0");
    webp.extend_from_slice(tiff);
    if webp.len() % 2 == 1 {
        webp.push(0);
    }
    let riff_len = (webp.len() - 8) as u32;
    webp[4..8].copy_from_slice(&riff_len.to_le_bytes());
    assert_eq!(date_of_bytes("x.webp", &webp), want);
    assert_eq!(categorize("a/x.webp", &webp), Category::Photo);

    // eXIf after the image data, as some writers put it.
    let mut late = png[..8].to_vec();
    late.extend_from_slice(&png[8..at_chunk - 4]);
    late.extend_from_slice(b"\0\0\0\x02IDAT\x78\x9C\0\0\0\0");
    late.extend_from_slice(&png[at_chunk - 4..]);
    assert_eq!(date_of_bytes("x.png", &late), want);
}

#[test]
fn implausible_exif_years_fall_through() {
    let Some(dir) = fixtures() else { return };
    let jpeg = std::fs::read(dir.join("canon-40d.jpg")).unwrap();
    for (year, wanted) in [("1980", None), ("2101", None), ("1990", Some(1990))] {
        let patched = replace_all(&jpeg, b"2008:05:30 15:56:01", year.as_bytes());
        let got = date_of_bytes("IMG_20200101_101010.jpg", &patched);
        match wanted {
            Some(y) => {
                assert_eq!(got.source, DateSource::Exif, "{year}");
                assert_eq!(got.local.year(), y, "{year}");
            }
            None => assert_eq!(
                got,
                CaptureDate {
                    local: at(2020, 1, 1, 10, 10, 10),
                    source: DateSource::FileName
                },
                "{year}"
            ),
        }
    }
}

/// Replaces the year of every occurrence of `date` (`YYYY:...`).
fn replace_all(hay: &[u8], date: &[u8], year: &[u8]) -> Vec<u8> {
    let mut out = hay.to_vec();
    let mut i = 0;
    while let Some(p) = out[i..].windows(date.len()).position(|w| w == date) {
        out[i + p..i + p + 4].copy_from_slice(year);
        i += p + date.len();
    }
    assert!(i > 0, "date not found");
    out
}

#[test]
fn mtime_out_of_range_still_gives_a_date() {
    let got = capture_date_in(
        Path::new("/nonexistent/x"),
        "x.jpg",
        i64::MAX,
        &TimeZone::UTC,
    );
    assert_eq!(got.source, DateSource::Mtime);
    assert_eq!(got.local, at(1970, 1, 1, 0, 0, 0));
}

#[test]
fn a_copy_keeps_the_source_time_else_the_capture_date() {
    use std::time::{Duration, SystemTime};
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let exif = CaptureDate {
        local: jiff::civil::date(2021, 7, 4).at(10, 11, 12, 0),
        source: DateSource::Exif,
    };
    assert_eq!(copy_time(1_551_441_600, &exif), Some(at(1_551_441_600)));
    // No source time: the capture date, in the computer's zone.
    let local = exif.local.to_zoned(TimeZone::system()).unwrap();
    let want = at(local.timestamp().as_second() as u64);
    assert_eq!(copy_time(0, &exif), Some(want));
    assert_eq!(copy_time(-5, &exif), Some(want));
    // Neither: the date is only the missing mtime.
    let none = date_before_reading("IMG_0001.JPG", 0);
    assert_eq!(none.source, DateSource::Mtime);
    assert_eq!(copy_time(0, &none), None);
}
