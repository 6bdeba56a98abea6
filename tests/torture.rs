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

/// `[a, b, c]`, or the first ten and how many more: the seed replays them all.
fn list(v: &[u64]) -> String {
    let head: Vec<String> = v.iter().take(10).map(u64::to_string).collect();
    match v.len() {
        0..=10 => format!("[{}]", head.join(", ")),
        n => format!("[{}, ... {} more]", head.join(", "), n - 10),
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
    /// `OFFLOAD_VIRTUAL_FAULT` of every run, for `Kind::Android`.
    faults: String,
}

impl<'a> Source<'a> {
    fn new(s: &'a Scratch, kind: Kind, roll: &Path, sim_extra: &[&str]) -> Source<'a> {
        let sim = (kind == Kind::Iphone).then(|| Sim::start(s, roll, sim_extra));
        Source {
            s,
            kind,
            roll: roll.to_path_buf(),
            sim,
            faults: String::new(),
        }
    }

    /// `offload backup --to DEST --json` from this source, with Android `faults`.
    /// Batches of [`BATCH_FILES`] files, so that one run commits several times.
    fn backup_cmd(&self, dest: &Path, faults: &str) -> Command {
        let d = dest.to_str().unwrap();
        let mut c = match self.kind {
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
            Kind::Iphone => self
                .sim
                .as_ref()
                .unwrap()
                .cmd(self.s, &["backup", "--device", UDID, "--to", d, "--json"]),
        };
        c.env("OFFLOAD_BATCH_FILES", BATCH_FILES.to_string());
        c
    }

    fn backup(&self, dest: &Path) -> Done {
        run_bounded(self.backup_cmd(dest, &self.faults), self.s)
    }

    /// The files this source backs up: relative path → hash (the rolls here hold
    /// nothing hidden, and phones list DCIM; the virtual iPhone writes its Photos
    /// library beside it, which is never copied as photos).
    fn files(&self) -> BTreeMap<String, String> {
        camera_files(&self.roll)
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
    // A catalog killed while being created, or whose unsynced last transactions were
    // lost with a failing drive (the catalog syncs its log with the next batch's data,
    // by design), may lack the tables: then it records nothing, which is consistent,
    // and the next run adopts the stored files (checked by the reruns).
    let has_files: bool = catalog(dest)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'files'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        > 0;
    if has_files {
        assert_store_consistent(dest);
    }
}

/// A roll's camera files: everything but the Photos library a virtual iPhone keeps.
fn camera_files(roll: &Path) -> BTreeMap<String, String> {
    source_files(roll)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("PhotoData/"))
        .collect()
}

fn assert_quick_check(dest: &Path, what: &str) {
    let c = catalog(dest);
    let check: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "{what}: the catalog is damaged");
}

/// After a run that completed: every source file stored exactly once, hash-correct,
/// the catalog agrees, no temp file left.
fn assert_complete(dest: &Path, sources: &BTreeSet<String>, what: &str) {
    let stored = store_files(dest);
    let hashes: BTreeSet<String> = stored.values().cloned().collect();
    assert_eq!(&hashes, sources, "{what}: not every source file is stored");
    assert_eq!(
        stored.len(),
        sources.len(),
        "{what}: a content is stored twice"
    );
    assert_quick_check(dest, what);
    assert_store_consistent(dest);
    assert_eq!(temp_files(dest), 0, "{what}: temp files left behind");
}

/// Files per commit batch in these runs: a real run commits every 15 s, which these
/// small rolls never reach.
const BATCH_FILES: usize = 64;

/// A roll of many small photos and two videos: more files than one commit batch
/// ([`BATCH_FILES`]), so that kills land in copies, syncs, renames and catalog commits
/// alike.
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
    io_count(child, "wchar: ")
}

/// One counter of /proc/PID/io (`rchar: `, `wchar: `), 0 once `child` is gone.
fn io_count(child: &Child, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{}/io", child.id()))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix(key))
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
            "{} unplugs at byte offsets {} of {total}",
            iterations(),
            list(&offsets)
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

// ---------------------------------------------------------------------------------
// The destination fills up, turns read-only or disappears mid-run

/// Unmounts on drop (lazily), so that a failed assertion leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mount_tmpfs(dir: &Path, size: &str) -> Mount {
    fs::create_dir_all(dir).unwrap();
    sh(Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir));
    Mount(dir.to_path_buf())
}

/// Every camera file of a phone folder with its size, mtime and hash: proof it was left
/// alone (the virtual iPhone keeps its own Photos library in `PhotoData/` up to date).
fn phone_state(dir: &Path) -> BTreeMap<String, (u64, SystemTime, String)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || e.file_name() != "PhotoData")
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                (m.len(), m.modified().unwrap(), hash_file(e.path())),
            )
        })
        .collect()
}

/// A dozen 1.5 MB photos: served slowly, a run lasts long enough to be hurt mid-way.
fn slow_roll(s: &Scratch) -> (PathBuf, BTreeSet<String>) {
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
    let sources = camera_files(&roll).into_values().collect();
    (roll, sources)
}

/// Served at 1 MB/s, the slow roll takes 18 s to copy: the damage is done after at
/// most 6 MB, so the run is still copying, whatever the machine's load, for 12 s more.
const SLOW_KBPS: &str = "1000";

