//! A virtual iPhone in its own process (`offload sim iphone`), for the tests that
//! need one. Included with `#[path]` by the test files that use it.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{Done, Scratch};

/// A virtual iPhone served by `offload sim iphone` in its own process.
pub struct Sim {
    child: Child,
    pub addr: String,
    stats: PathBuf,
}

impl Sim {
    pub fn start(s: &Scratch, dir: &Path, extra: &[&str]) -> Sim {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stats = s.path(&format!("sim-{n}.json"));
        let mut child = s
            .cmd(&["sim", "iphone", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .arg("--stats")
            .arg(&stats)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("the simulator did not start: {line:?}"))
            .to_string();
        Sim { child, addr, stats }
    }

    /// `offload ARGS` pointed at this phone (and no other).
    pub fn cmd(&self, s: &Scratch, args: &[&str]) -> Command {
        let mut c = s.cmd(args);
        c.env("USBMUXD_SOCKET_ADDRESS", &self.addr)
            .env_remove("OFFLOAD_VIRTUAL_ANDROID");
        c
    }

    pub fn run(&self, s: &Scratch, args: &[&str]) -> Done {
        Done::from(self.cmd(s, args).output().unwrap())
    }

    pub fn stat(&self, key: &str) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&self.stats).unwrap()).unwrap();
        v[key].as_u64().unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
