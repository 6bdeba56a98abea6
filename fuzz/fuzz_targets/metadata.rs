//! The metadata reader: any file content (JPEG, HEIC, MOV, PNG, WebP... or garbage)
//! gives a plausible capture date or none, without escaping panics, hangs or memory
//! blow-ups (libFuzzer's -timeout and -rss_limit_mb enforce the last two).
#![no_main]

use std::io::Write;
use std::sync::Once;

use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;
use offload_fuzz::media::{capture_date_in, DateSource};

fuzz_target!(|data: &[u8]| {
    static QUIET: Once = Once::new();
    // The reader catches the parser's panics (they mean "no date"): keep them from
    // flooding the log. A panic that escapes still aborts, through libFuzzer's wrapper.
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let path = std::env::temp_dir().join(format!("offload-fuzz-meta-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).expect("temp file");
    f.write_all(data).expect("temp file");
    drop(f);
    // A name with no date in it, and mtime 0: only the content can give a real date.
    let got = capture_date_in(&path, "IMG_0001.JPG", 0, &TimeZone::UTC);
    match got.source {
        DateSource::Exif | DateSource::QuickTime => {
            assert!((1990..=2100).contains(&got.local.year()), "{got:?}");
        }
        DateSource::Mtime => assert_eq!(got.local.year(), 1970),
        DateSource::FileName => panic!("no date in the name, yet {got:?}"),
    }
});