/// Starts `offload backup --to DEST` from the (slow) virtual iPhone `sim`, waits until
/// the phone has sent `after_bytes`, then does `damage` while the run goes on. Returns
/// the run's result.
fn hurt_mid_run(
    s: &Scratch,
    sim: &Sim,
    dest: &Path,
    after_bytes: u64,
    damage: impl FnOnce(),
) -> Done {
    let (out, err) = (s.path("hurt.stdout"), s.path("hurt.stderr"));
    let mut child = sim
        .cmd(
            s,
            &[
                "backup",
                "--device",
                UDID,
                "--to",
                dest.to_str().unwrap(),
                "--json",
            ],
        )
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while sim.stats()["bytes_served"] < after_bytes {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the damage was done: {}",
            fs::read_to_string(&err).unwrap()
        );
        assert!(started.elapsed() < HUNG, "the backup made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    damage();
    let code = wait_bounded(&mut child, HUNG);
    Done {
        code,
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    }
}

#[test]
#[ignore = "needs root to mount a size-limited tmpfs; run by .ci/run"]
fn a_disk_that_fills_up_mid_run_stops_it_cleanly_and_a_bigger_one_completes_it() {
    let test = "disk_full_mid_run";
    if !is_root() {
        cannot_run(
            "not root (mounting a small tmpfs needs it)",
            "a destination that fills up mid-run",
        );
        return;
    }
    let started = Instant::now();
    let mut rng = Rng::for_test(test);
    let s = Scratch::new();
    let (roll, sources) = slow_roll(&s);
    let phone_before = phone_state(&roll);
    let mut points = Vec::new();
    for i in 0..slow_iterations() {
        let mnt = s.path(&format!("small-{i}"));
        // 32 MiB for 18 MB of photos: the check before copying passes.
        let _m = mount_tmpfs(&mnt, "32m");
        let dest = mnt.join("store");
        let after = rng.range(1, 6_000_000);
        points.push(after);
        let what = format!("seed {} round {i}: filled after {after} bytes", seed());
        let slow = Sim::start(&s, &roll, &["--slow-kbps", SLOW_KBPS]);
        let mut filler = 0;
        let r = hurt_mid_run(&s, &slow, &dest, after, || {
            filler = fill_up(&mnt.join("filler.bin"));
        });
        drop(slow);
        r.code(4);
        let (canon_dest, canon_mnt) = (dest.canonicalize().unwrap(), mnt.canonicalize().unwrap());
        let want = format!(
            "The drive holding {} (mounted at {}) is full: ",
            canon_dest.display(),
            canon_mnt.display()
        );
        assert!(r.stderr.contains(&want), "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains(" more needed, ") && r.stderr.contains(" free."),
            "{what}: {}",
            r.stderr
        );
        assert!(r.stderr.contains(NOTHING_PARTIAL), "{what}: {}", r.stderr);
        assert!(filler > 0, "{what}: the filler found no room");
        assert_nothing_partial(&dest, &sources, &what);
        assert_eq!(temp_files(&dest), 0, "{what}: a partial temp file was kept");
        assert!(store_files(&dest).len() < sources.len(), "{what}");

        // The same run against a bigger disk completes.
        sh(Command::new("mount")
            .args(["-o", "remount,size=96m"])
            .arg(&mnt));
        let fast = Source::new(&s, Kind::Iphone, &roll, &[]);
        fast.backup(&dest).ok();
        assert_complete(&dest, &sources, &what);
    }
    assert_eq!(
        phone_state(&roll),
        phone_before,
        "the phone's files changed"
    );
    report(
        test,
        started,
        &format!(
            "{} runs filled up after {} bytes",
            slow_iterations(),
            list(&points)
        ),
    );
}

#[test]
#[ignore = "needs root, a loop device, mkfs.ext4 and e2fsck (Debian: e2fsprogs) for an ext4 image that turns read-only; run by .ci/run"]
fn a_destination_that_turns_read_only_mid_run_stops_it_cleanly() {
    let test = "read_only_mid_run";
    let missing: Vec<&str> = ["mkfs.ext4", "e2fsck", "losetup"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !is_root() || !missing.is_empty() || !Path::new("/dev/loop-control").exists() {
        cannot_run(
            &format!(
                "not root, or no loop devices, or missing {missing:?} (an ext4 image that \
                 turns read-only needs them; Debian: e2fsprogs, mount)"
            ),
            "a destination that turns read-only mid-run",
        );
        return;
    }
    let started = Instant::now();
    let mut rng = Rng::for_test(test);
    let s = Scratch::new();
    let (roll, sources) = slow_roll(&s);
    let phone_before = phone_state(&roll);
    let mut points = Vec::new();
    for i in 0..slow_iterations() {
        // ext4 mounted as Linux mounts a USB drive's: on an error it turns read-only.
        // (`mount -o remount,ro` cannot do it mid-run: the kernel refuses while files
        // are open for writing, which they are.)
        let img = s.path(&format!("ext4-{i}.img"));
        fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
        sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        let mnt = s.path(&format!("ext4-{i}"));
        fs::create_dir_all(&mnt).unwrap();
        let mount = || {
            sh(Command::new("mount")
                .args(["-o", "loop,errors=remount-ro"])
                .arg(&img)
                .arg(&mnt));
            Mount(mnt.clone())
        };
        let m = mount();
        let loopdev = String::from_utf8(
            Command::new("findmnt")
                .args(["-n", "-o", "SOURCE"])
                .arg(&mnt)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let trigger = PathBuf::from(format!(
            "/sys/fs/ext4/{}/trigger_fs_error",
            loopdev.trim().trim_start_matches("/dev/")
        ));
        if !trigger.exists() {
            cannot_run(
                &format!("{} is missing (kernel without it)", trigger.display()),
                "a destination that turns read-only mid-run",
            );
            return;
        }
        let dest = mnt.join("store");
        let after = rng.range(1, 6_000_000);
        points.push(after);
        let what = format!("seed {} round {i}: read-only after {after} bytes", seed());
        let slow = Sim::start(&s, &roll, &["--slow-kbps", SLOW_KBPS]);
        let r = hurt_mid_run(&s, &slow, &dest, after, || {
            fs::write(&trigger, "1").unwrap();
        });
        drop(slow);
        r.code(4);
        let want = format!(
            "The drive holding {} (mounted at {}) became read-only",
            dest.canonicalize().unwrap().display(),
            mnt.canonicalize().unwrap().display()
        );
        assert!(r.stderr.contains(&want), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(NOTHING_PARTIAL), "{what}: {}", r.stderr);
        assert_eq!(
            phone_state(&roll),
            phone_before,
            "{what}: the phone changed"
        );

        // Repaired and mounted again, the drive holds nothing partial, and the next
        // run sweeps the temp file the read-only drive kept and completes the job.
        drop(m);
        let _ = Command::new("e2fsck").args(["-fy"]).arg(&img).output();
        let _m = mount();
        assert_nothing_partial(&dest, &sources, &what);
        assert!(store_files(&dest).len() < sources.len(), "{what}");
        let fast = Source::new(&s, Kind::Iphone, &roll, &[]);
        fast.backup(&dest).ok();
        assert_complete(&dest, &sources, &what);
    }
    report(
        test,
        started,
        &format!(
            "{} runs turned read-only after {} bytes",
            slow_iterations(),
            list(&points)
        ),
    );
}

#[test]
#[ignore = "needs root to mount and unmount a tmpfs; run by .ci/run"]
fn a_destination_that_disappears_mid_run_stops_it_cleanly() {
    let test = "destination_gone_mid_run";
    if !is_root() {
        cannot_run(
            "not root (mounting a tmpfs needs it)",
            "a destination that disappears mid-run",
        );
        return;
    }
    let started = Instant::now();
    let mut rng = Rng::for_test(test);
    let s = Scratch::new();
    let (roll, sources) = slow_roll(&s);
    let phone_before = phone_state(&roll);
    let mut points = Vec::new();
    for i in 0..slow_iterations() {
        let mnt = s.path(&format!("drive-{i}"));
        let m = mount_tmpfs(&mnt, "64m");
        // Kept open to look at the drive after it is gone from the path.
        let drive = fs::File::open(&mnt).unwrap();
        let gone_drive = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            std::os::fd::AsRawFd::as_raw_fd(&drive)
        ));
        let dest = mnt.join("store");
        let after = rng.range(1, 6_000_000);
        points.push(after);
        let what = format!("seed {} round {i}: gone after {after} bytes", seed());
        let slow = Sim::start(&s, &roll, &["--slow-kbps", SLOW_KBPS]);
        let r = hurt_mid_run(&s, &slow, &dest, after, || {
            // Unplugged: the path now leads to the empty mount point.
            sh(Command::new("umount").arg("-l").arg(&mnt));
        });
        drop(slow);
        std::mem::forget(m);
        r.code(4);
        let want = format!(
            "The destination {} went away during the run",
            dest.display()
        );
        assert!(r.stderr.contains(&want), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(NOTHING_PARTIAL), "{what}: {}", r.stderr);
        assert_eq!(
            phone_state(&roll),
            phone_before,
            "{what}: the phone changed"
        );
        let in_mount_point: Vec<_> = fs::read_dir(&mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            in_mount_point.is_empty(),
            "{what}: written into the empty mount point: {in_mount_point:?}"
        );
        // Plugged back in (its contents, reached through the descriptor kept open, on
        // a fresh drive): nothing partial on it, and the next run completes.
        let _m = mount_tmpfs(&mnt, "64m");
        sh(Command::new("cp")
            .arg("-a")
            .arg(gone_drive.join("store"))
            .arg(&mnt));
        drop(drive);
        assert_nothing_partial(&dest, &sources, &what);
        assert!(store_files(&dest).len() < sources.len(), "{what}");
        let fast = Source::new(&s, Kind::Iphone, &roll, &[]);
        fast.backup(&dest).ok();
        assert_complete(&dest, &sources, &what);
    }
    report(
        test,
        started,
        &format!(
            "{} destinations disappeared after {} bytes",
            slow_iterations(),
            list(&points)
        ),
    );
}

// ---------------------------------------------------------------------------------
// Hostile device input: names, sizes and dates

/// What must become of one hostile file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Stored once, under a safe name, with exactly the bytes the device sent.
    Stored,
    /// Left out and reported (a hidden name, a link).
    Skipped,
    /// Reported failed, and failed again by the next run: a device that announced
    /// more bytes than it sent.
    Failed,
    /// One of two files a phone lists under one name: one is stored, the other
    /// reported failed (a phone cannot tell them apart).
    Twin,
}

