//! Nothing inside the store (or an export folder) is followed through a symbolic link,
//! and nothing outside it is ever written or deleted; a `--from` file swapped between
//! its listing and its reading is neither followed nor waited on. Each case runs the
//! real binary; the link cases run `OFFLOAD_TORTURE_ITERATIONS` rounds (default 3) so
//! that `scripts/torture.sh` can repeat them.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::phones::HUNG;
use common::*;

/// A camera roll of `n` small photos dated by their names (May 2024), with content
/// unique to `tag`, in the folder `dir` of the scratch area.
fn roll(s: &Scratch, dir: &str, tag: &str, n: usize) -> PathBuf {
    let root = s.path(dir);
    let camera = root.join("DCIM/Camera");
    fs::create_dir_all(&camera).unwrap();
    for i in 0..n {
        fs::write(
            camera.join(format!("IMG_20240510_1200{i:02}.jpg")),
            format!("photo {i} of {tag} {}", "x".repeat(100 + i)),
        )
        .unwrap();
    }
    root
}

/// Every file, link and folder under `dir` (links not followed): relative path →
/// content (a file), `-> target` (a link) or `/` (a folder).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let what = if e.file_type().is_symlink() {
            format!("-> {}", fs::read_link(e.path()).unwrap().display()).into_bytes()
        } else if e.file_type().is_dir() {
            b"/".to_vec()
        } else {
            fs::read(e.path()).unwrap()
        };
        out.insert(rel, what);
    }
    out
}

/// A folder outside every store holding three files someone cares about.
fn victim(s: &Scratch, name: &str) -> PathBuf {
    let v = s.path(name);
    fs::create_dir_all(v.join("letters")).unwrap();
    fs::write(v.join("thesis.odt"), b"three years of work").unwrap();
    fs::write(v.join("tax-2024.pdf"), b"receipts").unwrap();
    fs::write(v.join("letters/mum.txt"), b"dear mum").unwrap();
    v
}

/// Asserts the run stopped with exit 4 and a message naming the link as a link.
fn assert_refused(r: &Done, link: &Path) {
    r.code(4);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains(&link.display().to_string()) && all.contains("symbolic link"),
        "the message names {} as a link:\nstdout:\n{}\nstderr:\n{}",
        link.display(),
        r.stdout,
        r.stderr
    );
}

/// A store backed up from a small roll, whose `.offload/tmp` is then a link to a
/// victim folder. Returns (store, victim, the link).
fn store_with_tmp_link(s: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    roll(s, "roll", "first", 3);
    let dest = s.path("dest");
    s.backup_from("roll", &dest).ok();
    let v = victim(s, "VICTIM");
    let tmp = dest.join(".offload/tmp");
    fs::remove_dir_all(&tmp).unwrap();
    symlink(&v, &tmp).unwrap();
    (dest, v, tmp)
}

/// Checks the victim is untouched and the link still in place, after a refused run.
fn assert_untouched(v: &Path, before: &BTreeMap<String, Vec<u8>>, link: &Path) {
    let after = snapshot(v);
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert!(
        &after == before,
        "the folder behind the link was changed: {:?} before, {:?} after",
        names(before),
        names(&after)
    );
    assert!(fs::symlink_metadata(link).unwrap().is_symlink());
}

#[test]
fn tmp_link_stops_backup() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let (dest, v, link) = store_with_tmp_link(&s);
        let before = snapshot(&v);
        let stored = store_files(&dest);
        roll(&s, "roll2", "second", 2);
        let r = s.backup_from("roll2", &dest);
        assert_untouched(&v, &before, &link);
        assert_refused(&r, &link);
        assert_eq!(store_files(&dest), stored, "nothing was stored");
    }
}

#[test]
fn tmp_link_stops_verify() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let (dest, v, link) = store_with_tmp_link(&s);
        let before = snapshot(&v);
        let r = s.run(&["verify", "--to", dest.to_str().unwrap()]);
        assert_untouched(&v, &before, &link);
        assert_refused(&r, &link);
    }
}

