//! The catalog and its copies are never silently replaced: a store whose catalog is
//! missing or empty is refused, the copy after each run keeps its older generations,
//! a catalog set aside by `reindex` is never overwritten, an unwritable catalog is
//! named with its fix, a catalog of a newer offload is refused untouched, and a
//! destination refused or failing for lack of space says exactly what it kept.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::phones::*;
use common::*;

/// Five small photos (seed 1) and three others (seed 2), as two folder sources.
fn two_rolls(s: &Scratch) {
    for (dir, n, seed) in [("rollA", "5", "1"), ("rollB", "3", "2")] {
        s.roll(
            dir,
            &[
                "--kind",
                "bulk",
                "--photos",
                n,
                "--photo-size",
                "20000",
                "--videos",
                "0",
                "--seed",
                seed,
            ],
        );
    }
}

/// A store holding both rolls: 8 files from 2 sources.
fn two_source_store(s: &Scratch) -> PathBuf {
    two_rolls(s);
    let dest = s.path("store");
    s.backup_from("rollA", &dest).ok();
    s.backup_from("rollB", &dest).ok();
    assert_eq!(counts(&dest.join(".offload/catalog.sqlite")), (8, 2));
    dest
}

/// (files, sources) recorded in the catalog (or copy) at `path`.
fn counts(path: &Path) -> (u64, u64) {
    // Immutable: a reader of a write-ahead-log database would leave files beside it.
    let c = rusqlite::Connection::open_with_flags(
        format!("file:{}?immutable=1", path.display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let q = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    (
        q("SELECT count(*) FROM files"),
        q("SELECT count(*) FROM sources"),
    )
}

/// Names in `.offload/` starting with `prefix`, sorted.
fn meta_names(dest: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dest.join(".offload"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// The older copies of the catalog kept beside `catalog.sqlite.bak`.
fn generations(dest: &Path) -> Vec<String> {
    meta_names(dest, "catalog-")
        .into_iter()
        .filter(|n| n.ends_with(".sqlite.bak"))
        .collect()
}

#[test]
fn a_store_whose_catalog_is_missing_is_refused_and_its_copy_kept() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    let cat = dest.join(".offload/catalog.sqlite");
    let bak = dest.join(".offload/catalog.sqlite.bak");
    let bak_bytes = fs::read(&bak).unwrap();
    fs::remove_file(&cat).unwrap();

    let r = s.backup_from("rollB", &dest);
    r.code(4);
    let named = dest.canonicalize().unwrap().join(".offload/catalog.sqlite");
    assert!(
        r.stderr
            .contains(&format!("{} is missing", named.display())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("catalog.sqlite.bak"), "{}", r.stderr);
    assert!(r.stderr.contains("offload reindex"), "{}", r.stderr);
    assert!(!cat.exists(), "a new catalog was made");
    assert_eq!(fs::read(&bak).unwrap(), bak_bytes, "the copy was replaced");

    // verify trusts the catalog: an absent one is no "all good".
    let v = s.run(&["verify", "--to", dest.to_str().unwrap()]);
    v.code(4);
    assert!(v.stderr.contains("offload reindex"), "{}", v.stderr);
    assert!(!cat.exists(), "verify made a new catalog");
    // status reads it: it says the same, not "there is no backup".
    let st = s.run(&["status", "--to", dest.to_str().unwrap()]);
    st.code(4);
    assert!(st.stderr.contains("catalog.sqlite.bak"), "{}", st.stderr);

    // The first way out: the copy, restored, holds both sources again.
    fs::copy(&bak, &cat).unwrap();
    s.backup_from("rollB", &dest).ok();
    assert_eq!(counts(&cat), (8, 2));
}

#[test]
fn a_store_whose_catalog_is_empty_is_refused() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    let cat = dest.join(".offload/catalog.sqlite");
    let bak = dest.join(".offload/catalog.sqlite.bak");
    let bak_bytes = fs::read(&bak).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = fs::remove_file(dest.join(format!(".offload/catalog.sqlite{side}")));
    }
    fs::write(&cat, b"").unwrap();

    let r = s.backup_from("rollB", &dest);
    r.code(4);
    assert!(r.stderr.contains("catalog.sqlite.bak"), "{}", r.stderr);
    assert!(r.stderr.contains("offload reindex"), "{}", r.stderr);
    assert_eq!(fs::read(&bak).unwrap(), bak_bytes, "the copy was replaced");

    // A catalog with its tables but no record at all is as empty.
    let c = rusqlite::Connection::open(&cat).unwrap();
    c.execute_batch("CREATE TABLE sources (id INTEGER PRIMARY KEY); CREATE TABLE files (id INTEGER PRIMARY KEY);")
        .unwrap();
    drop(c);
    let r = s.backup_from("rollB", &dest);
    r.code(4);
    assert_eq!(fs::read(&bak).unwrap(), bak_bytes, "the copy was replaced");
}

/// A catalog written by a newer offload (a schema version this build does not know) is
/// refused with exit 4, saying so, by a backup, a dry run and status, and left as it is.
#[test]
fn a_catalog_of_a_newer_offload_is_refused_and_left_as_it_is() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    let cat = dest.join(".offload/catalog.sqlite");
    let c = rusqlite::Connection::open(&cat).unwrap();
    c.pragma_update(None, "user_version", 1000).unwrap();
    drop(c);
    let before = fs::read(&cat).unwrap();
    let roll = s.path("rollB");
    let (roll, to) = (roll.to_str().unwrap(), dest.to_str().unwrap());
    for args in [
        vec!["backup", "--from", roll, "--to", to],
        vec!["backup", "--from", roll, "--to", to, "--dry-run"],
        vec!["status", "--to", to],
    ] {
        let r = s.run(&args);
        r.code(4);
        assert!(
            r.stderr.contains("written by a newer offload"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("damaged"), "{}", r.stderr);
    }
    assert_eq!(fs::read(&cat).unwrap(), before);
    assert_eq!(counts(&cat), (8, 2));
}

#[test]
fn a_new_store_and_reindex_still_make_a_catalog() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    let cat = dest.join(".offload/catalog.sqlite");
    fs::remove_file(&cat).unwrap();
    s.backup_from("rollB", &dest).code(4);

    // The second way out: rebuilt from the store, then backups go on.
    let r = s.run(&["reindex", "--to", dest.to_str().unwrap()]);
    r.ok();
    assert_eq!(counts(&cat), (8, 1));
    // reindex records one pseudo-source: the copy with both sources is kept, and said.
    let kept: Vec<_> = generations(&dest)
        .into_iter()
        .filter(|g| counts(&dest.join(".offload").join(g)) == (8, 2))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", generations(&dest));
    assert!(
        r.stderr.contains(&kept[0]) && r.stderr.contains("fewer"),
        "{}",
        r.stderr
    );
    s.backup_from("rollB", &dest).ok();
    assert_eq!(counts(&cat).0, 8);

    // A store made by this very run, in a folder that already holds other files.
    let other = s.path("pictures");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("note.txt"), b"mine").unwrap();
    s.backup_from("rollA", &other).ok();
    assert_eq!(counts(&other.join(".offload/catalog.sqlite")), (5, 1));
}

