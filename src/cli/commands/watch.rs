//! `offload watch`: stays running and backs up each phone once when it is plugged in.
//!
//! The watcher only notices phones and decides when to back one up; each backup is a
//! child process, `offload backup --device ID --require-store --json ...`, so that the
//! backup's own crash safety applies whatever happens to it (a SIGTERM forwarded to it
//! leaves at most temp files that the next run sweeps, never a partial photo).
//!
//! How phones are noticed, without opening any (a phone busy with a backup must not be
//! disturbed):
//! - Android over USB: the USB device list, every few seconds.
//! - Phones of the installed source provider (the virtual phones of feature `sim`): what
//!   it says is plugged in at each poll; each is attached on arrival so that the look at
//!   it finds it, and detached once it has left.
//! - iPhones: usbmuxd's Listen (Attached / Detached), reconnecting while usbmuxd is away.
//!
//! Per phone and arrival: `arrived` → (the destination must hold a store, else `skipped`
//! with the reason and a quiet re-check) → a short look at the phone (unlock? trust?),
//! `waiting` with its state and a re-check every few seconds until it can be read →
//! `backup-started` → `backup-finished` → nothing more until it leaves (`left`). One
//! backup at a time: a store has a single writer.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use crate::args::{BackupArgs, WatchArgs};
use crate::argv;
use crate::config;
use crate::error::{fail, Exit};
use crate::notify;
use crate::source::detect::{detect, DetectOptions};
use crate::source::provider::provider;
use crate::source::{android, iphone};
use crate::stop;
use crate::store::META_DIR;

/// How long a child backup gets to stop after the signal is passed on, before SIGKILL.
const CHILD_GRACE: Duration = Duration::from_secs(30);
/// Pause before asking usbmuxd again after it went away or could not be reached.
const USBMUXD_RETRY: Duration = Duration::from_secs(2);

pub fn run(args: &WatchArgs) -> Result<Exit> {
    let b = &args.backup;
    if !b.from.is_empty() || b.phones {
        return Err(fail(
            Exit::Usage,
            "watch backs up phones as they are plugged in; for a folder use `offload backup --from PATH`",
        ));
    }
    let secs = |v: f64, what: &str| -> Result<Duration> {
        if v.is_finite() && v > 0.0 && v < 1e6 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(fail(
                Exit::Usage,
                format!("{what} must be a positive number of seconds"),
            ))
        }
    };
    let cfg = config::load()?;
    // A bad template would fail every backup: say so now, once.
    if let Some(t) = b.template.as_ref().or(cfg.template.as_ref()) {
        crate::store::template::Template::parse(t).map_err(|e| fail(Exit::Usage, e.to_string()))?;
    }
    let cwd = std::env::current_dir()?;
    let dests: Vec<config::Dest> = config::destinations(&b.dest, &cfg, true)?
        .into_iter()
        .map(|mut d| {
            if let config::Where::Path(p) = &d.place {
                d.place = config::Where::Path(cwd.join(p));
            }
            d
        })
        .collect();
    // Each run gets its own --device, --require-store and --json; watch itself posts
    // the notifications and takes no folders.
    let options = argv::backup_args(&BackupArgs {
        from: Vec::new(),
        phones: false,
        device: None,
        json: false,
        require_store: false,
        notify: false,
        ..b.clone()
    });
    stop::install();
    let mut w = Watcher {
        exe: std::env::current_exe().context("finding the offload program")?,
        options,
        dests,
        include_app_media: b.include_app_media,
        only: b.device.clone(),
        notify: b.notify,
        out: Out { json: b.json },
        poll: secs(args.poll_secs, "--poll-secs")?,
        recheck: secs(args.recheck_secs, "--recheck-secs")?,
        dest_recheck: secs(args.dest_recheck_secs, "--dest-recheck-secs")?,
        phones: Vec::new(),
        iphones: HashMap::new(),
        attached: HashSet::new(),
        mux: spawn_usbmuxd_listener(),
        usbmuxd_note: None,
        child: None,
        probe: None,
    };
    w.main_loop()
}

