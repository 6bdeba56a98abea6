//! Camera rolls shaped like an iPhone's and like a camera's SD card.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use jiff::civil::date;
use jiff::tz::TimeZone;

use super::{file, instant, mix, png, put, write_jpeg, write_mp4, RollFile};
use crate::media::{Category, DateSource};

/// An iPhone's media root (what AFC serves as `/`): `DCIM/100APPLE/IMG_0001.JPG`...,
/// a Live Photo (a still and a `.MOV` with the same stem and time), a screenshot, a
/// video, the roll-over into `DCIM/101APPLE` where `IMG_0001` starts again with another
/// photo, and `PhotoData/` (the library's own files, never copied as photos).
/// JPEG stands in for HEIC, which the generator cannot encode.
pub fn iphone_roll(dir: &Path) -> io::Result<Vec<RollFile>> {
    use Category::{Photo, Video};
    use DateSource::{Exif, Mtime, QuickTime};
    let tz = TimeZone::system();
    let at = |y, mo, d, h, mi, s| date(y, mo, d).at(h, mi, s, 0);
    let mut roll = Vec::new();
    let seed = |i: u64| mix(0x1F0E, i);

    let photos = [
        (
            "DCIM/100APPLE/IMG_0001.JPG",
            at(2024, 6, 1, 9, 30, 0),
            Some("+02:00"),
        ),
        (
            "DCIM/100APPLE/IMG_0002.JPG",
            at(2024, 6, 2, 18, 45, 10),
            Some("+02:00"),
        ),
        (
            "DCIM/100APPLE/IMG_0005.JPG",
            at(2024, 7, 14, 22, 5, 0),
            Some("+02:00"),
        ),
        (
            "DCIM/101APPLE/IMG_0001.JPG",
            at(2024, 6, 20, 12, 0, 0),
            Some("+02:00"),
        ),
    ];
    for (i, &(path, local, offset)) in photos.iter().enumerate() {
        let s = seed(i as u64);
        put(dir, path, instant(local, offset, &tz), |w| {
            write_jpeg(w, Some(local), offset, s, 150_000 + (s % 100_000))
        })?;
        roll.push(file(path, local, Exif, Photo));
    }
    // The moving half of the Live Photo IMG_0002: the same moment, a short QuickTime.
    let local = at(2024, 6, 2, 18, 45, 10);
    let when = instant(local, Some("+02:00"), &tz);
    let path = "DCIM/100APPLE/IMG_0002.MOV";
    put(dir, path, when, |w| {
        write_mp4(w, when, seed(10), 300_000, true)
    })?;
    roll.push(file(
        path,
        when.to_zoned(tz.clone()).datetime(),
        QuickTime,
        Video,
    ));
    // A screenshot: PNG, no metadata, so its mtime dates it. Its name says nothing and
    // only the Photos library knows it is a screenshot, so by its file it is a photo.
    let local = at(2024, 6, 3, 8, 1, 2);
    let path = "DCIM/100APPLE/IMG_0003.PNG";
    put(dir, path, instant(local, None, &tz), |w| {
        let b = png(seed(11), 60_000);
        w.write_all(&b).map(|()| b.len() as u64)
    })?;
    roll.push(file(path, local, Mtime, Photo));
    // A video.
    let local = at(2024, 7, 4, 20, 0, 0);
    let when = instant(local, None, &tz);
    let path = "DCIM/100APPLE/IMG_0004.MOV";
    put(dir, path, when, |w| {
        write_mp4(w, when, seed(12), 1_200_000, true)
    })?;
    roll.push(file(path, local, QuickTime, Video));
    // The library's own files: present on a phone, never a photo to copy.
    fs::create_dir_all(dir.join("PhotoData"))?;
    fs::write(dir.join("PhotoData/Photos.sqlite"), b"")?;
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
