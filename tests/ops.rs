//! Schedules, watch mode, doctor and the udev rules, through the real binary.
//!
//! Phones are virtual: Android phones are directories named in `OFFLOAD_VIRTUAL_ANDROID`
//! (a directory that appears is a phone plugged in), iPhones are `offload sim iphone`
//! processes on a local port that `USBMUXD_SOCKET_ADDRESS` points at.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Generous bound for anything a loaded two-core machine should do well within.
const PATIENCE: Duration = Duration::from_secs(120);

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An empty store at `dest`, made the way a user makes one: a first backup.
fn make_store(s: &Scratch, dest: &Path) {
    let empty = s.path("empty-card");
    fs::create_dir_all(&empty).unwrap();
    s.run(&[
        "backup",
        "--from",
        empty.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ])
    .ok();
    assert!(dest.join(".offload/store.json").is_file());
}

/// A camera roll written elsewhere and moved into place at once, so that a watcher never
/// sees half a phone.
fn plug_android(s: &Scratch, dir: &Path, kind: &str) -> usize {
    let staging = s.path(&format!(
        "staging-{}",
        dir.file_name().unwrap().to_str().unwrap()
    ));
    let files = s.roll(
        staging.file_name().unwrap().to_str().unwrap(),
        &["--kind", kind],
    );
    fs::rename(&staging, dir).unwrap();
    files.len()
}

/// A virtual iPhone serving `dir` on `port`, as its own process.
struct Iphone {
    child: Child,
}