/// One hostile file: its name as the device gives it (bytes, for names that are not
/// UTF-8), its content, and what must become of it.
struct Case {
    what: String,
    content: Vec<u8>,
    fate: Fate,
    /// For dated cases: the `YYYY/MM` its stored path must contain.
    month: Option<&'static str>,
}

/// 1904-06-15 12:00 UTC and 2100-06-15 12:00 UTC: a clock reset to the Mac epoch, and
/// one far ahead.
const JUNE_1904: i64 = -2_068_459_200;
const JUNE_2100: i64 = 4_116_744_000;

/// Names every filesystem here can hold, yet every drive offload writes to must be
/// protected from: reserved words, `:`/`\`, control characters, trailing dots and
/// spaces, Unicode and case twins, names at the length limit.
fn hostile_disk_names() -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = [
        "a:b*c?.jpg",
        "CON.jpg",
        "nul",
        "com1 .jpg",
        "LPT9.txt.jpg",
        "aux.JPG",
        "trail. . ",
        "IMG_1.JPG..",
        "x\ny\u{7}.jpg",
        "\u{1b}[31mred.jpg",
        "tab\there.jpg",
        "Caf\u{e9}.jpg",
        "Cafe\u{301}.jpg",
        "CASE.jpg",
        "case.jpg",
        "Case.JPG",
        " lead.jpg",
        " .jpg",
        "<>|\"\\.jpg",
        "a\\b.jpg",
        "\u{2028}line.jpg",
        "\u{feff}bom.jpg",
        "IMG_\u{fffd}.jpg",
        "   ",
    ]
    .iter()
    .map(|n| n.as_bytes().to_vec())
    .collect();
    // The longest names a Linux disk holds: 254 bytes of two-byte letters, 255 of one-byte.
    names.push(format!("{}.jpg", "\u{e9}".repeat(125)).into_bytes());
    names.push(format!("{}.jpg", "x".repeat(251)).into_bytes());
    // Not UTF-8 at all, and read the lossy way, the twin of `IMG_\u{fffd}.jpg`.
    names.push(b"IMG_\xff.jpg".to_vec());
    names
}

/// Writes `cases` under `dir` (name → file), returning the cases' descriptions.
fn put_cases(dir: &Path, names: &[Vec<u8>], tag: &str, cases: &mut Vec<Case>) {
    fs::create_dir_all(dir).unwrap();
    for (i, name) in names.iter().enumerate() {
        let content = format!("{tag} hostile case {i}: {name:?}")
            .repeat(50)
            .into_bytes();
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        write(&path, &content, MAY_2024);
        cases.push(Case {
            what: format!("{tag} {:?}", String::from_utf8_lossy(name)),
            content,
            fate: Fate::Stored,
            month: Some("2024/05"),
        });
    }
}

/// A file dated by its mtime alone: 1904 or 2100.
fn put_dated(
    dir: &Path,
    name: &str,
    unix: i64,
    month: &'static str,
    tag: &str,
    cases: &mut Vec<Case>,
) {
    let content = format!("{tag} dated {name}").repeat(40).into_bytes();
    write(&dir.join(name), &content, unix);
    cases.push(Case {
        what: format!("{tag} {name} (mtime {unix})"),
        content,
        fate: Fate::Stored,
        month: Some(month),
    });
}

/// A file whose size the device misreports by `delta` bytes.
fn put_liar(dir: &Path, name: &str, delta: i64, tag: &str, cases: &mut Vec<Case>) {
    let content = noise(&format!("{tag} liar {name}"), 300_000);
    write(&dir.join(name), &content, MAY_2024);
    cases.push(Case {
        what: format!("{tag} {name} (size off by {delta:+})"),
        content,
        // More announced than sent: a truncated copy must never be stored. Less: the
        // bytes read are what is stored.
        fate: if delta > 0 {
            Fate::Failed
        } else {
            Fate::Stored
        },
        month: Some("2024/05"),
    });
}

/// Every part of every stored path is one every drive accepts.
fn assert_safe_names(dest: &Path, what: &str) {
    use unicode_normalization::UnicodeNormalization;
    let mut keys = BTreeSet::new();
    for path in store_files(dest).keys() {
        for c in path.split('/') {
            assert!(!c.is_empty() && c != "." && c != "..", "{what}: {path:?}");
            assert!(c.len() <= 255, "{what}: {path:?} has a part over 255 bytes");
            assert!(
                !c.chars()
                    .any(|ch| ch.is_control() || "\\:*?\"<>|\u{2028}\u{feff}".contains(ch)),
                "{what}: {path:?}"
            );
            assert!(
                !c.ends_with(['.', ' ']) && !c.starts_with(['.', ' ']),
                "{what}: {path:?}"
            );
            let stem = c.split('.').next().unwrap().trim_end().to_ascii_uppercase();
            assert!(
                !["CON", "NUL", "PRN", "AUX", "COM1", "LPT1", "LPT9"].contains(&stem.as_str()),
                "{what}: {path:?}"
            );
        }
        let key: String = path.nfc().flat_map(char::to_lowercase).collect();
        assert!(
            keys.insert(key),
            "{what}: {path:?} is one file with another on a case-insensitive drive"
        );
    }
}

/// Backs up `src` into a fresh DEST inside a folder of its own, twice, and checks what
/// became of each case. Returns the number of cases.
fn check_hostile(s: &Scratch, src: &Source, cases: &[Case], except: &[&Path]) -> usize {
    let kind = format!("{:?}", src.kind);
    let out = s.path(&format!("out-{kind}"));
    fs::create_dir(&out).unwrap();
    let dest = out.join("dest");
    let mut except: Vec<&Path> = except.to_vec();
    except.push(&dest);
    let outside_before = snapshot(s.dir.path(), &except);
    let failing = cases.iter().any(|c| c.fate == Fate::Failed);
    for run in 0..2 {
        let what = format!("{kind} run {run}");
        let r = src.backup(&dest);
        r.code(if failing { 1 } else { 0 });
        let dev = r.json()["devices"][0].clone();
        let failed = dev["failed"].as_array().unwrap().clone();
        let twins = cases.iter().filter(|c| c.fate == Fate::Twin).count();
        assert_eq!(
            failed.len(),
            cases.iter().filter(|c| c.fate == Fate::Failed).count() + twins / 2,
            "{what}: {dev}"
        );
        for f in &failed {
            let reason = f["reason"].as_str().unwrap();
            assert!(
                reason.contains("bytes it announced") || reason.contains("with this very name"),
                "{what}: {f}"
            );
        }
        // Nothing outside DEST, nothing beside it.
        assert_eq!(
            snapshot(s.dir.path(), &except),
            outside_before,
            "{what}: written outside DEST"
        );
        let beside: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, vec![std::ffi::OsString::from("dest")], "{what}");

        // Each file that must be stored is, once, byte for byte; nothing else is.
        let stored = store_files(&dest);
        let by_hash: BTreeMap<&String, &String> = stored.iter().map(|(p, h)| (h, p)).collect();
        let mut want: BTreeSet<String> = cases
            .iter()
            .filter(|c| c.fate == Fate::Stored)
            .map(|c| blake3::hash(&c.content).to_hex().to_string())
            .collect();
        let twins_stored: Vec<String> = cases
            .iter()
            .filter(|c| c.fate == Fate::Twin)
            .map(|c| blake3::hash(&c.content).to_hex().to_string())
            .filter(|h| by_hash.contains_key(h))
            .collect();
        assert_eq!(
            twins_stored.len(),
            twins / 2,
            "{what}: one of each twin pair is stored"
        );
        want.extend(twins_stored);
        for c in cases {
            let h = blake3::hash(&c.content).to_hex().to_string();
            match (c.fate, by_hash.get(&h)) {
                (Fate::Stored, Some(p)) => {
                    if let Some(m) = c.month {
                        assert!(p.contains(&format!("/{m}/")), "{what}: {} → {p}", c.what);
                    }
                }
                (Fate::Stored, None) => panic!("{what}: {} was not stored: {dev}", c.what),
                (Fate::Twin, _) => {}
                (_, Some(p)) => panic!("{what}: {} was stored as {p}", c.what),
                (_, None) => {}
            }
        }
        let got: BTreeSet<String> = stored.values().cloned().collect();
        assert_eq!(
            got, want,
            "{what}: two files collapsed into one, or a stray was stored"
        );
        assert_eq!(stored.len(), want.len(), "{what}: a content stored twice");
        let skipped = dev["skipped"].as_array().unwrap().len();
        assert!(
            skipped >= cases.iter().filter(|c| c.fate == Fate::Skipped).count(),
            "{what}: {dev}"
        );
        assert_safe_names(&dest, &what);
        assert_store_consistent(&dest);
        assert_quick_check(&dest, &what);
        assert_eq!(temp_files(&dest), 0, "{what}");
        if run == 1 {
            // The rerun read again only what failed.
            assert_eq!(dev["copied"], 0, "{what}: {dev}");
        }
    }
    cases.len()
}

