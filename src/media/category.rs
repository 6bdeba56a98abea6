//! Category of a file: content first, the name only as a tie-break or when there is no
//! content to look at; then the device's library and the platform's patterns refine
//! it into one primary category and tags.

use std::collections::BTreeSet;

use super::{rules, Categories, Category, Clues, Tag};

/// What the first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Image,
    /// TIFF structure: a raw when the extension says so (DNG, NEF, ...), else an image.
    Tiff,
    Raw,
    Video,
    /// A known format that is not a photo or video (audio, documents, archives...).
    Other,
    Unknown,
}

const RAW_EXTENSIONS: &[&str] = &[
    "dng", "cr2", "cr3", "nef", "nrw", "arw", "srf", "sr2", "raf", "orf", "rw2", "pef", "srw",
    "3fr", "iiq", "erf", "kdc", "mos", "x3f",
];
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "heic", "heif", "hif", "avif", "png", "gif", "webp", "tif",
    "tiff", "bmp", "jxl",
];
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "qt", "3gp", "3g2", "mkv", "webm", "avi", "mts", "m2ts", "ts", "mpg",
    "mpeg", "wmv", "insv", "lrv",
];

/// ISO-BMFF brands of still images (HEIF, HEIC, AVIF and their sequences).
const IMAGE_BRANDS: &[&[u8; 4]] = &[
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1",
    b"mif2", b"miaf", b"MiHE", b"MiHB", b"MiHA", b"avif", b"avis", b"avio", b"jpeg", b"jpgs",
];
/// ISO-BMFF brands of videos (MP4, QuickTime, 3GP, camera flavours).
const VIDEO_BRANDS: &[&[u8; 4]] = &[
    b"qt  ", b"mqt ", b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8",
    b"iso9", b"mp41", b"mp42", b"mp71", b"avc1", b"M4V ", b"M4VH", b"M4VP", b"XAVC", b"MSNV",
    b"NDAS", b"f4v ", b"dash", b"mmp4", b"3gp4", b"3gp5", b"3gp6", b"3gp7", b"3gs7", b"3ge6",
    b"3ge7", b"3gg6", b"3g2a", b"3g2b", b"3g2c", b"kddi",
];
/// ISO-BMFF brands of audio-only files.
const AUDIO_BRANDS: &[&[u8; 4]] = &[b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "];

/// See [`super::classify`].
pub(super) fn classify(c: &Clues) -> Categories {
    let (folders, name) = match c.path.rsplit_once('/') {
        Some((folders, name)) => (folders, name),
        None => ("", c.path),
    };
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext.to_ascii_lowercase()),
        _ => (name, String::new()),
    };
    let head = c.head.unwrap_or_default();
    let kind = match sniff(head) {
        Kind::Unknown => from_extension(&ext),
        Kind::Tiff if RAW_EXTENSIONS.contains(&ext.as_str()) => Kind::Raw,
        Kind::Tiff => Kind::Image,
        // An audio-only Matroska file.
        Kind::Video if ext == "mka" => Kind::Other,
        kind => kind,
    };
    let device = c.device_kind;
    let primary = match kind {
        Kind::Raw => Category::Raw,
        Kind::Image | Kind::Tiff => {
            if device == Some(Category::Screenshot) || is_screenshot(folders, name) {
                Category::Screenshot
            } else if device == Some(Category::Live)
                || c.live_pair
                || rules::is_motion_photo_name(stem)
                || is_motion_photo_content(head)
            {
                Category::Live
            } else {
                Category::Photo
            }
        }
        Kind::Video => {
            if device == Some(Category::ScreenRecording)
                || rules::is_screen_recording(folders, name)
            {
                Category::ScreenRecording
            } else if device == Some(Category::Live) || c.live_pair {
                Category::Live
            } else {
                Category::Video
            }
        }
        Kind::Other | Kind::Unknown => Category::Other,
    };
    let mut tags: BTreeSet<Tag> = c.device_tags.iter().cloned().collect();
    if primary != Category::Other {
        tags.extend(rules::tags_from_path(folders, stem));
        if c.lens.is_some_and(rules::is_front_camera) {
            tags.insert(Tag::Selfie);
        }
    }
    // A screen shows what the app drew: no camera, so no selfie or burst from its name.
    if matches!(primary, Category::Screenshot | Category::ScreenRecording) {
        tags.retain(|t| !matches!(t, Tag::Selfie | Tag::Burst | Tag::Panorama));
    }
    Categories { primary, tags }
}