/// A phone being watched, from its arrival until it leaves.
struct Phone {
    id: String,
    kind: &'static str,
    name: String,
    state: State,
    /// When to look at it again (waiting, no destination).
    next: Instant,
    /// The last `waiting` state reported, so that each change is one line.
    shown: Option<String>,
    /// `skipped` was reported for this arrival.
    skipped: bool,
    /// A notification was posted for this arrival.
    notified: bool,
    /// A phone of the source provider, attached on arrival.
    provided: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// To be looked at (just arrived, or waiting for the user, or for the destination).
    Pending,
    /// A look at it or its backup is under way.
    Busy,
    /// Backed up (or given up) for this arrival.
    Done,
}

/// What a look at the phone found.
enum Probe {
    Ready {
        name: String,
    },
    Blocked {
        name: String,
        state: String,
        message: String,
    },
    Missing(String),
}

struct Probing {
    id: String,
    rx: Receiver<Probe>,
}

struct Running {
    id: String,
    name: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    last_err: Arc<Mutex<String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Follows a backup just spawned: its stdout (the JSON report) is read whole, its
    /// stderr passed on; both on threads of their own, so that neither pipe fills up
    /// and stalls the child.
    fn follow(id: &str, name: String, mut child: Child) -> Running {
        let stdout = Arc::new(Mutex::new(String::new()));
        let last_err = Arc::new(Mutex::new(String::new()));
        let mut threads = Vec::new();
        if let Some(out) = child.stdout.take() {
            threads.push(read_report(out, stdout.clone()));
        }
        if let Some(err) = child.stderr.take() {
            let prefix = format!(
                "{} ({}): ",
                crate::term::shown(&name),
                crate::term::shown(id)
            );
            threads.push(relay_stderr(err, prefix, last_err.clone()));
        }
        Running {
            id: id.to_string(),
            name,
            child,
            stdout,
            last_err,
            threads,
        }
    }

    /// What the backup said, once it has exited with `status`: waits for the readers,
    /// which reach the end of the pipes now.
    fn ended(self, status: ExitStatus) -> Ended {
        for t in self.threads {
            let _ = t.join();
        }
        let code = exit_code(status);
        let stdout = text_of(&self.stdout);
        let last_err = text_of(&self.last_err);
        let counts = counts(&stdout);
        let copied = counts.get("copied").and_then(Value::as_u64).unwrap_or(0);
        let failed = counts.get("failed").and_then(Value::as_u64).unwrap_or(0);
        Ended {
            id: self.id,
            name: self.name,
            code,
            counts,
            copied,
            failed,
            last_err,
        }
    }
}

/// A backup that has ended, and what it said.
struct Ended {
    id: String,
    name: String,
    /// Its exit code (see [`exit_code`]).
    code: i32,
    /// The counts of its report (see [`counts`]); `copied` and `failed` are two of them.
    counts: Map<String, Value>,
    copied: u64,
    failed: u64,
    /// Its last `offload: ` message (the reason it stopped short), or empty.
    last_err: String,
}

/// What the usbmuxd listener thread reports.
enum Mux {
    Plug(iphone::Plug),
    /// usbmuxd could not be reached or went away: every iPhone is gone.
    Lost(String),
}

struct Watcher {
    exe: PathBuf,
    options: Vec<OsString>,
    /// Where backups go; a drive may be mounted later, so they are located each time.
    dests: Vec<config::Dest>,
    include_app_media: bool,
    only: Option<String>,
    notify: bool,
    out: Out,
    poll: Duration,
    recheck: Duration,
    dest_recheck: Duration,
    /// In order of arrival.
    phones: Vec<Phone>,
    /// usbmuxd id → UDID of the iPhones plugged in.
    iphones: HashMap<u32, String>,
    /// Ids of the provider's phones attached in this process (for the look at them).
    attached: HashSet<String>,
    mux: Receiver<Mux>,
    usbmuxd_note: Option<String>,
    child: Option<Running>,
    probe: Option<Probing>,
}