#[test]
fn tmp_link_stops_reindex() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let (dest, v, link) = store_with_tmp_link(&s);
        let before = snapshot(&v);
        let catalog = fs::read(dest.join(".offload/catalog.sqlite")).unwrap();
        let r = s.run(&["reindex", "--to", dest.to_str().unwrap()]);
        assert_untouched(&v, &before, &link);
        assert_refused(&r, &link);
        assert_eq!(
            fs::read(dest.join(".offload/catalog.sqlite")).unwrap(),
            catalog,
            "the catalog was left as it was"
        );
    }
}

/// `offload ARGS` with a folder served as a virtual Android phone.
fn run_android(s: &Scratch, dir: &Path, args: &[&str]) -> Done {
    let mut c = s.cmd(args);
    c.env("OFFLOAD_VIRTUAL_ANDROID", dir)
        // No iPhone can be reached: a closed local port stands in for usbmuxd.
        .env("USBMUXD_SOCKET_ADDRESS", "127.0.0.1:9");
    Done::from(c.output().unwrap())
}

#[test]
fn tmp_link_stops_list_only_free_up() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let phone = roll(&s, "SAFETY01", "phone", 3);
        let dest = s.path("dest");
        let d = dest.to_str().unwrap();
        run_android(&s, &phone, &["backup", "--to", d]).ok();
        let v = victim(&s, "VICTIM");
        let link = dest.join(".offload/tmp");
        fs::remove_dir_all(&link).unwrap();
        symlink(&v, &link).unwrap();
        let before = snapshot(&v);
        let on_phone = snapshot(&phone);
        let r = run_android(&s, &phone, &["free-up", "--to", d]);
        assert_untouched(&v, &before, &link);
        assert_refused(&r, &link);
        assert_eq!(snapshot(&phone), on_phone, "nothing deleted from the phone");
    }
}

#[test]
fn offload_folder_link_stops_backup_and_verify() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        roll(&s, "roll", "first", 3);
        let dest = s.path("dest");
        s.backup_from("roll", &dest).ok();
        // The store's own state moved elsewhere and linked back: still not to be
        // written through (its catalog, temp files and lock live there).
        let elsewhere = s.path("elsewhere-meta");
        fs::rename(dest.join(".offload"), &elsewhere).unwrap();
        fs::write(
            elsewhere.join("tmp/keep.txt"),
            b"not a temp file of this store",
        )
        .unwrap();
        let link = dest.join(".offload");
        symlink(&elsewhere, &link).unwrap();
        let before = snapshot(&elsewhere);
        roll(&s, "roll2", "second", 2);
        let r = s.backup_from("roll2", &dest);
        assert_untouched(&elsewhere, &before, &link);
        assert_refused(&r, &link);
        let r = s.run(&["verify", "--to", dest.to_str().unwrap()]);
        assert_untouched(&elsewhere, &before, &link);
        assert_refused(&r, &link);
    }
}

#[test]
fn catalog_link_stops_backup() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        roll(&s, "roll", "first", 3);
        let dest = s.path("dest");
        s.backup_from("roll", &dest).ok();
        let elsewhere = s.path("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let link = dest.join(".offload/catalog.sqlite");
        fs::rename(&link, elsewhere.join("catalog.sqlite")).unwrap();
        symlink(elsewhere.join("catalog.sqlite"), &link).unwrap();
        let before = snapshot(&elsewhere);
        roll(&s, "roll2", "second", 2);
        let r = s.backup_from("roll2", &dest);
        assert_untouched(&elsewhere, &before, &link);
        assert_refused(&r, &link);
    }
}

/// The folder holding the stored photos' month folders (`roll/2024`).
fn year_folder(dest: &Path) -> PathBuf {
    let first = store_files(dest).into_keys().next().unwrap();
    let month = dest.join(&first).parent().unwrap().to_path_buf();
    month.parent().unwrap().to_path_buf()
}

