//! One desktop notification after a scheduled or plug-in run that copied files or hit a
//! problem. Best effort: without `notify-send` or a session bus nothing happens, and
//! nothing here can fail a run.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::DecimalBytes;

use crate::error::{Exit, Fail};
use crate::report::RunReport;

/// What a backup run did, kept for the notification posted when it ends.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub copied: u64,
    pub bytes: u64,
    pub failed: u64,
    pub interrupted: bool,
    pub devices: Vec<String>,
}

impl Summary {
    /// What one run to one destination did.
    fn of(report: &RunReport) -> Summary {
        Summary {
            copied: report.devices.iter().map(|d| d.copied).sum(),
            bytes: report.devices.iter().map(|d| d.bytes_copied).sum(),
            failed: report.devices.iter().map(|d| d.failed.len() as u64).sum(),
            interrupted: report.devices.iter().any(|d| d.interrupted.is_some()),
            devices: report.devices.iter().map(|d| d.name.clone()).collect(),
        }
    }
}

/// After `offload backup --notify`: one notice if files were copied or something went
/// wrong. "No phone connected" (exit 3) is no news for a scheduled run.
/// `reports` are the run's reports, one per destination reached; the last one speaks.
pub fn after_backup(result: &anyhow::Result<Exit>, reports: &[RunReport]) {
    let summary = reports.last().map(Summary::of);
    let (title, body) = match (result, summary) {
        (Err(e), summary) => {
            let code = e.downcast_ref::<Fail>().map(|f| f.code);
            if code == Some(Exit::NoSource) {
                return;
            }
            let first = format!("{e:#}").lines().next().unwrap_or("").to_string();
            let saved = summary
                .filter(|s| s.copied > 0)
                .map(|s| format!("{} files were saved. ", s.copied))
                .unwrap_or_default();
            ("Backup stopped".to_string(), format!("{saved}{first}"))
        }
        (Ok(_), None) => return,
        (Ok(code), Some(s)) => {
            if s.copied == 0 && s.failed == 0 && !s.interrupted {
                return;
            }
            let mut body = format!(
                "{} new files backed up ({}) from {}.",
                s.copied,
                DecimalBytes(s.bytes),
                s.devices.join(", ")
            );
            if s.failed > 0 {
                body.push_str(&format!(
                    " {} files failed: `offload status` lists them.",
                    s.failed
                ));
            }
            if s.interrupted {
                body.push_str(" The phone went away: plug it in again to copy the rest.");
            }
            let title = if *code == Exit::Done {
                "Photos backed up"
            } else {
                "Backup finished with problems"
            };
            (title.to_string(), body)
        }
    };
    post(&title, &body);
}

/// Posts a notification, if `notify-send` and a session bus are there. Waits at most a
/// few seconds for it.
pub fn post(title: &str, body: &str) {
    let Some(bin) = notify_send() else {
        tracing::debug!("no notify-send: no desktop notification");
        return;
    };
    let mut cmd = Command::new(bin);
    match session_bus() {
        Some(Bus::FromEnv) => {}
        Some(Bus::Socket(addr)) => {
            cmd.env("DBUS_SESSION_BUS_ADDRESS", addr);
        }
        None => {
            tracing::debug!("no session bus: no desktop notification");
            return;
        }
    }
    cmd.args(["--app-name=offload", "--icon=drive-harddisk", "--"])
        .arg(format!("offload: {title}"))
        .arg(body)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else { return };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

enum Bus {
    FromEnv,
    Socket(String),
}

/// `DBUS_SESSION_BUS_ADDRESS`, else the user bus socket in `XDG_RUNTIME_DIR` (where a
/// systemd user service finds it).
fn session_bus() -> Option<Bus> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty()) {
        return Some(Bus::FromEnv);
    }
    let runtime = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    let sock = runtime.join("bus");
    sock.exists()
        .then(|| Bus::Socket(format!("unix:path={}", sock.display())))
}

fn notify_send() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("notify-send"))
        .find(|p| p.is_file() && rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok())
}
