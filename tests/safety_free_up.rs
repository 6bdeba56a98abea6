//! `offload free-up` deletes exactly what it verified: the very phone object whose
//! content it has just read and matched with the stored copy's hash, nothing that a
//! name could confuse with it; it selects with the same filter as `backup`; and names
//! shown to people are escaped.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::phones::{android_cmd, run_bounded};
use common::*;

const STORAGE: &str = "Internal shared storage";

/// 2023-11-14 22:13:20 UTC: one date for files that must share it.
const NOV_2023: i64 = 1_700_000_000;

fn write_dated(path: &Path, bytes: &[u8], unix_mtime: i64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    set_mtime(path, unix_mtime);
}

fn set_mtime(path: &Path, unix_mtime: i64) {
    let t = if unix_mtime >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix_mtime as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(unix_mtime.unsigned_abs())
    };
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// `offload ARGS` with `phone` served as a virtual Android phone.
fn android(s: &Scratch, phone: &Path, args: &[&str]) -> Done {
    run_bounded(android_cmd(s, &[phone], "", args), s)
}

/// The strings of a JSON array.
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn paths(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect()
}

/// The files of a folder, by raw name: name bytes → content.
fn raw_files(dir: &Path) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().as_bytes().to_vec(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Twin names on the phone: `names` (raw bytes) in `DCIM/Camera`, each with its own
/// content but one size and one date, beside `plain.jpg`. Backs the phone up, then runs
/// `free-up --yes` twice, and checks that neither twin was deleted and that every
/// reported deletion is exactly what left the phone.
fn twins_are_never_deleted(serial: &str, names: &[&[u8]]) {
    let s = Scratch::new();
    let phone = s.path(serial);
    let camera = phone.join("DCIM/Camera");
    for (i, name) in names.iter().enumerate() {
        let content = noise(&format!("twin {i}"), 5000);
        write_dated(
            &camera.join(std::ffi::OsStr::from_bytes(name)),
            &content,
            NOV_2023,
        );
    }
    write_dated(&camera.join("plain.jpg"), &noise("plain", 5000), NOV_2023);
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    // The backup stores one twin and reports the other (the phone cannot tell them apart).
    let r = android(&s, &phone, &["backup", "--to", d, "--json"]);
    r.code(1);
    assert_eq!(
        r.json()["devices"][0]["failed"].as_array().unwrap().len(),
        1,
        "{}",
        r.stdout
    );
    let twins: BTreeSet<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    let before = raw_files(&camera);
    let mut previous = before.clone();

    for run in 0..2 {
        let r = android(&s, &phone, &["free-up", "--to", d, "--yes", "--json"]);
        let j = r.json();
        let dev = &j[0];
        let after = raw_files(&camera);
        for name in &twins {
            assert_eq!(
                after.get(name),
                before.get(name),
                "run {run}: the twin {:?} was deleted or changed; free-up said: {}",
                String::from_utf8_lossy(name),
                r.stdout
            );
        }
        // What was reported deleted is exactly what left the phone.
        let gone: BTreeSet<String> = previous
            .keys()
            .filter(|n| !after.contains_key(*n))
            .map(|n| format!("{STORAGE}/DCIM/Camera/{}", String::from_utf8_lossy(n)))
            .collect();
        let reported: BTreeSet<String> = strings(&dev["deleted"]).into_iter().collect();
        assert_eq!(reported, gone, "run {run}: {}", r.stdout);
        previous = after;
        if run == 0 {
            assert_eq!(
                reported,
                BTreeSet::from([format!("{STORAGE}/DCIM/Camera/plain.jpg")]),
                "{}",
                r.stdout
            );
            // The twins are kept, and the user is told why and what to do.
            let kept = dev["kept"].as_array().unwrap();
            let twin_path = format!(
                "{STORAGE}/DCIM/Camera/{}",
                String::from_utf8_lossy(&truncated(names[0]))
            );
            let why = kept
                .iter()
                .find(|k| k["path"] == twin_path.as_str())
                .unwrap_or_else(|| panic!("{twin_path} is not reported kept: {}", r.stdout));
            let reason = why["reason"].as_str().unwrap();
            assert!(
                reason.contains("same name") && reason.contains("rename"),
                "{reason}"
            );
        }
    }
}

/// A name as MTP carries it: at most 254 characters (these are ASCII, or one byte that
/// is not UTF-8).
fn truncated(name: &[u8]) -> Vec<u8> {
    name[..name.len().min(254)].to_vec()
}

#[test]
fn names_that_are_not_utf8_and_read_as_one_are_never_deleted() {
    // Both read the lossy way as `IMG_\u{fffd}.jpg`.
    twins_are_never_deleted("TWINS01", &[b"IMG_\xff.jpg", b"IMG_\xfe.jpg"]);
}

#[test]
fn names_that_mtp_cuts_to_one_are_never_deleted() {
    // 255 bytes each, the longest a Linux disk holds; MTP carries 254 characters, so
    // both show as `xxx….jp`.
    let a = format!("{}.jpg", "x".repeat(251));
    let b = format!("{}.jpe", "x".repeat(251));
    assert_eq!(a.len(), 255);
    twins_are_never_deleted("TWINS02", &[a.as_bytes(), b.as_bytes()]);
}

/// A small phone: three photos dated by their mtime (no EXIF, no date in the name).
fn small_phone(s: &Scratch, serial: &str) -> PathBuf {
    let phone = s.path(serial);
    for (i, name) in ["a.jpg", "b.jpg", "c.jpg"].iter().enumerate() {
        write_dated(
            &phone.join("DCIM/Camera").join(name),
            &noise(name, 20_000 + i * 1000),
            NOV_2023 + i as i64 * 60,
        );
    }
    phone
}

#[test]
fn a_file_changed_with_the_same_size_and_date_is_kept() {
    let s = Scratch::new();
    let phone = small_phone(&s, "CHANGED01");
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    android(&s, &phone, &["backup", "--to", d]).ok();

    // Edited in place after the backup: same size, same date, other bytes.
    let b = phone.join("DCIM/Camera/b.jpg");
    let mut bytes = fs::read(&b).unwrap();
    bytes[1000] ^= 0x55;
    fs::write(&b, &bytes).unwrap();
    set_mtime(&b, NOV_2023 + 60);

    let stats = s.path("stats.json");
    let mut c = android_cmd(
        &s,
        &[&phone],
        "",
        &["free-up", "--to", d, "--yes", "--json"],
    );
    c.env("OFFLOAD_VIRTUAL_STATS", &stats);
    let r = run_bounded(c, &s);
    assert_eq!(
        fs::read(&b).ok().as_deref(),
        Some(&bytes[..]),
        "b.jpg differs from its backup but was deleted: {}",
        r.stdout
    );
    r.code(1);
    let j = r.json();
    let dev = &j[0];
    let b_path = format!("{STORAGE}/DCIM/Camera/b.jpg");
    let kept = dev["kept"].as_array().unwrap();
    let why = kept
        .iter()
        .find(|k| k["path"] == b_path.as_str())
        .unwrap_or_else(|| panic!("b.jpg is not reported kept: {}", r.stdout));
    let reason = why["reason"].as_str().unwrap();
    assert!(
        reason.contains("differs from the backup") && reason.contains("back"),
        "{reason}"
    );
    // The others were read from the phone, matched and deleted.
    let deleted: BTreeSet<String> = strings(&dev["deleted"]).into_iter().collect();
    assert_eq!(
        deleted,
        ["a.jpg", "c.jpg"]
            .iter()
            .map(|n| format!("{STORAGE}/DCIM/Camera/{n}"))
            .collect(),
        "{}",
        r.stdout
    );
    assert!(!phone.join("DCIM/Camera/a.jpg").exists());
    assert!(!phone.join("DCIM/Camera/c.jpg").exists());
    // Each was read once from the phone, and nothing else.
    assert_eq!(dev["phone_files_hashed"], 3, "{}", r.stdout);
    let counters: serde_json::Value = serde_json::from_slice(&fs::read(&stats).unwrap()).unwrap();
    assert_eq!(counters["opens"], 3, "{counters}");
}

#[test]
fn older_than_takes_days_weeks_months_and_years() {
    let s = Scratch::new();
    let phone = s.path("AGES01");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86_400;
    for (name, days) in [
        ("d10.jpg", 10),
        ("d20.jpg", 20),
        ("d100.jpg", 100),
        ("d200.jpg", 200),
        ("d500.jpg", 500),
    ] {
        write_dated(
            &phone.join("DCIM/Camera").join(name),
            &noise(name, 3000),
            now - days * day,
        );
    }
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    android(&s, &phone, &["backup", "--to", d]).ok();
    for (age, want) in [
        ("2w", &["d20", "d100", "d200", "d500"][..]),
        ("3months", &["d100", "d200", "d500"][..]),
        ("3 months", &["d100", "d200", "d500"][..]),
        ("6mo", &["d200", "d500"][..]),
        ("90d", &["d100", "d200", "d500"][..]),
        ("1y", &["d500"][..]),
        ("2years", &[][..]),
    ] {
        let r = android(
            &s,
            &phone,
            &["free-up", "--to", d, "--older-than", age, "--json"],
        );
        r.ok();
        let got = paths(&r.json()[0]["eligible"]);
        let want: BTreeSet<String> = want
            .iter()
            .map(|n| format!("{STORAGE}/DCIM/Camera/{n}.jpg"))
            .collect();
        assert_eq!(got, want, "--older-than {age}");
    }
    for bad in ["soon", "-3d", "3 fortnights"] {
        let flag = format!("--older-than={bad}");
        let r = android(&s, &phone, &["free-up", "--to", d, &flag]);
        r.code(2);
        assert!(
            r.stderr.contains("--older-than") && r.stderr.contains("like"),
            "{bad}: {}",
            r.stderr
        );
    }
}

#[test]
fn only_selects_what_backup_selects_and_only_that_is_hashed() {
    let s = Scratch::new();
    let phone = s.path("ONLY01");
    s.roll("ONLY01", &[]);
    let all = s.path("all");
    let a = all.to_str().unwrap();
    android(&s, &phone, &["backup", "--to", a]).ok();

    for only in ["videos", "photo", "screenshots,video", "favourites"] {
        // What backup selects with this filter...
        let picked = s.path(&format!("only-{only}"));
        let p = picked.to_str().unwrap();
        let r = android(&s, &phone, &["backup", "--to", p, "--only", only, "--json"]);
        r.ok();
        let selected: BTreeSet<String> = if picked.join(".offload").exists() {
            let c = catalog(&picked);
            let mut st = c.prepare("SELECT remote_path FROM sightings").unwrap();
            let rows = st.query_map([], |r| r.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        } else {
            BTreeSet::new()
        };
        // ...is what free-up selects with it, and only those stored copies are read.
        let r = android(
            &s,
            &phone,
            &["-v", "free-up", "--to", a, "--only", only, "--json"],
        );
        r.ok();
        let j = r.json();
        let eligible = paths(&j[0]["eligible"]);
        assert_eq!(eligible, selected, "--only {only}");
        assert_eq!(
            j[0]["stored_copies_hashed"],
            selected.len(),
            "--only {only}: {}",
            r.stdout
        );
        let lines = r
            .stderr
            .lines()
            .filter(|l| l.contains("re-reading the stored copy"))
            .count();
        assert_eq!(lines, selected.len(), "--only {only}: {}", r.stderr);
        assert_eq!(
            j[0]["phone_files_hashed"], 0,
            "nothing is read from the phone without --yes"
        );
    }
    // A word backup refuses is refused, the same way.
    let b = android(&s, &phone, &["backup", "--to", a, "--only", "pictures"]);
    b.code(2);
    let f = android(&s, &phone, &["free-up", "--to", a, "--only", "pictures"]);
    f.code(2);
    assert!(f.stderr.contains("--only \"pictures\""), "{}", f.stderr);
    // The rest of backup's selection flags work too.
    let r = android(
        &s,
        &phone,
        &["free-up", "--to", a, "--exclude", "video", "--json"],
    );
    r.ok();
    let eligible = paths(&r.json()[0]["eligible"]);
    assert!(!eligible.is_empty());
    assert!(
        eligible.iter().all(|p| !p.ends_with(".mp4")),
        "{eligible:?}"
    );
}

/// A name that would paint the terminal, break a line and turn the text around.
const HOSTILE: &str = "\u{1b}[31mred\nline\u{202e}gpj.jpg";

fn assert_escaped(out: &str, what: &str) {
    assert!(
        !out.contains('\u{1b}'),
        "{what}: raw ESC reaches the terminal:\n{out}"
    );
    assert!(
        !out.contains('\u{202e}'),
        "{what}: raw U+202E reaches the terminal:\n{out}"
    );
    assert!(
        out.contains("\\e[31mred\\nline\\u{202e}gpj.jpg"),
        "{what}: the name is not shown escaped:\n{out}"
    );
}

#[test]
fn names_are_escaped_for_people_and_exact_in_json() {
    let s = Scratch::new();
    // From a folder: backup's progress lines and summary.
    let roll = s.path("roll");
    write_dated(
        &roll.join("DCIM").join(HOSTILE),
        &noise("hostile", 4000),
        NOV_2023,
    );
    // Hidden: skipped, and listed by name in the JSON.
    write_dated(
        &roll.join("DCIM").join(format!(".{HOSTILE}")),
        b"hidden",
        NOV_2023,
    );
    let dest = s.path("dest");
    let r = s.backup_from("roll", &dest);
    let both = format!("{}{}", r.stdout, r.stderr);
    assert_escaped(&both, "backup --from");
    let j = s.run(&[
        "backup",
        "--from",
        roll.to_str().unwrap(),
        "--to",
        s.path("dest2").to_str().unwrap(),
        "--json",
    ]);
    j.ok();
    let skipped = paths(&j.json()["devices"][0]["skipped"]);
    assert!(
        skipped.iter().any(|p| p.ends_with(&format!(".{HOSTILE}"))),
        "{skipped:?}"
    );

    // From a phone: free-up's list, what a user reviews before --yes.
    let phone = s.path("ESC01");
    write_dated(
        &phone.join("DCIM/Camera").join(HOSTILE),
        &noise("hostile phone", 4000),
        NOV_2023,
    );
    let pd = s.path("pdest");
    let p = pd.to_str().unwrap();
    android(&s, &phone, &["backup", "--to", p]).ok();
    let r = android(&s, &phone, &["free-up", "--to", p]);
    r.ok();
    assert_escaped(&r.stdout, "free-up's list");
    let r = android(&s, &phone, &["free-up", "--to", p, "--json"]);
    r.ok();
    let eligible = paths(&r.json()[0]["eligible"]);
    assert_eq!(
        eligible,
        BTreeSet::from([format!("{STORAGE}/DCIM/Camera/{HOSTILE}")])
    );
}
