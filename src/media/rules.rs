//! What the platforms' folder and file names say about a file: the patterns Android
//! camera apps, messaging apps, browsers and iPhones use. Names only: whether the file
//! is a photo or a video is the content's business (see `category.rs`).

use super::Tag;

/// Folder names (any level, case-insensitive) where messaging apps keep media.
const MESSAGING_FOLDERS: &[&str] = &[
    "whatsapp",
    "whatsapp business",
    "com.whatsapp",
    "com.whatsapp.w4b",
    "telegram",
    "org.telegram.messenger",
    "signal",
    "org.thoughtcrime.securesms",
];

/// Folder names (any level, case-insensitive) where browsers and apps save downloads.
const DOWNLOAD_FOLDERS: &[&str] = &["download", "downloads"];

/// Folders of screen recorders (Samsung, Xiaomi, OnePlus, Pixel).
const SCREEN_RECORDING_FOLDERS: &[&str] = &[
    "screen recordings",
    "screenrecorder",
    "screenrecord",
    "screenrecords",
    "screen recorder",
];

/// Name prefixes of screen recordings (compared case-insensitively, `_`, `-` and ` `
/// alike).
const SCREEN_RECORDING_PREFIXES: &[&str] = &["screen recording", "screenrecording", "screenrecord"];

fn folder_is(folders: &str, names: &[&str]) -> bool {
    folders
        .split('/')
        .any(|f| names.iter().any(|n| f.eq_ignore_ascii_case(n)))
}