/// Every file under `root` except those under `except`: path → (size, mtime).
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

#[test]
fn hostile_names_sizes_and_dates_from_every_source() {
    let test = "hostile_device_input";
    let started = Instant::now();
    let s = Scratch::new();
    let mut counts = Vec::new();

    // A camera-roll folder.
    {
        let roll = s.path("card");
        let dcim = roll.join("DCIM");
        let mut cases = Vec::new();
        put_cases(&dcim, &hostile_disk_names(), "folder", &mut cases);
        // The same name in two folders, and a folder with a reserved name.
        put_cases(
            &dcim.join("A"),
            &[b"one.jpg".to_vec()],
            "folder A",
            &mut cases,
        );
        put_cases(
            &dcim.join("B"),
            &[b"one.jpg".to_vec()],
            "folder B",
            &mut cases,
        );
        put_cases(
            &dcim.join("CON"),
            &[b"inside.jpg".to_vec()],
            "folder CON",
            &mut cases,
        );
        put_dated(&dcim, "old.jpg", JUNE_1904, "1904/06", "folder", &mut cases);
        put_dated(
            &dcim,
            "future.jpg",
            JUNE_2100,
            "2100/06",
            "folder",
            &mut cases,
        );
        // Hidden, and links out of the card: left out, reported, never followed.
        let outside = s.path("outside");
        write(&outside.join("secret.jpg"), b"not on the card", MAY_2024);
        for (name, content) in [("..../x.jpg", "hidden folder"), (".hidden.jpg", "hidden")] {
            write(&dcim.join(name), content.as_bytes(), MAY_2024);
            cases.push(Case {
                what: format!("folder {name}"),
                content: content.as_bytes().to_vec(),
                fate: Fate::Skipped,
                month: None,
            });
        }
        std::os::unix::fs::symlink(outside.join("secret.jpg"), dcim.join("link.jpg")).unwrap();
        std::os::unix::fs::symlink(&outside, dcim.join("linkdir")).unwrap();
        cases.push(Case {
            what: "folder links out of the card".into(),
            content: b"not on the card".to_vec(),
            fate: Fate::Skipped,
            month: None,
        });
        let src = Source::new(&s, Kind::Folder, &roll, &[]);
        counts.push(("folder", check_hostile(&s, &src, &cases, &[])));
    }

    // A virtual Android phone.
    {
        let phone = s.path("pixel");
        let camera = phone.join("DCIM/Camera");
        let mut cases = Vec::new();
        put_cases(&camera, &hostile_disk_names(), "android", &mut cases);
        // The phone shows `IMG_\xff.jpg` the lossy way: as `IMG_\u{fffd}.jpg`, which is
        // there too.
        for c in cases.iter_mut().filter(|c| c.what.contains("IMG_\u{fffd}")) {
            c.fate = Fate::Twin;
        }
        put_dated(
            &camera, "old.jpg", JUNE_1904, "1904/06", "android", &mut cases,
        );
        put_dated(
            &camera,
            "future.jpg",
            JUNE_2100,
            "2100/06",
            "android",
            &mut cases,
        );
        put_liar(&camera, "longer.jpg", 1000, "android", &mut cases);
        put_liar(&camera, "shorter.jpg", -1000, "android", &mut cases);
        put_liar(&camera, "empty-claim.jpg", -300_000, "android", &mut cases);
        write(&camera.join(".hidden.jpg"), b"android hidden", MAY_2024);
        cases.push(Case {
            what: "android .hidden.jpg".into(),
            content: b"android hidden".to_vec(),
            fate: Fate::Skipped,
            month: None,
        });
        let faults =
            "lie-size=DCIM/Camera/longer.jpg:+1000,lie-size=DCIM/Camera/shorter.jpg:-1000,\
                      lie-size=DCIM/Camera/empty-claim.jpg:-300000";
        let mut src = Source::new(&s, Kind::Android, &phone, &[]);
        src.faults = faults.into();
        counts.push(("android", check_hostile(&s, &src, &cases, &[])));
    }

    // A virtual iPhone, whose listing carries names no disk can hold.
    {
        let phone = s.path("iphone");
        fs::create_dir_all(phone.join("DCIM/100APPLE")).unwrap();
        let long_300 = format!("{}.JPG", "A".repeat(296));
        let long_1000 = format!("{}.JPG", "\u{e9}".repeat(498));
        // (A name cannot be empty in an AFC listing, nor be `..` itself: names travel
        // NUL-terminated, and every listing starts with `.` and `..`. An entry whose
        // last part is empty, or `..`, can.)
        let names = [
            "x/",
            "a/../..",
            "../../x.JPG",
            "x/..",
            "x/../../../../../../tmp/evil.JPG",
            "/etc/passwd.JPG",
            &long_300,
            &long_1000,
            "CON",
            "con.JPG",
            "a:b.JPG",
            "a\\b.JPG",
            "C:\\Windows\\x.JPG",
            "..\\..\\win.JPG",
            "IMG\u{1}\n0011.JPG",
            "\u{1b}[31mred.JPG",
            "IMG_0020.JPG...",
            "IMG_0021.JPG. . ",
            "e\u{301}.JPG",
            "\u{e9}.JPG",
            "img_0030.jpg",
            "IMG_0030.JPG",
            "sub/dir/deep.JPG",
        ];
        let mut cases = Vec::new();
        let mut overlay = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let file = format!("backing/{i:02}.bin");
            let content = format!("iphone hostile case {i}: {name:?}")
                .repeat(60)
                .into_bytes();
            write(&phone.join(&file), &content, MAY_2024);
            overlay.insert(format!("/DCIM/100APPLE/{name}"), file);
            cases.push(Case {
                what: format!("iphone {name:?}"),
                content,
                // The listing shows the name as is: one that starts with a dot is hidden.
                fate: if name.starts_with('.') {
                    Fate::Skipped
                } else {
                    Fate::Stored
                },
                month: Some("2024/05"),
            });
        }
        let dcim = phone.join("DCIM/100APPLE");
        put_dated(&dcim, "OLD.JPG", JUNE_1904, "1904/06", "iphone", &mut cases);
        put_dated(
            &dcim,
            "FUTURE.JPG",
            JUNE_2100,
            "2100/06",
            "iphone",
            &mut cases,
        );
        put_liar(&dcim, "LONGER.JPG", 1000, "iphone", &mut cases);
        put_liar(&dcim, "SHORTER.JPG", -1000, "iphone", &mut cases);
        let overlay_file = s.path("overlay.json");
        fs::write(&overlay_file, serde_json::to_vec(&overlay).unwrap()).unwrap();
        let src = Source::new(
            &s,
            Kind::Iphone,
            &phone,
            &[
                "--overlay",
                overlay_file.to_str().unwrap(),
                "--lie-size",
                "/DCIM/100APPLE/LONGER.JPG:+1000",
                "--lie-size",
                "/DCIM/100APPLE/SHORTER.JPG:-1000",
            ],
        );
        let stats = src.sim.as_ref().unwrap().stats.clone();
        let sim_err = src.sim.as_ref().unwrap().stderr.clone();
        let escapes = [Path::new("/tmp/evil.JPG"), Path::new("/etc/passwd.JPG")];
        let before: Vec<bool> = escapes.iter().map(|p| p.exists()).collect();
        counts.push((
            "iphone",
            check_hostile(&s, &src, &cases, &[&stats, &sim_err]),
        ));
        let after: Vec<bool> = escapes.iter().map(|p| p.exists()).collect();
        assert_eq!(
            before, after,
            "a name climbed out of the store: {escapes:?}"
        );
    }

    let total: usize = counts.iter().map(|(_, n)| n).sum();
    assert!(total >= 40, "only {total} hostile cases");
    report(test, started, &format!("{total} hostile cases: {counts:?}"));
}

