//! End-to-end tests of iPhones: the real `offload` binary against `offload sim iphone`
//! (a virtual usbmuxd + lockdownd + AFC speaking the real wire protocols) run as a child
//! process, found through `USBMUXD_SOCKET_ADDRESS`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::phones::Sim;
use common::*;

const UDID: &str = "00008030-001A2D3A3E88802E";
/// The name `offload sim iphone` gives its phone: the store folder of its files.
const PHONE_FOLDER: &str = "Virtual iPhone";

/// `offload ARGS` pointed at `usbmuxd` (an address), with no virtual Android phone.
fn offload(s: &Scratch, usbmuxd: &str, args: &[&str]) -> Done {
    let mut c = s.cmd(args);
    c.env("USBMUXD_SOCKET_ADDRESS", usbmuxd)
        .env_remove("OFFLOAD_VIRTUAL_ANDROID")
        .env_remove("OFFLOAD_VIRTUAL_FAULT")
        .env_remove("OFFLOAD_VIRTUAL_STATS");
    Done::from(c.output().expect("offload runs"))
}

/// `offload backup --device UDID --to DEST --json` against `sim`.
fn backup(s: &Scratch, sim: &Sim, dest: &Path) -> Done {
    offload(
        s,
        &sim.addr,
        &[
            "backup",
            "--device",
            UDID,
            "--to",
            dest.to_str().unwrap(),
            "--json",
        ],
    )
}

/// The phone's camera roll (DCIM only; PhotoData is not a photo): relative path → hash.
fn phone_files(dir: &Path) -> BTreeMap<String, String> {
    source_files(dir)
        .into_iter()
        .filter(|(p, _)| p.starts_with("DCIM/"))
        .collect()
}

/// Catalog sightings: remote path → hash of what was stored for it.
fn sightings(dest: &Path) -> BTreeMap<String, String> {
    let c = catalog(dest);
    let mut s = c
        .prepare("SELECT remote_path, hash FROM sightings")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Files left in the store's temp area (a partial copy would be one).
fn temp_files(dest: &Path) -> usize {
    match fs::read_dir(dest.join(".offload/tmp")) {
        Ok(rd) => rd.count(),
        Err(_) => 0,
    }
}

/// Every file under `root` except those under `except`: relative path → (size, mtime).
fn snapshot(root: &Path, except: &[&Path]) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| !except.iter().any(|x| e.path() == *x))
        .map(Result::unwrap)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            let m = e.path().symlink_metadata().unwrap();
            (
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                (m.len(), m.modified().unwrap()),
            )
        })
        .collect()
}

fn set_mtime(p: &Path, unix: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .unwrap();
}