impl Watcher {
    fn main_loop(&mut self) -> Result<Exit> {
        self.out.event(
            "watching",
            None,
            json!({ "destination": self.describe_dests(), "pid": std::process::id() }),
            format!(
                "watching for phones; backups go to {} (stop with Ctrl-C or SIGTERM)",
                self.describe_dests()
            ),
        );
        let mut last_poll: Option<Instant> = None;
        loop {
            if let Some(sig) = stop::requested() {
                return self.stop(sig);
            }
            let mut changed = self.drain_usbmuxd();
            if last_poll.is_none_or(|t| t.elapsed() >= self.poll) {
                last_poll = Some(Instant::now());
                changed = true;
            }
            if changed {
                self.reconcile();
            }
            self.check_child();
            self.check_probe();
            if self.child.is_none() && self.probe.is_none() {
                self.unregister_gone();
                self.next_step();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Applies what usbmuxd said; true if the set of iPhones changed.
    fn drain_usbmuxd(&mut self) -> bool {
        let mut changed = false;
        loop {
            match self.mux.try_recv() {
                Ok(Mux::Plug(iphone::Plug::Listening(addr))) => {
                    if self.usbmuxd_note.take().is_some() {
                        self.out
                            .line(&format!("listening to usbmuxd at {addr} for iPhones"));
                    }
                }
                Ok(Mux::Plug(iphone::Plug::Attached { mux_id, udid })) => {
                    self.iphones.insert(mux_id, udid);
                    changed = true;
                }
                Ok(Mux::Plug(iphone::Plug::Detached { mux_id })) => {
                    changed |= self.iphones.remove(&mux_id).is_some();
                }
                Ok(Mux::Lost(why)) => {
                    changed |= !self.iphones.is_empty();
                    self.iphones.clear();
                    if self.usbmuxd_note.is_none() {
                        self.out.line(&format!(
                            "iPhones cannot be seen for now: {why}; trying again every few seconds"
                        ));
                        self.usbmuxd_note = Some(why);
                    }
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        changed
    }

    /// The phones plugged in now: (id, kind, name, whether the provider's).
    fn present(&self) -> Vec<(String, &'static str, String, bool)> {
        let mut out = Vec::new();
        for info in android::usb_phones() {
            out.push((info.id, "android", info.name, false));
        }
        for p in provider().plugged() {
            out.push((p.id, p.kind.as_str(), p.name, true));
        }
        let mut udids: Vec<&String> = self.iphones.values().collect();
        udids.sort();
        udids.dedup();
        for udid in udids {
            out.push((
                format!("iphone:{udid}"),
                "iphone",
                "iPhone".to_string(),
                false,
            ));
        }
        if let Some(want) = &self.only {
            out.retain(|(id, _, name, _)| matches_device(id, name, want));
        }
        out
    }

    /// Reports arrivals and departures.
    fn reconcile(&mut self) {
        let present = self.present();
        let gone: Vec<usize> = (0..self.phones.len())
            .filter(|&i| !present.iter().any(|p| p.0 == self.phones[i].id))
            .collect();
        for i in gone.into_iter().rev() {
            let p = self.phones.remove(i);
            self.out.event(
                "left",
                Some((&p.id, &p.name)),
                json!({}),
                format!("{} ({}): left", p.name, p.id),
            );
        }
        for (id, kind, name, provided) in present {
            if self.phones.iter().any(|p| p.id == id) {
                continue;
            }
            if provided && !self.attached.contains(&id) {
                match provider().attach(&id) {
                    Ok(()) => {
                        self.attached.insert(id.clone());
                    }
                    Err(why) => {
                        self.out.line(&why);
                        continue;
                    }
                }
            }
            self.out.event(
                "arrived",
                Some((&id, &name)),
                json!({ "kind": kind }),
                format!("{name} ({id}): arrived"),
            );
            self.phones.push(Phone {
                id,
                kind,
                name,
                state: State::Pending,
                next: Instant::now(),
                shown: None,
                skipped: false,
                notified: false,
                provided,
            });
        }
    }

    /// Detaches the provider's phones that have left (never during a look at phones).
    fn unregister_gone(&mut self) {
        let gone: Vec<String> = self
            .attached
            .iter()
            .filter(|id| !self.phones.iter().any(|p| p.provided && p.id == **id))
            .cloned()
            .collect();
        for id in gone {
            self.attached.remove(&id);
            provider().detach(&id);
        }
    }

    fn phone(&mut self, id: &str) -> Option<&mut Phone> {
        self.phones.iter_mut().find(|p| p.id == id)
    }

    /// Starts the next step for the first phone that is due: a look at it, once the
    /// destination is there.
    fn next_step(&mut self) {
        let now = Instant::now();
        let Some(i) = self.due(now) else {
            return;
        };
        match self.destination_ready() {
            Ok(()) => self.start_probe(i, now),
            Err(reason) => self.skip_for_destination(i, &reason, now),
        }
    }

    /// The index of the first phone that waits for its next step and whose time has come.
    fn due(&self, now: Instant) -> Option<usize> {
        self.phones
            .iter()
            .position(|p| p.state == State::Pending && p.next <= now)
    }

    /// Phone `i` cannot be backed up for want of a store: it is looked at again after
    /// `dest_recheck`, and `skipped` (with a notification) is said once per arrival, not
    /// at every re-check.
    fn skip_for_destination(&mut self, i: usize, reason: &str, now: Instant) {
        let recheck = self.dest_recheck;
        let (notify, out) = (self.notify, &self.out);
        let p = &mut self.phones[i];
        p.next = now + recheck;
        if p.skipped {
            return;
        }
        p.skipped = true;
        out.event(
            "skipped",
            Some((&p.id, &p.name)),
            json!({ "reason": reason }),
            format!(
                "{} ({}): not backed up: {reason} (checking again every {} s)",
                p.name,
                p.id,
                recheck.as_secs()
            ),
        );
        if notify && !p.notified {
            p.notified = true;
            notify::post(&format!("{} not backed up", p.name), reason);
        }
    }

    /// Marks phone `i` busy and looks at it on a thread of its own, whose answer
    /// `check_probe` takes, so that the loop keeps noticing phones and signals meanwhile.
    /// If no thread can be had, the look is tried again in a few seconds.
    fn start_probe(&mut self, i: usize, now: Instant) {
        let p = &mut self.phones[i];
        p.state = State::Busy;
        let id = p.id.clone();
        let opts = DetectOptions {
            include_app_media: self.include_app_media,
            trust_timeout: Some(Duration::ZERO),
            usbmuxd: None,
            device: Some(id.clone()),
        };
        let (tx, rx) = mpsc::channel();
        let want = id.clone();
        let spawned = std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || {
                let _ = tx.send(look_at(&opts, &want));
            });
        match spawned {
            Ok(_) => self.probe = Some(Probing { id, rx }),
            Err(e) => {
                self.out.line(&format!("cannot look at {id}: {e}"));
                if let Some(p) = self.phone(&id) {
                    p.state = State::Pending;
                    p.next = now + Duration::from_secs(5);
                }
            }
        }
    }

    fn describe_dests(&self) -> String {
        self.dests
            .iter()
            .map(|d| d.describe())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The destinations that hold a store (`.offload/store.json`) now.
    fn ready_stores(&self) -> Vec<PathBuf> {
        self.dests
            .iter()
            .filter_map(|d| d.locate().ok())
            .filter(|p| p.join(META_DIR).join("store.json").is_file())
            .collect()
    }

    /// At least one destination holds a store: plug-in runs never create one.
    fn destination_ready(&self) -> Result<(), String> {
        if !self.ready_stores().is_empty() {
            return Ok(());
        }
        let d = self.describe_dests();
        Err(format!(
            "there is no offload backup at {d}: the backup drive is not plugged in (or not \
             mounted), or no backup was ever made there. Plug in the drive; to start a new \
             backup there, run `offload backup --to DEST` once"
        ))
    }

    fn check_probe(&mut self) {
        let Some(probing) = &self.probe else { return };
        let result = match probing.rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Probe::Missing("the look at it failed".into()),
        };
        let id = probing.id.clone();
        self.probe = None;
        let recheck = self.recheck;
        let Some(p) = self.phones.iter_mut().find(|p| p.id == id) else {
            return; // It left meanwhile.
        };
        match result {
            Probe::Ready { name } => {
                p.name = name;
                self.start_backup(&id);
            }
            Probe::Blocked {
                name,
                state,
                message,
            } => {
                p.name = name;
                self.waiting(&id, &state, &message);
                if let Some(p) = self.phone(&id) {
                    p.state = State::Pending;
                    p.next = Instant::now() + recheck;
                }
            }
            Probe::Missing(why) => {
                self.waiting(&id, "not-ready", &why);
                if let Some(p) = self.phone(&id) {
                    p.state = State::Pending;
                    p.next = Instant::now() + recheck;
                }
            }
        }
    }

    /// Reports a phone that waits for something, once per change of state.
    fn waiting(&mut self, id: &str, state: &str, message: &str) {
        let (notify, recheck) = (self.notify, self.recheck);
        let out = &self.out;
        let Some(p) = self.phones.iter_mut().find(|p| p.id == id) else {
            return;
        };
        if p.shown.as_deref() == Some(state) {
            return;
        }
        p.shown = Some(state.to_string());
        out.event(
            "waiting",
            Some((&p.id, &p.name)),
            json!({ "state": state, "message": message }),
            format!(
                "{} ({}): waiting ({state}): {message} (checking again every {} s)",
                p.name,
                p.id,
                recheck.as_secs_f64()
            ),
        );
        if notify && !p.notified && state != "not-ready" {
            p.notified = true;
            notify::post(&format!("{} is waiting", p.name), message);
        }
    }

    /// Starts the backup of phone `id` as a child process: on success it is `self.child`
    /// and `backup-started` is said; if it cannot be started, the phone is given up for
    /// this arrival.
    fn start_backup(&mut self, id: &str) {
        let Some(p) = self.phones.iter().find(|p| p.id == id) else {
            return;
        };
        let (name, kind) = (p.name.clone(), p.kind);
        let child = match self.backup_command(id).spawn() {
            Ok(c) => c,
            Err(e) => {
                self.out
                    .line(&format!("{name} ({id}): cannot start a backup: {e}"));
                if let Some(p) = self.phone(id) {
                    p.state = State::Done;
                }
                return;
            }
        };
        let running = Running::follow(id, name, child);
        self.out.event(
            "backup-started",
            Some((id, &running.name)),
            json!({ "kind": kind, "pid": running.child.id() }),
            format!(
                "{} ({id}): backing up to {}",
                running.name,
                self.describe_dests()
            ),
        );
        self.child = Some(running);
    }

    /// The backup of phone `id`: `offload backup --device ID --require-store --json`
    /// with watch's backup options, no stdin, stdout and stderr piped to watch.
    fn backup_command(&self, id: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["backup", "--device", id, "--require-store", "--json"])
            .args(&self.options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A process group of its own: Ctrl-C in the terminal reaches watch only, and
            // watch passes the stop on once (twice, it would mean "stop at once").
            .process_group(0);
        // The child serves the provider's phone it backs up, if it is one, and no other.
        for (key, value) in provider().child_env(id) {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }

    fn check_child(&mut self) {
        let Some(r) = &mut self.child else { return };
        let status = match r.child.try_wait() {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                self.out
                    .line(&format!("waiting for the backup failed: {e}"));
                return;
            }
        };
        let r = self.child.take().expect("checked above");
        self.finished(r, status, false);
    }

    /// Reports a backup that ended and decides what comes next for its phone.
    fn finished(&mut self, r: Running, status: ExitStatus, stopping: bool) {
        let ended = r.ended(status);
        self.report_finished(&ended, stopping);
        if stopping {
            return;
        }
        if self.after_backup(&ended) {
            self.notify_finished(&ended);
        }
    }

    /// Says `backup-finished`: the backup's counts, exit code and result, and the
    /// reason it gave when it did not succeed.
    fn report_finished(&self, e: &Ended, stopping: bool) {
        let code = e.code;
        let outcome = outcome(code, stopping);
        let mut fields = e.counts.clone();
        fields.insert("exit_code".into(), code.into());
        fields.insert("result".into(), outcome.into());
        if !e.last_err.is_empty() && code != 0 {
            fields.insert("message".into(), e.last_err.clone().into());
        }
        let (copied, failed) = (e.copied, e.failed);
        let line = match outcome {
            "stopped" => format!(
                "{} ({}): backup stopped: the files it had stored are kept, nothing partial \
                 is (the next backup copies the rest)",
                e.name, e.id
            ),
            _ => format!(
                "{} ({}): backup finished ({outcome}, exit {code}): {copied} copied, {failed} failed",
                e.name, e.id
            ),
        };
        self.out.event(
            "backup-finished",
            Some((&e.id, &e.name)),
            Value::Object(fields),
            line,
        );
    }

    /// Sets what comes next for the phone of a backup that ended by itself: a re-check
    /// if the phone could not be read (said as `waiting`), if the destination was
    /// missing (`skipped`, once per arrival) or if the phone went away mid-run; else
    /// nothing until it leaves. False when no notification is due: the phone left
    /// during the backup, or it waits (and `waiting` notifies).
    fn after_backup(&mut self, e: &Ended) -> bool {
        let (recheck, dest_recheck) = (self.recheck, self.dest_recheck);
        let Some(p) = self.phones.iter_mut().find(|p| p.id == e.id) else {
            return false; // It left during the backup.
        };
        let now = Instant::now();
        match e.code {
            3 => {
                p.state = State::Pending;
                p.next = now + recheck;
                let msg = if e.last_err.is_empty() {
                    "the phone cannot be read yet".to_string()
                } else {
                    e.last_err.clone()
                };
                self.waiting(&e.id, "blocked", &msg);
                return false;
            }
            4 => {
                p.state = State::Pending;
                p.next = now + dest_recheck;
                if !p.skipped {
                    p.skipped = true;
                    self.out.event(
                        "skipped",
                        Some((&e.id, &e.name)),
                        json!({ "reason": e.last_err }),
                        format!("{} ({}): not backed up: {}", e.name, e.id, e.last_err),
                    );
                }
            }
            5 => {
                // Gone mid-run: if it is still (or again) there, try once more later.
                p.state = State::Pending;
                p.next = now + recheck;
            }
            _ => p.state = State::Done,
        }
        true
    }

    /// With notifications on, posts one for a backup that copied something or had a
    /// problem (a backup with nothing new is not worth a notification).
    fn notify_finished(&self, e: &Ended) {
        let (copied, failed) = (e.copied, e.failed);
        let problem = e.code != 0;
        if self.notify && (copied > 0 || problem) {
            let title = if problem {
                format!("Backup of {} had problems", e.name)
            } else {
                format!("{} backed up", e.name)
            };
            let mut body = format!("{copied} new files copied.");
            if failed > 0 {
                body.push_str(&format!(" {failed} failed: `offload status` lists them."));
            }
            if !e.last_err.is_empty() && problem {
                body.push(' ');
                body.push_str(&e.last_err);
            }
            notify::post(&title, &body);
        }
    }

    /// SIGINT/SIGTERM: pass it on to the backup under way, wait for it, and end.
    fn stop(&mut self, sig: i32) -> Result<Exit> {
        if let Some(mut r) = self.child.take() {
            use rustix::process::{kill_process, Pid, Signal};
            // The child has not been reaped yet, so its pid is still its own.
            let pid = Pid::from_child(&r.child);
            let sig = match sig {
                libc::SIGINT => Signal::INT,
                libc::SIGHUP => Signal::HUP,
                _ => Signal::TERM,
            };
            let _ = kill_process(pid, sig);
            let started = Instant::now();
            let status = loop {
                match r.child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if started.elapsed() < CHILD_GRACE => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Ok(None) => {
                        let _ = r.child.kill();
                        break r.child.wait().ok();
                    }
                    Err(_) => break None,
                }
            };
            if let Some(status) = status {
                self.finished(r, status, true);
            }
            // The backup died where it stood: its temp files (complete copies waiting
            // for their batch, and the one being written) are swept now, under the
            // store's lock, rather than by the next run.
            for dest in self.ready_stores() {
                match crate::store::Store::open(&dest, false) {
                    Ok(store) => drop(store),
                    Err(e) => tracing::info!("could not sweep temp files: {e}"),
                }
            }
        }
        self.out.event(
            "stopped",
            None,
            json!({ "signal": stop::name(sig) }),
            format!("stopped ({})", stop::name(sig)),
        );
        Ok(Exit::Done)
    }
}

/// Looks for the phone `want` (in `opts.device`) and says whether it can be backed up
/// now. Every phone the search opened is closed again before this returns, so that
/// the backup can open it.
fn look_at(opts: &DetectOptions, want: &str) -> Probe {
    let found = detect(opts);
    let probe = if let Some(s) = found.sources.first() {
        Probe::Ready {
            name: s.info().name.clone(),
        }
    } else if let Some(b) = found.blocked.first() {
        Probe::Blocked {
            name: b.name.clone(),
            state: b.state.clone(),
            message: b.message.clone(),
        }
    } else if let (Some(m), true) = (&found.no_usbmuxd, want.starts_with("iphone:")) {
        Probe::Missing(m.clone())
    } else {
        Probe::Missing("not found by the phone search yet".into())
    };
    // Close every phone before the backup opens it again.
    drop(found);
    probe
}

/// Reads a child's stdout to its end into `into`, on a thread of its own.
fn read_report(mut out: ChildStdout, into: Arc<Mutex<String>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        *into.lock().unwrap_or_else(|e| e.into_inner()) = s;
    })
}

/// Passes a child's stderr on to watch's own, each line after `prefix` (which names
/// the phone), on a thread of its own; keeps the last `offload: ` message in `last`.
fn relay_stderr(
    err: ChildStderr,
    prefix: String,
    last: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let line = line.trim_end();
            // Said already by the watcher itself.
            if line.is_empty()
                || line.starts_with("Backing up to ")
                || line.starts_with("note: iPhones cannot be seen")
            {
                continue;
            }
            errln!("watch: {prefix}{line}");
            if let Some(msg) = line.strip_prefix("offload: ") {
                *last.lock().unwrap_or_else(|e| e.into_inner()) = msg.to_string();
            }
        }
    })
}