impl Iphone {
    fn start(s: &Scratch, dir: &Path, port: u16, extra: &[&str]) -> Iphone {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "sim",
            "iphone",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            &listen,
        ];
        args.extend_from_slice(extra);
        let mut child = s
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "simulator said {line:?}");
        Iphone { child }
    }
    fn unplug(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Iphone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `offload watch --json` running in the background, its events collected as they come.
struct Watch {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: PathBuf,
}

impl Watch {
    fn start(mut cmd: Command, stderr: PathBuf) -> Watch {
        cmd.stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).unwrap());
        let mut child = cmd.spawn().expect("watch starts");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch printed a line that is not JSON ({e}): {line}")
                });
                sink.lock().unwrap().push(v);
            }
        });
        let w = Watch {
            child,
            events,
            stderr,
        };
        w.wait_for("the watcher to start", |e| e["event"] == "watching");
        w
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for an event matching `pred`; fails the test with the events so far if it
    /// does not come.
    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if started.elapsed() > PATIENCE {
                panic!(
                    "no event for {what} within {PATIENCE:?}\nevents: {:#?}\nstderr:\n{}",
                    self.events(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `n` events match `pred`.
    fn wait_count(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) {
        let started = Instant::now();
        while self.count(&pred) < n {
            if started.elapsed() > PATIENCE {
                panic!(
                    "fewer than {n} events for {what} within {PATIENCE:?}\nevents: {:#?}\nstderr:\n{}",
                    self.events(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }

    /// SIGTERM, then the exit code (failing the test if it does not stop in time).
    fn terminate(&mut self) -> i32 {
        signal(self.child.id(), libc::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if started.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("watch did not stop on SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: i32) {
    send_signal(pid, sig);
}

fn is(e: &Value, event: &str, device: &str) -> bool {
    e["event"] == event && e["device"] == device
}

/// `offload watch --to DEST --json` with quick polling, virtual Android phones `android`
/// and usbmuxd at `port`.
fn watch_cmd(s: &Scratch, dest: &Path, android: &[&Path], port: u16, extra: &[&str]) -> Command {
    let mut args = vec![
        "watch",
        "--to",
        dest.to_str().unwrap(),
        "--json",
        "--poll-secs",
        "0.5",
        "--recheck-secs",
        "1",
        "--dest-recheck-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    let mut c = s.cmd(&args);
    c.env(
        "OFFLOAD_VIRTUAL_ANDROID",
        std::env::join_paths(android).unwrap(),
    )
    .env("USBMUXD_SOCKET_ADDRESS", format!("127.0.0.1:{port}"))
    .env_remove("OFFLOAD_VIRTUAL_FAULT")
    .env_remove("OFFLOAD_VIRTUAL_STATS")
    .env_remove("DBUS_SESSION_BUS_ADDRESS");
    c
}

const UDID: &str = "00008030-001A2D3A3E88802E";

#[test]
fn watch_backs_up_each_phone_once_per_arrival() {
    let s = Scratch::new();
    let dest = s.path("dest");
    make_store(&s, &dest);
    let pixel = s.path("pixel");
    let port = free_port();
    let mut w = Watch::start(
        watch_cmd(&s, &dest, &[&pixel], port, &[]),
        s.path("watch.stderr"),
    );
    let android = "android:pixel";
    let iphone = format!("iphone:{UDID}");
    let finished = |dev: &str, n: usize| {
        w.wait_count(&format!("backup #{n} of {dev}"), n, |e| {
            is(e, "backup-finished", dev)
        });
        w.events()
            .into_iter()
            .filter(|e| is(e, "backup-finished", dev))
            .nth(n - 1)
            .unwrap()
    };

    // An Android phone is plugged in while watch runs.
    let android_files = plug_android(&s, &pixel, "demo");
    let first = finished(android, 1);
    assert_eq!(first["exit_code"], 0, "{first}");
    let copied_android = first["copied"].as_u64().unwrap();
    assert!(
        copied_android > 0 && copied_android as usize <= android_files,
        "{first}"
    );

    // An iPhone appears: usbmuxd (the simulator) starts after watch did.
    s.roll("iphone-roll", &["--kind", "iphone"]);
    let phone = Iphone::start(&s, &s.path("iphone-roll"), port, &[]);
    let first_i = finished(&iphone, 1);
    assert_eq!(first_i["exit_code"], 0, "{first_i}");
    assert!(first_i["copied"].as_u64().unwrap() > 0, "{first_i}");

    // Both leave.
    fs::rename(&pixel, s.path("pixel-away")).unwrap();
    w.wait_for("the Android phone to leave", |e| is(e, "left", android));
    phone.unplug();
    w.wait_for("the iPhone to leave", |e| is(e, "left", &iphone));

    // Both come back: backed up again, finding nothing new.
    fs::rename(s.path("pixel-away"), &pixel).unwrap();
    let second = finished(android, 2);
    assert_eq!(second["exit_code"], 0, "{second}");
    assert_eq!(second["copied"], 0, "{second}");
    assert_eq!(
        second["already_backed_up"].as_u64(),
        Some(copied_android + first["duplicates"].as_u64().unwrap()),
        "{second}"
    );
    let _phone = Iphone::start(&s, &s.path("iphone-roll"), port, &[]);
    let second_i = finished(&iphone, 2);
    assert_eq!(second_i["copied"], 0, "{second_i}");

    // Once per arrival: no further backup while they stay.
    std::thread::sleep(Duration::from_secs(4));
    for dev in [android, iphone.as_str()] {
        assert_eq!(w.count(|e| is(e, "arrived", dev)), 2, "{:#?}", w.events());
        assert_eq!(
            w.count(|e| is(e, "backup-started", dev)),
            2,
            "{:#?}",
            w.events()
        );
        assert_eq!(w.count(|e| is(e, "left", dev)), 1);
    }
    assert_eq!(w.terminate(), 0, "{}", w.log());
    assert!(w.events().last().unwrap()["event"] == "stopped");
    assert_store_consistent(&dest);
    let log = w.log();
    assert!(
        log.contains("watch: Virtual Android (android:pixel): arrived"),
        "{log}"
    );
    assert!(log.contains(&format!("({iphone}): left")), "{log}");
}

#[test]
fn watch_stopped_mid_copy_leaves_nothing_partial() {
    let s = Scratch::new();
    let dest = s.path("dest");
    make_store(&s, &dest);
    s.roll("iphone-roll", &["--kind", "iphone"]);
    // The camera roll proper: what a backup of the phone copies (not PhotoData).
    let source: std::collections::BTreeMap<String, String> = source_files(&s.path("iphone-roll"))
        .into_iter()
        .filter(|(p, _)| p.starts_with("DCIM/"))
        .collect();
    let port = free_port();
    // 200 kB/s: each file takes seconds to arrive.
    let _phone = Iphone::start(&s, &s.path("iphone-roll"), port, &["--slow-kbps", "200"]);
    let mut w = Watch::start(watch_cmd(&s, &dest, &[], port, &[]), s.path("watch.stderr"));
    let started = w.wait_for("the backup to start", |e| e["event"] == "backup-started");
    let pid = started["pid"].as_u64().unwrap();
    // Wait until a file is being written.
    let tmp = dest.join(".offload/tmp");
    let t0 = Instant::now();
    while fs::read_dir(&tmp).unwrap().count() == 0 {
        assert!(t0.elapsed() < PATIENCE, "no copy started\n{}", w.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.terminate(), 0, "{}", w.log());
    let fin = w.wait_for("the stopped backup", |e| e["event"] == "backup-finished");
    assert_eq!(fin["result"], "stopped", "{fin}");
    assert_eq!(w.events().last().unwrap()["event"], "stopped");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the backup process {pid} is gone with watch"
    );

    // Nothing partial: no temp file left, every stored file a complete copy of a photo.
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp files were swept"
    );
    let stored = store_files(&dest);
    assert!(
        stored.len() < source.len(),
        "the copy was stopped early: {stored:?}"
    );
    let originals: BTreeSet<&String> = source.values().collect();
    for (path, hash) in &stored {
        assert!(originals.contains(hash), "{path} is not a complete copy");
    }
    assert_store_consistent(&dest);

    // The next backup copies the rest.
    let r = s
        .cmd(&["backup", "--to", dest.to_str().unwrap(), "--json"])
        .env("USBMUXD_SOCKET_ADDRESS", format!("127.0.0.1:{port}"))
        .env_remove("OFFLOAD_VIRTUAL_ANDROID")
        .output()
        .unwrap();
    let r = Done::from(r);
    r.ok();
    let all: BTreeSet<String> = store_files(&dest).into_values().collect();
    let want: BTreeSet<String> = source.into_values().collect();
    assert_eq!(all, want, "every photo is stored once the run is complete");
}

#[test]
fn watch_waits_for_trust_and_for_the_drive_and_reports_a_locked_phone() {
    let s = Scratch::new();
    let dest = s.path("dest");
    let port = free_port();
    // A fake notify-send that records what it is asked to show.
    let bin = s.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let notices = s.path("notices.log");
    let script = bin.join("notify-send");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n",
            notices.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let pixel = s.path("pixel");
    let locked = s.path("lockedphone");
    let mut cmd = watch_cmd(&s, &dest, &[&pixel, &locked], port, &["--notify"]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env("OFFLOAD_VIRTUAL_FAULT", "lockedphone:locked");
    let mut w = Watch::start(cmd, s.path("watch.stderr"));

    // No store at the destination: the phone is skipped with the reason, nothing made.
    plug_android(&s, &pixel, "demo");
    let skipped = w.wait_for("the skip", |e| is(e, "skipped", "android:pixel"));
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("not plugged in"),
        "{skipped}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!dest.exists(), "a plug-in run never creates a store");
    assert_eq!(
        w.count(|e| is(e, "skipped", "android:pixel")),
        1,
        "one skip line per arrival"
    );

    // The drive arrives: the store is found again and the phone is backed up.
    make_store(&s, &dest);
    let done = w.wait_for("the Android backup", |e| {
        is(e, "backup-finished", "android:pixel")
    });
    assert_eq!(done["exit_code"], 0, "{done}");

    // A locked phone waits, with its state, and is not backed up.
    plug_android(&s, &locked, "card");
    let waiting = w.wait_for("the locked phone", |e| {
        is(e, "waiting", "android:lockedphone")
    });
    assert_eq!(waiting["state"], "locked", "{waiting}");
    assert!(
        waiting["message"].as_str().unwrap().contains("Unlock"),
        "{waiting}"
    );

    // An iPhone that asks "Trust This Computer?": waiting until the user taps Trust
    // (the simulator answers "pending" twice), then backed up.
    s.roll("iphone-roll", &["--kind", "iphone"]);
    let _phone = Iphone::start(
        &s,
        &s.path("iphone-roll"),
        port,
        &["--state", "untrusted", "--trust-after", "2"],
    );
    let iphone = format!("iphone:{UDID}");
    let waiting = w.wait_for("the iPhone's trust", |e| is(e, "waiting", &iphone));
    assert_eq!(waiting["state"], "needs-trust", "{waiting}");
    let done = w.wait_for("the iPhone backup", |e| is(e, "backup-finished", &iphone));
    assert_eq!(done["exit_code"], 0, "{done}");
    assert!(done["copied"].as_u64().unwrap() > 0);

    // The locked phone is still waiting: looked at again, reported once.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        w.count(|e| is(e, "backup-started", "android:lockedphone")),
        0
    );
    assert_eq!(
        w.count(|e| is(e, "waiting", "android:lockedphone")),
        1,
        "one line per change"
    );
    assert_eq!(w.terminate(), 0);

    let notes = fs::read_to_string(&notices).unwrap_or_default();
    assert!(notes.contains("not backed up"), "{notes}");
    assert!(notes.contains("waiting"), "{notes}");
    assert!(notes.contains("backed up"), "{notes}");
}

#[test]
fn watch_refuses_folders_and_bad_templates_at_once() {
    let s = Scratch::new();
    s.run(&["watch", "--from", "/tmp"]).code(2);
    s.run(&["watch", "--template", "{nope}/{name}"]).code(2);
}

/// The units `schedule add --print` shows: (file name, text).
fn printed_units(out: &str) -> Vec<(String, String)> {
    let mut units: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(h) = line.strip_prefix("# ==> ") {
            let path = h.trim_end_matches(" <==");
            let name = Path::new(path).file_name().unwrap().to_str().unwrap();
            units.push((name.to_string(), String::new()));
        } else if let Some((_, text)) = units.last_mut() {
            if line.starts_with("systemd is not available") {
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    units
}

#[test]
#[ignore = "needs systemd-analyze (Debian: systemd); run by .ci/run"]
fn scheduled_units_pass_systemd_analyze_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        cannot_run(
            "systemd-analyze is missing (Debian package systemd)",
            "that the schedule units are valid",
        );
        return;
    };
    let s = Scratch::new();
    let hostile = s.path("My Photos 100% $HOME \"quoted\" it's");
    for (name, when) in [
        ("nightly", vec!["--daily", "02:30"]),
        ("often", vec!["--every", "1h30min"]),
        ("plug", vec!["--on-plug"]),
    ] {
        let mut args = vec!["schedule", "add", name];
        args.extend(when.iter().copied());
        args.extend([
            "--to",
            hostile.to_str().unwrap(),
            "--template",
            "{year}/{name}",
            "--print",
        ]);
        let r = s.run(&args);
        r.ok();
        let units = printed_units(&r.stdout);
        let dir = s.path(&format!("units-{name}"));
        fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for (file, text) in &units {
            fs::write(dir.join(file), text).unwrap();
            files.push(dir.join(file));
        }
        let service = &units[0].1;
        let exec = service
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap();
        assert!(exec.starts_with(&format!("ExecStart={BIN} ")), "{exec}");
        assert!(
            exec.contains("%%") && exec.contains("$$HOME"),
            "specifiers and variables escaped: {exec}"
        );
        assert!(exec.contains("\\\"quoted\\\""), "{exec}");
        if name == "plug" {
            assert_eq!(units.len(), 1);
            assert!(exec.contains(" watch "), "{exec}");
            assert!(service.contains("Restart=on-failure"));
        } else {
            assert_eq!(units.len(), 2, "{}", r.stdout);
            assert!(exec.contains(" backup --require-store "), "{exec}");
            assert!(units[1].1.contains("[Timer]"));
        }
        if name == "nightly" {
            assert!(
                units[1].1.contains("OnCalendar=*-*-* 02:30:00\n"),
                "{}",
                units[1].1
            );
            assert!(units[1].1.contains("Persistent=true\n"), "{}", units[1].1);
        }
        if name == "often" {
            assert!(
                units[1].1.contains("OnUnitActiveSec=1h 30min"),
                "{}",
                units[1].1
            );
        }
        let out = Command::new(analyze)
            .arg("verify")
            .args(&files)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains(&*dir.to_string_lossy()),
            "systemd-analyze verify refused the {name} units:\n{err}\n{}",
            r.stdout
        );
        // Nothing was written by --print.
        assert!(!s.path("config/systemd").exists());
    }
}

#[test]
fn schedules_without_systemd_fall_back_to_crontab() {
    let s = Scratch::new();
    let nobin = s.path("nobin");
    fs::create_dir_all(&nobin).unwrap();
    let units = s.path("config/systemd/user");
    let dest = "/media/me/PHOTOS/offload";
    let run = |args: &[&str]| Done::from(s.cmd(args).env("PATH", &nobin).output().unwrap());

    let r = run(&[
        "schedule", "add", "nightly", "--daily", "02:00", "--to", dest,
    ]);
    r.ok();
    assert!(
        r.stdout.contains("systemd is not available"),
        "{}",
        r.stdout
    );
    let line = format!("0 2 * * * {BIN} backup --require-store --notify --to {dest}");
    assert!(r.stdout.contains(&line), "{}", r.stdout);
    assert!(units.join("offload-nightly.service").is_file());
    assert!(units.join("offload-nightly.timer").is_file());

    let r = run(&["schedule", "add", "plug", "--on-plug", "--to", dest]);
    r.ok();
    assert!(r.stdout.contains("must be running"), "{}", r.stdout);
    assert!(r.stdout.contains("log in"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("{BIN} watch --notify --to {dest}")),
        "{}",
        r.stdout
    );

    let r = run(&["schedule", "list"]);
    r.ok();
    assert!(r.stdout.contains("nightly (--daily 02:00)"), "{}", r.stdout);
    assert!(r.stdout.contains(&line), "{}", r.stdout);
    assert!(r.stdout.contains("plug (--on-plug)"), "{}", r.stdout);
    let j: Value = serde_json::from_str(&run(&["schedule", "list", "--json"]).stdout).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 2);

    let r = run(&["schedule", "remove", "nightly"]);
    r.ok();
    assert!(
        r.stdout.contains(&line),
        "the line to take out of the crontab: {}",
        r.stdout
    );
    assert!(!units.join("offload-nightly.service").exists());
    assert!(!units.join("offload-nightly.timer").exists());
    run(&["schedule", "remove", "nightly"]).code(2);
    run(&["schedule", "remove", "plug"]).ok();
    assert!(run(&["schedule", "list"]).stdout.contains("No schedules"));

    // Names and times are checked before anything is written.
    for bad in [
        vec!["schedule", "add", "bad name", "--daily", "02:00"],
        vec!["schedule", "add", "../x", "--daily", "02:00"],
        vec!["schedule", "add", "n", "--daily", "25:00"],
        vec!["schedule", "add", "n", "--every", "10s"],
        vec!["schedule", "add", "n"],
        vec!["schedule", "add", "n", "--on-plug", "--from", "/tmp"],
        vec![
            "schedule",
            "add",
            "n",
            "--daily",
            "02:00",
            "--template",
            "{nope}",
        ],
    ] {
        run(&bad).code(2);
    }
    assert_eq!(fs::read_dir(&units).unwrap().count(), 0);
}

#[test]
fn schedules_with_systemd_are_enabled_and_disabled() {
    let s = Scratch::new();
    let bin = s.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let calls = s.path("systemctl.log");
    let script = bin.join("systemctl");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$*\" in *is-enabled*) echo enabled;; esac\nexit 0\n",
            calls.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| Done::from(s.cmd(args).env("PATH", &bin).output().unwrap());

    let r = run(&["schedule", "add", "n", "--every", "6h", "--to", "/media/x"]);
    r.ok();
    assert!(
        r.stdout.contains("Enabled and started offload-n.timer"),
        "{}",
        r.stdout
    );
    let r = run(&["schedule", "add", "p", "--on-plug", "--to", "/media/x"]);
    r.ok();
    let log = fs::read_to_string(&calls).unwrap();
    assert!(log.contains("--user daemon-reload\n"), "{log}");
    assert!(
        log.contains("--user enable --now offload-n.timer\n"),
        "{log}"
    );
    assert!(
        log.contains("--user enable --now offload-p.service\n"),
        "{log}"
    );
    let r = run(&["schedule", "list"]);
    assert!(r.stdout.contains("n (--every 6h): enabled"), "{}", r.stdout);

    // doctor sees both enabled.
    let r = run(&["doctor", "--to", "/nonexistent", "--json"]);
    let j = r.json();
    let sched: Vec<&Value> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["area"] == "schedule")
        .collect();
    assert_eq!(sched.len(), 2, "{j:#}");
    assert!(sched.iter().all(|c| c["status"] == "ok"), "{j:#}");

    run(&["schedule", "remove", "n"]).ok();
    let log = fs::read_to_string(&calls).unwrap();
    assert!(
        log.contains("--user disable --now offload-n.timer\n"),
        "{log}"
    );
}

fn doctor(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let mut c = s.cmd(&[&["doctor", "--json"], args].concat());
    c.env("USBMUXD_SOCKET_ADDRESS", s.path("no-usbmuxd"))
        .env_remove("OFFLOAD_VIRTUAL_ANDROID")
        .env_remove("OFFLOAD_VIRTUAL_FAULT");
    for (k, v) in env {
        c.env(k, v);
    }
    let r = Done::from(c.output().unwrap());
    let j = r.json();
    assert_eq!(j["ok"], r.code == 0, "{}", r.stdout);
    (r.code, j)
}

/// The check of `area` whose detail holds `needle`.
fn check<'a>(j: &'a Value, area: &str, needle: &str) -> &'a Value {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["area"] == area && c["detail"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no {area} check about {needle:?} in {j:#}"))
}

fn assert_fix(c: &Value, status: &str, fix: &str) {
    assert_eq!(c["status"], status, "{c}");
    assert!(
        c["fix"].as_str().unwrap_or("").contains(fix),
        "the fix should say {fix:?}: {c}"
    );
}

#[test]
fn doctor_names_each_problem_and_its_fix() {
    let s = Scratch::new();
    // Drive missing.
    let missing = s.path("media/PHOTOS/offload");
    let (code, j) = doctor(&s, &["--to", missing.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert_fix(
        check(&j, "destination", "does not exist"),
        "problem",
        "Plug in the backup drive",
    );

    // The empty mount point of a drive that is not plugged in.
    let mountpoint = s.path("media/EMPTY");
    fs::create_dir_all(&mountpoint).unwrap();
    let (code, j) = doctor(&s, &["--to", mountpoint.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert_fix(
        check(&j, "destination", "holds no offload backup"),
        "problem",
        "offload backup --to",
    );
    assert!(
        fs::read_dir(&mountpoint).unwrap().next().is_none(),
        "doctor writes nothing"
    );

    // usbmuxd absent: a warning with the fix (Android users need no usbmuxd).
    assert_fix(
        check(&j, "usbmuxd", "cannot be seen"),
        "warning",
        "install usbmuxd",
    );

    // A catalog damaged on purpose.
    let dest = s.path("dest");
    s.roll("SD", &[]);
    s.backup_from("SD", &dest).ok();
    let cat = dest.join(".offload/catalog.sqlite");
    let _ = fs::remove_file(dest.join(".offload/catalog.sqlite-wal"));
    let _ = fs::remove_file(dest.join(".offload/catalog.sqlite-shm"));
    let mut bytes = fs::read(&cat).unwrap();
    for b in &mut bytes[4096..] {
        *b = 0x5A;
    }
    fs::write(&cat, &bytes).unwrap();
    let (code, j) = doctor(&s, &["--to", dest.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    let c = check(&j, "catalog", "damaged");
    assert_fix(c, "problem", "offload reindex");
    assert_fix(c, "problem", "catalog.sqlite.bak");
    assert_eq!(
        fs::read(&cat).unwrap(),
        bytes,
        "doctor never writes to the catalog"
    );

    // A locked Android phone and a locked iPhone.
    let phone = s.path("pixel");
    s.roll("pixel", &[]);
    let port = free_port();
    s.roll("iphone-roll", &["--kind", "iphone"]);
    let _iphone = Iphone::start(&s, &s.path("iphone-roll"), port, &["--state", "locked"]);
    let addr = format!("127.0.0.1:{port}");
    let (code, j) = doctor(
        &s,
        &["--to", dest.to_str().unwrap()],
        &[
            ("OFFLOAD_VIRTUAL_ANDROID", phone.to_str().unwrap()),
            ("OFFLOAD_VIRTUAL_FAULT", "locked"),
            ("USBMUXD_SOCKET_ADDRESS", &addr),
        ],
    );
    assert_eq!(code, 1);
    assert_fix(
        check(&j, "phone", "android:pixel"),
        "problem",
        "Unlock the phone",
    );
    assert_fix(
        check(&j, "phone", &format!("iphone:{UDID}): locked")),
        "problem",
        "Unlock your iPhone",
    );
    assert_eq!(check(&j, "usbmuxd", "answers").get("status").unwrap(), "ok");
    assert_eq!(check(&j, "iphone", "paired").get("status").unwrap(), "ok");

    // Human output: each problem on its line, its fix under it.
    let r = s
        .cmd(&["doctor", "--to", missing.to_str().unwrap()])
        .env("USBMUXD_SOCKET_ADDRESS", s.path("no-usbmuxd"))
        .output()
        .unwrap();
    let r = Done::from(r);
    r.code(1);
    assert!(
        r.stdout.contains("PROBLEM  destination") && r.stdout.contains("fix: Plug in"),
        "{}",
        r.stdout
    );
}

#[test]
fn doctor_passes_a_healthy_setup_with_warnings_only() {
    let s = Scratch::new();
    let dest = s.path("dest");
    s.roll("SD", &[]);
    s.backup_from("SD", &dest).ok();
    let (code, j) = doctor(&s, &["--to", dest.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["problems"], 0);
    assert!(
        j["warnings"].as_u64().unwrap() >= 1,
        "usbmuxd is absent: {j:#}"
    );
    assert_eq!(check(&j, "catalog", "intact")["status"], "ok");
    assert_eq!(check(&j, "last-run", "ok")["status"], "ok");
    assert_eq!(check(&j, "destination", "writable")["status"], "ok");
    check(&j, "destination", "filesystem");
    check(&j, "destination", "free of");
    check(&j, "phone", "No phone connected");
    check(&j, "schedule", "no schedules");
}

#[test]
fn udev_rules_grant_the_seat_user_access_and_install() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = fs::read_to_string(root.join("udev/69-offload.rules")).unwrap();
    let active: Vec<&str> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(
        active.contains(&"ENV{ID_MTP_DEVICE}==\"1\", TAG+=\"uaccess\""),
        "{rules}"
    );
    assert!(
        active.contains(&"ENV{ID_USB_INTERFACES}==\"*:060101:*\", TAG+=\"uaccess\""),
        "{rules}"
    );
    assert!(
        !active
            .iter()
            .any(|l| l.contains("MODE") || l.contains("GROUP")),
        "{rules}"
    );

    let s = Scratch::new();
    let dir = s.path("rules.d");
    let script = root.join("scripts/install-udev.sh");
    let sh = |args: &[&str]| {
        Done::from(
            Command::new("bash")
                .arg(&script)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let d = dir.to_str().unwrap();
    let r = sh(&["--dry-run", "--rules-dir", d]);
    r.ok();
    assert!(
        r.stdout.contains("udevadm control --reload"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("udevadm trigger"), "{}", r.stdout);
    assert!(!dir.exists(), "a dry run changes nothing");
    sh(&["--rules-dir", d, "--no-reload"]).ok();
    assert_eq!(
        fs::read_to_string(dir.join("69-offload.rules")).unwrap(),
        rules
    );
    sh(&["--uninstall", "--rules-dir", d, "--no-reload"]).ok();
    assert!(!dir.join("69-offload.rules").exists());
    sh(&["--bogus"]).code(2);
}