#[test]
fn full_backup_places_every_file_and_a_rerun_opens_nothing() {
    let s = Scratch::new();
    let manifest = s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let dest = s.path("dest");
    let sim = Sim::spawn(&s, &phone, &[]);

    let r = backup(&s, &sim, &dest);
    r.ok();
    let j = r.json();
    let dev = &j["devices"][0];
    assert_eq!(j["devices"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(dev["kind"], "iphone");
    assert_eq!(dev["id"], format!("iphone:{UDID}"));

    let src = phone_files(&phone);
    assert!(src.len() >= 7, "the iPhone roll is realistic: {src:?}");
    assert_eq!(
        manifest.len(),
        src.len(),
        "the manifest describes every DCIM file"
    );
    let cat = catalog_files(&dest);
    let by_hash: BTreeMap<&str, (&str, &str)> = cat
        .iter()
        .map(|(p, (h, captured, ..))| (h.as_str(), (p.as_str(), captured.as_str())))
        .collect();
    for f in &manifest {
        let path = f["path"].as_str().unwrap();
        assert!(f["stored"].as_bool().unwrap(), "{f}");
        let (store_path, captured) = by_hash
            .get(src[path].as_str())
            .unwrap_or_else(|| panic!("{path} is not in the store: {cat:?}"));
        let local = f["local"].as_str().unwrap();
        assert_eq!(&captured[..19], &local[..19], "capture date of {path}");
        let want_dir = format!("{PHONE_FOLDER}/{}/{}/", &local[..4], &local[5..7]);
        let name = path.rsplit('/').next().unwrap();
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let stored_name = store_path
            .strip_prefix(&want_dir)
            .unwrap_or_else(|| panic!("{path} stored as {store_path}, wanted under {want_dir}"));
        assert!(
            stored_name.starts_with(stem) && stored_name.ends_with(&format!(".{ext}")),
            "{path} stored as {store_path}"
        );
    }
    // Exactly the camera roll, each file once, each copy intact; PhotoData is no photo.
    let stored: BTreeSet<String> = store_files(&dest).into_values().collect();
    let wanted: BTreeSet<String> = src.values().cloned().collect();
    assert_eq!(stored, wanted);
    assert_eq!(store_files(&dest).len(), src.len());
    assert_eq!(dev["copied"].as_u64().unwrap() as usize, src.len());
    assert!(dev["failed"].as_array().unwrap().is_empty(), "{dev}");
    for (remote, hash) in sightings(&dest) {
        assert_eq!(src.get(&remote), Some(&hash), "sighting of {remote}");
    }
    assert_store_consistent(&dest);
    let first = sim.stats();
    assert_eq!(first["file_opens"] as usize, src.len(), "{first:?}");
    let total: u64 = src
        .keys()
        .map(|p| fs::metadata(phone.join(p)).unwrap().len())
        .sum();
    assert_eq!(first["bytes_served"], total, "each byte read once");

    // The rerun copies nothing and opens no file on the phone.
    let before = store_files(&dest);
    let r2 = backup(&s, &sim, &dest);
    r2.ok();
    let dev2 = &r2.json()["devices"][0];
    assert_eq!(dev2["copied"], 0, "{dev2}");
    assert_eq!(
        dev2["already_backed_up"].as_u64().unwrap() as usize,
        src.len()
    );
    let second = sim.stats();
    assert_eq!(second["file_opens"], first["file_opens"], "{second:?}");
    assert_eq!(second["bytes_served"], first["bytes_served"]);
    assert!(
        second["sessions"] > first["sessions"],
        "it did talk to the phone"
    );
    assert_eq!(store_files(&dest), before);
}

#[test]
fn roll_over_into_101apple_keeps_both_img_0001() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let a = phone.join("DCIM/100APPLE/IMG_0001.JPG");
    let b = phone.join("DCIM/101APPLE/IMG_0001.JPG");
    let (ha, hb) = (hash_file(&a), hash_file(&b));
    assert_ne!(ha, hb, "two different photos with the same name");
    let dest = s.path("dest");
    let sim = Sim::spawn(&s, &phone, &[]);
    backup(&s, &sim, &dest).ok();
    let store = store_files(&dest);
    let path_of = |h: &str| {
        store
            .iter()
            .find(|(_, v)| *v == h)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| panic!("{h} not stored: {store:?}"))
    };
    let (pa, pb) = (path_of(&ha), path_of(&hb));
    assert_ne!(pa, pb);
    for p in [&pa, &pb] {
        let name = p.rsplit('/').next().unwrap();
        assert!(
            name.starts_with("IMG_0001") && name.ends_with(".JPG"),
            "{p}"
        );
    }
    let seen = sightings(&dest);
    assert_eq!(seen["DCIM/100APPLE/IMG_0001.JPG"], ha);
    assert_eq!(seen["DCIM/101APPLE/IMG_0001.JPG"], hb);
}