#[test]
fn the_copy_is_never_replaced_by_a_catalog_holding_less_without_keeping_it() {
    let s = Scratch::new();
    two_rolls(&s);
    let dest = s.path("store");
    s.backup_from("rollA", &dest).ok();
    let cat = dest.join(".offload/catalog.sqlite");
    // An older catalog, as a user might restore one: 5 files from 1 source.
    let old = s.path("old-catalog.sqlite");
    fs::copy(dest.join(".offload/catalog.sqlite.bak"), &old).unwrap();
    s.backup_from("rollB", &dest).ok();
    let bak = dest.join(".offload/catalog.sqlite.bak");
    assert_eq!(counts(&bak), (8, 2));

    fs::copy(&old, &cat).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = fs::remove_file(dest.join(format!(".offload/catalog.sqlite{side}")));
    }
    let r = s.backup_from("rollA", &dest);
    r.ok();
    // The copy holding more is kept, and the user is told where.
    let kept: Vec<_> = generations(&dest)
        .into_iter()
        .filter(|g| counts(&dest.join(".offload").join(g)) == (8, 2))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", generations(&dest));
    assert!(
        r.stderr.contains(&kept[0]) && r.stderr.contains("fewer"),
        "no warning naming {}: {}",
        kept[0],
        r.stderr
    );

    // However many runs follow, the copy holding more is never pruned.
    for _ in 0..7 {
        s.backup_from("rollA", &dest).ok();
    }
    assert!(
        generations(&dest).contains(&kept[0]),
        "{} was pruned: {:?}",
        kept[0],
        generations(&dest)
    );
}

