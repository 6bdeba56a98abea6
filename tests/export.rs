//! `offload export`: from a backup (through its catalog), from a phone and from a
//! folder into a plain folder; verified, idempotent, never overwriting; HEIC → JPEG.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use common::phones::Sim;
use common::*;

/// Every file in an export folder: relative path → hash. Nothing of offload's own may
/// be left there.
fn exported(dir: &Path) -> BTreeMap<String, String> {
    let files = source_files(dir);
    for e in fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.starts_with(".offload"),
            "{name} left in the export folder"
        );
    }
    files
}

/// A store holding the demo SD card (videos of 2023 and 2024) and the iPhone roll.
fn store(s: &Scratch) -> std::path::PathBuf {
    s.roll("SD", &[]);
    s.roll("phone", &["--kind", "iphone"]);
    let dest = s.path("dest");
    s.backup_from("SD", &dest).ok();
    let sim = Sim::start(s, &s.path("phone"), &[]);
    sim.run(s, &["backup", "--to", dest.to_str().unwrap()]).ok();
    dest
}

#[test]
fn all_videos_of_2024_from_the_store() {
    let s = Scratch::new();
    let dest = store(&s);
    let out = s.path("usb-stick");
    let args = [
        "export",
        "--from-store",
        dest.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--only",
        "videos",
        "--since",
        "2024",
        "--until",
        "2024",
        "--json",
    ];
    let r = s.run(&args);
    r.ok();
    let j = r.json();
    let files = exported(&out);
    let hash = |p: &str| hash_file(&p.split('/').fold(s.path(""), |acc, c| acc.join(c)));
    let want: BTreeMap<String, String> = [
        (
            "2024/07/VID_20240720_193015.mp4",
            "SD/DCIM/Camera/VID_20240720_193015.mp4",
        ),
        ("2024/07/IMG_0004.MOV", "phone/DCIM/100APPLE/IMG_0004.MOV"),
        ("2024/08/IMG_0009.MOV", "phone/DCIM/100APPLE/IMG_0009.MOV"),
    ]
    .iter()
    .map(|(to, from)| (to.to_string(), hash(from)))
    .collect();
    assert_eq!(files, want, "{j}");
    assert_eq!(j["exported"], 3);
    assert!(j["filtered"].as_u64().unwrap() > 20, "{j}");

    // Again: every file is already there, byte for byte; nothing is written.
    let before: BTreeMap<String, std::time::SystemTime> = files
        .keys()
        .map(|p| {
            (
                p.clone(),
                fs::metadata(out.join(p)).unwrap().modified().unwrap(),
            )
        })
        .collect();
    let r = s.run(&args);
    r.ok();
    let j = r.json();
    assert_eq!(
        (j["exported"].as_u64(), j["identical"].as_u64()),
        (Some(0), Some(3)),
        "{j}"
    );
    for (p, t) in &before {
        assert_eq!(
            &fs::metadata(out.join(p)).unwrap().modified().unwrap(),
            t,
            "{p} rewritten"
        );
    }
    // A different file under a wanted name is never overwritten: the export takes a
    // suffixed name beside it.
    fs::remove_file(out.join("2024/07/IMG_0004.MOV")).unwrap();
    fs::write(out.join("2024/07/IMG_0004.MOV"), b"someone else's video").unwrap();
    let r = s.run(&args);
    r.ok();
    assert_eq!(r.json()["exported"], 1);
    assert_eq!(
        fs::read(out.join("2024/07/IMG_0004.MOV")).unwrap(),
        b"someone else's video"
    );
    let after = exported(&out);
    let suffixed: Vec<&String> = after
        .keys()
        .filter(|p| p.starts_with("2024/07/IMG_0004~") && p.ends_with(".MOV"))
        .collect();
    assert_eq!(suffixed.len(), 1, "{after:?}");
    assert_eq!(after[suffixed[0]], want["2024/07/IMG_0004.MOV"]);

    // Other selections from the store: favourites of an album, with a flat layout.
    let fav = s.path("fav");
    s.run(&[
        "export",
        "--from-store",
        dest.to_str().unwrap(),
        "--to",
        fav.to_str().unwrap(),
        "--favorites",
        "--album",
        "Summer 2024",
        "--flat",
    ])
    .ok();
    assert_eq!(
        exported(&fav).into_keys().collect::<Vec<_>>(),
        ["IMG_0001.JPG"]
    );
    // Nothing in the backup changed.
    assert_store_consistent(&dest);
}

