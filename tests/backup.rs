//! End-to-end tests of `offload backup` from a camera-roll folder, through the real binary.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;

fn set_mtime(p: &Path, unix: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .unwrap();
}

fn write(p: &Path, bytes: &[u8], unix_mtime: u64) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
    set_mtime(p, unix_mtime);
}

/// 2024-05-10 12:00:00 UTC: 14:00 in Paris, so these files belong in 2024/05.
const MAY_2024: u64 = 1_715_342_400;

/// Makes `path` (recursively) owned by `nobody`, so that a run as `nobody` can write.
fn chown_nobody(path: &Path) {
    for e in walkdir::WalkDir::new(path) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(65534), Some(65534)).unwrap();
    }
}

#[test]
fn first_run_files_by_capture_date_and_second_run_reads_nothing() {
    let s = Scratch::new();
    let manifest = s.roll("SD", &[]);
    let sd = s.path("SD");
    let dest = s.path("dest");
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    r.ok();
    let j = r.json();
    let dev = &j["devices"][0];

    let src = source_files(&sd);
    let cat = catalog_files(&dest);
    let by_hash: BTreeMap<&str, (&str, &str, &str)> = cat
        .iter()
        .map(|(p, (h, captured, ds, _))| (h.as_str(), (p.as_str(), captured.as_str(), ds.as_str())))
        .collect();
    let mut stored = 0;
    let mut contents = HashSet::new();
    for f in &manifest {
        let path = f["path"].as_str().unwrap();
        if !f["stored"].as_bool().unwrap() {
            let reported = dev["skipped"].as_array().unwrap().iter().any(|s| {
                let sp = s["path"].as_str().unwrap();
                path == sp || (sp.ends_with('/') && path.starts_with(sp))
            });
            assert!(reported, "{path} should be reported as skipped: {dev}");
            continue;
        }
        stored += 1;
        let hash = &src[path];
        contents.insert(hash.clone());
        let (store_path, captured, date_source) = by_hash
            .get(hash.as_str())
            .unwrap_or_else(|| panic!("{path} is not in the store"));
        let local = f["local"].as_str().unwrap();
        assert_eq!(&captured[..19], &local[..19], "capture date of {path}");
        assert_eq!(
            *date_source,
            f["date_source"].as_str().unwrap(),
            "date source of {path}"
        );
        let want_dir = format!("SD/{}/{}/", &local[..4], &local[5..7]);
        assert!(
            store_path.starts_with(&want_dir),
            "{path} stored as {store_path}, wanted under {want_dir}"
        );
    }
    assert!(stored >= 15, "the demo roll is realistic ({stored} files)");
    assert_eq!(dev["copied"].as_u64().unwrap() as usize, contents.len());
    assert_eq!(
        dev["duplicates"].as_u64().unwrap() as usize,
        stored - contents.len()
    );
    assert!(dev["failed"].as_array().unwrap().is_empty());
    assert_store_consistent(&dest);

    // Second run: make every source file unreadable. A run that read any byte fails.
    for e in walkdir::WalkDir::new(&sd) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
    let mut cmd = s.cmd(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    if is_root() {
        // Root reads files whatever their mode: run the second backup as nobody.
        fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        chown_nobody(&dest);
        cmd.uid(65534).gid(65534);
    }
    let r2 = Done::from(cmd.output().unwrap());
    r2.ok();
    let dev2 = &r2.json()["devices"][0];
    assert_eq!(dev2["copied"], 0);
    assert_eq!(dev2["already_backed_up"].as_u64().unwrap() as usize, stored);
    assert!(dev2["failed"].as_array().unwrap().is_empty(), "{dev2}");
    // And the source really was unreadable for that run.
    if !is_root() {
        assert!(fs::read(sd.join(manifest[0]["path"].as_str().unwrap())).is_err());
    }
}

#[test]
fn real_camera_files_get_their_true_capture_dates() {
    let Some(fx) = fixtures("capture dates of real camera files") else {
        return;
    };
    let s = Scratch::new();
    let sd = s.path("card/DCIM/100TEST");
    fs::create_dir_all(&sd).unwrap();
    for e in fs::read_dir(&fx).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name != "SOURCES.md" {
            fs::copy(e.path(), sd.join(&name)).unwrap();
            set_mtime(&sd.join(&name), MAY_2024);
        }
    }
    let dest = s.path("dest");
    let r = s.run(&[
        "backup",
        "--from",
        s.path("card").to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    r.ok();
    let cat = catalog_files(&dest);
    let src = source_files(&sd);
    let captured_of = |name: &str| {
        let h = &src[name];
        cat.values()
            .find(|v| &v.0 == h)
            .unwrap_or_else(|| panic!("{name} not stored"))
            .clone()
    };
    // From SOURCES.md; meta.mov carries the iPhone's own creation date (with its offset),
    // which wins over the re-muxed mvhd time exiftool shows. meta.mp4 is UTC, shown in Paris time.
    for (name, when, source) in [
        ("iphone-13-pro-max.HEIC", "2022-02-16T12:55:41", "exif"),
        ("IMG_5195.HEIC", "2021-04-11T15:47:53", "exif"),
        ("nikon-gps-DSCN0010.jpg", "2008-10-22T16:28:39", "exif"),
        ("canon-40d.jpg", "2008-05-30T15:56:01", "exif"),
        ("exif.jpg", "2023-07-09T20:36:33", "exif"),
        ("meta.mov", "2019-02-12T15:27:12", "quicktime"),
        ("meta.mp4", "2024-02-03T08:05:38", "quicktime"),
    ] {
        let (_, captured, ds, _) = captured_of(name);
        assert_eq!(&captured[..19], when, "{name}");
        assert_eq!(ds, source, "{name}");
    }
    // Files with no usable date fall back to the mtime (2024-05-10 14:00 in Paris).
    for name in [
        "nokia-8.3-5g.heif",
        "clip.3gp",
        "oom-large-box.heic",
        "crash-moov-trak.mov",
    ] {
        let (_, captured, ds, _) = captured_of(name);
        assert_eq!(
            (&captured[..19], ds.as_str()),
            ("2024-05-10T14:00:00", "mtime"),
            "{name}"
        );
    }
    // Every fixture, broken ones included, was copied.
    let copied: BTreeSet<_> = cat.values().map(|v| v.0.clone()).collect();
    let wanted: BTreeSet<_> = src.values().cloned().collect();
    assert_eq!(copied, wanted);
    assert_store_consistent(&dest);
}

#[test]
fn duplicates_clashes_changes_hostile_names_and_skips() {
    let s = Scratch::new();
    let sd = s.path("SD");
    let files: &[(&str, &[u8])] = &[
        ("A/one.jpg", b"content one"),
        ("B/one.jpg", b"content two"),
        ("A/dup.jpg", b"same bytes"),
        ("B/copy of dup.jpg", b"same bytes"),
        ("H/a:b*c?.jpg", b"h1"),
        ("H/CON.jpg", b"h2"),
        ("H/trail. ", b"h3"),
        ("H/x\ny\u{7}.jpg", b"h4"),
        ("H/Caf\u{e9}.jpg", b"h5 nfc"),
        ("H/Cafe\u{301}.jpg", b"h6 nfd"),
        ("H/CASE.jpg", b"h7 upper"),
        ("H/case.jpg", b"h8 lower"),
        ("H/ lead.jpg", b"h10"),
        ("H/<>|\"\\.jpg", b"h11"),
    ];
    let long = format!("H/{}.jpg", "\u{e9}".repeat(125));
    let mut all: Vec<(String, &[u8])> = files.iter().map(|(p, b)| (p.to_string(), *b)).collect();
    all.push((long, b"h12 long"));
    for (p, b) in &all {
        write(&sd.join(p), b, MAY_2024);
    }
    let skipped = [
        ".hidden.jpg",
        "DCIM/.thumbnails/t.jpg",
        "DCIM/.trashed-1700000000-x.jpg",
        "DCIM/.pending-1700000000-y.jpg",
        ".DS_Store",
        "Thumbs.db",
        "H/...",
    ];
    for p in skipped {
        write(&sd.join(p), b"skip me", MAY_2024);
    }
    let dest = s.path("dest");
    let args = [
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ];
    let r = s.run(&args);
    r.ok();
    let dev = r.json()["devices"][0].clone();
    let distinct: BTreeSet<&[u8]> = all.iter().map(|(_, b)| *b).collect();
    assert_eq!(dev["copied"].as_u64().unwrap() as usize, distinct.len());
    assert_eq!(dev["duplicates"], 1);
    let reported: Vec<&str> = dev["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    for p in skipped {
        let folder_reported = reported
            .iter()
            .any(|r| r.ends_with('/') && p.starts_with(r));
        assert!(
            reported.contains(&p) || folder_reported,
            "{p} not reported skipped: {reported:?}"
        );
    }

    let stored = store_files(&dest);
    assert_eq!(
        stored.len(),
        distinct.len(),
        "no two contents collapsed, nothing extra: {stored:#?}"
    );
    let stored_hashes: BTreeSet<String> = stored.values().cloned().collect();
    let want_hashes: BTreeSet<String> = distinct
        .iter()
        .map(|b| blake3::hash(b).to_hex().to_string())
        .collect();
    assert_eq!(stored_hashes, want_hashes);
    let mut keys = HashSet::new();
    for path in stored.keys() {
        assert!(path.starts_with("SD/2024/05/"), "{path}");
        for comp in path.split('/') {
            assert!(comp.len() <= 255, "{comp}");
            assert!(
                !comp
                    .chars()
                    .any(|c| c.is_control() || "\\:*?\"<>|".contains(c)),
                "{comp:?}"
            );
            assert!(
                !comp.ends_with('.') && !comp.ends_with(' ') && !comp.starts_with('.'),
                "{comp:?}"
            );
            let stem = comp.split('.').next().unwrap().to_ascii_uppercase();
            assert!(
                !["CON", "NUL", "PRN", "AUX"].contains(&stem.as_str()),
                "{comp}"
            );
        }
        use unicode_normalization::UnicodeNormalization;
        let key: String = path.nfc().flat_map(char::to_lowercase).collect();
        assert!(
            keys.insert(key),
            "{path} collides with another name on a case-insensitive drive"
        );
    }
    // The clash: both `one.jpg` kept, the second with a suffix from its content.
    let one_a = blake3::hash(b"content one").to_hex().to_string();
    let one_b = blake3::hash(b"content two").to_hex().to_string();
    let names: BTreeSet<&str> = stored.keys().map(String::as_str).collect();
    assert!(names.contains("SD/2024/05/one.jpg"));
    let suffixed = [
        format!("SD/2024/05/one~{}.jpg", &one_a[..8]),
        format!("SD/2024/05/one~{}.jpg", &one_b[..8]),
    ];
    assert!(
        suffixed.iter().any(|n| names.contains(n.as_str())),
        "{names:?}"
    );

    // A file changed on the source is stored again, as a new file beside the old one.
    let before = stored.clone();
    write(&sd.join("A/one.jpg"), b"content one, edited", MAY_2024 + 60);
    let r = s.run(&args);
    r.ok();
    let dev = r.json()["devices"][0].clone();
    assert_eq!(dev["copied"], 1);
    let after = store_files(&dest);
    for (p, h) in &before {
        assert_eq!(after.get(p), Some(h), "{p} was changed or removed");
    }
    assert_eq!(after.len(), before.len() + 1);
    assert!(after
        .values()
        .any(|h| *h == blake3::hash(b"content one, edited").to_hex().to_string()));
    assert_store_consistent(&dest);
}

/// Unmounts on drop, so that a failed assertion leaves no mount behind.
struct Mount(std::path::PathBuf, Option<std::path::PathBuf>);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        if let Some(img) = &self.1 {
            let _ = fs::remove_file(img);
        }
    }
}