#[test]
fn trust_flow_pairs_once_and_saves_the_record() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let state = s.path("phone-state");
    let dest = s.path("dest");
    let untrusted = [
        "--state",
        "untrusted",
        "--trust-after",
        "1",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let record = state.join(format!("{UDID}.plist"));
    {
        let sim = Sim::spawn(&s, &phone, &untrusted);
        assert!(!record.exists(), "usbmuxd holds no pair record yet");
        let r = backup(&s, &sim, &dest);
        r.ok();
        assert!(
            r.stderr.contains("Tap 'Trust' on your iPhone"),
            "the user is asked to trust: {}",
            r.stderr
        );
        assert_eq!(sim.stat("pairs"), 1);
        assert!(record.exists(), "the new pair record was saved in usbmuxd");
        let plist = fs::read(&record).unwrap();
        for key in [
            "HostCertificate",
            "HostID",
            "SystemBUID",
            "DeviceCertificate",
        ] {
            assert!(
                plist.windows(key.len()).any(|w| w == key.as_bytes()),
                "the saved record has {key}"
            );
        }
        let copied = r.json()["devices"][0]["copied"].as_u64().unwrap();
        assert_eq!(copied as usize, phone_files(&phone).len());

        // A second run with the same usbmuxd: no pairing, no prompt.
        let r2 = backup(&s, &sim, &dest);
        r2.ok();
        assert!(!r2.stderr.contains("Trust"), "{}", r2.stderr);
        assert_eq!(sim.stat("pairs"), 1);
    }
    // The phone and usbmuxd remember the pairing across a replug.
    let sim = Sim::spawn(&s, &phone, &untrusted);
    let r3 = backup(&s, &sim, &dest);
    r3.ok();
    assert!(!r3.stderr.contains("Trust"), "{}", r3.stderr);
    assert_eq!(sim.stat("pairs"), 0);
    assert_eq!(sim.stat("sessions"), 1);
    assert_eq!(r3.json()["devices"][0]["copied"], 0);
    assert_store_consistent(&dest);
}

#[test]
fn denied_trust_and_a_locked_phone_exit_3_with_what_to_do() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let dest = s.path("dest");

    let denied = Sim::spawn(&s, &phone, &["--state", "untrusted", "--deny-trust"]);
    let r = backup(&s, &denied, &dest);
    r.code(3);
    assert!(r.stderr.contains("Don't Trust"), "{}", r.stderr);
    assert_eq!(denied.stat("file_opens"), 0);
    drop(denied);

    let locked = Sim::spawn(&s, &phone, &["--state", "locked"]);
    let r = backup(&s, &locked, &dest);
    r.code(3);
    assert!(r.stderr.contains("Unlock"), "{}", r.stderr);
    assert_eq!(locked.stat("file_opens"), 0);
    assert!(!dest.exists() || store_files(&dest).is_empty());
}

#[test]
fn unplugged_mid_run_exits_5_keeps_nothing_partial_and_a_rerun_completes() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let src = phone_files(&phone);
    let src_hashes: BTreeSet<&String> = src.values().collect();
    let total: u64 = src
        .keys()
        .map(|p| fs::metadata(phone.join(p)).unwrap().len())
        .sum();
    let first_file = fs::metadata(phone.join("DCIM/100APPLE/IMG_0001.JPG"))
        .unwrap()
        .len();
    let udid = "00008101-000A1B2C3D4E5F60";

    // What an uninterrupted backup stores.
    let whole = s.path("whole");
    {
        let sim = Sim::spawn(&s, &phone, &["--udid", udid]);
        offload(
            &s,
            &sim.addr,
            &["backup", "--to", whole.to_str().unwrap(), "--device", udid],
        )
        .ok();
    }
    let reference = store_files(&whole);
    assert_eq!(reference.len(), src.len());

    // The first byte, a file boundary, the middle of the big video, the last byte.
    for offset in [1, first_file, total / 2, total - 1] {
        let dest = s.path(&format!("dest-{offset}"));
        let dest_s = dest.to_str().unwrap();
        let args = ["backup", "--to", dest_s, "--device", udid, "--json"];
        let saved = {
            let n = offset.to_string();
            let sim = Sim::spawn(&s, &phone, &["--udid", udid, "--unplug-after-bytes", &n]);
            let r = offload(&s, &sim.addr, &args);
            r.code(5);
            assert!(
                r.stderr.contains("Phone disconnected"),
                "offset {offset}: {}",
                r.stderr
            );
            let dev = &r.json()["devices"][0];
            assert!(dev["interrupted"].is_string(), "offset {offset}: {dev}");
            assert!(
                (dev["copied"].as_u64().unwrap() as usize) < src.len(),
                "offset {offset}: {dev}"
            );
            // Nothing partial: each stored file is a whole phone file.
            for (path, h) in store_files(&dest) {
                assert!(
                    src_hashes.contains(&h),
                    "offset {offset}: {path} is not a complete copy of a phone file"
                );
            }
            assert_eq!(
                temp_files(&dest),
                0,
                "offset {offset}: a temp file was left"
            );
            assert_store_consistent(&dest);
            dev["copied"].as_u64().unwrap()
        };
        // Plugged in again: a fresh phone with the same UDID and the same roll.
        let sim = Sim::spawn(&s, &phone, &["--udid", udid]);
        let before = sim.stats();
        let r = offload(&s, &sim.addr, &args);
        r.ok();
        assert_eq!(
            store_files(&dest),
            reference,
            "offset {offset}: the rerun leaves the store as an uninterrupted backup does"
        );
        assert_store_consistent(&dest);
        // Files saved before the unplug are not read again; the rest are, once each.
        let rest = src.len() as u64 - saved;
        assert_eq!(r.json()["devices"][0]["copied"], rest, "offset {offset}");
        assert_eq!(
            sim.stat("file_opens") - before["file_opens"],
            rest,
            "offset {offset}"
        );
    }
}

