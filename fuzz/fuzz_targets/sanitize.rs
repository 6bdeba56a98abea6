//! The name sanitiser: whatever a device calls a file, the result is one safe path
//! component that every supported filesystem accepts, and sanitising is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offload_fuzz::store::names::{clash_key, sanitize_component, MAX_COMPONENT_BYTES};
use unicode_normalization::{is_nfc, UnicodeNormalization};

const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

fuzz_target!(|raw: &str| {
    let s = sanitize_component(raw);
    assert!(!s.is_empty(), "{raw:?} → empty");
    assert!(s != "." && s != "..", "{raw:?} → {s:?}");
    assert!(
        s.len() <= MAX_COMPONENT_BYTES,
        "{raw:?} → {} bytes",
        s.len()
    );
    assert!(
        !s.chars()
            .any(|c| c.is_control() || "/\\:*?\"<>|\u{2028}\u{2029}\u{feff}".contains(c)),
        "{raw:?} → {s:?}"
    );
    assert!(
        !s.starts_with('.') && !s.starts_with(' '),
        "{raw:?} → {s:?}"
    );
    assert!(!s.ends_with('.') && !s.ends_with(' '), "{raw:?} → {s:?}");
    let stem = s
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    assert!(!RESERVED.contains(&stem.as_str()), "{raw:?} → {s:?}");
    assert!(is_nfc(&s), "{raw:?} → {s:?} is not NFC");
    assert_eq!(sanitize_component(&s), s, "not idempotent on {raw:?}");
    // The NFD spelling of a name lands on the same stored name.
    let nfd: String = raw.nfd().collect();
    assert_eq!(sanitize_component(&nfd), s, "{raw:?}: NFC and NFD differ");
    // Spellings that a case-insensitive drive would make one file share a clash key.
    assert_eq!(clash_key(&s), clash_key(&s.to_ascii_uppercase()), "{raw:?}");
    assert_eq!(
        clash_key(&s),
        clash_key(&s.nfd().collect::<String>()),
        "{raw:?}"
    );
});