#[test]
#[ignore = "needs root to mount a size-limited tmpfs; run by .ci/run"]
fn refuses_when_the_drive_is_too_small() {
    if !is_root() {
        cannot_run(
            "not root (mounting a small tmpfs needs it)",
            "the free-space refusal",
        );
        return;
    }
    let s = Scratch::new();
    let mnt = s.path("small");
    fs::create_dir_all(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _m = Mount(mnt.clone(), None);
    let sd = s.path("SD");
    for i in 0..4u8 {
        // Incompressible 10 MB each: 40 MB planned for a 24 MB drive.
        let mut data = vec![0u8; 10_000_000];
        blake3::Hasher::new()
            .update(&[i])
            .finalize_xof()
            .fill(&mut data);
        write(&sd.join(format!("DCIM/VID_{i}.mp4")), &data, MAY_2024);
    }
    let dest = mnt.join("store");
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ]);
    r.code(4);
    assert!(r.stderr.contains("Not enough space"), "{}", r.stderr);
    assert!(
        r.stderr.contains("needed") && r.stderr.contains("free"),
        "{}",
        r.stderr
    );
    // Refused before it was made: not even an empty store is left.
    assert!(!dest.exists(), "a refused new destination was created");
}

#[test]
#[ignore = "needs root, FUSE, mkfs.vfat and fusefat (Debian: dosfstools, fusefat) for a FAT32 image; run by .ci/run"]
fn fat32_refuses_files_over_4_gib_and_copies_the_rest() {
    if !is_root() {
        cannot_run(
            "not root (a FAT32 image through FUSE on a loop file needs it)",
            "the FAT32 file-size refusal",
        );
        return;
    }
    for tool in ["mkfs.vfat", "fusefat"] {
        if std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            cannot_run(
                &format!("{tool} is not installed (Debian: dosfstools, fusefat)"),
                "the FAT32 file-size refusal",
            );
            return;
        }
    }
    let s = Scratch::new();
    let img = s.path("fat.img");
    fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let st = std::process::Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "PHOTOS"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(st.status.success(), "mkfs.vfat: {st:?}");
    let mnt = s.path("fat");
    fs::create_dir_all(&mnt).unwrap();
    let st = std::process::Command::new("fusefat")
        .args(["-o", "rw+"])
        .arg(&img)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(st.status.success(), "fusefat: {st:?}");
    let _m = Mount(mnt.clone(), None);

    let sd = s.path("SD");
    write(&sd.join("DCIM/small1.jpg"), b"small one", MAY_2024);
    write(&sd.join("DCIM/small2.jpg"), b"small two", MAY_2024);
    let big = sd.join("DCIM/VID_big.mp4");
    fs::File::create(&big)
        .unwrap()
        .set_len((4u64 << 30) + 1)
        .unwrap(); // sparse
    set_mtime(&big, MAY_2024);

    let dest = mnt.join("store");
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    r.code(1);
    let dev = r.json()["devices"][0].clone();
    assert_eq!(dev["copied"], 2, "{dev}");
    let failed = dev["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{dev}");
    assert_eq!(failed[0]["path"], "DCIM/VID_big.mp4");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{dev}"
    );
    let stored: BTreeSet<String> = store_files(&dest).into_values().collect();
    let want: BTreeSet<String> = [b"small one".as_slice(), b"small two"]
        .iter()
        .map(|b| blake3::hash(b).to_hex().to_string())
        .collect();
    assert_eq!(stored, want);
}