#[test]
fn copies_of_the_catalog_keep_a_few_dated_generations() {
    let s = Scratch::new();
    two_rolls(&s);
    let dest = s.path("store");
    for _ in 0..8 {
        s.backup_from("rollA", &dest).ok();
    }
    let g = generations(&dest);
    assert_eq!(g.len(), 5, "{g:?}");
    for name in &g {
        // catalog-YYYYMMDDTHHMMSSZ[-N].sqlite.bak
        let stamp = &name["catalog-".len()..];
        assert!(
            stamp.len() >= 16
                && stamp[..8].bytes().all(|b| b.is_ascii_digit())
                && &stamp[8..9] == "T"
                && stamp[9..15].bytes().all(|b| b.is_ascii_digit())
                && &stamp[15..16] == "Z",
            "{name}"
        );
        assert_eq!(counts(&dest.join(".offload").join(name)), (5, 1));
    }
    assert!(dest.join(".offload/catalog.sqlite.bak").is_file());
    // Each copy is one self-contained file: nothing beside it.
    let beside: Vec<_> = meta_names(&dest, "catalog")
        .into_iter()
        .filter(|n| n.contains(".bak") && !n.ends_with(".bak"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}

#[test]
fn reindex_runs_in_one_second_each_keep_the_catalog_they_set_aside() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    for _ in 0..3 {
        s.run(&["reindex", "--to", dest.to_str().unwrap()]).ok();
    }
    let aside = meta_names(&dest, "catalog.sqlite.before-reindex-");
    let aside: Vec<_> = aside
        .into_iter()
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(aside.len(), 3, "{aside:?}");
    // The very first catalog, with both sources, is among them.
    assert!(
        aside
            .iter()
            .any(|n| counts(&dest.join(".offload").join(n)) == (8, 2)),
        "{aside:?}"
    );
}

/// Makes `path` unwritable even for root: immutable (`chattr +i`) as root, mode 444
/// (555 for a folder) otherwise. Undone on drop. None (after saying why) where the
/// filesystem has no immutable flag.
struct Unwritable(PathBuf);

impl Unwritable {
    fn new(path: &Path) -> Option<Unwritable> {
        let ok = if is_root() {
            Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success())
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if path.is_dir() { 0o555 } else { 0o444 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).is_ok()
        };
        if !ok {
            cannot_run(
                "chattr +i is not supported on the temp folder's filesystem",
                "an unwritable catalog",
            );
            return None;
        }
        let u = Unwritable(path.to_path_buf());
        // Really unwritable: the test is worth nothing otherwise.
        let probe = if path.is_dir() {
            fs::write(path.join("probe"), b"x").is_err()
        } else {
            fs::OpenOptions::new().append(true).open(path).is_err()
        };
        assert!(probe, "{} is still writable", path.display());
        Some(u)
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if is_root() {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if self.0.is_dir() { 0o755 } else { 0o644 };
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(mode));
        }
    }
}

#[test]
fn an_unwritable_catalog_is_exit_4_naming_the_file_and_the_fix() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    let cat = dest.join(".offload/catalog.sqlite");
    let bak_bytes = fs::read(dest.join(".offload/catalog.sqlite.bak")).unwrap();
    let Some(_u) = Unwritable::new(&cat) else {
        return;
    };
    let fix = if is_root() { "chattr -i" } else { "chmod u+w" };
    let r = s.backup_from("rollB", &dest);
    r.code(4);
    let named = cat.canonicalize().unwrap().display().to_string();
    assert!(r.stderr.contains(&named), "{}", r.stderr);
    assert!(r.stderr.contains(fix), "{}", r.stderr);
    assert!(!r.stderr.contains("damaged"), "{}", r.stderr);
    assert!(
        !r.stderr.to_lowercase().contains("readonly database"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::read(dest.join(".offload/catalog.sqlite.bak")).unwrap(),
        bak_bytes
    );

    let v = s.run(&["verify", "--to", dest.to_str().unwrap()]);
    v.code(4);
    assert!(
        v.stderr.contains(&named) && v.stderr.contains(fix),
        "{}",
        v.stderr
    );
}

#[test]
fn an_unwritable_offload_folder_is_exit_4_naming_it_and_the_fix() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    // Without its write-ahead files, the catalog must make them in the folder.
    let meta = dest.join(".offload");
    let Some(_u) = Unwritable::new(&meta) else {
        return;
    };
    let fix = if is_root() { "chattr -i" } else { "chmod u+w" };
    let r = s.backup_from("rollB", &dest);
    r.code(4);
    let named = meta.canonicalize().unwrap().display().to_string();
    assert!(r.stderr.contains(&named), "{}", r.stderr);
    assert!(r.stderr.contains(fix), "{}", r.stderr);
    assert!(!r.stderr.contains("damaged"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------
// Space: a refused new destination, and a disk that fills up mid-run

/// Unmounts on drop (lazily), so that a failed assertion leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    if !is_root() {
        cannot_run(
            "not root (mounting a small tmpfs needs it)",
            "a destination without enough space",
        );
        return None;
    }
    fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Mount(dir.to_path_buf()))
}