/// `Screen_Recording-2024` → `screen recording 2024`: separators alike, lower case.
fn loose(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | '-' => ' ',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A video made by a screen recorder, by its folder or name.
pub(super) fn is_screen_recording(folders: &str, name: &str) -> bool {
    let n = loose(name);
    folder_is(folders, SCREEN_RECORDING_FOLDERS)
        || SCREEN_RECORDING_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// An Android motion photo by its name: Pixel `PXL_….MP.jpg` (`.MP~2.jpg` after a
/// copy), older Google Camera `MVIMG_…`.
pub(super) fn is_motion_photo_name(stem: &str) -> bool {
    let upper = stem.to_ascii_uppercase();
    upper.ends_with(".MP") || upper.contains(".MP~") || upper.starts_with("MVIMG_")
}

/// A lens or camera model naming the front camera: iPhones write
/// "iPhone 12 front camera 2.71mm f/2.2", many Android phones "… front …".
pub(super) fn is_front_camera(lens: &str) -> bool {
    let l = lens.to_ascii_lowercase();
    l.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "front" || w == "selfie")
}

/// iPhone edited exports `IMG_E0001`, edit renders `FullSizeRender`, and the
/// `-edited`/`_edited` copies Android editors save.
fn is_edited(stem: &str) -> bool {
    let upper = stem.to_ascii_uppercase();
    let iphone_export = upper
        .strip_prefix("IMG_E")
        .is_some_and(|rest| rest.len() >= 4 && rest.bytes().all(|b| b.is_ascii_digit()));
    iphone_export
        || upper.starts_with("FULLSIZERENDER")
        || upper.ends_with("-EDITED")
        || upper.ends_with("_EDITED")
        || upper.contains("-EDITED~")
}

/// WhatsApp names its media `IMG-20240214-WA0007`, `VID-…-WA…`, `PTT-…`.
fn is_whatsapp_name(stem: &str) -> bool {
    let upper = stem.to_ascii_uppercase();
    upper.split_once("-WA").is_some_and(|(before, digits)| {
        before.len() >= 12
            && !digits.is_empty()
            && digits.bytes().take(4).all(|b| b.is_ascii_digit())
    })
}

/// Tags the folder (`/`-separated) and the stem (the name without its extension) give.
pub(super) fn tags_from_path(folders: &str, stem: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    let upper = stem.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let word_starts = |prefix: &str| words.iter().any(|w| w.starts_with(prefix));
    if folder_is(folders, MESSAGING_FOLDERS)
        || folders.to_ascii_lowercase().contains("whatsapp")
        || is_whatsapp_name(stem)
    {
        tags.push(Tag::Messaging);
    }
    if folder_is(folders, DOWNLOAD_FOLDERS) {
        tags.push(Tag::Download);
    }
    if is_edited(stem) {
        tags.push(Tag::Edited);
    }
    // Pixel `PXL_…_BURST001_COVER`, older `00000IMG_00000_BURST2019…`, Samsung `…_Burst01`.
    if word_starts("BURST") || upper.contains("_BURST") {
        tags.push(Tag::Burst);
    }
    // `PANO_20240101_120000`, Pixel `PXL_….PANO`.
    if words.contains(&"PANO") || upper.starts_with("PANO_") || word_starts("PANORAMA") {
        tags.push(Tag::Panorama);
    }
    if word_starts("SLOMO") || upper.contains("SLOW_MOTION") || upper.contains("SLOWMO") {
        tags.push(Tag::SloMo);
    }
    if word_starts("TIMELAPSE") || upper.contains("TIME_LAPSE") || word_starts("HYPERLAPSE") {
        tags.push(Tag::TimeLapse);
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(path: &str) -> Vec<Tag> {
        let (folders, name) = path.rsplit_once('/').unwrap_or(("", path));
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        tags_from_path(folders, stem)
    }

    #[test]
    fn platform_patterns() {
        use Tag::*;
        let wa =
            "Android/media/com.whatsapp/WhatsApp/Media/WhatsApp Images/IMG-20240214-WA0007.jpg";
        assert_eq!(tags(wa), [Messaging]);
        assert_eq!(tags("Pictures/x/IMG-20240214-WA0007.jpg"), [Messaging]);
        assert_eq!(tags("Telegram/Telegram Images/123.jpg"), [Messaging]);
        assert_eq!(tags("Pictures/Signal/signal-2024.jpg"), [Messaging]);
        assert_eq!(tags("Download/cat.jpg"), [Download]);
        assert_eq!(tags("DCIM/Downloads-old/cat.jpg"), []);
        assert_eq!(tags("DCIM/100APPLE/IMG_E0042.JPG"), [Edited]);
        assert_eq!(
            tags("PhotoData/Mutations/DCIM/100APPLE/IMG_0042/Adjustments/FullSizeRender.jpg"),
            [Edited]
        );
        assert_eq!(
            tags("DCIM/Camera/PXL_20240101_120000000-edited.jpg"),
            [Edited]
        );
        assert_eq!(tags("DCIM/100APPLE/IMG_EDGE.JPG"), []);
        assert_eq!(
            tags("DCIM/Camera/PXL_20240101_120000000_BURST001_COVER.jpg"),
            [Burst]
        );
        assert_eq!(tags("DCIM/Camera/PANO_20240101_120000.jpg"), [Panorama]);
        assert_eq!(
            tags("DCIM/Camera/PXL_20240101_120000000.PANO.jpg"),
            [Panorama]
        );
        assert_eq!(tags("DCIM/Camera/VID_20240101_120000_SLOMO.mp4"), [SloMo]);
        assert_eq!(tags("DCIM/Camera/VID_20240101_TIMELAPSE.mp4"), [TimeLapse]);
        assert_eq!(tags("DCIM/Camera/IMG_20240101_120000.jpg"), []);
        // A word merely containing the letters is not a pattern.
        assert_eq!(tags("DCIM/Camera/PANORAMIX.jpg"), []);
    }

    #[test]
    fn screen_recordings_motion_photos_and_front_cameras() {
        assert!(is_screen_recording("DCIM/Screen recordings", "x.mp4"));
        assert!(is_screen_recording(
            "Movies",
            "Screen_Recording_20240101-101010.mp4"
        ));
        assert!(is_screen_recording("Movies", "screenrecord-2024.mp4"));
        assert!(is_screen_recording("DCIM/ScreenRecorder", "a.mp4"));
        assert!(!is_screen_recording("DCIM/Camera", "VID_1.mp4"));
        assert!(is_motion_photo_name("PXL_20240315_101530123.MP"));
        assert!(is_motion_photo_name("PXL_20240315_101530123.MP~2"));
        assert!(is_motion_photo_name("MVIMG_20190101_120000"));
        assert!(!is_motion_photo_name("IMG_MP3"));
        assert!(is_front_camera("iPhone 12 front camera 2.71mm f/2.2"));
        assert!(is_front_camera("Front"));
        assert!(!is_front_camera(
            "iPhone 13 Pro Max back triple camera 5.7mm f/1.5"
        ));
        assert!(!is_front_camera("Frontier 5000"));
    }
}
