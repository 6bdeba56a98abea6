//! Names from devices and folders, made safe to show in a terminal.
//!
//! A file name is untrusted: an ESC starts a terminal control sequence (colours, a moved
//! cursor, a changed window title), a newline or tab breaks the layout of a list, and a
//! bidi control (U+202E RIGHT-TO-LEFT OVERRIDE) turns `gpj.exe` around on screen. Every
//! name printed for people goes through [`shown`]; JSON output keeps the exact name.

use std::borrow::Cow;

/// `name` as it may be shown in a terminal: control characters (C0, DEL, C1), the
/// Unicode bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), the
/// line and paragraph separators (U+2028, U+2029) and the backslash are written as
/// visible escapes: `\e`, `\n`, `\r`, `\t`, `\\`, else `\u{202e}` (lowercase hex).
/// Everything else is kept, so that a name in any script reads as it is. Borrowed when
/// nothing needs escaping.
pub fn shown(name: &str) -> Cow<'_, str> {
    if !name.chars().any(needs_escape) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\u{1b}' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_borrowed_as_they_are() {
        for name in [
            "IMG_0001.JPG",
            "Café déjà vu.jpg",
            "写真 1.heic",
            "a/b c.mp4",
            "",
        ] {
            assert!(
                matches!(shown(name), Cow::Borrowed(n) if n == name),
                "{name}"
            );
        }
    }

    #[test]
    fn controls_and_bidi_become_visible() {
        assert_eq!(
            shown("\u{1b}[31mred\nline\tx\r\u{7}\u{7f}\u{9b}.jpg"),
            "\\e[31mred\\nline\\tx\\r\\u{7}\\u{7f}\\u{9b}.jpg"
        );
        assert_eq!(shown("a\u{202e}gpj.exe"), "a\\u{202e}gpj.exe");
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
        ] {
            let s = shown(&format!("x{c}y")).into_owned();
            assert_eq!(s, format!("x\\u{{{:x}}}y", c as u32));
            assert!(!s.contains(c));
        }
        // A backslash is escaped too, so that `\n` on screen is always a newline.
        assert_eq!(shown("a\\nb"), "a\\\\nb");
    }
}