#[test]
fn a_dropped_connection_is_resumed_and_the_run_completes() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let src = phone_files(&phone);
    let total: u64 = src
        .keys()
        .map(|p| fs::metadata(phone.join(p)).unwrap().len())
        .sum();
    // Inside a small photo and inside the big video.
    for offset in [200_000u64, 1_000_000] {
        let dest = s.path(&format!("dest-{offset}"));
        let n = offset.to_string();
        let sim = Sim::spawn(&s, &phone, &["--drop-connection-after-bytes", &n]);
        let r = backup(&s, &sim, &dest);
        r.ok();
        let dev = &r.json()["devices"][0];
        assert_eq!(dev["copied"].as_u64().unwrap() as usize, src.len(), "{dev}");
        assert!(dev["interrupted"].is_null(), "{dev}");
        let stored: BTreeSet<String> = store_files(&dest).into_values().collect();
        let wanted: BTreeSet<String> = src.values().cloned().collect();
        assert_eq!(stored, wanted, "offset {offset}");
        assert_store_consistent(&dest);
        let st = sim.stats();
        // The connection really dropped: a second session, the file opened again, and
        // the read resumed where it stopped rather than from the start.
        assert_eq!(st["sessions"], 2, "offset {offset}: {st:?}");
        assert_eq!(st["file_opens"] as usize, src.len() + 1, "{st:?}");
        assert_eq!(
            st["bytes_served"], total,
            "offset {offset}: resumed, not restarted: {st:?}"
        );
    }
}

