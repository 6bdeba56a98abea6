//! The file-name date parser: any name gives a plausible date or none, never a panic.
#![no_main]

use jiff::tz::{Offset, TimeZone};
use libfuzzer_sys::fuzz_target;
use offload_fuzz::media::{capture_date_in, DateSource};

fuzz_target!(|input: (&str, i64, i8)| {
    let (name, mtime, hours) = input;
    let tz = match Offset::from_hours(hours % 15) {
        Ok(o) => TimeZone::fixed(o),
        Err(_) => TimeZone::UTC,
    };
    // No file at this path: the metadata step finds nothing and the name decides.
    let missing = std::path::Path::new("/nonexistent/offload-fuzz");
    let got = capture_date_in(missing, name, mtime, &tz);
    if got.source == DateSource::FileName {
        // A Pixel's UTC name may move a day either way across a year's edge.
        assert!(
            (1989..=2101).contains(&got.local.year()),
            "{name:?} → {got:?}"
        );
    } else {
        assert_eq!(got.source, DateSource::Mtime, "{name:?} → {got:?}");
    }
    assert_eq!(
        capture_date_in(missing, name, mtime, &tz),
        got,
        "not deterministic"
    );
});