#[test]
fn a_second_run_on_a_locked_store_is_refused() {
    let s = Scratch::new();
    let sd = s.path("SD");
    write(&sd.join("DCIM/a.jpg"), b"a", MAY_2024);
    let dest = s.path("dest");
    let args = [
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ];
    s.run(&args).ok();
    // Hold the store's lock as a running backup does.
    let lock = fs::File::options()
        .write(true)
        .open(dest.join(".offload/lock"))
        .unwrap();
    lock.try_lock().unwrap();
    write(&sd.join("DCIM/b.jpg"), b"b", MAY_2024);
    let r = s.run(&args);
    r.code(4);
    assert!(
        r.stderr.contains("Another offload run is using"),
        "{}",
        r.stderr
    );
    drop(lock);
    let r = s.run(&args);
    r.ok();
    assert_eq!(store_files(&dest).len(), 2);
}

#[test]
fn usage_errors_and_missing_sources() {
    let s = Scratch::new();
    let dest = s.path("dest");
    let r = s.backup_from("nope", &dest);
    r.code(3);
    assert!(r.stderr.contains("Cannot read the folder"), "{}", r.stderr);
    fs::create_dir_all(s.path("SD")).unwrap();
    let r = s.run(&[
        "backup",
        "--from",
        s.path("SD").to_str().unwrap(),
        "--template",
        "{year}/{bogus}",
        "--to",
        dest.to_str().unwrap(),
    ]);
    r.code(2);
    assert!(r.stderr.contains("unknown token {bogus}"), "{}", r.stderr);
    s.run(&["backup", "--bogus-flag"]).code(2);
    // The config file's destination is used, and an unknown key is named.
    fs::create_dir_all(s.path("config/offload")).unwrap();
    fs::write(
        s.path("config/offload/config.toml"),
        "destinaton = \"/x\"\n",
    )
    .unwrap();
    let r = s.run(&["backup", "--from", s.path("SD").to_str().unwrap()]);
    r.code(2);
    assert!(r.stderr.contains("destinaton"), "{}", r.stderr);
    fs::write(
        s.path("config/offload/config.toml"),
        format!("destination = {:?}\n", dest.to_str().unwrap()),
    )
    .unwrap();
    write(&s.path("SD/x.jpg"), b"x", MAY_2024);
    // A destination from the config is never created: an empty folder there is most
    // likely the mount point of a drive that is not plugged in.
    fs::create_dir_all(&dest).unwrap();
    let r = s.run(&["backup", "--from", s.path("SD").to_str().unwrap()]);
    r.code(4);
    assert!(
        r.stderr.contains("is not an offload backup"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::read_dir(&dest).unwrap().count(),
        0,
        "nothing written into it"
    );
    fs::remove_dir(&dest).unwrap();
    s.run(&[
        "backup",
        "--from",
        s.path("SD").to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--dry-run",
    ])
    .ok();
    assert!(!dest.exists(), "a dry run creates nothing");
    // Named on the command line once, the store is created; the config then finds it.
    write(&s.path("SD0/first.jpg"), b"first", MAY_2024);
    s.backup_from("SD0", &dest).ok();
    let r = s.run(&["backup", "--from", s.path("SD").to_str().unwrap()]);
    r.ok();
    assert!(
        r.stdout
            .starts_with(&format!("Backing up to {}", dest.display())),
        "{}",
        r.stdout
    );
    assert_eq!(store_files(&dest).len(), 2);
    // A dry run writes nothing.
    write(&s.path("SD/y.jpg"), b"y", MAY_2024);
    let r = s.run(&[
        "backup",
        "--from",
        s.path("SD").to_str().unwrap(),
        "--dry-run",
        "--json",
    ]);
    r.ok();
    assert_eq!(r.json()["devices"][0]["copied"], 1);
    assert_eq!(store_files(&dest).len(), 2);
}

#[test]
fn status_reports_sources_and_categories() {
    let s = Scratch::new();
    s.roll("SD", &[]);
    let dest = s.path("dest");
    s.backup_from("SD", &dest).ok();
    let r = s.run(&["status", "--to", dest.to_str().unwrap(), "--json"]);
    r.ok();
    let j = r.json();
    let src = &j["sources"][0];
    assert_eq!(src["name"], "SD");
    assert_eq!(src["last_run"]["result"], "ok");
    let cats: BTreeMap<String, u64> = src["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].as_u64().unwrap()))
        .collect();
    for c in ["photo", "video", "screenshot"] {
        assert!(
            cats.get(c).copied().unwrap_or(0) > 0,
            "{c} missing in {cats:?}"
        );
    }
    assert_eq!(cats.values().sum::<u64>(), j["files"].as_u64().unwrap());
    let r = s.run(&["status", "--to", s.path("nothing").to_str().unwrap()]);
    r.code(4);
    assert!(
        r.stderr.contains("There is no offload backup"),
        "{}",
        r.stderr
    );
}

#[test]
fn demo_runs_end_to_end() {
    let s = Scratch::new();
    let r = s.run(&["demo", "--dir", s.path("demo").to_str().unwrap()]);
    r.ok();
    assert!(r.stdout.contains("== Second backup"), "{}", r.stdout);
    let second = r.stdout.split("== Second backup").nth(1).unwrap();
    assert!(second.contains("copied             0 files"), "{second}");
    assert_store_consistent(&s.path("demo/backup"));
}

/// Without --to, the store is `offload` in the desktop's pictures folder: the one
/// `user-dirs.dirs` names (`~/Bilder` on a German desktop), else `~/Pictures`.
#[test]
fn the_default_store_is_in_the_desktops_pictures_folder() {
    let s = Scratch::new();
    let empty = s.path("card");
    fs::create_dir_all(&empty).unwrap();
    let in_effect = |s: &Scratch| {
        let j = s.run(&["config", "--json"]).json();
        j["destinations_in_effect"][0]["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(in_effect(&s), s.path("Pictures/offload").to_str().unwrap());

    fs::create_dir_all(s.path("config")).unwrap();
    fs::write(
        s.path("config/user-dirs.dirs"),
        "# written by xdg-user-dirs-update\nXDG_DESKTOP_DIR=\"$HOME/Schreibtisch\"\nXDG_PICTURES_DIR=\"$HOME/Bilder\"\n",
    )
    .unwrap();
    assert_eq!(in_effect(&s), s.path("Bilder/offload").to_str().unwrap());
    s.run(&["backup", "--from", empty.to_str().unwrap()]).ok();
    assert!(s.path("Bilder/offload/.offload/store.json").is_file());
    assert!(!s.path("Pictures").exists());
}