#[test]
fn hostile_names_from_the_phone_are_stored_safely_inside_the_destination() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    // 2024-05-10 12:00 UTC: every hostile file lands in one month folder, so that names
    // that sanitise alike really meet.
    const MAY_2024: u64 = 1_715_342_400;
    let long_a = format!("{}.JPG", "A".repeat(296));
    let long_b = format!("{}B.JPG", "A".repeat(295));
    assert_eq!((long_a.len(), long_b.len()), (300, 300));
    let names: Vec<String> = [
        "x/..",
        "../../x",
        "...",
        "x/../../../../../../../../tmp/evil.JPG",
        "IMG\u{1}\n0011.JPG",
        "IMG\t0012.JPG\u{7f}",
        "\u{1b}[31mred.JPG",
        &long_a,
        &long_b,
        "CON",
        "con.JPG",
        "NUL.txt",
        "IMG_0020.JPG...",
        "IMG_0020.JPG",
        "IMG_0021.JPG. . ",
        "a:b.JPG",
        "a\\b.JPG",
        "a_b.JPG",
        "..\\..\\win.JPG",
        "C:\\Windows\\x.JPG",
        "e\u{301}.JPG",
        "\u{e9}.JPG",
        "img_0030.jpg",
        "IMG_0030.JPG",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    let mut overlay = BTreeMap::new();
    let mut backing = BTreeMap::new();
    fs::create_dir_all(phone.join("hostile")).unwrap();
    for (i, name) in names.iter().enumerate() {
        let file = format!("hostile/{i:02}.bin");
        fs::write(
            phone.join(&file),
            format!("hostile file {i}: {name:?}").repeat(100 + i),
        )
        .unwrap();
        set_mtime(&phone.join(&file), MAY_2024);
        let afc = format!("DCIM/100APPLE/{name}");
        overlay.insert(format!("/{afc}"), file.clone());
        backing.insert(afc, hash_file(&phone.join(&file)));
    }
    let overlay_file = s.path("overlay.json");
    fs::write(&overlay_file, serde_json::to_vec(&overlay).unwrap()).unwrap();

    // DEST inside a folder of its own: anything written beside it would show.
    let out = s.path("out");
    fs::create_dir(&out).unwrap();
    let dest = out.join("dest");
    let sim = Sim::spawn(&s, &phone, &["--overlay", overlay_file.to_str().unwrap()]);
    let outside_before = snapshot(s.dir.path(), &[&dest, &sim.stats]);
    let r = backup(&s, &sim, &dest);
    r.ok();
    let outside_after = snapshot(s.dir.path(), &[&dest, &sim.stats]);
    assert_eq!(outside_before, outside_after, "written outside DEST");
    let beside: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("dest")]);

    let dev = &r.json()["devices"][0];
    let skipped: BTreeSet<&str> = dev["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    let seen = sightings(&dest);
    let store = store_files(&dest);
    let path_of: BTreeMap<&String, &String> = store.iter().map(|(p, h)| (h, p)).collect();
    let mut stored_hostile = 0;
    for (afc, hash) in &backing {
        match seen.get(afc) {
            // Stored: under the right content, somewhere sane inside DEST.
            Some(h) => {
                assert_eq!(h, hash, "{afc:?} stored with the content of another file");
                let p = path_of
                    .get(hash)
                    .unwrap_or_else(|| panic!("{afc:?}: its file is not in the store"));
                assert!(
                    p.starts_with(&format!("{PHONE_FOLDER}/2024/05/")),
                    "{afc:?} → {p:?}"
                );
                stored_hostile += 1;
            }
            // Or reported as not copied (a hidden name), never silently dropped.
            None => assert!(
                skipped.contains(afc.as_str()),
                "{afc:?} is neither stored nor reported: {dev}"
            ),
        }
    }
    // Only names that start with a dot are skipped (hidden); every other one is kept.
    let hidden = names.iter().filter(|n| n.starts_with('.')).count();
    assert_eq!(hidden, 3);
    assert_eq!(stored_hostile, names.len() - hidden, "{dev}");
    assert_eq!(dev["duplicates"], 0, "each entry listed once: {dev}");
    assert!(dev["failed"].as_array().unwrap().is_empty(), "{dev}");
    assert_eq!(
        store.len(),
        phone_files(&phone).len() + stored_hostile,
        "two files collapsed into one"
    );
    for path in store.keys() {
        for c in path.split('/') {
            assert!(!c.is_empty() && c != "." && c != "..", "{path:?}");
            assert!(c.len() <= 255, "{path:?} has a component over 255 bytes");
            assert!(!c.chars().any(|ch| ch.is_control()), "{path:?}");
            assert!(!c.contains([':', '\\']), "{path:?}");
            assert!(!c.ends_with(['.', ' ']), "{path:?}");
            let stem = c.split('.').next().unwrap().to_ascii_uppercase();
            assert!(
                !["CON", "NUL", "PRN", "AUX"].contains(&stem.as_str()),
                "{path:?}"
            );
        }
    }
    assert_store_consistent(&dest);
}

