//! Helpers for end-to-end tests: they run the real `offload` binary.
#![allow(dead_code)]

pub mod phones;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_offload");

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test that cannot run here: under CI that is a failure, elsewhere a loud skip.
/// Returns normally only outside CI (the caller then returns).
pub fn cannot_run(what_is_missing: &str, what_is_not_checked: &str) {
    if in_ci() {
        panic!("{what_is_missing}: CI must provide it ({what_is_not_checked} is not checked)");
    }
    eprintln!("SKIPPED: {what_is_missing}; NOT CHECKED: {what_is_not_checked}");
}

/// The real media fixtures beside the checkout, or None after reporting why.
pub fn fixtures(what: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/media");
    if p.join("SOURCES.md").exists() {
        Some(p)
    } else {
        cannot_run(&format!("{} is missing", p.display()), what);
        None
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Sends `sig` (SIGINT, SIGTERM, SIGHUP or SIGKILL, by number) to `pid`, a child of the
/// test that has not been reaped. A child that already ended is not an error.
pub fn send_signal(pid: u32, sig: i32) {
    use rustix::process::{kill_process, Pid, Signal};
    let sig = match sig {
        libc::SIGINT => Signal::INT,
        libc::SIGTERM => Signal::TERM,
        libc::SIGHUP => Signal::HUP,
        libc::SIGKILL => Signal::KILL,
        other => panic!("no test sends signal {other}"),
    };
    let pid = Pid::from_raw(pid as i32).expect("a child's pid is positive");
    let _ = kill_process(pid, sig);
}

/// A scratch area with its own HOME and config dir, so that no test reads the
/// developer's configuration.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("offload-test-")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// `offload ARGS` with a clean environment for config and time zone.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("TZ", "Europe/Paris")
            .env_remove("OFFLOAD_LOG")
            .stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Done {
        Done::from(self.cmd(args).output().expect("offload runs"))
    }
    /// `offload backup --from ROLL --to DEST`, ROLL a folder of this scratch area.
    pub fn backup_from(&self, roll: &str, dest: &Path) -> Done {
        self.run(&[
            "backup",
            "--from",
            self.path(roll).to_str().unwrap(),
            "--to",
            dest.to_str().unwrap(),
        ])
    }
    /// Generates a camera roll with the project's generator; returns its manifest.
    pub fn roll(&self, dir: &str, extra: &[&str]) -> Vec<serde_json::Value> {
        let manifest = self.path(&format!("{dir}.manifest.json"));
        let d = self.path(dir);
        let mut args = vec![
            "sim",
            "roll",
            "--dir",
            d.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let r = self.run(&args);
        r.ok();
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap()
    }
}

pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Done {
    fn from(o: Output) -> Done {
        Done {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Done {
    pub fn ok(&self) -> &Done {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
    pub fn code(&self, want: i32) -> &Done {
        assert_eq!(
            self.code, want,
            "exit {} (wanted {want})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

pub fn hash_file(p: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
    h.finalize().to_hex().to_string()
}

/// Every file in the store outside `.offload/`: relative path → hash.
pub fn store_files(dest: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dest)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".offload")
    {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(dest)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, hash_file(e.path()));
        }
    }
    out
}

/// Every regular, non-hidden file of a source folder: relative path → hash.
pub fn source_files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
    {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, hash_file(e.path()));
        }
    }
    out
}

pub fn catalog(dest: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dest.join(".offload/catalog.sqlite")).unwrap()
}

/// Catalog rows of `files`: path → (hash, captured, date_source, category).
pub fn catalog_files(dest: &Path) -> BTreeMap<String, (String, String, String, String)> {
    let c = catalog(dest);
    let mut s = c
        .prepare("SELECT path, hash, captured, date_source, category FROM files")
        .unwrap();
    s.query_map([], |r| {
        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Asserts that every stored file hashes as the catalog says and that the catalog
/// names no missing file.
pub fn assert_store_consistent(dest: &Path) {
    let on_disk = store_files(dest);
    let cat = catalog_files(dest);
    for (path, (hash, ..)) in &cat {
        assert_eq!(
            on_disk.get(path),
            Some(hash),
            "catalog row {path} does not match the store"
        );
    }
}

/// Rounds of each repeated test: `OFFLOAD_TORTURE_ITERATIONS`, else 3 (CI keeps the
/// small default; `scripts/torture.sh` runs many).
pub fn iterations() -> u64 {
    std::env::var("OFFLOAD_TORTURE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// `n` pseudo-random (incompressible) bytes from `seed`.
pub fn noise(seed: &str, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut v);
    v
}

/// Writes zeros into `file` until its filesystem is full; returns how many.
pub fn fill_up(file: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
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
