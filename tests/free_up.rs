//! `offload free-up`: deletes from a (virtual) phone only what is verified now.

mod common;

use std::fs;

use common::phones::Sim;
use common::*;

const SERIAL: &str = "FREEUP01";

fn phone(s: &Scratch) -> std::path::PathBuf {
    let dir = s.path(SERIAL);
    s.roll(SERIAL, &[]);
    dir
}

fn run_android(s: &Scratch, dir: &std::path::Path, args: &[&str]) -> Done {
    let mut c = s.cmd(args);
    c.env("OFFLOAD_VIRTUAL_ANDROID", dir)
        // No iPhone can be reached: a closed local port stands in for usbmuxd.
        .env("USBMUXD_SOCKET_ADDRESS", "127.0.0.1:9");
    Done::from(c.output().unwrap())
}

#[test]
fn lists_then_deletes_only_what_is_verified_and_unchanged() {
    let s = Scratch::new();
    let dir = phone(&s);
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    run_android(&s, &dir, &["backup", "--to", d]).ok();
    let on_phone_before = source_files(&dir);

    // Without --yes: a list, nothing deleted.
    let r = run_android(&s, &dir, &["free-up", "--to", d, "--json"]);
    r.ok();
    let j = r.json();
    let eligible: Vec<String> = j[0]["eligible"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect();
    assert!(eligible.len() >= 15, "{j}");
    assert_eq!(
        source_files(&dir),
        on_phone_before,
        "nothing deleted without --yes"
    );

    // Damage one stored copy, and change one photo on the phone after its backup.
    let cat = catalog_files(&dest);
    let (damaged_store_path, damaged_hash) = cat
        .iter()
        .find(|(p, _)| p.ends_with(".jpg"))
        .map(|(p, v)| (p.clone(), v.0.clone()))
        .unwrap();
    let mut bytes = fs::read(dest.join(&damaged_store_path)).unwrap();
    bytes[100] ^= 0xFF;
    fs::write(dest.join(&damaged_store_path), &bytes).unwrap();
    let damaged_on_phone: Vec<String> = on_phone_before
        .iter()
        .filter(|(_, h)| **h == damaged_hash)
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!damaged_on_phone.is_empty());
    let changed = on_phone_before
        .keys()
        .find(|p| p.starts_with("DCIM/Camera/") && !damaged_on_phone.contains(p))
        .unwrap()
        .clone();
    fs::write(dir.join(&changed), b"edited on the phone after the backup").unwrap();

    let r = run_android(&s, &dir, &["free-up", "--to", d, "--yes", "--json"]);
    r.code(1); // the damaged copy is a problem worth an exit code
    let j = r.json();
    let deleted: Vec<String> = j[0]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(!deleted.is_empty());
    let on_phone_after = source_files(&dir);
    for p in &damaged_on_phone {
        assert!(
            on_phone_after.contains_key(p),
            "{p}: its stored copy is damaged, it must stay"
        );
    }
    assert!(
        on_phone_after.contains_key(&changed),
        "{changed}: changed since the backup, it must stay"
    );
    for p in &deleted {
        let rel = p.strip_prefix("Internal shared storage/").unwrap();
        assert!(
            !on_phone_after.contains_key(rel),
            "{rel} reported deleted but still on the phone"
        );
    }
    // Everything deleted is logged with the verified copy.
    let c = catalog(&dest);
    let logged: i64 = c
        .query_row("SELECT count(*) FROM deletions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(logged as usize, deleted.len());
    let copy: String = c
        .query_row("SELECT verified_copy FROM deletions LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        copy.starts_with(dest.canonicalize().unwrap().to_str().unwrap()),
        "{copy}"
    );
    // Every deleted file's content is intact in the store.
    let stored: std::collections::BTreeSet<String> = store_files(&dest).into_values().collect();
    for p in &deleted {
        let rel = p.strip_prefix("Internal shared storage/").unwrap();
        assert!(
            stored.contains(&on_phone_before[rel]),
            "{rel} deleted but not intact in the store"
        );
    }
}

#[test]
fn needs_the_copies_it_is_asked_for_and_filters() {
    let s = Scratch::new();
    let dir = phone(&s);
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    run_android(&s, &dir, &["backup", "--to", d]).ok();
    let r = run_android(&s, &dir, &["free-up", "--to", d, "--copies", "2", "--yes"]);
    r.code(4);
    assert!(r.stderr.contains("--copies 2"), "{}", r.stderr);
    // Nothing in the roll is a century old.
    let r = run_android(
        &s,
        &dir,
        &["free-up", "--to", d, "--older-than", "100y", "--json"],
    );
    r.ok();
    assert_eq!(r.json()[0]["eligible"].as_array().unwrap().len(), 0);
    let r = run_android(
        &s,
        &dir,
        &["free-up", "--to", d, "--only", "video", "--json"],
    );
    r.ok();
    let j = r.json();
    let e = j[0]["eligible"].as_array().unwrap();
    assert!(
        !e.is_empty()
            && e.iter().all(|i| {
                let p = i["path"].as_str().unwrap().to_lowercase();
                p.ends_with(".mp4") || p.ends_with(".mov")
            }),
        "{j}"
    );
    run_android(&s, &dir, &["free-up", "--to", d, "--older-than", "soon"]).code(2);
}

#[test]
fn an_iphone_is_never_written_to() {
    let s = Scratch::new();
    s.roll("iphone", &["--kind", "iphone"]);
    let dir = s.path("iphone");
    let dcim = dir.join("DCIM");
    let before = source_files(&dcim);
    let sim = Sim::spawn(&s, &dir, &[]);
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    let run = |args: &[&str]| sim.run(&s, args);
    run(&["backup", "--to", d]).ok();
    let r = run(&["free-up", "--to", d, "--yes"]);
    r.ok();
    assert!(r.stdout.contains("Photos app"), "{}", r.stdout);
    assert!(
        r.stdout.contains("DCIM/100APPLE/IMG_0001.JPG"),
        "the verified list is printed: {}",
        r.stdout
    );
    assert_eq!(
        source_files(&dcim),
        before,
        "nothing deleted from the iPhone"
    );
}
