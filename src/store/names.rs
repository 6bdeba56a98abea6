//! Making untrusted names legal and safe on every drive a user may back up to.
//!
//! A name from a phone may hold `..`, `/`, control characters, a Windows reserved
//! word, a thousand bytes, or differ from another only by case or Unicode
//! normalisation. The store writes to FAT32, exFAT, NTFS and ext4 alike, so every
//! component is reduced to what all of them accept.

use unicode_normalization::UnicodeNormalization;

/// Longest file-name component, in bytes, that ext4 (255 bytes) and FAT/exFAT/NTFS
/// (255 UTF-16 units, never fewer than 255 UTF-8 bytes' worth) all accept.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Names Windows (and so FAT/exFAT/NTFS drives used from Windows) refuses, with or
/// without an extension.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Turns one untrusted path component into a name every supported filesystem
/// accepts: NFC-normalised, no `\ / : * ? " < > |`, no control characters, no
/// trailing dots or spaces, no leading dot (it would hide the file), no reserved
/// device names, at most [`MAX_COMPONENT_BYTES`] bytes with the extension kept.
/// Never returns an empty string, `.` or `..`.
pub fn sanitize_component(raw: &str) -> String {
    let mut s: String = raw
        .nfc()
        .map(|c| match c {
            '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            // Unicode line/paragraph separators and BOMs confuse terminals and shells.
            '\u{2028}' | '\u{2029}' | '\u{feff}' => '_',
            c => c,
        })
        .collect();
    // Leading spaces go first: trimmed after the dots were neutralised, ` .jpg` became
    // the hidden `.jpg` (found by the fuzz target `sanitize`).
    let trimmed = s.trim_start_matches(' ');
    if trimmed.len() != s.len() {
        s = trimmed.to_string();
    }
    // Leading dots would make the file hidden (and `..` a parent reference).
    let dots = s.len() - s.trim_start_matches('.').len();
    if dots > 0 {
        s.replace_range(0..dots, &"_".repeat(dots));
    }
    let trimmed_len = s.trim_end_matches(['.', ' ']).len();
    s.truncate(trimmed_len);
    if s.is_empty() {
        s = "_".to_string();
    }
    let stem_upper = s
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    if RESERVED.contains(&stem_upper.as_str()) {
        s.insert(0, '_');
    }
    truncate_keep_ext(&s, MAX_COMPONENT_BYTES)
}

/// Shortens `name` to at most `max` bytes on a character boundary, keeping a short
/// extension so that the file still opens with the right program.
pub fn truncate_keep_ext(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = split_ext(name);
    // An "extension" longer than 16 bytes is not one worth keeping.
    let ext = if ext.len() <= 16 { ext } else { "" };
    let room = max.saturating_sub(ext.len());
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = stem[..cut].trim_end_matches(['.', ' ']).to_string();
    if out.is_empty() {
        out.push('_');
    }
    out.push_str(ext);
    out
}

/// Splits `IMG_0001.HEIC` into (`IMG_0001`, `.HEIC`). A leading dot is not an
/// extension; a name without a dot has an empty extension.
pub fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// The key under which two stored paths count as the same name: NFC and
/// case-folded, because exFAT, NTFS and FAT (and macOS) would make them one file.
///
/// Lowercasing is done on the decomposed form and the result normalised again
/// (Unicode's canonical caseless match): lowercasing an NFC string can leave marks
/// out of canonical order (`İ` becomes `i` + U+0307 before any mark that followed),
/// and two spellings of one name would then get different keys.
pub fn clash_key(path: &str) -> String {
    path.nfd().flat_map(char::to_lowercase).nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_names_are_neutralised() {
        assert_eq!(sanitize_component(".."), "__");
        assert_eq!(sanitize_component("."), "_");
        assert_eq!(sanitize_component(""), "_");
        assert_eq!(sanitize_component("a/b\\c"), "a_b_c");
        assert_eq!(sanitize_component("x:y*z?\"<>|"), "x_y_z_____");
        assert_eq!(sanitize_component("bell\u{7}\nname"), "bell__name");
        assert_eq!(sanitize_component("trailing. . "), "trailing");
        assert_eq!(sanitize_component("CON"), "_CON");
        assert_eq!(sanitize_component("nul.txt"), "_nul.txt");
        assert_eq!(sanitize_component("com1 .jpg"), "_com1 .jpg");
        assert_eq!(sanitize_component("CONSOLE.jpg"), "CONSOLE.jpg");
        assert_eq!(sanitize_component(".hidden.jpg"), "_hidden.jpg");
        assert_eq!(sanitize_component("  .:"), "__");
        assert_eq!(sanitize_component(" .jpg"), "_jpg");
        assert_eq!(sanitize_component("IMG_0001.HEIC"), "IMG_0001.HEIC");
    }

    #[test]
    fn long_names_keep_their_extension_and_char_boundaries() {
        let long = format!("{}.jpg", "é".repeat(400));
        let s = sanitize_component(&long);
        assert!(s.len() <= MAX_COMPONENT_BYTES, "{}", s.len());
        assert!(s.ends_with(".jpg"));
        let s = sanitize_component(&"x".repeat(1000));
        assert_eq!(s.len(), MAX_COMPONENT_BYTES);
    }

    #[test]
    fn nfd_and_nfc_become_one_spelling() {
        let nfd = "Cafe\u{301}.jpg";
        let nfc = "Caf\u{e9}.jpg";
        assert_eq!(sanitize_component(nfd), sanitize_component(nfc));
        assert_eq!(clash_key("IMG.JPG"), clash_key("img.jpg"));
        assert_eq!(clash_key(nfd), clash_key(&nfc.to_uppercase()));
        // A dotted capital I composes under NFC and lowercases to two chars, which
        // must land in canonical order before the marks that follow them.
        let s = sanitize_component("(i\u{307}i\u{307}\u{317}");
        assert_eq!(clash_key(&s), clash_key(&s.to_ascii_uppercase()));
        assert_eq!(clash_key("I\u{307}\u{317}"), clash_key("i\u{317}\u{307}"));
    }

    #[test]
    fn split_ext_cases() {
        assert_eq!(split_ext("a.b.jpg"), ("a.b", ".jpg"));
        assert_eq!(split_ext("noext"), ("noext", ""));
        assert_eq!(split_ext(".x"), (".x", ""));
    }
}