/// The text a reader thread left; a poisoned lock still holds it.
fn text_of(m: &Mutex<String>) -> String {
    m.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The `result` of a backup that ended with exit `code` (`stopping`: stopped by watch).
fn outcome(code: i32, stopping: bool) -> &'static str {
    match code {
        _ if stopping => "stopped",
        0 => "ok",
        1 => "failures",
        3 => "blocked",
        4 => "destination",
        5 => "gone",
        _ => "error",
    }
}

/// The counts of a child's JSON report, summed over its devices.
fn counts(stdout: &str) -> Map<String, Value> {
    let mut m = Map::new();
    let Ok(v) = serde_json::from_str::<Value>(stdout) else {
        return m;
    };
    let devices = v["devices"].as_array().cloned().unwrap_or_default();
    let sum = |f: &dyn Fn(&Value) -> u64| devices.iter().map(f).sum::<u64>();
    m.insert(
        "copied".into(),
        sum(&|d| d["copied"].as_u64().unwrap_or(0)).into(),
    );
    m.insert(
        "bytes_copied".into(),
        sum(&|d| d["bytes_copied"].as_u64().unwrap_or(0)).into(),
    );
    m.insert(
        "already_backed_up".into(),
        sum(&|d| d["already_backed_up"].as_u64().unwrap_or(0)).into(),
    );
    m.insert(
        "duplicates".into(),
        sum(&|d| d["duplicates"].as_u64().unwrap_or(0)).into(),
    );
    let len = |k: &'static str| move |d: &Value| d[k].as_array().map_or(0, |a| a.len() as u64);
    m.insert("skipped".into(), sum(&len("skipped")).into());
    m.insert("failed".into(), sum(&len("failed")).into());
    m
}