#[test]
fn year_folder_link_stops_backup() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        roll(&s, "roll", "first", 3);
        let dest = s.path("dest");
        s.backup_from("roll", &dest).ok();
        let year = year_folder(&dest);
        let elsewhere = s.path("elsewhere-2024");
        fs::rename(&year, &elsewhere).unwrap();
        symlink(&elsewhere, &year).unwrap();
        let before = snapshot(&elsewhere);
        // New photos of that year, from the same roll.
        roll(&s, "roll", "more", 5);
        let r = s.backup_from("roll", &dest);
        assert_untouched(&elsewhere, &before, &year);
        assert_refused(&r, &year);
    }
}

#[test]
fn year_folder_link_stops_verify_and_reindex() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        roll(&s, "roll", "first", 3);
        let dest = s.path("dest");
        let d = dest.to_str().unwrap();
        s.backup_from("roll", &dest).ok();
        let year = year_folder(&dest);
        let elsewhere = s.path("elsewhere-2024");
        fs::rename(&year, &elsewhere).unwrap();
        symlink(&elsewhere, &year).unwrap();
        let before = snapshot(&elsewhere);
        let meta = snapshot(&dest.join(".offload"));
        // What the link leads to is not the stored copy: verify cannot vouch for it.
        let r = s.run(&["verify", "--to", d]);
        assert_untouched(&elsewhere, &before, &year);
        assert_refused(&r, &year);
        // Reindex would otherwise drop every file behind the link from the catalog.
        let r = s.run(&["reindex", "--to", d]);
        assert_untouched(&elsewhere, &before, &year);
        assert_refused(&r, &year);
        let after: Vec<String> = snapshot(&dest.join(".offload")).into_keys().collect();
        assert_eq!(
            after,
            meta.into_keys().collect::<Vec<_>>(),
            "the catalog stays where it was"
        );
    }
}

#[test]
fn year_folder_link_in_the_backup_is_not_exported_from() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        roll(&s, "roll", "first", 3);
        let dest = s.path("dest");
        s.backup_from("roll", &dest).ok();
        let year = year_folder(&dest);
        let elsewhere = s.path("elsewhere-2024");
        fs::rename(&year, &elsewhere).unwrap();
        symlink(&elsewhere, &year).unwrap();
        let out = s.path("out");
        let r = s.run(&[
            "export",
            "--from-store",
            dest.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--json",
        ]);
        // Each file behind the link fails, naming it; nothing is exported.
        r.code(1);
        let j = r.json();
        let failed = j["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 3, "{j}");
        for f in failed {
            let why = f["reason"].as_str().unwrap();
            assert!(
                why.contains(&year.display().to_string()) && why.contains("symbolic link"),
                "{why}"
            );
        }
        assert!(snapshot(&out).is_empty(), "{:?}", snapshot(&out).keys());
    }
}

#[test]
fn year_folder_link_stops_export() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let from = roll(&s, "roll", "first", 3);
        let out = s.path("out");
        let elsewhere = s.path("elsewhere-2024");
        fs::create_dir_all(&out).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        let link = out.join("2024");
        symlink(&elsewhere, &link).unwrap();
        let before = snapshot(&elsewhere);
        let r = s.run(&[
            "export",
            "--from",
            from.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
        ]);
        assert_untouched(&elsewhere, &before, &link);
        assert_refused(&r, &link);
    }
}

#[test]
fn export_work_folder_link_is_refused() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let from = roll(&s, "roll", "first", 3);
        let out = s.path("out");
        fs::create_dir_all(&out).unwrap();
        let v = victim(&s, "VICTIM");
        let link = out.join(".offload-export");
        symlink(&v, &link).unwrap();
        let before = snapshot(&v);
        let r = s.run(&[
            "export",
            "--from",
            from.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
        ]);
        assert_untouched(&v, &before, &link);
        assert_refused(&r, &link);
    }
}