#[test]
fn an_android_phone_and_an_iphone_in_one_run() {
    let s = Scratch::new();
    s.roll("android", &[]);
    s.roll("phone", &["--kind", "iphone"]);
    let android = s.path("android");
    let phone = s.path("phone");
    let dest = s.path("dest");
    let sim = Sim::spawn(&s, &phone, &[]);
    let r = Done::from(
        s.cmd(&["backup", "--to", dest.to_str().unwrap(), "--json"])
            .env("USBMUXD_SOCKET_ADDRESS", &sim.addr)
            .env("OFFLOAD_VIRTUAL_ANDROID", &android)
            .env_remove("OFFLOAD_VIRTUAL_FAULT")
            .env_remove("OFFLOAD_VIRTUAL_STATS")
            .output()
            .unwrap(),
    );
    r.ok();
    let j = r.json();
    let kinds: BTreeSet<&str> = j["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["android", "iphone"]), "{j}");

    let iphone_hashes: BTreeSet<String> = phone_files(&phone).into_values().collect();
    let android_hashes: BTreeSet<String> = source_files(&android).into_values().collect();
    let mut from_iphone = BTreeSet::new();
    let mut from_android = 0;
    for (path, h) in store_files(&dest) {
        if path.starts_with(&format!("{PHONE_FOLDER}/")) {
            assert!(iphone_hashes.contains(&h), "{path}");
            from_iphone.insert(h);
        } else if path.starts_with("Virtual Android/") {
            assert!(android_hashes.contains(&h), "{path}");
            from_android += 1;
        } else {
            panic!("{path} is in neither phone's folder");
        }
    }
    assert_eq!(
        from_iphone, iphone_hashes,
        "every iPhone file, in its folder"
    );
    assert!(
        from_android >= 10,
        "the Android phone's files, in its folder"
    );
    assert_store_consistent(&dest);
}

#[test]
fn devices_shows_ready_locked_and_trust_states() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");

    let sim = Sim::spawn(&s, &phone, &["--name", "Anna's iPhone"]);
    let r = offload(&s, &sim.addr, &["devices", "--json"]);
    r.ok();
    let j = r.json();
    let d = &j["devices"][0];
    assert_eq!(d["state"], "ready", "{j}");
    assert_eq!(d["kind"], "iphone");
    assert_eq!(d["id"], format!("iphone:{UDID}"));
    assert_eq!(d["name"], "Anna's iPhone");
    assert_eq!(d["manufacturer"], "Apple");
    assert!(d["model"].as_str().unwrap().contains("iPhone12,1"), "{d}");
    assert!(d["storages"][0]["free_bytes"].as_u64().unwrap() > 0, "{d}");
    assert!(j["blocked"].as_array().unwrap().is_empty(), "{j}");
    assert_eq!(sim.stat("file_opens"), 0, "listing devices reads no file");
    drop(sim);

    for (args, state, text) in [
        (&["--state", "locked"][..], "locked", "Unlock"),
        (
            &["--state", "untrusted", "--trust-after", "100"][..],
            "needs-trust",
            "Trust",
        ),
        (
            &["--state", "untrusted", "--deny-trust"][..],
            "trust-denied",
            "Don't Trust",
        ),
    ] {
        let sim = Sim::spawn(&s, &phone, args);
        let r = offload(&s, &sim.addr, &["devices", "--json"]);
        r.code(3);
        let j = r.json();
        assert!(j["devices"].as_array().unwrap().is_empty(), "{j}");
        let b = &j["blocked"][0];
        assert_eq!(b["kind"], "iphone", "{j}");
        assert_eq!(b["state"], state, "{j}");
        assert_eq!(b["id"], format!("iphone:{UDID}"));
        assert!(b["message"].as_str().unwrap().contains(text), "{j}");
    }
}

#[test]
fn usbmuxd_not_running_is_explained_unless_an_android_phone_is_backed_up() {
    let s = Scratch::new();
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dest = s.path("dest");
    let r = offload(&s, &closed, &["backup", "--to", dest.to_str().unwrap()]);
    r.code(3);
    assert!(r.stderr.contains("usbmuxd is not running"), "{}", r.stderr);
    assert!(r.stderr.contains("apt install usbmuxd"), "{}", r.stderr);

    let r = offload(&s, &closed, &["devices", "--json"]);
    r.code(3);
    let notes = r.json()["notes"].to_string();
    assert!(notes.contains("usbmuxd is not running"), "{notes}");

    // With an Android phone in the run, the backup goes on and says it once.
    s.roll("android", &[]);
    let r = Done::from(
        s.cmd(&["backup", "--to", dest.to_str().unwrap(), "--json"])
            .env("USBMUXD_SOCKET_ADDRESS", &closed)
            .env("OFFLOAD_VIRTUAL_ANDROID", s.path("android"))
            .env_remove("OFFLOAD_VIRTUAL_FAULT")
            .env_remove("OFFLOAD_VIRTUAL_STATS")
            .output()
            .unwrap(),
    );
    r.ok();
    assert!(r.stderr.contains("usbmuxd is not running"), "{}", r.stderr);
    assert_eq!(r.json()["devices"][0]["kind"], "android");
}
