//! Camera rolls shaped like an iPhone's and like a camera's SD card.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use jiff::civil::date;
use jiff::tz::TimeZone;

use jiff::civil::DateTime;

use super::{file, instant, mix, png, put, write_jpeg, write_jpeg_with_lens, write_mp4, RollFile};
use crate::media::{Category, DateSource};
use crate::sim::iphone::library::{AssetSpec, Manifest, MANIFEST};

/// Assets of [`iphone_roll`] that only iCloud holds: listed in the Photos library's
/// manifest, absent from DCIM. (path, is a video, capture time with its offset)
pub const ICLOUD_ONLY: &[(&str, bool, &str)] = &[
    (
        "DCIM/100APPLE/IMG_0012.HEIC",
        false,
        "2024-08-10T11:00:00+02:00",
    ),
    (
        "DCIM/100APPLE/IMG_0013.HEIC",
        false,
        "2024-08-11T12:30:00+02:00",
    ),
    (
        "DCIM/100APPLE/IMG_0014.MOV",
        true,
        "2024-08-12T18:00:00+02:00",
    ),
];

/// An iPhone's media root (what AFC serves as `/`): `DCIM/100APPLE/IMG_0001.JPG`...,
/// a Live Photo (a still and a `.MOV` with the same stem and time), a screenshot, a
/// video, a slo-mo, a selfie, a hidden photo, a two-frame burst, the roll-over into
/// `DCIM/101APPLE` where `IMG_0001` starts again with another photo, `PhotoData/` (the
/// library's own files, never copied as photos), and the library's manifest
/// ([`crate::sim::iphone::library::MANIFEST`]): favourites, the album "Summer 2024",
/// the kinds only the library knows, and [`ICLOUD_ONLY`] assets. The virtual iPhone
/// makes `PhotoData/Photos.sqlite` from it.
/// JPEG stands in for HEIC, which the generator cannot encode.
pub fn iphone_roll(dir: &Path) -> io::Result<Vec<RollFile>> {
    use Category::{Live, Photo, Screenshot, Video};
    use DateSource::{Exif, Mtime, QuickTime};
    let tz = TimeZone::system();
    let at = |y, mo, d, h, mi, s| date(y, mo, d).at(h, mi, s, 0);
    let mut roll = Vec::new();
    let mut manifest = Manifest::default();
    let seed = |i: u64| mix(0x1F0E, i);
    let summer = "Summer 2024";
    let mut note = |path: &str, f: &dyn Fn(&mut AssetSpec)| {
        let spec = manifest.assets.entry(path.to_string()).or_default();
        f(spec);
    };
    let tagged = |f: RollFile, tags: &[&str]| RollFile {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..f
    };

    // (path, local time, lens, category, tags)
    type Shot<'a> = (&'a str, DateTime, Option<&'a str>, Category, &'a [&'a str]);
    let front = "iPhone 12 front camera 2.71mm f/2.2";
    let photos: &[Shot] = &[
        (
            "DCIM/100APPLE/IMG_0001.JPG",
            at(2024, 6, 1, 9, 30, 0),
            None,
            Photo,
            &["favorite", "album:Summer 2024"],
        ),
        (
            "DCIM/100APPLE/IMG_0002.JPG",
            at(2024, 6, 2, 18, 45, 10),
            None,
            Live,
            &["album:Summer 2024"],
        ),
        (
            "DCIM/100APPLE/IMG_0005.JPG",
            at(2024, 7, 14, 22, 5, 0),
            None,
            Photo,
            &["hidden"],
        ),
        (
            "DCIM/100APPLE/IMG_0006.JPG",
            at(2024, 7, 15, 10, 0, 0),
            Some(front),
            Photo,
            &["selfie", "favorite"],
        ),
        (
            "DCIM/100APPLE/IMG_0007.JPG",
            at(2024, 7, 20, 16, 0, 0),
            None,
            Photo,
            &["burst"],
        ),
        (
            "DCIM/100APPLE/IMG_0008.JPG",
            at(2024, 7, 20, 16, 0, 1),
            None,
            Photo,
            &["burst"],
        ),
        (
            "DCIM/101APPLE/IMG_0001.JPG",
            at(2024, 6, 20, 12, 0, 0),
            None,
            Photo,
            &["album:Summer 2024"],
        ),
    ];
    for (i, &(path, local, lens, category, tags)) in photos.iter().enumerate() {
        let s = seed(i as u64);
        let offset = Some("+02:00");
        put(dir, path, instant(local, offset, &tz), |w| {
            write_jpeg_with_lens(w, Some(local), offset, lens, s, 150_000 + (s % 100_000))
        })?;
        roll.push(tagged(file(path, local, Exif, category), tags));
        note(path, &|spec| {
            spec.favorite = tags.contains(&"favorite");
            spec.hidden = tags.contains(&"hidden");
            if tags.contains(&"burst") {
                spec.burst = Some("8A1B6A3E-0B5B-4C1B-9D1A-1F2E3D4C5B6A".into());
            }
            if tags.iter().any(|t| t.starts_with("album:")) {
                spec.albums = vec![summer.into()];
            }
            spec.lens = lens.map(str::to_string);
        });
    }
    // The moving half of the Live Photo IMG_0002: the same moment, a short QuickTime.
    let local = at(2024, 6, 2, 18, 45, 10);
    let when = instant(local, Some("+02:00"), &tz);
    let path = "DCIM/100APPLE/IMG_0002.MOV";
    put(dir, path, when, |w| {
        write_mp4(w, when, seed(10), 300_000, true)
    })?;
    roll.push(tagged(
        file(path, when.to_zoned(tz.clone()).datetime(), QuickTime, Live),
        &["album:Summer 2024"],
    ));
    // A screenshot: PNG, no metadata, so its mtime dates it. Its name says nothing:
    // only the Photos library knows it is a screenshot.
    let local = at(2024, 6, 3, 8, 1, 2);
    let path = "DCIM/100APPLE/IMG_0003.PNG";
    put(dir, path, instant(local, None, &tz), |w| {
        let b = png(seed(11), 60_000);
        w.write_all(&b).map(|()| b.len() as u64)
    })?;
    roll.push(file(path, local, Mtime, Screenshot));
    note(path, &|spec| spec.kind = Some("screenshot".into()));
    // A video, and a slo-mo only the library knows as one.
    for (path, local, s, slomo) in [
        (
            "DCIM/100APPLE/IMG_0004.MOV",
            at(2024, 7, 4, 20, 0, 0),
            12,
            false,
        ),
        (
            "DCIM/100APPLE/IMG_0009.MOV",
            at(2024, 8, 1, 19, 30, 0),
            13,
            true,
        ),
    ] {
        let when = instant(local, None, &tz);
        put(dir, path, when, |w| {
            write_mp4(w, when, seed(s), 1_200_000, true)
        })?;
        let f = file(path, local, QuickTime, Video);
        if slomo {
            roll.push(tagged(f, &["slo-mo"]));
            note(path, &|spec| spec.kind = Some("slo-mo".into()));
        } else {
            roll.push(f);
        }
    }
    // Optimised away: the library lists them, only iCloud has the originals.
    for &(path, _, when) in ICLOUD_ONLY {
        note(path, &|spec| {
            spec.icloud = true;
            spec.date = Some(when.into());
        });
    }
    // The library's own files: present on a phone, never a photo to copy. The virtual
    // iPhone writes Photos.sqlite from the manifest.
    fs::create_dir_all(dir.join("PhotoData"))?;
    let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    fs::write(dir.join(MANIFEST), json)?;
    Ok(roll)
}

/// A camera's SD card: `DCIM/100CANON/IMG_nnnn.JPG` with EXIF dates, plus `also` (a
/// photo taken from another roll, so that one content arrives from two sources).
pub fn camera_card(dir: &Path, also: Option<(&Path, &str)>) -> io::Result<Vec<RollFile>> {
    let tz = TimeZone::system();
    let mut roll = Vec::new();
    for i in 0..6u64 {
        let local = date(2024, 9, 1 + i as i8).at(10 + i as i8, 0, 0, 0);
        let path = format!("DCIM/100CANON/IMG_{:04}.JPG", 1000 + i);
        let s = mix(0xCA4D, i);
        put(dir, &path, instant(local, None, &tz), |w| {
            write_jpeg(w, Some(local), None, s, 200_000 + (s % 200_000))
        })?;
        roll.push(file(&path, local, DateSource::Exif, Category::Photo));
    }
    if let Some((other_root, rel)) = also {
        let bytes = fs::read(other_root.join(rel))?;
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let path = format!("DCIM/100CANON/{name}");
        let mtime = fs::metadata(other_root.join(rel))?.modified()?;
        let target = dir.join(&path);
        fs::write(&target, &bytes)?;
        fs::File::options()
            .write(true)
            .open(&target)?
            .set_modified(mtime)?;
    }
    Ok(roll)
}
