//! Dates written into file names by phones and apps.
//!
//! Recognised (anywhere in the name, at the start of a run of digits):
//! - `YYYYMMDD?HHMMSS` with one separator (`_`, `-`, `.`, ` `, `T`): `IMG_20240131_235959`,
//!   `VID_...`, Samsung `20240131_235959`, `Screenshot_20240131-235959`, `MVIMG_...`.
//!   `PXL_20240131_235959123`: a Pixel writes UTC there, so it is converted to local time.
//! - `YYYY?MM?DD?HH?MM?SS` with separators (`-`, `_`, `.`, ` `, `:`; ` at ` between date
//!   and time): `Screenshot_2024-01-31-23-59-59`, `2024-01-31 23.59.59`,
//!   `Screenshot 2024-01-31 at 23.59.59`, `signal-2024-01-31-23-59-59-123`.
//! - WhatsApp `IMG-20240131-WA0001`: the date only, at 00:00:00.
//!
//! Every field is range-checked (a real calendar date, a real time, a year in 1990..=2100);
//! a candidate that fails is skipped and the search goes on.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// The local capture time written in `name`, if any; a Pixel's UTC name is converted to
/// the time zone `tz`.
pub(super) fn date_from_name_in(name: &str, tz: &TimeZone) -> Option<DateTime> {
    let b = name.as_bytes();
    let pixel = b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"PXL_");
    for start in 0..b.len() {
        if !b[start].is_ascii_digit() || (start > 0 && b[start - 1].is_ascii_digit()) {
            continue;
        }
        let s = &b[start..];
        if let Some(dt) = compact(s) {
            if pixel && start == 4 {
                // A Pixel names its files in UTC.
                let utc = dt.to_zoned(TimeZone::UTC).ok()?;
                return Some(utc.with_time_zone(tz.clone()).datetime());
            }
            return Some(dt);
        }
        if let Some(dt) = separated(s) {
            return Some(dt);
        }
        if let Some(dt) = whatsapp(s) {
            return Some(dt);
        }
    }
    None
}

/// `YYYYMMDD` + one separator + `HHMMSS` (more digits may follow: milliseconds).
fn compact(s: &[u8]) -> Option<DateTime> {
    if s.len() < 15 || !matches!(s[8], b'_' | b'-' | b'.' | b' ' | b'T') {
        return None;
    }
    let date = digits(&s[..8])?;
    let time = digits(&s[9..15])?;
    build(
        date / 10_000,
        date / 100 % 100,
        date % 100,
        time / 10_000,
        time / 100 % 100,
        time % 100,
    )
}

/// `YYYY-MM-DD-HH-MM-SS` and relatives; the time may also be `HHMMSS` (Signal).
fn separated(s: &[u8]) -> Option<DateTime> {
    let is_sep = |c: &u8| matches!(c, b'-' | b'_' | b'.' | b' ' | b':' | b'T');
    let y = digits(s.get(..4)?)?;
    let mut p = 4;
    let field = |p: &mut usize, at_ok: bool| -> Option<u32> {
        if !is_sep(s.get(*p)?) {
            return None;
        }
        *p += 1;
        if at_ok && s[*p..].starts_with(b"at ") {
            *p += 3;
        }
        let v = digits(s.get(*p..*p + 2)?)?;
        *p += 2;
        Some(v)
    };
    let mo = field(&mut p, false)?;
    let d = field(&mut p, false)?;
    let (h, mi, se);
    if let Some(hms) = s
        .get(p + 1..p + 7)
        .filter(|_| is_sep(&s[p]))
        .and_then(digits)
    {
        (h, mi, se) = (hms / 10_000, hms / 100 % 100, hms % 100);
        p += 7;
    } else {
        h = field(&mut p, true)?;
        mi = field(&mut p, false)?;
        se = field(&mut p, false)?;
    }
    if s.get(p).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    build(y, mo, d, h, mi, se)
}

/// WhatsApp: `YYYYMMDD-WA`; the date only.
fn whatsapp(s: &[u8]) -> Option<DateTime> {
    if s.len() < 11 || !s[8..11].eq_ignore_ascii_case(b"-WA") {
        return None;
    }
    let date = digits(&s[..8])?;
    build(date / 10_000, date / 100 % 100, date % 100, 0, 0, 0)
}

fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// A valid date and time with a plausible year, or nothing.
pub(super) fn build(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<DateTime> {
    if !(super::MIN_YEAR..=super::MAX_YEAR).contains(&(y as i16)) {
        return None;
    }
    let n = |v: u32| i8::try_from(v).ok();
    DateTime::new(y as i16, n(mo)?, n(d)?, n(h)?, n(mi)?, n(s)?, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> Option<DateTime> {
        Some(date(y, mo, d).at(h, mi, s, 0))
    }

    fn local(name: &str) -> Option<DateTime> {
        date_from_name_in(name, &TimeZone::UTC)
    }

    #[test]
    fn camera_names() {
        assert_eq!(
            local("IMG_20240131_235959.jpg"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            local("VID_20240131_235959.mp4"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(local("MVIMG_20230704_120000.jpg"), at(2023, 7, 4, 12, 0, 0));
        assert_eq!(local("20240131_235959.jpg"), at(2024, 1, 31, 23, 59, 59));
        assert_eq!(local("20240131_235959(1).jpg"), at(2024, 1, 31, 23, 59, 59));
        assert_eq!(
            local("IMG_20240229_101112_HDR.jpg"),
            at(2024, 2, 29, 10, 11, 12)
        );
    }

    #[test]
    fn pixel_names_are_utc() {
        let name = "PXL_20240131_235959123.jpg";
        assert_eq!(local(name), at(2024, 1, 31, 23, 59, 59));
        let paris = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(date_from_name_in(name, &paris), at(2024, 2, 1, 0, 59, 59));
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            date_from_name_in("PXL_20240701_020304000.MP.jpg", &ny),
            at(2024, 6, 30, 22, 3, 4)
        );
        // Other names are local already.
        assert_eq!(
            date_from_name_in("IMG_20240131_235959.jpg", &paris),
            at(2024, 1, 31, 23, 59, 59)
        );
    }

    #[test]
    fn whatsapp_names() {
        assert_eq!(local("IMG-20240131-WA0001.jpg"), at(2024, 1, 31, 0, 0, 0));
        assert_eq!(local("VID-20231225-WA0012.mp4"), at(2023, 12, 25, 0, 0, 0));
        assert_eq!(local("IMG-20241332-WA0001.jpg"), None);
    }

    #[test]
    fn screenshot_names() {
        assert_eq!(
            local("Screenshot_20240131-235959.png"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            local("Screenshot_20240131-235959_Chrome.jpg"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            local("Screenshot_2024-01-31-23-59-59.png"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            local("Screenshot_2024-01-31-23-59-59-123_com.app.png"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            local("Screenshot 2024-01-31 at 23.59.59.png"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            local("2024-01-31 23.59.59.jpg"),
            at(2024, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            local("signal-2024-01-31-235959.jpg"),
            at(2024, 1, 31, 23, 59, 59)
        );
    }

    #[test]
    fn invalid_names() {
        for name in [
            "IMG_0001.JPG",
            "IMG_20241301_120000.jpg", // month 13
            "IMG_20240230_120000.jpg", // 30 February
            "IMG_20230229_120000.jpg", // not a leap year
            "IMG_20240131_245959.jpg", // hour 24
            "IMG_20240131_236059.jpg", // minute 60
            "IMG_20240131_235960.jpg", // second 60
            "IMG_19890131_120000.jpg", // too early
            "IMG_21010131_120000.jpg", // too late
            "IMG_00000000_000000.jpg",
            "IMG_120240131_120000.jpg", // inside a longer number
            "IMG_20240131.jpg",         // a date alone is not enough
            "Screenshot_2024-13-31-23-59-59.png",
            "Screenshot_2024-01-31-23-59.png",
            "Screenshot_2024-01-31-23-59-591.png",
            "signal-2024-01-31-2359591.jpg",
            "",
            "PXL_",
            "20240131_23595",
            "éé20240131_235959",
        ] {
            let got = local(name);
            if name.starts_with("éé") {
                assert_eq!(got, at(2024, 1, 31, 23, 59, 59), "{name}");
            } else {
                assert_eq!(got, None, "{name}");
            }
        }
    }

    #[test]
    fn first_valid_candidate_wins() {
        // The expiry in a trashed name is not a date; the original name's date is.
        assert_eq!(
            local(".trashed-1712345678-IMG_20240101_120000.jpg"),
            at(2024, 1, 1, 12, 0, 0)
        );
        assert_eq!(
            local("IMG_20241301_000000_20240102_030405.jpg"),
            at(2024, 1, 2, 3, 4, 5)
        );
    }
}