/// A process's exit code; 128 + N for one ended by signal N, as shells report it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn matches_device(id: &str, name: &str, want: &str) -> bool {
    let tail = id.split_once(':').map(|(_, t)| t).unwrap_or(id);
    [id, tail, name]
        .iter()
        .any(|v| v.eq_ignore_ascii_case(want))
}

/// Listens to usbmuxd on a thread of its own, forever, reconnecting while it is away.
fn spawn_usbmuxd_listener() -> Receiver<Mux> {
    let (tx, rx): (Sender<Mux>, Receiver<Mux>) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("usbmuxd-listen".into())
        .spawn(move || {
            let opts = iphone::Options::default();
            loop {
                let result = iphone::listen(&opts, &mut |plug| tx.send(Mux::Plug(plug)).is_ok());
                let why = match result {
                    Ok(()) => return, // The watcher is gone.
                    Err(e) => e.message,
                };
                if tx.send(Mux::Lost(why)).is_err() {
                    return;
                }
                std::thread::sleep(USBMUXD_RETRY);
            }
        });
    rx
}

/// Events: a line on stderr each (for the journal), and with `--json` one JSON object
/// per line on stdout.
struct Out {
    json: bool,
}

impl Out {
    fn event(&self, event: &str, device: Option<(&str, &str)>, fields: Value, line: String) {
        errln!("watch: {}", crate::term::shown(&line));
        if !self.json {
            return;
        }
        let mut obj = Map::new();
        obj.insert("event".into(), event.into());
        obj.insert(
            "time".into(),
            jiff::Timestamp::now()
                .round(jiff::Unit::Millisecond)
                .map(|t| t.to_string())
                .unwrap_or_default()
                .into(),
        );
        if let Some((id, name)) = device {
            obj.insert("device".into(), id.into());
            obj.insert("name".into(), name.into());
        }
        if let Value::Object(extra) = fields {
            obj.extend(extra);
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", Value::Object(obj));
        let _ = stdout.flush();
    }

    /// A note that is not an event (usbmuxd came or went...): stderr only.
    fn line(&self, text: &str) {
        errln!("watch: {}", crate::term::shown(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_the_devices_of_a_report() {
        let report = r#"{"devices": [
            {"copied": 3, "bytes_copied": 30, "already_backed_up": 1, "duplicates": 0,
             "skipped": [{"path": "a", "reason": "hidden"}], "failed": []},
            {"copied": 2, "bytes_copied": 20, "already_backed_up": 0, "duplicates": 1,
             "skipped": [], "failed": [{"path": "b", "reason": "unreadable"}]}
        ]}"#;
        let c = counts(report);
        assert_eq!(c["copied"], 5);
        assert_eq!(c["bytes_copied"], 50);
        assert_eq!(c["skipped"], 1);
        assert_eq!(c["failed"], 1);
        assert!(counts("offload: not JSON").is_empty());
    }

    #[test]
    fn devices_match_by_id_serial_or_name() {
        for want in ["android:ABC", "abc", "pixel 8"] {
            assert!(matches_device("android:ABC", "Pixel 8", want), "{want}");
        }
        assert!(!matches_device("android:ABC", "Pixel 8", "Pixel"));
    }
}