// ---------------------------------------------------------------------------------
// Hostile media

/// Most memory a backup of hostile media may take (peak resident set).
const RSS_LIMIT: u64 = 200 << 20;
/// Longest a backup of a few small hostile files may take: far beyond any sane run.
const MEDIA_TIME_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` to its end; returns its result, its peak resident set in bytes (from
/// `wait4`), and how long it took. A run that outlives `limit` is killed: it hangs.
// The child is reaped by `wait4` itself, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command, s: &Scratch, limit: Duration) -> (Done, u64, Duration) {
    let (out, err) = (s.path("measured.stdout"), s.path("measured.stderr"));
    let mut child = cmd
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child (not yet reaped) without blocking.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid {
            break (status, usage);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("offload was still running after {limit:?} on hostile media: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let done = Done {
        code,
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    };
    // Linux reports the peak in KiB.
    (done, usage.ru_maxrss as u64 * 1024, took)
}

/// Small files whose structure claims sizes meant to make a reader allocate, read or
/// loop far beyond the file: boxes of 4 GiB and 2^62 bytes, EXIF chunks of 2 GiB, an
/// EXIF directory of 65,535 entries.
fn crafted_bombs() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    let mut mov = 0xFFFF_FFFFu32.to_be_bytes().to_vec();
    mov.extend_from_slice(b"moov");
    mov.extend(noise("mov bomb", 4000));
    v.push(("huge-box.mov", mov));
    let mut mp4 = 1u32.to_be_bytes().to_vec();
    mp4.extend_from_slice(b"ftyp");
    mp4.extend_from_slice(&(1u64 << 62).to_be_bytes());
    mp4.extend_from_slice(b"isom");
    mp4.extend(noise("mp4 bomb", 4000));
    v.push(("huge-64bit-box.mp4", mp4));
    let mut heic = 24u32.to_be_bytes().to_vec();
    heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
    heic.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    heic.extend_from_slice(b"meta\0\0\0\0");
    heic.extend(noise("heic bomb", 4000));
    v.push(("huge-meta.heic", heic));
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    png.extend_from_slice(b"eXIf");
    png.extend(noise("png bomb", 4000));
    v.push(("huge-exif.png", png));
    let mut webp = b"RIFF\xff\xff\xff\x7fWEBPEXIF\xff\xff\xff\x7f".to_vec();
    webp.extend(noise("webp bomb", 4000));
    v.push(("huge-exif.webp", webp));
    // A JPEG whose EXIF directory claims 65,535 entries, each pointing far outside.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\xff\xff".to_vec();
    for i in 0..2000u32 {
        tiff.extend_from_slice(&0x9003u16.to_be_bytes()); // DateTimeOriginal
        tiff.extend_from_slice(&2u16.to_be_bytes()); // ASCII
        tiff.extend_from_slice(&0x7FFF_FFF0u32.to_be_bytes()); // count
        tiff.extend_from_slice(&(0x7000_0000u32 + i).to_be_bytes()); // offset
    }
    let mut jpeg = b"\xff\xd8\xff\xe1".to_vec();
    jpeg.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    jpeg.extend_from_slice(b"Exif\0\0");
    jpeg.extend(tiff);
    jpeg.extend_from_slice(b"\xff\xd9");
    v.push(("huge-ifd.jpg", jpeg));
    v
}

#[test]
fn hostile_media_is_backed_up_with_fallback_dates_in_bounded_memory_and_time() {
    let test = "hostile_media";
    let Some(fx) = fixtures("hostile media in bounded memory and time") else {
        return;
    };
    let started = Instant::now();
    let s = Scratch::new();
    // The fixtures, one renamed so that its fallback is the date in its name; and the
    // crafted files. Expected: the capture date and where it came from.
    let mut files: Vec<(String, Vec<u8>, &str, &str)> = vec![
        // EXIF still readable in these: the true date.
        (
            "endless-loop.jpg".into(),
            fs::read(fx.join("endless-loop.jpg")).unwrap(),
            "2009-05-09T15:42:01",
            "exif",
        ),
        (
            "broken.jpg".into(),
            fs::read(fx.join("broken.jpg")).unwrap(),
            "2014-09-21T15:51:22",
            "exif",
        ),
        (
            "corrupted-exif.jpg".into(),
            fs::read(fx.join("corrupted-exif.jpg")).unwrap(),
            "2015-09-08T11:02:17",
            "exif",
        ),
        // Nothing readable: the date in the name, else the mtime (14:00 in Paris).
        (
            "IMG_20230405_060708.heic".into(),
            fs::read(fx.join("oom-large-box.heic")).unwrap(),
            "2023-04-05T06:07:08",
            "filename",
        ),
        (
            "crash-moov-trak.mov".into(),
            fs::read(fx.join("crash-moov-trak.mov")).unwrap(),
            "2024-05-10T14:00:00",
            "mtime",
        ),
    ];
    for (name, bytes) in crafted_bombs() {
        files.push((name.into(), bytes, "2024-05-10T14:00:00", "mtime"));
    }
    let mut peaks = Vec::new();
    for kind in [Kind::Folder, Kind::Android] {
        let roll = s.path(&format!("media-{kind:?}"));
        for (name, bytes, ..) in &files {
            write(&roll.join("DCIM/Camera").join(name), bytes, MAY_2024);
        }
        let src = Source::new(&s, kind, &roll, &[]);
        let dest = s.path(&format!("dest-{kind:?}"));
        let (r, rss, took) = run_measured(src.backup_cmd(&dest, ""), &s, MEDIA_TIME_LIMIT);
        r.ok();
        peaks.push(format!(
            "{kind:?}: peak {} MiB in {:.1} s",
            rss >> 20,
            took.as_secs_f64()
        ));
        assert!(
            rss < RSS_LIMIT,
            "{kind:?}: the backup of hostile media peaked at {} MiB",
            rss >> 20
        );
        let cat = catalog_files(&dest);
        for (name, bytes, when, source) in &files {
            let h = blake3::hash(bytes).to_hex().to_string();
            let (path, (_, captured, ds, _)) = cat
                .iter()
                .find(|(_, v)| v.0 == h)
                .unwrap_or_else(|| panic!("{kind:?}: {name} was not stored"));
            // A virtual Android phone states times on today's UTC offset (not the one
            // of the file's date, as a real phone does): across a DST change its mtimes
            // are an hour off. The day is what matters here.
            let n = if kind == Kind::Android && *source == "mtime" {
                10
            } else {
                19
            };
            assert_eq!(
                (&captured[..n], ds.as_str()),
                (&when[..n], *source),
                "{kind:?}: {name} stored as {path}"
            );
        }
        assert_eq!(store_files(&dest).len(), files.len(), "{kind:?}");
        assert_store_consistent(&dest);
    }
    report(
        test,
        started,
        &format!("{} hostile media files; {peaks:?}", files.len()),
    );
}

// ---------------------------------------------------------------------------------
// Stops: SIGINT, SIGTERM and SIGHUP keep what was finished

/// Bytes `child` has read so far (`rchar` of /proc/PID/io; 0 once it is gone).
fn read_by(child: &Child) -> u64 {
    io_count(child, "rchar: ")
}

/// Runs `cmd`, and once `due(child)` holds sends it `signals` (a few ms apart), then
/// waits for it to end (bounded). `None` when the run ended before the first signal.
/// `due` asks for progress (bytes read or written), by which time the run's signal
/// handling is in place: a run killed by the signal (exit -1) is a failure.
fn signal_when(
    mut cmd: Command,
    s: &Scratch,
    signals: &[i32],
    due: &dyn Fn(&Child) -> bool,
) -> Option<Done> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out, err) = (
        s.path(&format!("signalled-{n}.stdout")),
        s.path(&format!("signalled-{n}.stderr")),
    );
    cmd.stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let mut landed = false;
    while child.try_wait().unwrap().is_none() {
        if due(&child) {
            for (k, sig) in signals.iter().enumerate() {
                if k > 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                send_signal(child.id(), *sig);
            }
            landed = true;
            break;
        }
        assert!(started.elapsed() < HUNG, "the run made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let code = wait_bounded(&mut child, HUNG);
    let done = Done {
        code,
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    };
    // A run that ended before the signal proves nothing.
    landed.then_some(done)
}

/// The result of the store's latest run row.
fn last_run_result(dest: &Path) -> String {
    catalog(dest)
        .query_row(
            "SELECT result FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    }
}

/// Backups stopped by SIGINT, SIGTERM or SIGHUP at pseudo-random instants: every file
/// read completely is committed (store, catalog and the report agree), the partial one
/// is gone, the run is recorded as stopped, the exit code is 130 or 143, and the next
/// run copies exactly the rest.
fn stop_torture(kind: Kind, test: &str) {
    let started = Instant::now();
    let mut rng = Rng::for_test(test);
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 400, 30_000);
    let src = Source::new(&s, kind, &roll, &[]);
    let sources: BTreeSet<String> = src.files().into_values().collect();
    let reference = s.path("reference");
    let total_files = src.backup(&reference).ok().json()["devices"][0]["copied"]
        .as_u64()
        .unwrap();
    let total_bytes: u64 = walkdir::WalkDir::new(&roll)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let stats = s.path("android-stats.json");
    let (mut landed, mut mid) = (0, 0);
    let mut saved_counts = Vec::new();
    for i in 0..iterations() * 2 {
        let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP][(i % 3) as usize];
        let what = format!("seed {} round {i} {}", seed(), signal_name(sig));
        let dest = s.path(&format!("dest-{i}"));
        let after = rng.range(total_bytes / 20, total_bytes * 8 / 10);
        let _ = fs::remove_file(&stats);
        let mut cmd = src.backup_cmd(&dest, "");
        if kind == Kind::Android {
            cmd.env("OFFLOAD_VIRTUAL_STATS", &stats);
        }
        let start_bytes = src.bytes_served(&stats);
        let due = |child: &Child| match kind {
            Kind::Folder => written_by(child) >= after,
            _ => src.bytes_served(&stats).saturating_sub(start_bytes) >= after,
        };
        let Some(d) = signal_when(cmd, &s, &[sig], &due) else {
            continue;
        };
        landed += 1;
        let want = if sig == libc::SIGINT { 130 } else { 143 };
        assert_eq!(d.code, want, "{what}: exit code\n{}", d.stderr);
        assert!(!d.stderr.contains("panicked"), "{what}: {}", d.stderr);
        let report = d.json();
        assert_eq!(report["stopped"], signal_name(sig), "{what}");
        let saved = report["devices"][0]["copied"].as_u64().unwrap();
        let left = report["devices"][0]["left"].as_u64().unwrap_or(0);
        assert!(
            d.stderr.contains(&format!(
                "Stopped: {saved} files saved, {left} left for the next run"
            )),
            "{what}: {}",
            d.stderr
        );
        assert_eq!(saved + left, total_files, "{what}: saved + left");
        assert_eq!(
            store_files(&dest).len() as u64,
            saved,
            "{what}: files in the store"
        );
        assert_eq!(
            catalog_files(&dest).len() as u64,
            saved,
            "{what}: files in the catalog"
        );
        assert_nothing_partial(&dest, &sources, &what);
        assert_eq!(temp_files(&dest), 0, "{what}: a partial file was kept");
        assert_eq!(last_run_result(&dest), "stopped", "{what}");
        if saved > 0 && left > 0 {
            mid += 1;
        }
        saved_counts.push(saved);
        let r = src.backup(&dest).ok().json();
        assert_eq!(
            r["devices"][0]["copied"].as_u64(),
            Some(left),
            "{what}: the rerun copies exactly what was left"
        );
        assert_complete(&dest, &sources, &format!("{what} rerun"));
    }
    assert!(
        mid > 0,
        "no stop landed in the middle of a copy: the test tested nothing"
    );
    report(
        test,
        started,
        &format!(
            "{} runs stopped ({mid} mid-copy), files saved {}, of {total_files}",
            landed,
            list(&saved_counts)
        ),
    );
}

#[test]
fn stopping_folder_backups_keeps_what_was_finished() {
    stop_torture(
        Kind::Folder,
        "stopping_folder_backups_keeps_what_was_finished",
    );
}

#[test]
fn stopping_android_backups_keeps_what_was_finished() {
    stop_torture(
        Kind::Android,
        "stopping_android_backups_keeps_what_was_finished",
    );
}

#[test]
fn stopping_iphone_backups_keeps_what_was_finished() {
    stop_torture(
        Kind::Iphone,
        "stopping_iphone_backups_keeps_what_was_finished",
    );
}

/// Two Ctrl-C in a row: the second exits at once, and still nothing partial is under
/// a final name; the next run completes the store.
#[test]
fn a_second_ctrl_c_exits_at_once_with_nothing_partial() {
    let started = Instant::now();
    let mut rng = Rng::for_test("a_second_ctrl_c_exits_at_once_with_nothing_partial");
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 400, 30_000);
    let src = Source::new(&s, Kind::Folder, &roll, &[]);
    let sources: BTreeSet<String> = src.files().into_values().collect();
    let mut landed = 0;
    for i in 0..iterations() {
        let what = format!("seed {} round {i}", seed());
        let dest = s.path(&format!("dest-{i}"));
        let after = rng.range(1_000_000, 15_000_000);
        let due = |child: &Child| written_by(child) >= after;
        let cmd = src.backup_cmd(&dest, "");
        let Some(d) = signal_when(cmd, &s, &[libc::SIGINT, libc::SIGINT], &due) else {
            continue;
        };
        landed += 1;
        assert_eq!(d.code, 130, "{what}\n{}", d.stderr);
        assert!(!d.stderr.contains("panicked"), "{what}: {}", d.stderr);
        assert_nothing_partial(&dest, &sources, &what);
        src.backup(&dest).ok();
        assert_complete(&dest, &sources, &format!("{what} rerun"));
    }
    assert!(landed > 0, "no run was still going when signalled");
    report(
        "a_second_ctrl_c_exits_at_once_with_nothing_partial",
        started,
        &format!("{landed} runs stopped twice"),
    );
}

/// A run killed with SIGKILL is shown as interrupted by `status` (never "running"
/// forever), and the next run says so and records it.
#[test]
fn a_killed_run_is_shown_as_interrupted() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 400, 30_000);
    let src = Source::new(&s, Kind::Folder, &roll, &[]);
    let dest = s.path("dest");
    let mut killed = false;
    for after in [2_000_000, 500_000, 100_000] {
        let _ = fs::remove_dir_all(&dest);
        if kill_during(&src, &dest, after, 0) && dest.join(".offload/catalog.sqlite").exists() {
            killed = true;
            break;
        }
    }
    assert!(killed, "no kill landed while the run was going");
    assert_eq!(
        last_run_result(&dest),
        "running",
        "the row the killed run left"
    );
    let status = s
        .run(&["status", "--to", dest.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(
        status["sources"][0]["last_run"]["result"], "interrupted",
        "{status:#}"
    );
    let human = s
        .run(&["status", "--to", dest.to_str().unwrap()])
        .ok()
        .stdout
        .clone();
    assert!(human.contains("interrupted"), "{human}");
    let d = src.backup(&dest);
    d.ok();
    assert!(d.stderr.contains("was interrupted"), "{}", d.stderr);
    let running: i64 = catalog(&dest)
        .query_row(
            "SELECT count(*) FROM runs WHERE result = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(running, 0, "a dead run is still marked running");
}

/// Closing the output (`offload backup | head -1`, quitting `less`) never aborts a
/// run or panics: the run finishes and its catalog is right. No command panics on a
/// closed pipe.
#[test]
fn closing_the_output_never_aborts_a_run() {
    use std::io::{BufRead, BufReader};
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 200, 30_000);
    let sources: BTreeSet<String> = camera_files(&roll).into_values().collect();
    let dest = s.path("dest");
    // Both outputs into pipes whose reader goes away after the first line.
    let mut child = s
        .cmd(&[
            "backup",
            "--from",
            roll.to_str().unwrap(),
            "--to",
            dest.to_str().unwrap(),
        ])
        .env("OFFLOAD_BATCH_FILES", "16")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("Backing up to"), "{first}");
    drop(child.stderr.take());
    let code = wait_bounded(&mut child, HUNG);
    assert_eq!(code, 0, "the run did not finish cleanly");
    assert_complete(&dest, &sources, "backup with its output closed");
    assert_eq!(last_run_result(&dest), "ok");

    // Every command whose output is closed before it writes.
    let d = dest.to_str().unwrap();
    let commands: [&[&str]; 7] = [
        &["status", "--to", d],
        &["status", "--to", d, "--json"],
        &["verify", "--to", d],
        &["backup", "--from", roll.to_str().unwrap(), "--to", d],
        &["devices"],
        &["config"],
        &["export", "--from-store", d, "--to", "EXPORT", "--json"],
    ];
    for args in commands {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if *a == "EXPORT" {
                    s.path("export").to_str().unwrap().to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = s
            .cmd(&args)
            .env("USBMUXD_SOCKET_ADDRESS", s.path("no-usbmuxd"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        drop(child.stderr.take());
        let code = wait_bounded(&mut child, HUNG);
        assert_ne!(code, 101, "offload {args:?} panicked on a closed pipe");
        assert!(code == 0 || code == 3, "offload {args:?}: exit {code}");
    }
    assert_complete(&dest, &sources, "after the commands with closed outputs");
}

/// One source that cannot be read does not keep the others from their backup; it is
/// reported and the exit code says so.
#[test]
fn one_unreadable_source_does_not_stop_the_others() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 20, 10_000);
    let sources: BTreeSet<String> = camera_files(&roll).into_values().collect();
    let dest = s.path("dest");
    let missing = s.path("no-such-card");
    let d = s.run(&[
        "backup",
        "--from",
        missing.to_str().unwrap(),
        "--from",
        roll.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(d.code, 3, "{}", d.stderr);
    assert_complete(&dest, &sources, "the readable source");
    let report = d.json();
    assert_eq!(report["blocked"][0]["id"], missing.to_str().unwrap());
    assert_eq!(report["devices"].as_array().unwrap().len(), 1);
}

/// Export, verify and reindex stopped by a signal keep what they finished, say so,
/// and exit 130/143; the next run finishes the job.
#[test]
fn stopping_export_verify_and_reindex_keeps_what_was_finished() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 600, 40_000);
    let sources: BTreeSet<String> = camera_files(&roll).into_values().collect();
    let dest = s.path("dest");
    s.backup_from("roll", &dest).ok();
    let total = sources.len() as u64;
    let d = dest.to_str().unwrap();
    let mut checked = BTreeSet::new();
    for round in 0..iterations() * 3 {
        let after = 2_000_000 + round * 1_500_000;
        // Export: the files placed before the stop are complete and stay.
        let out = s.path(&format!("export-{round}"));
        let cmd = s.cmd(&["export", "--from-store", d, "--to", out.to_str().unwrap()]);
        if let Some(r) = signal_when(cmd, &s, &[libc::SIGTERM], &|c| written_by(c) >= after) {
            assert_eq!(r.code, 143, "export: {}", r.stderr);
            let line = r
                .stdout
                .lines()
                .find(|l| l.starts_with("Stopped: "))
                .unwrap_or_else(|| panic!("export said nothing of the stop: {}", r.stdout));
            let exported: u64 = line["Stopped: ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let there = source_files(&out);
            assert_eq!(there.len() as u64, exported, "export: {line}");
            assert!(
                there.values().all(|h| sources.contains(h)),
                "a partial export"
            );
            let again = s
                .run(&[
                    "export",
                    "--from-store",
                    d,
                    "--to",
                    out.to_str().unwrap(),
                    "--json",
                ])
                .ok()
                .json();
            assert_eq!(again["identical"].as_u64(), Some(exported));
            assert_eq!(source_files(&out).len() as u64, total);
            checked.insert("export");
        }
        // Verify: nothing to keep, nothing changed; says how far it got.
        let cmd = s.cmd(&["verify", "--to", d, "--json"]);
        if let Some(r) = signal_when(cmd, &s, &[libc::SIGINT], &|c| read_by(c) >= after) {
            assert_eq!(r.code, 130, "verify: {}", r.stderr);
            let v = r.json();
            assert_eq!(v["stopped"], "SIGINT");
            assert_eq!(
                v["checked"].as_u64().unwrap() + v["left"].as_u64().unwrap(),
                total
            );
            checked.insert("verify");
        }
        // Reindex: the files indexed are kept; backups refuse the half-built catalog
        // until a second reindex goes on where the first stopped.
        let cmd = s.cmd(&["reindex", "--to", d, "--json"]);
        if let Some(r) = signal_when(cmd, &s, &[libc::SIGHUP], &|c| read_by(c) >= after) {
            assert_eq!(r.code, 143, "reindex: {}", r.stderr);
            let v = r.json();
            assert_eq!(v["stopped"], "SIGHUP");
            let indexed = v["files"].as_u64().unwrap();
            assert!(indexed + v["left"].as_u64().unwrap() <= total);
            let refused = s.backup_from("roll", &dest);
            assert_eq!(refused.code, 4, "{}", refused.stderr);
            assert!(
                refused.stderr.contains("offload reindex"),
                "{}",
                refused.stderr
            );
            let again = s.run(&["reindex", "--to", d, "--json"]).ok().json();
            assert!(again["resumed"].as_u64().unwrap_or(0) >= indexed.min(1));
            assert_eq!(catalog_files(&dest).len() as u64, total);
            s.backup_from("roll", &dest).ok();
            assert_store_consistent(&dest);
            checked.insert("reindex");
        }
        if checked.len() == 3 {
            break;
        }
    }
    assert_eq!(
        checked.len(),
        3,
        "only {checked:?} were still going when signalled"
    );
}

/// Ctrl-C while the phone hangs in a read: the files read before it are committed at
/// once, without waiting for the phone's timeout; a second Ctrl-C then exits at once
/// and keeps them.
#[test]
fn a_stop_while_the_phone_hangs_commits_the_finished_files_at_once() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 100, 30_000);
    let sources: BTreeSet<String> = camera_files(&roll).into_values().collect();
    let dest = s.path("dest");
    let stats = s.path("stats.json");
    const HANGS_AT: u64 = 40;
    let mut cmd = android_cmd(
        &s,
        &[&roll],
        &format!("hang-at-read={HANGS_AT}"),
        &["backup", "--to", dest.to_str().unwrap(), "--json"],
    );
    cmd.env("OFFLOAD_VIRTUAL_STATS", &stats)
        .env("OFFLOAD_MTP_TIMEOUT_SECS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let reads = || {
        fs::read(&stats)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["reads"].as_u64())
            .unwrap_or(0)
    };
    let started = Instant::now();
    while reads() < HANGS_AT - 1 {
        assert!(started.elapsed() < HUNG, "the backup made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The next read is the one that hangs.
    std::thread::sleep(Duration::from_millis(500));
    let sigint = |child: &Child| send_signal(child.id(), libc::SIGINT);
    sigint(&child);
    let committed = || -> i64 {
        rusqlite::Connection::open_with_flags(
            dest.join(".offload/catalog.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| c.query_row("SELECT count(*) FROM files", [], |r| r.get(0)))
        .unwrap_or(0)
    };
    let asked = Instant::now();
    while committed() < (HANGS_AT - 1) as i64 {
        assert!(
            // Well before the 15 s after which a batch is committed anyway.
            asked.elapsed() < Duration::from_secs(5),
            "the finished files were not committed while the phone hung: {} of {}",
            committed(),
            HANGS_AT - 1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended: the phone's hang was not in the way, so this tested nothing"
    );
    sigint(&child);
    let code = wait_bounded(&mut child, Duration::from_secs(10));
    assert_eq!(code, 130);
    assert_eq!(committed(), (HANGS_AT - 1) as i64);
    assert_nothing_partial(&dest, &sources, "after the second Ctrl-C");
    assert_eq!(store_files(&dest).len() as u64, HANGS_AT - 1);
}

/// free-up stopped by a signal: exactly the files it reports deleted are gone from the
/// phone and logged, every other one is still there, and a second run deletes the rest.
#[test]
fn stopping_free_up_deletes_nothing_after_the_stop() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "phone", 300, 30_000);
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    run_bounded(android_cmd(&s, &[&roll], "", &["backup", "--to", d]), &s).ok();
    let before = camera_files(&roll);
    let mut landed = false;
    for after in [3_000_000u64, 1_000_000, 300_000] {
        let cmd = android_cmd(&s, &[&roll], "", &["free-up", "--to", d, "--yes", "--json"]);
        let Some(r) = signal_when(cmd, &s, &[libc::SIGTERM], &|c| read_by(c) >= after) else {
            continue;
        };
        assert_eq!(r.code, 143, "{}", r.stderr);
        let j = r.json();
        assert_eq!(j[0]["stopped"], "SIGTERM", "{j:#}");
        let deleted: BTreeSet<String> = j[0]["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        let now = camera_files(&roll);
        for path in before.keys() {
            assert_eq!(
                !now.contains_key(path),
                deleted.contains(path),
                "{path}: on the phone now = {}, reported deleted = {}",
                now.contains_key(path),
                deleted.contains(path)
            );
        }
        let logged: i64 = catalog(&dest)
            .query_row("SELECT count(*) FROM deletions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logged as usize, deleted.len(), "deletions logged");
        landed = deleted.len() < before.len();
        break;
    }
    assert!(
        landed,
        "no stop landed before free-up had deleted everything"
    );
    run_bounded(
        android_cmd(&s, &[&roll], "", &["free-up", "--to", d, "--yes"]),
        &s,
    )
    .ok();
    assert!(
        camera_files(&roll).is_empty(),
        "the second run deletes the rest"
    );
}

/// A first backup that reads nothing (every source unreadable) makes no store: a
/// store made then would hold an empty catalog, which later runs refuse as lost.
#[test]
fn a_first_backup_that_reads_nothing_makes_no_store() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 5, 10_000);
    let dest = s.path("new-store");
    let d = dest.to_str().unwrap();
    let (a, b) = (s.path("no-card-a"), s.path("no-card-b"));
    let none = s.run(&[
        "backup",
        "--from",
        a.to_str().unwrap(),
        "--from",
        b.to_str().unwrap(),
        "--to",
        d,
    ]);
    assert_eq!(none.code, 3, "{}", none.stderr);
    assert!(!dest.exists(), "a store was made for nothing");
    let r = s.run(&["backup", "--from", roll.to_str().unwrap(), "--to", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(store_files(&dest).len(), camera_files(&roll).len());
}

/// Two SIGHUPs (a closing terminal's shell and the kernel both send one) or two
/// SIGTERMs (systemd, and a parent passing it on) stop a run cleanly, as one does;
/// only a second Ctrl-C means "at once".
#[test]
fn repeated_hangups_and_terms_stop_cleanly_as_one() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 400, 30_000);
    let src = Source::new(&s, Kind::Folder, &roll, &[]);
    let sources: BTreeSet<String> = src.files().into_values().collect();
    let mut landed = 0;
    for (i, sig) in [libc::SIGHUP, libc::SIGTERM, libc::SIGHUP, libc::SIGTERM]
        .into_iter()
        .enumerate()
    {
        let dest = s.path(&format!("dest-{i}"));
        let after = 2_000_000 + i as u64 * 1_000_000;
        let due = |child: &Child| written_by(child) >= after;
        let Some(d) = signal_when(src.backup_cmd(&dest, ""), &s, &[sig, sig], &due) else {
            continue;
        };
        landed += 1;
        assert_eq!(d.code, 143, "{}", d.stderr);
        let saved = d.json()["devices"][0]["copied"].as_u64().unwrap();
        assert_eq!(
            catalog_files(&dest).len() as u64,
            saved,
            "a clean stop commits"
        );
        assert_eq!(last_run_result(&dest), "stopped");
        assert_nothing_partial(&dest, &sources, "after two signals");
    }
    assert!(landed > 0, "no run was still going when signalled");
}

/// A run started with hang-ups ignored (`nohup offload backup &`) keeps going when the
/// terminal closes.
#[test]
fn a_run_under_nohup_ignores_the_hangup() {
    let s = Scratch::new();
    let roll = bulk_roll(&s, "roll", 400, 30_000);
    let sources: BTreeSet<String> = camera_files(&roll).into_values().collect();
    let dest = s.path("dest");
    let mut cmd = Command::new("nohup");
    cmd.arg(BIN)
        .args([
            "backup",
            "--from",
            roll.to_str().unwrap(),
            "--to",
            dest.to_str().unwrap(),
            "--json",
        ])
        .env("HOME", s.dir.path())
        .env("XDG_CONFIG_HOME", s.dir.path().join("config"))
        .env("OFFLOAD_BATCH_FILES", BATCH_FILES.to_string())
        .stdin(Stdio::null());
    let due = |child: &Child| written_by(child) >= 2_000_000;
    let d = signal_when(cmd, &s, &[libc::SIGHUP], &due).expect("the run was still going");
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_complete(&dest, &sources, "a run under nohup");
}