#[test]
fn from_a_phone_and_from_a_folder() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let sim = Sim::start(&s, &s.path("phone"), &[]);
    let out = s.path("out");
    let args = [
        "export",
        "--to",
        out.to_str().unwrap(),
        "--only",
        "photo",
        "--exclude",
        "burst,hidden",
        "--template",
        "{category}/{name}",
        "--json",
    ];
    let r = sim.run(&s, &args);
    r.ok();
    let j = r.json();
    let names: BTreeSet<String> = exported(&out).into_keys().collect();
    let want: BTreeSet<String> = [
        "photo/IMG_0001.JPG",
        "photo/IMG_0006.JPG",
        "live/IMG_0002.JPG",
        "live/IMG_0002.MOV",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    // 100APPLE/IMG_0001 and 101APPLE/IMG_0001 want one name: the second is suffixed.
    let mut rest: Vec<&String> = names.difference(&want).collect();
    assert_eq!(rest.len(), 1, "{names:?}");
    let other = rest.pop().unwrap();
    assert!(
        other.starts_with("photo/IMG_0001~") && other.ends_with(".JPG"),
        "{other}"
    );
    assert!(want.is_subset(&names), "{names:?}");
    assert_eq!(j["exported"], 5);
    // The iCloud-only photos are reported here too, and are no failure.
    assert_eq!(j["cloud_only"].as_array().unwrap().len(), 2, "{j}");
    assert!(j["failed"].as_array().unwrap().is_empty());
    let r = sim.run(&s, &args);
    r.ok();
    assert_eq!(r.json()["identical"], 5);
    assert_eq!(exported(&out).len(), 5);

    // From a folder: the screenshots of the SD card, taken in 2024.
    s.roll("SD", &[]);
    let shots = s.path("shots");
    let r = s.run(&[
        "export",
        "--from",
        s.path("SD").to_str().unwrap(),
        "--to",
        shots.to_str().unwrap(),
        "--only",
        "screenshot",
        "--since",
        "2024-01-01",
        "--flat",
    ]);
    r.ok();
    assert!(r.stdout.contains("exported"), "{}", r.stdout);
    assert_eq!(
        exported(&shots).into_keys().collect::<Vec<_>>(),
        ["Screenshot_20240607-142233.png"]
    );

    // Usage errors.
    let r = s.run(&["export", "--to", "x", "--flat", "--template", "{name}"]);
    r.code(2);
    let r = s.run(&[
        "export",
        "--to",
        s.path("y").to_str().unwrap(),
        "--from-store",
        s.path("nothing").to_str().unwrap(),
    ]);
    r.code(3);
    assert!(r.stderr.contains("no offload backup"), "{}", r.stderr);
}

#[cfg(not(feature = "heic"))]
#[test]
fn convert_heic_needs_the_heic_feature_and_says_so() {
    let s = Scratch::new();
    fs::create_dir_all(s.path("SD/DCIM")).unwrap();
    fs::write(s.path("SD/DCIM/a.jpg"), b"x").unwrap();
    let out = s.path("out");
    let r = s.run(&[
        "export",
        "--from",
        s.path("SD").to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--convert-heic",
        "jpeg",
    ]);
    r.code(2);
    assert!(
        r.stderr.contains("--features heic") && r.stderr.contains("libheif"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "nothing written");
}

/// DateTimeOriginal and Orientation as the EXIF parser reads them.
#[cfg(feature = "heic")]
fn exif_of(path: &Path) -> (String, Option<String>) {
    use nom_exif::{Exif, ExifIter, ExifTag, MediaParser, MediaSource};
    let ms = MediaSource::file_path(path).unwrap();
    let iter: ExifIter = MediaParser::new().parse(ms).unwrap();
    let exif: Exif = iter.into();
    (
        exif.get(ExifTag::DateTimeOriginal)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".into()),
        exif.get(ExifTag::Orientation).map(|v| v.to_string()),
    )
}

/// Width and height from a JPEG's SOF marker; panics unless the file is a whole JPEG.
#[cfg(feature = "heic")]
fn jpeg_size(bytes: &[u8]) -> (u16, u16) {
    assert!(bytes.starts_with(&[0xFF, 0xD8]), "no SOI");
    assert!(bytes.ends_with(&[0xFF, 0xD9]), "no EOI");
    let mut i = 2;
    while i + 9 < bytes.len() {
        assert_eq!(bytes[i], 0xFF, "marker expected at {i}");
        let marker = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if (0xC0..=0xC2).contains(&marker) {
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]);
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]);
            return (w, h);
        }
        i += 2 + len;
    }
    panic!("no SOF");
}