/// An ISO-BMFF still image coded with HEVC (HEIC/HEIF), by its brands. AVIF is left
/// alone: it is not what phones write, and libheif may lack its decoder.
pub(super) fn is_heif(head: &[u8]) -> bool {
    const HEVC: &[&[u8; 4]] = &[
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1",
    ];
    if head.get(4..8) != Some(b"ftyp") || ftyp(head) != Kind::Image {
        return false;
    }
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = size.clamp(8, 4096).min(head.len());
    let brands = head
        .get(8..12)
        .into_iter()
        .chain(head.get(16..end).unwrap_or_default().chunks_exact(4));
    let mut any_hevc = false;
    for b in brands {
        if b == b"avif" || b == b"avis" {
            return false;
        }
        any_hevc |= HEVC.iter().any(|h| h.as_slice() == b);
    }
    any_hevc
}

/// A JPEG whose XMP says a video follows it (Google's MotionPhoto, the older MicroVideo;
/// Samsung writes the same flag): an Android motion photo whatever its name.
fn is_motion_photo_content(head: &[u8]) -> bool {
    if !head.starts_with(b"\xFF\xD8\xFF") {
        return false;
    }
    const FLAGS: &[&[u8]] = &[
        b"MotionPhoto=\"1\"",
        b"MicroVideo=\"1\"",
        b"MotionPhoto>1<",
        b"MicroVideo>1<",
    ];
    // memmem: a byte-by-byte scan of 64 KiB per flag cost 0.3 ms a photo, on the
    // committing thread, CPU the copy of the next file then lacks.
    FLAGS
        .iter()
        .any(|f| memchr::memmem::find(head, f).is_some())
}

fn is_screenshot(folders: &str, name: &str) -> bool {
    let starts = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    folders
        .split('/')
        .any(|f| f.eq_ignore_ascii_case("screenshots"))
        || starts("screenshot")
        || starts("screen shot")
}

fn from_extension(ext: &str) -> Kind {
    if IMAGE_EXTENSIONS.contains(&ext) {
        Kind::Image
    } else if RAW_EXTENSIONS.contains(&ext) {
        Kind::Raw
    } else if VIDEO_EXTENSIONS.contains(&ext) {
        Kind::Video
    } else {
        Kind::Other
    }
}

fn sniff(h: &[u8]) -> Kind {
    let at = |off: usize, magic: &[u8]| h.get(off..off + magic.len()) == Some(magic);
    if h.is_empty() {
        Kind::Unknown
    } else if at(0, b"\xFF\xD8\xFF")
        || at(0, b"\x89PNG\r\n\x1A\n")
        || at(0, b"GIF87a")
        || at(0, b"GIF89a")
        || (at(0, b"RIFF") && at(8, b"WEBP"))
    {
        Kind::Image
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        Kind::Tiff
    } else if at(0, b"IIRO") || at(0, b"IIRS") || at(0, b"MMOR") || at(0, b"IIU\0") {
        // Olympus ORF and Panasonic RW2: TIFF with their own magic.
        Kind::Raw
    } else if at(0, b"FUJIFILMCCD-RAW") {
        Kind::Raw
    } else if at(4, b"ftyp") {
        ftyp(h)
    } else if at(4, b"moov") || at(4, b"mdat") || at(4, b"wide") || at(4, b"pnot") {
        // QuickTime from before `ftyp`.
        Kind::Video
    } else if at(0, b"\x1A\x45\xDF\xA3") || (at(0, b"RIFF") && at(8, b"AVI ")) {
        Kind::Video
    } else if (at(0, b"\x47") && at(188, b"\x47") && at(376, b"\x47"))
        || (at(4, b"\x47") && at(196, b"\x47") && at(388, b"\x47"))
        || at(0, b"\x00\x00\x01\xBA")
    {
        // MPEG transport stream (camcorder .MTS/.M2TS), MPEG program stream.
        Kind::Video
    } else {
        match infer::get(h).map(|t| t.matcher_type()) {
            Some(infer::MatcherType::Image) => Kind::Image,
            Some(infer::MatcherType::Video) => Kind::Video,
            Some(_) => Kind::Other,
            None => Kind::Unknown,
        }
    }
}

