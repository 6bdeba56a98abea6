//! End-to-end tests of Android phones through the real binary: each test serves
//! directories as virtual Android phones (`OFFLOAD_VIRTUAL_ANDROID`), injects field
//! failures (`OFFLOAD_VIRTUAL_FAULT`) and counts what the phone was asked for
//! (`OFFLOAD_VIRTUAL_STATS`). See `src/sim/android.rs` for the variables.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// What a virtual phone calls its storage: every entry path starts with it.
const STORAGE: &str = "Internal shared storage";
const GONE: &str = "Phone disconnected: plug it back in and run offload again.";
const NOTHING_PARTIAL: &str = "files were saved; nothing partial was kept.";
const UNLOCK: &str = "Unlock the phone and choose 'File transfer' in the USB notification";
const WHATSAPP: &str =
    "Android/media/com.whatsapp/WhatsApp/Media/WhatsApp Images/IMG-20240214-WA0007.jpg";

/// Generous bound on any one run: a run that takes longer is hung.
const HUNG: Duration = Duration::from_secs(60);

/// `offload ARGS` with `dirs` served as virtual phones and `faults` injected. Nothing
/// from the caller's environment leaks in: no faults, counters or timeouts unless
/// asked, and no usbmuxd (so no real iPhone can join the run).
fn phone_cmd(s: &Scratch, dirs: &[&Path], faults: &str, args: &[&str]) -> Command {
    let mut c = s.cmd(args);
    c.env(
        "OFFLOAD_VIRTUAL_ANDROID",
        std::env::join_paths(dirs).unwrap(),
    )
    .env("USBMUXD_SOCKET_ADDRESS", s.path("no-usbmuxd"))
    .env_remove("OFFLOAD_VIRTUAL_STATS")
    .env_remove("OFFLOAD_MTP_TIMEOUT_SECS");
    if faults.is_empty() {
        c.env_remove("OFFLOAD_VIRTUAL_FAULT");
    } else {
        c.env("OFFLOAD_VIRTUAL_FAULT", faults);
    }
    c
}