#[cfg(feature = "heic")]
#[test]
fn convert_heic_to_jpeg_keeps_the_capture_date_and_orientation() {
    let Some(fx) = fixtures("HEIC to JPEG conversion of real iPhone files") else {
        return;
    };
    let s = Scratch::new();
    let card = s.path("card/DCIM/100APPLE");
    fs::create_dir_all(&card).unwrap();
    let heics = [
        "iphone-13-pro-max.HEIC",
        "IMG_5195.HEIC",
        "nokia-8.3-5g.heif",
    ];
    for h in heics {
        fs::copy(fx.join(h), card.join(h)).unwrap();
    }
    fs::copy(fx.join("canon-40d.jpg"), card.join("canon-40d.jpg")).unwrap();
    let out = s.path("out");
    let from = s.path("card");
    let args = [
        "export",
        "--from",
        from.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--flat",
        "--convert-heic",
        "jpeg",
        "--json",
    ];
    let r = s.run(&args);
    r.ok();
    let j = r.json();
    assert_eq!(j["converted"], 3, "{j}");
    let files = exported(&out);
    assert_eq!(files.len(), 4, "{files:?}");
    // The JPEG is copied as it is.
    assert_eq!(files["canon-40d.jpg"], hash_file(&fx.join("canon-40d.jpg")));
    let lib = libheif_rs::LibHeif::new();
    for h in heics {
        let stem = h.rsplit_once('.').unwrap().0;
        let jpeg = out.join(format!("{stem}.jpg"));
        let bytes = fs::read(&jpeg).unwrap();
        // What a viewer shows: the HEIC decoded with its rotation applied.
        let ctx = libheif_rs::HeifContext::read_from_file(card.join(h).to_str().unwrap()).unwrap();
        let handle = ctx.primary_image_handle().unwrap();
        let img = lib
            .decode(
                &handle,
                libheif_rs::ColorSpace::Rgb(libheif_rs::RgbChroma::Rgb),
                None,
            )
            .unwrap();
        assert_eq!(
            jpeg_size(&bytes),
            (img.width() as u16, img.height() as u16),
            "{h}"
        );
        let (heic_date, heic_orientation) = exif_of(&card.join(h));
        let (jpeg_date, orientation) = exif_of(&jpeg);
        if heic_orientation.as_deref() == Some("6") {
            // Stored on its side: the JPEG holds it turned upright.
            assert_eq!(
                (handle.ispe_width() as u32, handle.ispe_height() as u32),
                (img.height(), img.width()),
                "{h}"
            );
        }
        assert_eq!(jpeg_date, heic_date, "{h}: the capture date travels");
        // The pixels are upright: a viewer must not turn them again.
        let want = heic_orientation.map(|_| "1".to_string());
        assert_eq!(orientation, want, "{h}");
    }
    // offload itself dates the JPEG as it dated the HEIC.
    let dest = s.path("dest");
    s.run(&[
        "backup",
        "--from",
        out.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ])
    .ok();
    let captured: BTreeSet<String> = catalog_files(&dest)
        .values()
        .filter(|v| v.2 == "exif")
        .map(|v| v.1[..19].to_string())
        .collect();
    for when in ["2022-02-16T12:55:41", "2021-04-11T15:47:53"] {
        assert!(captured.contains(when), "{when} in {captured:?}");
    }
    // The conversion is deterministic: a second export finds every file already there.
    let r = s.run(&args);
    r.ok();
    assert_eq!(r.json()["identical"], 4);
}
