//! Virtual phones for end-to-end tests: `offload sim iphone` as a child process, and
//! the environment that makes the `offload` binary serve folders as Android phones.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Done, Scratch, BIN};

/// The UDID `offload sim iphone` gives its phone unless told otherwise.
pub const UDID: &str = "00008030-001A2D3A3E88802E";

/// Generous bound on any one run: a run that takes longer is hung.
pub const HUNG: Duration = Duration::from_secs(120);

/// A virtual iPhone running as `offload sim iphone`; killed when dropped.
pub struct Sim {
    pub child: Child,
    /// `127.0.0.1:PORT`, for `USBMUXD_SOCKET_ADDRESS`.
    pub addr: String,
    pub stats: PathBuf,
    pub stderr: PathBuf,
}

impl Sim {
    /// Serves `dir` with `extra` options, waiting (generously) for its `listening on`
    /// line. The device key is kept in the scratch area, so that only the first phone
    /// of a test pays for generating it.
    pub fn start(s: &Scratch, dir: &Path, extra: &[&str]) -> Sim {
        let state = s.path("sim-iphone-state");
        let mut args = vec!["--state-dir", state.to_str().unwrap()];
        args.extend_from_slice(extra);
        Sim::spawn(s, dir, &args)
    }

    /// Serves `dir` with exactly the `extra` options (each phone with its own fresh
    /// state unless `extra` names a `--state-dir`), waiting for its `listening on` line.
    pub fn spawn(s: &Scratch, dir: &Path, extra: &[&str]) -> Sim {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let stats = s.path(&format!("sim-{n}.stats.json"));
        let stderr = s.path(&format!("sim-{n}.stderr"));
        let mut child = Command::new(BIN)
            .args(["sim", "iphone", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .arg("--stats")
            .arg(&stats)
            .args(extra)
            .env("HOME", s.dir.path())
            .env_remove("OFFLOAD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("offload sim iphone starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            // Keep reading so that the simulator never writes into a closed pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let mut sim = Sim {
            child,
            addr: String::new(),
            stats,
            stderr,
        };
        let Some(rest) = line.strip_prefix("listening on ") else {
            let _ = sim.child.kill();
            let _ = sim.child.wait();
            panic!(
                "the virtual iPhone did not start: {line:?}\n{}",
                fs::read_to_string(&sim.stderr).unwrap_or_default()
            );
        };
        let (addr, udid) = rest
            .split_once(" udid=")
            .expect("listening on ADDR udid=UDID");
        assert!(udid.len() >= 25, "{line}");
        sim.addr = addr.to_string();
        sim
    }

    /// The simulator's counters: file_opens, bytes_served, pairs, sessions.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        // Rewritten whole (write, then rename): never seen half-written.
        serde_json::from_slice(&fs::read(&self.stats).unwrap()).unwrap()
    }

    /// One counter of [`Sim::stats`].
    pub fn stat(&self, key: &str) -> u64 {
        self.stats()[key]
    }

    /// `offload ARGS` pointed at this phone, with no virtual Android phone.
    pub fn cmd(&self, s: &Scratch, args: &[&str]) -> Command {
        let mut c = s.cmd(args);
        c.env("USBMUXD_SOCKET_ADDRESS", &self.addr)
            .env_remove("OFFLOAD_VIRTUAL_ANDROID")
            .env_remove("OFFLOAD_VIRTUAL_FAULT")
            .env_remove("OFFLOAD_VIRTUAL_STATS");
        c
    }

    /// Runs `offload ARGS` pointed at this phone.
    pub fn run(&self, s: &Scratch, args: &[&str]) -> Done {
        Done::from(self.cmd(s, args).output().expect("offload runs"))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `offload ARGS` with `dirs` served as virtual Android phones and `faults` injected
/// (`OFFLOAD_VIRTUAL_FAULT`). Nothing leaks in from the caller's environment, and no
/// usbmuxd is reachable (so no real iPhone can join the run).
pub fn android_cmd(s: &Scratch, dirs: &[&Path], faults: &str, args: &[&str]) -> Command {
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

/// Runs `cmd` to the end, failing the test (after killing it) if it outlives [`HUNG`].
/// Output goes through files, so a chatty child can never block on a full pipe.
pub fn run_bounded(mut cmd: Command, s: &Scratch) -> Done {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let (out, err) = (
        s.path(&format!("run-{n}.stdout")),
        s.path(&format!("run-{n}.stderr")),
    );
    cmd.stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("offload runs");
    let code = wait_bounded(&mut child, HUNG);
    let done = Done {
        code,
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    };
    let _ = fs::remove_file(&out);
    let _ = fs::remove_file(&err);
    done
}

/// Waits for `child` up to `limit`; kills it and fails the test if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> i32 {
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
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files left in the store's temp folder (a partial copy would be one).
pub fn temp_files(dest: &Path) -> usize {
    match fs::read_dir(dest.join(".offload/tmp")) {
        Ok(rd) => rd.count(),
        Err(_) => 0,
    }
}