/// Runs `backup --from roll --to dest --json`, pausing after the listing for `change`
/// to alter the roll. Fails the test when the run hangs.
fn backup_changed_after_listing(
    s: &Scratch,
    roll: &Path,
    dest: &Path,
    change: impl FnOnce(),
) -> Done {
    let flag = s.path("listed.flag");
    let child = s
        .cmd(&[
            "backup",
            "--from",
            roll.to_str().unwrap(),
            "--to",
            dest.to_str().unwrap(),
            "--json",
        ])
        .env("OFFLOAD_SIM_PAUSE_AFTER_LISTING", &flag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let until = Instant::now() + HUNG;
    while !flag.exists() {
        if let Ok(out) = rx.try_recv() {
            panic!(
                "the run ended before listing: {:?}",
                out.map(Done::from).map(|d| d.stderr)
            );
        }
        assert!(Instant::now() < until, "the run never finished its listing");
        std::thread::sleep(Duration::from_millis(5));
    }
    change();
    fs::remove_file(&flag).unwrap();
    match rx.recv_timeout(HUNG) {
        Ok(out) => Done::from(out.unwrap()),
        Err(_) => {
            send_signal(pid, libc::SIGKILL);
            panic!("the run hung on a file swapped after its listing");
        }
    }
}

/// Paths the run's `--json` report lists as failed.
fn failed(r: &Done) -> Vec<String> {
    r.json()["devices"][0]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn from_file_swapped_for_a_link_or_another_file_is_not_read() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let r0 = roll(&s, "roll", "first", 3);
        let secret = s.path("secret.txt");
        let other = s.path("other.jpg");
        let dest = s.path("dest");
        let cam = r0.join("DCIM/Camera");
        let (b, c) = (
            cam.join("IMG_20240510_120001.jpg"),
            cam.join("IMG_20240510_120002.jpg"),
        );
        // Each newcomer has exactly the listed file's size, so that only the file's
        // identity can tell them apart.
        let same_size = |p: &Path, text: &str| {
            let n = fs::metadata(p).unwrap().len() as usize;
            let mut bytes = text.as_bytes().to_vec();
            bytes.resize(n, b'#');
            bytes
        };
        let secret_bytes = same_size(&b, "root:x:0:0:secret");
        let other_bytes = same_size(&c, "another file, never listed");
        let r = backup_changed_after_listing(&s, &r0, &dest, || {
            fs::write(&secret, &secret_bytes).unwrap();
            fs::remove_file(&b).unwrap();
            symlink(&secret, &b).unwrap();
            fs::write(&other, &other_bytes).unwrap();
            fs::rename(&other, &c).unwrap();
        });
        r.code(1);
        let stored = store_files(&dest);
        let secret_hash = blake3::hash(&secret_bytes).to_hex().to_string();
        let other_hash = blake3::hash(&other_bytes).to_hex().to_string();
        assert!(
            !stored.values().any(|h| *h == secret_hash),
            "the link's target was stored: {stored:?}"
        );
        assert!(
            !stored.values().any(|h| *h == other_hash),
            "a file that was not the listed one was stored: {stored:?}"
        );
        assert_eq!(stored.len(), 1, "the unchanged photo is stored: {stored:?}");
        let mut f = failed(&r);
        f.sort();
        assert_eq!(
            f,
            [
                "DCIM/Camera/IMG_20240510_120001.jpg",
                "DCIM/Camera/IMG_20240510_120002.jpg"
            ],
            "{}",
            r.stdout
        );
    }
}

#[test]
fn from_file_swapped_for_a_fifo_neither_blocks_nor_is_read() {
    for _ in 0..iterations() {
        let s = Scratch::new();
        let r0 = roll(&s, "roll", "first", 3);
        let dest = s.path("dest");
        let b = r0.join("DCIM/Camera/IMG_20240510_120001.jpg");
        let r = backup_changed_after_listing(&s, &r0, &dest, || {
            fs::remove_file(&b).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &b,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap();
        });
        r.code(1);
        assert_eq!(store_files(&dest).len(), 2, "the other photos are stored");
        assert_eq!(
            failed(&r),
            ["DCIM/Camera/IMG_20240510_120001.jpg"],
            "{}",
            r.stdout
        );
    }
}
