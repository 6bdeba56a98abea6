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

/// Every file of a phone folder with its size, mtime and hash: proof it was left alone.
fn phone_state(dir: &Path) -> BTreeMap<String, (u64, SystemTime, String)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
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
    let sources = source_files(&roll).into_values().collect();
    (roll, sources)
}

/// Served at 1 MB/s, the slow roll takes 18 s to copy: the damage is done after at
/// most 6 MB, so the run is still copying, whatever the machine's load, for 12 s more.
const SLOW_KBPS: &str = "1000";

/// Starts `offload backup --to DEST` from the (slow) virtual iPhone `sim`, waits until
/// the phone has sent `after_bytes`, then does `damage` while the run goes on. Returns
/// the run's result.
fn hurt_mid_run(s: &Scratch, sim: &Sim, dest: &Path, after_bytes: u64, damage: impl FnOnce()) -> Done {
    let (out, err) = (s.path("hurt.stdout"), s.path("hurt.stderr"));
    let mut child = sim
        .cmd(s, &["backup", "--device", UDID, "--to", dest.to_str().unwrap(), "--json"])
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

/// Writes zeros into `file` until the filesystem refuses: it is full. Returns the bytes.
fn fill_up(file: &Path) -> u64 {
    let mut f = fs::File::create(file).unwrap();
    let chunk = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", file.display()),
        }
    }
    let _ = f.sync_all();
    n
}

#[test]
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
        println!("{what}: {}", r.stderr.trim());
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
    assert_eq!(phone_state(&roll), phone_before, "the phone's files changed");
    report(
        test,
        started,
        &format!(
            "{} runs filled up after {points:?} bytes",
            slow_iterations()
        ),
    );
}

#[test]
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
        println!("{what}: {}", r.stderr.trim());
        let want = format!(
            "The drive holding {} (mounted at {}) became read-only",
            dest.canonicalize().unwrap().display(),
            mnt.canonicalize().unwrap().display()
        );
        assert!(r.stderr.contains(&want), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(NOTHING_PARTIAL), "{what}: {}", r.stderr);
        assert_eq!(phone_state(&roll), phone_before, "{what}: the phone changed");

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
            "{} runs turned read-only after {points:?} bytes",
            slow_iterations()
        ),
    );
}

#[test]
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
        println!("{what}: {}", r.stderr.trim());
        let want = format!(
            "The destination {} went away during the run",
            dest.display()
        );
        assert!(r.stderr.contains(&want), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(NOTHING_PARTIAL), "{what}: {}", r.stderr);
        assert_eq!(phone_state(&roll), phone_before, "{what}: the phone changed");
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
            "{} destinations disappeared after {points:?} bytes",
            slow_iterations()
        ),
    );
}