#[test]
#[ignore = "needs root to mount a size-limited tmpfs; run by .ci/run"]
fn a_new_destination_refused_for_space_leaves_nothing_behind() {
    let s = Scratch::new();
    two_rolls(&s);
    let mnt = s.path("small");
    let Some(_m) = mount_tmpfs(&mnt, "1m") else {
        return;
    };
    for dest in [mnt.join("store"), mnt.join("new/deeper/store")] {
        let r = s.backup_from("rollA", &dest);
        r.code(4);
        assert!(r.stderr.contains("Not enough space"), "{}", r.stderr);
        assert!(r.stderr.contains("Nothing was copied"), "{}", r.stderr);
        let left: Vec<_> = fs::read_dir(&mnt)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// The N of "N files were saved" in `text`.
fn saved_count(text: &str) -> u64 {
    let at = text
        .find(" files were saved")
        .unwrap_or_else(|| panic!("no count of saved files: {text}"));
    text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before 'files were saved': {text}"))
}

#[test]
#[ignore = "needs root to mount a size-limited tmpfs; run by .ci/run"]
fn a_disk_that_fills_up_mid_run_counts_exactly_the_files_it_kept() {
    let s = Scratch::new();
    let mnt = s.path("small");
    let Some(_m) = mount_tmpfs(&mnt, "32m") else {
        return;
    };
    // A dozen 1.5 MB photos served at 1 MB/s: the disk fills after about three.
    s.roll(
        "slowroll",
        &[
            "--kind",
            "bulk",
            "--photos",
            "12",
            "--photo-size",
            "1500000",
            "--videos",
            "0",
        ],
    );
    let roll = s.path("slowroll");
    let dest = mnt.join("store");
    let sim = Sim::start(&s, &roll, &["--slow-kbps", "1000"]);
    let (out, err) = (s.path("run.stdout"), s.path("run.stderr"));
    let mut child = sim
        .cmd(
            &s,
            &["backup", "--device", UDID, "--to", dest.to_str().unwrap()],
        )
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while sim.stat("bytes_served") < 5_000_000 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended early: {}",
            fs::read_to_string(&err).unwrap()
        );
        assert!(started.elapsed() < HUNG, "the backup made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(fill_up(&mnt.join("filler.bin")) > 0);
    let code = wait_bounded(&mut child, HUNG);
    let stderr = fs::read_to_string(&err).unwrap();
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("is full"), "{stderr}");
    let kept = store_files(&dest).len() as u64;
    assert!(
        kept >= 1,
        "nothing was kept before the disk filled: {stderr}"
    );
    assert_eq!(
        saved_count(&stderr),
        kept,
        "the files said saved are not those in the store: {stderr}"
    );
    assert_eq!(temp_files(&dest), 0, "a partial temp file was kept");
}

/// The source keys a catalog (or copy) at `path` records.
fn source_keys(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(
        format!("file:{}?immutable=1", path.display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let mut st = c.prepare("SELECT key FROM sources").unwrap();
    let keys = st.query_map([], |r| r.get(0)).unwrap();
    keys.map(Result::unwrap).collect()
}

/// After a lost catalog is rebuilt, the copy that still knows a phone the rebuilt one
/// does not is never pruned, even once the rebuilt catalog counts as many sources (the
/// `reindexed` stand-in and one phone) and files.
#[test]
fn a_copy_that_knows_a_source_the_catalog_lacks_is_never_pruned() {
    let s = Scratch::new();
    let dest = two_source_store(&s);
    let b_key = source_keys(&dest.join(".offload/catalog.sqlite"))
        .into_iter()
        .find(|k| k.ends_with("rollB"))
        .expect("rollB's source key");
    fs::remove_file(dest.join(".offload/catalog.sqlite")).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = fs::remove_file(dest.join(format!(".offload/catalog.sqlite{side}")));
    }
    s.run(&["reindex", "--to", dest.to_str().unwrap()]).ok();
    for _ in 0..8 {
        s.backup_from("rollA", &dest).ok();
    }
    let meta = dest.join(".offload");
    let copies: Vec<PathBuf> = generations(&dest)
        .into_iter()
        .map(|n| meta.join(n))
        .chain([meta.join("catalog.sqlite.bak")])
        .collect();
    assert!(
        copies.iter().any(|c| source_keys(c).contains(&b_key)),
        "every copy that knew {b_key} was pruned: {copies:?}"
    );
}
