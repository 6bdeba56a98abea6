//! Torture tests: `kill -9` and unplugs at pseudo-random instants, a disk that fills up,
//! turns read-only or disappears mid-run, hostile names and lying devices, hostile media.
//! All through the real binary, against the folder source and both virtual phones.
//!
//! `OFFLOAD_TORTURE_ITERATIONS` sets how many rounds the repeated tests run (CI keeps
//! the small default; `scripts/torture.sh` runs many), `OFFLOAD_TORTURE_SEED` the seed
//! of the pseudo-random instants and offsets. Every test prints its seed and the counts
//! it ran, also appended to the file `OFFLOAD_TORTURE_REPORT` names, if any.
//!
//! Nothing here depends on winning a race: kill instants and fill points are chosen
//! from the run's own progress (the virtual phones' byte counters), and every wait is
//! generous.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::phones::*;
use common::*;

// ---------------------------------------------------------------------------------
// Counts, seeds and pseudo-random numbers

/// Rounds per repeated test (`OFFLOAD_TORTURE_ITERATIONS`, default 3).
fn iterations() -> u64 {
    std::env::var("OFFLOAD_TORTURE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// Rounds of the slow tests that need a mounted filesystem: a quarter as many.
fn slow_iterations() -> u64 {
    iterations().div_ceil(4)
}

/// `OFFLOAD_TORTURE_SEED`, default 1.
fn seed() -> u64 {
    std::env::var("OFFLOAD_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// SplitMix64: small, good enough, and the same on every machine.
struct Rng(u64);

impl Rng {
    /// A stream of its own for each test, from the seed.
    fn for_test(test: &str) -> Rng {
        let h = blake3::hash(test.as_bytes());
        Rng(seed() ^ u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (`hi > lo`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Prints one test's counts, and appends them to `OFFLOAD_TORTURE_REPORT`.
fn report(test: &str, started: Instant, counts: &str) {
    let line = format!(
        "{test}: seed {}, {counts} ({:.1} s)",
        seed(),
        started.elapsed().as_secs_f64()
    );
    println!("torture: {line}");
    if let Some(path) = std::env::var_os("OFFLOAD_TORTURE_REPORT") {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Sources and checks shared by the tests

/// 2024-05-10 12:00:00 UTC: 14:00 in Paris.
const MAY_2024: i64 = 1_715_342_400;

fn set_mtime(p: &Path, unix: i64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    let t = if unix >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    };
    f.set_modified(t).unwrap();
}

fn write(p: &Path, bytes: &[u8], unix_mtime: i64) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
    set_mtime(p, unix_mtime);
}

/// `n` pseudo-random (incompressible) bytes from `seed`.
fn noise(seed: &str, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut v);
    v
}

/// The three kinds of source, each able to start a backup of its roll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Folder,
    Android,
    Iphone,
}

/// A source under test: a roll on disk, served as `kind`.
struct Source<'a> {
    s: &'a Scratch,
    kind: Kind,
    roll: PathBuf,
    /// The virtual iPhone, for `Kind::Iphone`.
    sim: Option<Sim>,
}

impl<'a> Source<'a> {
    fn new(s: &'a Scratch, kind: Kind, roll: &Path, sim_extra: &[&str]) -> Source<'a> {
        let sim = (kind == Kind::Iphone).then(|| Sim::start(s, roll, sim_extra));
        Source {
            s,
            kind,
            roll: roll.to_path_buf(),
            sim,
        }
    }

    /// `offload backup --to DEST --json` from this source, with Android `faults`.
    fn backup_cmd(&self, dest: &Path, faults: &str) -> Command {
        let d = dest.to_str().unwrap();
        match self.kind {
            Kind::Folder => {
                let mut c = self.s.cmd(&[
                    "backup",
                    "--from",
                    self.roll.to_str().unwrap(),
                    "--to",
                    d,
                    "--json",
                ]);
                c.env_remove("OFFLOAD_VIRTUAL_ANDROID");
                c
            }
            Kind::Android => android_cmd(
                self.s,
                &[&self.roll],
                faults,
                &["backup", "--to", d, "--json"],
            ),
            Kind::Iphone => self.sim.as_ref().unwrap().cmd(
                self.s,
                &["backup", "--device", UDID, "--to", d, "--json"],
            ),
        }
    }

    fn backup(&self, dest: &Path) -> Done {
        run_bounded(self.backup_cmd(dest, ""), self.s)
    }

    /// The files this source backs up: relative path → hash (the rolls here hold
    /// nothing hidden, and phones list DCIM).
    fn files(&self) -> BTreeMap<String, String> {
        source_files(&self.roll)
    }

    /// Bytes of file content the phone has sent so far (0 for a folder).
    fn bytes_served(&self, android_stats: &Path) -> u64 {
        match self.kind {
            Kind::Folder => 0,
            Kind::Android => fs::read(android_stats)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["bytes"].as_u64())
                .unwrap_or(0),
            Kind::Iphone => self.sim.as_ref().unwrap().stats()["bytes_served"],
        }
    }
}

/// The checks after any interrupted run: whatever is under a final name is a complete
/// copy of a source file, every catalog row names a file that is there with its hash,
/// and SQLite finds the catalog sound.
fn assert_nothing_partial(dest: &Path, sources: &BTreeSet<String>, what: &str) {
    if !dest.join(".offload/catalog.sqlite").exists() {
        // Killed before the store was made: nothing may be there but the store's bones.
        assert!(store_files(dest).is_empty() || !dest.exists(), "{what}");
        return;
    }
    for (path, h) in store_files(dest) {
        assert!(
            sources.contains(&h),
            "{what}: {path} is not a complete copy of any source file"
        );
    }
    assert_quick_check(dest, what);
    assert_store_consistent(dest);
}

fn assert_quick_check(dest: &Path, what: &str) {
    let c = catalog(dest);
    let check: String = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{what}: the catalog is damaged");
}

/// After a run that completed: every source file stored exactly once, hash-correct,
/// the catalog agrees, no temp file left.
fn assert_complete(dest: &Path, sources: &BTreeSet<String>, what: &str) {
    let stored = store_files(dest);
    let hashes: BTreeSet<String> = stored.values().cloned().collect();
    assert_eq!(&hashes, sources, "{what}: not every source file is stored");
    assert_eq!(stored.len(), sources.len(), "{what}: a content is stored twice");
    assert_quick_check(dest, what);
    assert_store_consistent(dest);
    assert_eq!(temp_files(dest), 0, "{what}: temp files left behind");
}

/// A roll of many small photos and two videos: more files than one commit batch
/// (256), so that kills land in copies, syncs, renames and catalog commits alike.
fn bulk_roll(s: &Scratch, dir: &str, photos: usize, photo_size: usize) -> PathBuf {
    s.roll(
        dir,
        &[
            "--kind",
            "bulk",
            "--photos",
            &photos.to_string(),
            "--photo-size",
            &photo_size.to_string(),
            "--videos",
            "2",
            "--video-size",
            "4000000",
        ],
    );
    s.path(dir)
}

// ---------------------------------------------------------------------------------
// kill -9 at random instants

/// Starts a backup, kills it with SIGKILL `extra_ms` after the phone has sent
/// `after_bytes` (a folder: after the run has written that many), and waits for it.
/// True when the kill landed while the run was still going.
fn kill_during(src: &Source, dest: &Path, after_bytes: u64, extra_ms: u64) -> bool {
    let stats = src.s.path("android-stats.json");
    let _ = fs::remove_file(&stats);
    let mut cmd = src.backup_cmd(dest, "");
    if src.kind == Kind::Android {
        cmd.env("OFFLOAD_VIRTUAL_STATS", &stats);
    }
    let start_bytes = src.bytes_served(&stats);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let due = match src.kind {
            // The bytes the run has written so far (its temp files, the catalog).
            Kind::Folder => written_by(&child) >= after_bytes,
            _ => src.bytes_served(&stats).saturating_sub(start_bytes) >= after_bytes,
        };
        if due {
            break;
        }
        assert!(
            started.elapsed() < HUNG,
            "the backup made no progress for {HUNG:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // A little more, so that the kill also lands between the counter's updates.
    std::thread::sleep(Duration::from_millis(extra_ms));
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
    running
}

/// Bytes `child` has written so far (`wchar` of /proc/PID/io; 0 once it is gone).
fn written_by(child: &Child) -> u64 {
    fs::read_to_string(format!("/proc/{}/io", child.id()))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn kill_9_torture(kind: Kind, test: &str) {
    let started = Instant::now();
    let mut rng = Rng::for_test(test);
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 400, 30_000);
    let src = Source::new(&s, kind, &roll, &[]);
    let sources: BTreeSet<String> = src.files().into_values().collect();
    let total: u64 = walkdir::WalkDir::new(&roll)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();

    // What an uninterrupted run stores.
    let reference = s.path("reference");
    src.backup(&reference).ok();
    assert_complete(&reference, &sources, "reference run");

    let (mut runs, mut killed, mut mid_copy) = (0, 0, 0);
    for i in 0..iterations() {
        let dest = s.path(&format!("dest-{i}"));
        // One or two kills in a row on the same store, then a run to the end.
        for k in 0..rng.range(1, 3) {
            let what = format!("seed {} round {i} kill {k}", seed());
            let after_bytes = rng.range(0, total * 9 / 10);
            let extra_ms = rng.range(0, 25);
            runs += 1;
            if kill_during(&src, &dest, after_bytes, extra_ms) {
                killed += 1;
                if store_files(&dest).len() < sources.len() {
                    mid_copy += 1;
                }
            }
            assert_nothing_partial(&dest, &sources, &what);
        }
        let r = src.backup(&dest);
        r.ok();
        assert_complete(&dest, &sources, &format!("seed {} round {i} rerun", seed()));
        // The rerun leaves what an uninterrupted run leaves, name for name.
        assert_eq!(
            store_files(&dest),
            store_files(&reference),
            "seed {} round {i}",
            seed()
        );
    }
    assert!(
        mid_copy > 0,
        "no kill landed in the middle of a copy: the test tested nothing"
    );
    report(
        test,
        started,
        &format!(
            "{} rounds, {runs} runs, {killed} killed ({mid_copy} mid-copy), {} files each",
            iterations(),
            sources.len()
        ),
    );
}

#[test]
fn kill_9_during_folder_backups() {
    kill_9_torture(Kind::Folder, "kill_9_during_folder_backups");
}

#[test]
fn kill_9_during_android_backups() {
    kill_9_torture(Kind::Android, "kill_9_during_android_backups");
}

#[test]
fn kill_9_during_iphone_backups() {
    kill_9_torture(Kind::Iphone, "kill_9_during_iphone_backups");
}

// ---------------------------------------------------------------------------------
// Unplug at random byte offsets

const GONE_WORDS: &str = "Phone disconnected";
const NOTHING_PARTIAL: &str = "nothing partial was kept";

fn unplug_torture(kind: Kind, test: &str) {
    let started = Instant::now();
    let mut rng = Rng::for_test(test);
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 60, 60_000);
    let healthy = Source::new(&s, kind, &roll, &[]);
    let sources: BTreeSet<String> = healthy.files().into_values().collect();
    let total: u64 = healthy
        .files()
        .keys()
        .map(|p| fs::metadata(roll.join(p)).unwrap().len())
        .sum();
    let reference = s.path("reference");
    healthy.backup(&reference).ok();
    assert_complete(&reference, &sources, "reference run");

    let mut offsets = Vec::new();
    for i in 0..iterations() {
        let offset = rng.range(1, total);
        offsets.push(offset);
        let what = format!("seed {} round {i} offset {offset}", seed());
        let dest = s.path(&format!("dest-{i}"));
        let r = match kind {
            Kind::Android => run_bounded(
                healthy.backup_cmd(&dest, &format!("unplug-after-bytes={offset}")),
                &s,
            ),
            Kind::Iphone => {
                let n = offset.to_string();
                let doomed = Source::new(&s, kind, &roll, &["--unplug-after-bytes", &n]);
                doomed.backup(&dest)
            }
            Kind::Folder => unreachable!("a folder is not unplugged here"),
        };
        r.code(5);
        assert!(r.stderr.contains(GONE_WORDS), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(NOTHING_PARTIAL), "{what}: {}", r.stderr);
        let dev = r.json()["devices"][0].clone();
        assert!(dev["interrupted"].is_string(), "{what}: {dev}");
        assert!(
            dev["failed"].as_array().unwrap().is_empty(),
            "{what}: the cut file is not a failure of that file: {dev}"
        );
        assert_nothing_partial(&dest, &sources, &what);
        assert_eq!(temp_files(&dest), 0, "{what}: a temp file was left");
        let stored = store_files(&dest).len() as u64;
        assert_eq!(dev["copied"].as_u64().unwrap(), stored, "{what}: {dev}");
        assert!(stored < sources.len() as u64, "{what}: {dev}");

        // Plugged back in: the rerun copies the rest, nothing twice.
        let r = healthy.backup(&dest);
        r.ok();
        let dev = r.json()["devices"][0].clone();
        assert_eq!(
            dev["copied"].as_u64().unwrap() + stored,
            sources.len() as u64,
            "{what}: {dev}"
        );
        assert_complete(&dest, &sources, &what);
        assert_eq!(store_files(&dest), store_files(&reference), "{what}");
    }
    report(
        test,
        started,
        &format!(
            "{} unplugs at byte offsets {offsets:?} of {total}",
            iterations()
        ),
    );
}

#[test]
fn unplug_android_at_random_offsets() {
    unplug_torture(Kind::Android, "unplug_android_at_random_offsets");
}

#[test]
fn unplug_iphone_at_random_offsets() {
    unplug_torture(Kind::Iphone, "unplug_iphone_at_random_offsets");
}