/// ISO-BMFF: the major brand decides; if it is unknown, the compatible brands.
fn ftyp(h: &[u8]) -> Kind {
    let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let end = size.clamp(8, 4096).min(h.len());
    let Some(major) = h.get(8..12) else {
        return Kind::Unknown;
    };
    let classify = |brand: &[u8]| {
        let is = |list: &[&[u8; 4]]| list.iter().any(|b| b.as_slice() == brand);
        if brand == b"crx " {
            Some(Kind::Raw)
        } else if is(IMAGE_BRANDS) {
            Some(Kind::Image)
        } else if is(VIDEO_BRANDS) {
            Some(Kind::Video)
        } else if is(AUDIO_BRANDS) {
            Some(Kind::Other)
        } else {
            None
        }
    };
    if let Some(kind) = classify(major) {
        return kind;
    }
    // Compatible brands: an image brand outweighs the generic video ones (`isom`).
    let compatible: Vec<Kind> = h
        .get(16..end)
        .unwrap_or_default()
        .chunks_exact(4)
        .filter_map(classify)
        .collect();
    [Kind::Raw, Kind::Image, Kind::Video, Kind::Other]
        .into_iter()
        .find(|k| compatible.contains(k))
        .unwrap_or(Kind::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::categorize;

    fn ftyp_head(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut h = (size as u32).to_be_bytes().to_vec();
        h.extend_from_slice(b"ftyp");
        h.extend_from_slice(major);
        h.extend_from_slice(&[0, 0, 0, 0]);
        for c in compatible {
            h.extend_from_slice(*c);
        }
        h.extend_from_slice(b"\0\0\0\x08free");
        h
    }

    #[test]
    fn content_decides() {
        let jpeg = b"\xFF\xD8\xFF\xE1\0\x10Exif\0\0";
        let png = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR";
        assert_eq!(categorize("DCIM/Camera/IMG_1.jpg", jpeg), Category::Photo);
        // The extension lies: the content wins.
        assert_eq!(categorize("DCIM/Camera/IMG_1.mp4", jpeg), Category::Photo);
        assert_eq!(categorize("DCIM/Camera/IMG_1.jpg", png), Category::Photo);
        let mov = ftyp_head(b"qt  ", &[b"qt  "]);
        assert_eq!(categorize("DCIM/100APPLE/IMG_1.JPG", &mov), Category::Video);
        assert_eq!(categorize("DCIM/100APPLE/IMG_1.MOV", &mov), Category::Video);
        let heic = ftyp_head(b"heic", &[b"mif1", b"heic"]);
        assert_eq!(
            categorize("DCIM/100APPLE/IMG_1.HEIC", &heic),
            Category::Photo
        );
        let avif = ftyp_head(b"avif", &[b"avif", b"mif1", b"miaf"]);
        assert_eq!(categorize("a/b.avif", &avif), Category::Photo);
        let mif1 = ftyp_head(b"mif1", &[b"mif1", b"heic"]);
        assert_eq!(categorize("a/b.heif", &mif1), Category::Photo);
        let mp4 = ftyp_head(b"mp42", &[b"isom", b"mp42"]);
        assert_eq!(categorize("DCIM/Camera/VID_1.mp4", &mp4), Category::Video);
        let gp3 = ftyp_head(b"3gp6", &[b"isom", b"3gp6"]);
        assert_eq!(categorize("x/clip.3gp", &gp3), Category::Video);
        let unknown_major = ftyp_head(b"zzzz", &[b"isom"]);
        assert_eq!(categorize("x/clip.bin", &unknown_major), Category::Video);
        let unknown_image = ftyp_head(b"zzzz", &[b"isom", b"mif1"]);
        assert_eq!(categorize("x/clip.bin", &unknown_image), Category::Photo);
        let m4a = ftyp_head(b"M4A ", &[b"M4A ", b"isom"]);
        assert_eq!(categorize("Music/song.m4a", &m4a), Category::Other);
        let webm = b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01";
        assert_eq!(categorize("Movies/x.webm", webm), Category::Video);
        assert_eq!(categorize("Music/x.mka", webm), Category::Other);
        assert_eq!(categorize("a/x.gif", b"GIF89a\x01\0"), Category::Photo);
        assert_eq!(
            categorize("a/x.webp", b"RIFF\x10\0\0\0WEBPVP8 "),
            Category::Photo
        );
        assert_eq!(
            categorize("a/x.avi", b"RIFF\x10\0\0\0AVI LIST"),
            Category::Video
        );
        let mut ts = vec![0u8; 400];
        for i in [0, 188, 376] {
            ts[i] = 0x47;
        }
        assert_eq!(categorize("AVCHD/STREAM/00001.MTS", &ts), Category::Video);
        assert_eq!(
            categorize("Download/report.jpg", b"%PDF-1.7\n"),
            Category::Other
        );
        assert_eq!(
            categorize("Download/x.jpg", b"PK\x03\x04\x14\0\0\0"),
            Category::Other
        );
    }

    #[test]
    fn raws() {
        let tiff_le = b"II*\0\x08\0\0\0";
        let tiff_be = b"MM\0*\0\0\0\x08";
        for name in [
            "x.dng", "x.DNG", "x.cr2", "x.nef", "x.arw", "x.pef", "x.srw",
        ] {
            assert_eq!(categorize(name, tiff_le), Category::Raw, "{name}");
            assert_eq!(categorize(name, tiff_be), Category::Raw, "{name}");
        }
        assert_eq!(
            categorize(
                "DCIM/Camera/PXL_20240101_000000000.RAW-02.ORIGINAL.dng",
                tiff_le
            ),
            Category::Raw
        );
        assert_eq!(categorize("x.tif", tiff_le), Category::Photo);
        assert_eq!(categorize("x.orf", b"IIRO\x08\0\0\0"), Category::Raw);
        assert_eq!(categorize("x.rw2", b"IIU\0\x08\0\0\0"), Category::Raw);
        assert_eq!(categorize("x.raf", b"FUJIFILMCCD-RAW 0201"), Category::Raw);
        let cr3 = ftyp_head(b"crx ", &[b"crx ", b"isom"]);
        assert_eq!(categorize("x.CR3", &cr3), Category::Raw);
        assert_eq!(categorize("x.mp4", &cr3), Category::Raw);
        // A JPEG named .dng is a JPEG.
        assert_eq!(categorize("x.dng", b"\xFF\xD8\xFF\xE0"), Category::Photo);
    }

    #[test]
    fn screenshots() {
        let png = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR";
        let jpeg = b"\xFF\xD8\xFF\xE0";
        let mp4 = ftyp_head(b"mp42", &[b"isom"]);
        assert_eq!(
            categorize("Pictures/Screenshots/Screenshot_20240101-101010.png", png),
            Category::Screenshot
        );
        assert_eq!(
            categorize("DCIM/screenshots/IMG_1.jpg", jpeg),
            Category::Screenshot
        );
        assert_eq!(
            categorize("DCIM/Camera/Screenshot_2024-01-01-10-10-10.jpg", jpeg),
            Category::Screenshot
        );
        assert_eq!(
            categorize("Screenshot 2024-01-01 at 10.10.10.png", png),
            Category::Screenshot
        );
        // A screen recording is its own category; a folder merely containing the word is
        // not enough.
        assert_eq!(
            categorize("Pictures/Screenshots/Screen_recording_1.mp4", &mp4),
            Category::ScreenRecording
        );
        assert_eq!(
            categorize("Pictures/Screenshots/clip.mp4", &mp4),
            Category::Video
        );
        assert_eq!(
            categorize("DCIM/Screenshots-old/IMG_1.jpg", jpeg),
            Category::Photo
        );
        assert_eq!(
            categorize("Pictures/Screenshots/notes.txt", b"hello"),
            Category::Other
        );
    }

    #[test]
    fn name_alone_when_no_content() {
        assert_eq!(categorize("DCIM/Camera/IMG_1.JPG", b""), Category::Photo);
        assert_eq!(categorize("DCIM/Camera/IMG_1.HEIC", b""), Category::Photo);
        assert_eq!(categorize("DCIM/Camera/VID_1.mp4", b""), Category::Video);
        assert_eq!(categorize("DCIM/100APPLE/IMG_1.MOV", b""), Category::Video);
        assert_eq!(categorize("DCIM/Camera/x.dng", b""), Category::Raw);
        assert_eq!(
            categorize("Pictures/Screenshots/a.png", b""),
            Category::Screenshot
        );
        assert_eq!(
            categorize("Screenshot_20240101-000000.png", b""),
            Category::Screenshot
        );
        assert_eq!(categorize("DCIM/Camera/.nomedia", b""), Category::Other);
        assert_eq!(categorize("DCIM/Camera/jpg", b""), Category::Other);
        assert_eq!(categorize("", b""), Category::Other);
        // Unrecognised bytes: the name breaks the tie.
        assert_eq!(
            categorize("DCIM/Camera/IMG_1.jpg", b"\0\0\0\0garbage"),
            Category::Photo
        );
        assert_eq!(categorize("x/y.bin", b"\0\0\0\0garbage"), Category::Other);
    }
}
