//! The template renderer: any template that parses, filled with any device name, file
//! name and date, renders a relative path of exactly the template's depth, each part a
//! safe component: no value can climb out of the store or add a level.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offload_fuzz::store::names::MAX_COMPONENT_BYTES;
use offload_fuzz::store::template::{Fields, Template, DEFAULT_TEMPLATE};

fuzz_target!(|input: (
    String,
    String,
    String,
    String,
    [u8; 32],
    (i16, i8, i8, i8, i8)
)| {
    let (template, device, category, name, hash, (y, mo, d, h, mi)) = input;
    // The user's template (often the default) with the device's untrusted values.
    for text in [template.as_str(), DEFAULT_TEMPLATE] {
        let Ok(t) = Template::parse(text) else {
            continue;
        };
        let Ok(date) = jiff::civil::DateTime::new(y, mo, d, h, mi, 0, 0) else {
            return;
        };
        let hash = blake3::Hash::from_bytes(hash);
        let path = t.render(&Fields {
            device: &device,
            date,
            category: &category,
            name: &name,
            hash: &hash,
        });
        assert!(!path.starts_with('/'), "{text:?} → {path:?}");
        let parts: Vec<&str> = path.split('/').collect();
        assert_eq!(parts.len(), text.split('/').count(), "{text:?} → {path:?}");
        for c in parts {
            assert!(
                !c.is_empty() && c != "." && c != "..",
                "{text:?} → {path:?}"
            );
            assert!(c.len() <= MAX_COMPONENT_BYTES, "{text:?} → {path:?}");
            assert!(
                !c.chars().any(|ch| ch.is_control() || ch == '\\'),
                "{path:?}"
            );
        }
    }
});