/// `offload backup --to DEST --json EXTRA` from the virtual phones `dirs`.
fn backup_cmd(s: &Scratch, dirs: &[&Path], faults: &str, dest: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["backup", "--to", dest.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    phone_cmd(s, dirs, faults, &args)
}

fn backup(s: &Scratch, dirs: &[&Path], faults: &str, dest: &Path, extra: &[&str]) -> Done {
    run_bounded(backup_cmd(s, dirs, faults, dest, extra), s)
}

/// Runs `cmd` to the end, failing the test (after killing it) if it outlives [`HUNG`].
/// Output goes through files, so a chatty child can never block on a full pipe.
fn run_bounded(mut cmd: Command, s: &Scratch) -> Done {
    let (out, err) = (s.path("run.stdout"), s.path("run.stderr"));
    cmd.stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("offload runs");
    let code = wait_bounded(&mut child, HUNG);
    Done {
        code,
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    }
}

/// Waits for `child` up to `limit`; kills it and fails the test if it is still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("offload was still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The files of a phone directory that offload lists by default (`DCIM`, `Pictures`,
/// `Movies`, hidden files aside), or also the messaging apps' media: relative path → hash.
fn phone_media(dir: &Path, app_media: bool) -> BTreeMap<String, String> {
    source_files(dir)
        .into_iter()
        .filter(|(rel, _)| {
            ["DCIM/", "Pictures/", "Movies/"]
                .iter()
                .any(|p| rel.starts_with(p))
                || (app_media && rel.starts_with("Android/media/"))
        })
        .collect()
}

fn hashes(files: &BTreeMap<String, String>) -> BTreeSet<String> {
    files.values().cloned().collect()
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count `{key}` in {v}"))
}

/// Sightings of one source in the catalog: remote path → hash.
fn sightings(dest: &Path, key: &str) -> BTreeMap<String, String> {
    let c = catalog(dest);
    let mut q = c
        .prepare(
            "SELECT remote_path, hash FROM sightings JOIN sources ON sources.id = source_id \
             WHERE sources.key = ?1",
        )
        .unwrap();
    q.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// What `{device}` expands to for the source with this key.
fn device_folder(dest: &Path, key: &str) -> String {
    catalog(dest)
        .query_row("SELECT folder FROM sources WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("no source {key} in the catalog: {e}"))
}

/// Files left in the store's temp folder (a partial copy would be one).
fn temp_files(dest: &Path) -> Vec<PathBuf> {
    let tmp = dest.join(".offload/tmp");
    if !tmp.exists() {
        return Vec::new();
    }
    walkdir::WalkDir::new(tmp)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn device<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no device {id} in {report}"))
}

#[test]
fn full_backup_files_everything_and_a_rerun_reads_nothing_from_the_phone() {
    let s = Scratch::new();
    let manifest = s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let dest = s.path("dest");
    let counters = s.path("stats.json");
    let want = phone_media(&phone, false);
    assert!(want.len() >= 15, "a realistic roll: {want:?}");

    let mut cmd = backup_cmd(&s, &[&phone], "", &dest, &[]);
    cmd.env("OFFLOAD_VIRTUAL_STATS", &counters);
    let r = run_bounded(cmd, &s);
    r.ok();
    let report = r.json();
    let dev = device(&report, "android:pixel");
    assert_eq!(dev["kind"], "android");
    assert_eq!(
        dev["copied"].as_u64().unwrap() as usize,
        want.len(),
        "{dev}"
    );
    assert_eq!(dev["duplicates"], 0);
    assert!(dev["failed"].as_array().unwrap().is_empty(), "{dev}");
    let first = stats(&counters);
    assert_eq!(count(&first, "opens") as usize, want.len(), "{first}");
    assert!(count(&first, "reads") >= count(&first, "opens"), "{first}");
    let phone_bytes: u64 = want
        .keys()
        .map(|rel| fs::metadata(phone.join(rel)).unwrap().len())
        .sum();
    assert_eq!(count(&first, "bytes"), phone_bytes, "{first}");

    // Every file at {device}/{year}/{month}/{name}, with the phone file's hash.
    let folder = device_folder(&dest, "android:pixel");
    assert_eq!(folder, "Virtual Android");
    let seen = sightings(&dest, "android:pixel");
    let stored_by_hash: BTreeMap<String, String> = catalog_files(&dest)
        .into_iter()
        .map(|(path, (hash, ..))| (hash, path))
        .collect();
    for (rel, hash) in &want {
        let remote = format!("{STORAGE}/{rel}");
        assert_eq!(seen.get(&remote), Some(hash), "sighting of {remote}");
        let local = manifest
            .iter()
            .find(|f| f["path"] == rel.as_str())
            .unwrap_or_else(|| panic!("{rel} not in the manifest"))["local"]
            .as_str()
            .unwrap();
        let stored = &stored_by_hash[hash];
        let dir = format!("{folder}/{}/{}/", &local[..4], &local[5..7]);
        assert!(
            stored.starts_with(&dir),
            "{rel} stored as {stored}, wanted under {dir}"
        );
        // The phone's name, or with a content suffix when another photo had it first.
        let name = rel.rsplit('/').next().unwrap();
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let got = &stored[dir.len()..];
        assert!(
            got == name || (got.starts_with(&format!("{stem}~")) && got.ends_with(ext)),
            "{rel} stored as {stored}"
        );
        assert_eq!(&hash_file(&dest.join(stored)), hash, "content of {stored}");
    }
    assert_eq!(hashes(&store_files(&dest)), hashes(&want));
    assert_store_consistent(&dest);
    // Trash, hidden files and thumbnails are reported as skipped, not copied.
    for f in manifest.iter().filter(|f| f["stored"] == false) {
        let path = format!("{STORAGE}/{}", f["path"].as_str().unwrap());
        let reported = dev["skipped"].as_array().unwrap().iter().any(|sk| {
            let sp = sk["path"].as_str().unwrap();
            path == sp || path.starts_with(&format!("{sp}/"))
        });
        assert!(reported, "{path} should be reported as skipped: {dev}");
    }

    // The rerun copies nothing and reads nothing from the phone.
    let before = store_files(&dest);
    let mut cmd = backup_cmd(&s, &[&phone], "", &dest, &[]);
    cmd.env("OFFLOAD_VIRTUAL_STATS", &counters);
    let r = run_bounded(cmd, &s);
    r.ok();
    let report = r.json();
    let dev = device(&report, "android:pixel");
    assert_eq!(dev["copied"], 0, "{dev}");
    assert_eq!(
        dev["already_backed_up"].as_u64().unwrap() as usize,
        want.len()
    );
    let second = stats(&counters);
    for key in ["reads", "opens", "bytes"] {
        assert_eq!(count(&second, key), 0, "{key} in the rerun: {second}");
    }
    assert_eq!(count(&second, "sessions"), 1, "listed once: {second}");
    assert_eq!(store_files(&dest), before);
}

#[test]
fn app_media_is_copied_only_when_asked() {
    let s = Scratch::new();
    s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let dest = s.path("dest");
    let whatsapp = hash_file(&phone.join(WHATSAPP));

    let r = backup(&s, &[&phone], "", &dest, &[]);
    r.ok();
    assert!(!hashes(&store_files(&dest)).contains(&whatsapp));
    assert!(!sightings(&dest, "android:pixel").contains_key(&format!("{STORAGE}/{WHATSAPP}")));

    let r = backup(&s, &[&phone], "", &dest, &["--include-app-media"]);
    r.ok();
    let report = r.json();
    let dev = device(&report, "android:pixel");
    assert_eq!(dev["copied"], 1, "only the WhatsApp image is new: {dev}");
    let stored = store_files(&dest);
    let path = stored
        .iter()
        .find(|(_, h)| **h == whatsapp)
        .map(|(p, _)| p.clone())
        .expect("the WhatsApp image is stored");
    // Dated by its name (no EXIF date): February 2024.
    assert_eq!(path, "Virtual Android/2024/02/IMG-20240214-WA0007.jpg");
    assert_eq!(hashes(&stored), hashes(&phone_media(&phone, true)));
    assert_store_consistent(&dest);
}

#[test]
fn unplugged_mid_run_keeps_nothing_partial_and_the_rerun_finishes_the_job() {
    let s = Scratch::new();
    s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let want = phone_media(&phone, false);
    let phone_hashes = hashes(&want);
    let sizes: Vec<u64> = want
        .keys()
        .map(|rel| fs::metadata(phone.join(rel)).unwrap().len())
        .collect();
    let total: u64 = sizes.iter().sum();

    // The store an uninterrupted backup makes.
    let reference = s.path("reference");
    backup(&s, &[&phone], "", &reference, &[]).ok();
    let expected = store_files(&reference);
    assert_eq!(hashes(&expected), phone_hashes);

    // The first byte; the end of the first file copied (files are copied in path order,
    // so the plug is pulled right after a whole file); inside the run; the last byte.
    for offset in [1, sizes[0], total / 3, 2 * total / 3, total - 1] {
        let dest = s.path(&format!("dest-{offset}"));
        let r = backup(
            &s,
            &[&phone],
            &format!("unplug-after-bytes={offset}"),
            &dest,
            &[],
        );
        r.code(5);
        assert!(r.stderr.contains(GONE), "offset {offset}: {}", r.stderr);
        assert!(
            r.stderr.contains(NOTHING_PARTIAL),
            "offset {offset}: {}",
            r.stderr
        );
        let report = r.json();
        let dev = device(&report, "android:pixel");
        assert_eq!(dev["interrupted"], GONE, "offset {offset}: {dev}");
        // The file the plug cut is not a failure of that file: the phone went away.
        assert!(
            dev["failed"].as_array().unwrap().is_empty(),
            "offset {offset}: {dev}"
        );
        // Nothing partial under a final name, nor left behind in the temp folder.
        let stored = store_files(&dest);
        for (path, hash) in &stored {
            assert!(
                phone_hashes.contains(hash),
                "offset {offset}: {path} is not a whole phone file"
            );
        }
        assert_eq!(
            dev["copied"].as_u64().unwrap() as usize,
            stored.len(),
            "offset {offset}"
        );
        assert!(stored.len() < want.len(), "offset {offset}: {dev}");
        assert!(temp_files(&dest).is_empty(), "offset {offset}");
        assert_store_consistent(&dest);

        // Plugged back in: the rerun copies the rest and ends as if never interrupted.
        let r = backup(&s, &[&phone], "", &dest, &[]);
        r.ok();
        let dev = device(&r.json(), "android:pixel").clone();
        assert_eq!(
            (dev["copied"].as_u64().unwrap() + dev["already_backed_up"].as_u64().unwrap()) as usize,
            want.len(),
            "offset {offset}: {dev}"
        );
        assert_eq!(store_files(&dest), expected, "offset {offset}");
        assert_store_consistent(&dest);
    }
}

#[test]
fn a_wedged_phone_is_reopened_and_the_run_completes() {
    let s = Scratch::new();
    s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let dest = s.path("dest");
    let counters = s.path("stats.json");
    let want = phone_media(&phone, false);

    let mut cmd = backup_cmd(&s, &[&phone], "wedge-at-read=3", &dest, &[]);
    cmd.env("OFFLOAD_VIRTUAL_STATS", &counters);
    let r = run_bounded(cmd, &s);
    r.ok();
    let report = r.json();
    let dev = device(&report, "android:pixel");
    assert_eq!(
        dev["copied"].as_u64().unwrap() as usize,
        want.len(),
        "{dev}"
    );
    assert!(dev["failed"].as_array().unwrap().is_empty(), "{dev}");
    assert_eq!(hashes(&store_files(&dest)), hashes(&want));
    assert_store_consistent(&dest);
    let c = stats(&counters);
    assert_eq!(count(&c, "sessions"), 2, "reopened once: {c}");
    // Every file is smaller than one window: one read each, plus the one that wedged.
    assert_eq!(count(&c, "reads") as usize, want.len() + 1, "{c}");
}

#[test]
fn a_silent_phone_fails_that_file_and_the_run_ends() {
    let s = Scratch::new();
    s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let dest = s.path("dest");
    let want = phone_media(&phone, false);

    let mut cmd = backup_cmd(&s, &[&phone], "hang-at-read=3", &dest, &[]);
    cmd.env("OFFLOAD_MTP_TIMEOUT_SECS", "2");
    // run_bounded fails the test if the run outlives HUNG.
    let r = run_bounded(cmd, &s);
    r.code(1);
    let report = r.json();
    let dev = device(&report, "android:pixel");
    let failed = dev["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{dev}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("did not answer for 2 s"), "{reason}");
    let path = failed[0]["path"].as_str().unwrap();
    let rel = path
        .strip_prefix(&format!("{STORAGE}/"))
        .unwrap_or_else(|| panic!("{path}"));
    // That file is missing; every other one was copied after the phone was reopened.
    let mut others = want.clone();
    let lost = others.remove(rel).unwrap_or_else(|| panic!("{rel}"));
    let stored = hashes(&store_files(&dest));
    assert!(!stored.contains(&lost));
    assert_eq!(stored, hashes(&others));
    assert_store_consistent(&dest);
}

#[test]
fn an_unreadable_file_is_reported_and_the_others_copied() {
    let s = Scratch::new();
    s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let dest = s.path("dest");
    let bad = "DCIM/Camera/IMG_20230314_091502.jpg";
    let mut others = phone_media(&phone, false);
    let bad_hash = others.remove(bad).expect("the roll has the file");

    let r = backup(&s, &[&phone], &format!("unreadable={bad}"), &dest, &[]);
    r.code(1);
    let report = r.json();
    let dev = device(&report, "android:pixel");
    let failed = dev["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{dev}");
    // The phone will not describe it, so its name is unknown: its folder and handle are.
    let path = failed[0]["path"].as_str().unwrap();
    assert!(
        path.starts_with(&format!("{STORAGE}/DCIM/Camera/")),
        "{path}"
    );
    assert!(!failed[0]["reason"].as_str().unwrap().is_empty());
    let stored = hashes(&store_files(&dest));
    assert!(!stored.contains(&bad_hash));
    assert_eq!(stored, hashes(&others));
    assert_store_consistent(&dest);
}

#[test]
fn a_locked_phone_says_to_unlock_it() {
    let s = Scratch::new();
    s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let dest = s.path("dest");

    let r = backup(&s, &[&phone], "locked", &dest, &[]);
    r.code(3);
    assert!(r.stderr.contains(UNLOCK), "{}", r.stderr);
    assert!(
        !dest.exists(),
        "nothing is written for a phone that cannot be read"
    );

    let r = run_bounded(
        phone_cmd(&s, &[&phone], "locked", &["devices", "--json"]),
        &s,
    );
    r.code(3);
    let j = r.json();
    assert!(j["devices"].as_array().unwrap().is_empty(), "{j}");
    let blocked = &j["blocked"][0];
    assert_eq!(blocked["id"], "android:pixel", "{j}");
    assert_eq!(blocked["state"], "locked", "{j}");
    assert!(blocked["message"].as_str().unwrap().contains(UNLOCK), "{j}");
}

/// Two phone directories: `pixel` (the demo roll) and `galaxy` (a camera-card roll plus
/// one photo that is also on the pixel). Returns (pixel, galaxy, the shared photo's hash).
fn two_phones(s: &Scratch) -> (PathBuf, PathBuf, String) {
    s.roll("pixel", &[]);
    s.roll("galaxy", &["--kind", "card"]);
    let (pixel, galaxy) = (s.path("pixel"), s.path("galaxy"));
    let shared = "DCIM/Camera/IMG_20230702_183344.jpg";
    fs::create_dir_all(galaxy.join("DCIM/Camera")).unwrap();
    fs::copy(pixel.join(shared), galaxy.join(shared)).unwrap();
    let hash = hash_file(&pixel.join(shared));
    (pixel, galaxy, hash)
}

#[test]
fn two_phones_each_get_their_folder_and_a_shared_photo_is_stored_once() {
    let s = Scratch::new();
    let (pixel, galaxy, shared) = two_phones(&s);
    let dest = s.path("dest");
    let (want_pixel, want_galaxy) = (phone_media(&pixel, false), phone_media(&galaxy, false));
    assert!(want_galaxy.len() >= 3, "{want_galaxy:?}");

    let r = backup(&s, &[&pixel, &galaxy], "", &dest, &[]);
    r.ok();
    let report = r.json();
    assert_eq!(report["devices"].as_array().unwrap().len(), 2, "{report}");
    let (p, g) = (
        device(&report, "android:pixel"),
        device(&report, "android:galaxy"),
    );
    // The pixel was backed up first: the galaxy's copy of the shared photo is a duplicate.
    assert_eq!(
        p["copied"].as_u64().unwrap() as usize,
        want_pixel.len(),
        "{p}"
    );
    assert_eq!(g["duplicates"], 1, "{g}");
    assert_eq!(
        g["copied"].as_u64().unwrap() as usize,
        want_galaxy.len() - 1,
        "{g}"
    );

    let (fp, fg) = (
        device_folder(&dest, "android:pixel"),
        device_folder(&dest, "android:galaxy"),
    );
    assert_ne!(fp, fg, "one folder per phone");
    let stored = store_files(&dest);
    for (path, hash) in &stored {
        let folder = if want_pixel.values().any(|h| h == hash) {
            &fp
        } else {
            &fg
        };
        assert!(
            path.starts_with(&format!("{folder}/")),
            "{path} should be under {folder}/"
        );
    }
    assert_eq!(stored.values().filter(|h| **h == shared).count(), 1);
    let all: BTreeSet<String> = hashes(&want_pixel)
        .union(&hashes(&want_galaxy))
        .cloned()
        .collect();
    assert_eq!(hashes(&stored), all);
    assert_eq!(stored.len(), all.len(), "every content stored once");
    // The galaxy's sighting of the shared photo points at the one stored copy.
    assert_eq!(
        sightings(&dest, "android:galaxy")
            .get(&format!("{STORAGE}/DCIM/Camera/IMG_20230702_183344.jpg")),
        Some(&shared)
    );
    assert_store_consistent(&dest);
}

#[test]
fn devices_lists_the_phones_and_device_picks_one() {
    let s = Scratch::new();
    let (pixel, galaxy, _) = two_phones(&s);

    let r = run_bounded(
        phone_cmd(&s, &[&pixel, &galaxy], "", &["devices", "--json"]),
        &s,
    );
    r.ok();
    let j = r.json();
    let devices = j["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{j}");
    for (d, serial) in devices.iter().zip(["pixel", "galaxy"]) {
        assert_eq!(d["id"], format!("android:{serial}"), "{d}");
        assert_eq!(d["kind"], "android", "{d}");
        assert_eq!(d["serial"], serial, "{d}");
        assert_eq!(d["model"], "Virtual Android", "{d}");
        assert_eq!(d["state"], "ready", "{d}");
        let storages = d["storages"].as_array().unwrap();
        assert_eq!(storages.len(), 1, "{d}");
        assert_eq!(storages[0]["description"], STORAGE, "{d}");
        let capacity = storages[0]["capacity_bytes"].as_u64().unwrap();
        let free = storages[0]["free_bytes"].as_u64().unwrap();
        assert!(capacity > 0 && free <= capacity, "{d}");
    }

    let dest = s.path("dest");
    let r = backup(&s, &[&pixel, &galaxy], "", &dest, &["--device", "galaxy"]);
    r.ok();
    let report = r.json();
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{report}");
    assert_eq!(devices[0]["id"], "android:galaxy");
    assert_eq!(
        hashes(&store_files(&dest)),
        hashes(&phone_media(&galaxy, false))
    );

    let r = backup(&s, &[&pixel, &galaxy], "", &dest, &["--device", "nokia"]);
    r.code(3);
    assert!(
        r.stderr.contains("No connected phone matches"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_second_run_on_the_same_store_is_refused_while_the_first_copies() {
    let s = Scratch::new();
    s.roll("pixel", &[]);
    let phone = s.path("pixel");
    let dest = s.path("dest");
    let want = phone_media(&phone, false);

    // Run A: its first read hangs for the timeout, so it holds the store for seconds.
    let mut a = phone_cmd(
        &s,
        &[&phone],
        "hang-at-read=1",
        &["backup", "--to", dest.to_str().unwrap()],
    );
    a.env("OFFLOAD_MTP_TIMEOUT_SECS", "8")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut a = a.spawn().unwrap();
    // A prints "N new files" once it has locked the store and listed the phone. A
    // thread drains its stderr so that A never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = a.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("new files") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(HUNG).is_err() {
        let _ = a.kill();
        let _ = a.wait();
        panic!("run A never started copying: {}", reader.join().unwrap());
    }

    // Run B on the same store: refused at once, while A is still busy.
    let b = backup(&s, &[&phone], "", &dest, &[]);
    let a_running = a.try_wait().unwrap().is_none();
    b.code(4);
    assert!(
        b.stderr.contains("Another offload run is using"),
        "{}",
        b.stderr
    );
    assert!(a_running, "B should have been refused while A was copying");

    // A finishes on its own: the hung file failed, every other one was copied.
    let code = wait_bounded(&mut a, HUNG);
    let a_stderr = reader.join().unwrap();
    assert_eq!(code, 1, "{a_stderr}");
    assert!(a_stderr.contains("did not answer for 8 s"), "{a_stderr}");
    let stored = store_files(&dest);
    assert_eq!(stored.len(), want.len() - 1, "{a_stderr}");
    assert!(hashes(&stored).is_subset(&hashes(&want)));
    assert_store_consistent(&dest);
}
