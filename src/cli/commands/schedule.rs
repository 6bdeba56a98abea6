//! `offload schedule add|list|remove`: systemd user units that run `offload backup` on a
//! timer, or `offload watch` all the time (`--on-plug`); the crontab line where there is
//! no systemd.
//!
//! Scheduled and plug-in runs never create a store (`--require-store`): a drive that is
//! not plugged in leaves an empty mount point, and filling that would be worse than
//! doing nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::args::{
    BackupArgs, ScheduleAddArgs, ScheduleCommand, ScheduleListArgs, ScheduleRemoveArgs,
};
use crate::argv;
use crate::error::{fail, Exit};
use crate::units::{self, Schedule, When};

pub fn run(cmd: &ScheduleCommand) -> Result<Exit> {
    match cmd {
        ScheduleCommand::Add(a) => add(a),
        ScheduleCommand::List(a) => list(a),
        ScheduleCommand::Remove(a) => remove(a),
    }
}

/// Where systemd looks for the user's own units: `$XDG_CONFIG_HOME/systemd/user`.
pub fn unit_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .ok_or_else(|| fail(Exit::Usage, "Neither XDG_CONFIG_HOME nor HOME is set."))?;
    Ok(base.join("systemd").join("user"))
}

/// `systemctl` on PATH, if any.
pub fn systemctl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("systemctl"))
        .find(|p| rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file())
}

/// Runs `systemctl --user ARGS`: whether it succeeded, its stdout, and why it failed
/// (for the user). `Err` when it could not run at all.
fn systemctl_run(args: &[&str]) -> Result<(bool, String, String), String> {
    let Some(bin) = systemctl() else {
        return Err("there is no `systemctl` on PATH".into());
    };
    let out = Command::new(bin)
        .arg("--user")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("`systemctl --user` could not run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let why = format!(
        "`systemctl --user {}` failed: {}",
        args.join(" "),
        if stderr.is_empty() { &stdout } else { &stderr }
    );
    Ok((out.status.success(), stdout, why))
}

/// Runs `systemctl --user ARGS`; `Err` holds why it failed, for the user.
pub fn systemctl_user(args: &[&str]) -> Result<String, String> {
    match systemctl_run(args)? {
        (true, stdout, _) => Ok(stdout),
        (false, _, why) => Err(why),
    }
}

/// Whether the user's service manager can be asked (`systemctl` on PATH, and
/// `systemctl --user` reaching a running manager); `Err` says why not.
pub fn systemd_user() -> Result<(), String> {
    systemctl_user(&["show-environment"]).map(|_| ())
}

/// `systemctl --user is-enabled UNIT`: `Ok("enabled" | "disabled" | ...)`, or `Err`
/// when systemd cannot be asked at all.
pub fn is_enabled(unit: &str) -> Result<String, String> {
    // `is-enabled` exits 1 for a disabled unit, with the state on stdout.
    match systemctl_run(&["is-enabled", unit])? {
        (_, state, _) if !state.is_empty() => Ok(state),
        (_, _, why) => Err(why),
    }
}

/// A schedule found in the unit folder.
#[derive(Debug, Serialize)]
pub struct Installed {
    pub name: String,
    pub when: String,
    /// The unit to enable: the timer, or the service for `--on-plug`.
    pub unit: String,
    /// The command, as a shell would be given it.
    pub command: String,
    pub files: Vec<PathBuf>,
    /// Whether the main unit file is there (a service without its timer runs never).
    pub complete: bool,
    #[serde(skip)]
    pub schedule: Schedule,
}

/// The schedules offload wrote into the unit folder, by name.
pub fn installed() -> Result<Vec<Installed>> {
    let dir = unit_dir()?;
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("offload-") && n.ends_with(".service"))
        .collect();
    names.sort();
    for file in names {
        let path = dir.join(&file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some((name, when)) = units::parse_header(&text) else {
            continue;
        };
        let words = units::exec_start(&text)
            .map(|l| units::systemd_split(&l))
            .unwrap_or_default();
        let schedule = Schedule {
            name: name.clone(),
            when: when.clone(),
            command: words.iter().map(OsString::from).collect(),
        };
        let unit = units::main_unit(&name, &when);
        let mut files = vec![path];
        let timer = dir.join(format!("offload-{name}.timer"));
        if timer.exists() {
            files.push(timer.clone());
        }
        let complete = when == When::OnPlug || timer.exists();
        let command = schedule
            .command
            .iter()
            .map(|a| units::cron_quote(a).unwrap_or_else(|_| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Installed {
            name,
            when: when.describe(),
            unit,
            command,
            files,
            complete,
            schedule,
        });
    }
    Ok(out)
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    fail(Exit::Usage, msg)
}

/// `offload schedule add`: checks the arguments, writes the units (or prints them with
/// `--print`), and has systemd enable them; without systemd, says what to do instead.
fn add(a: &ScheduleAddArgs) -> Result<Exit> {
    let when = checked_when(a)?;
    let schedule = Schedule {
        name: a.name.clone(),
        when: when.clone(),
        command: scheduled_command(a, &when)?,
    };
    let rendered = units::render(&schedule).map_err(usage)?;
    let cron = units::crontab_line(&schedule).map_err(usage)?;
    let dir = unit_dir()?;

    if a.print {
        print_units(&dir, &rendered);
        if let Err(why) = systemd_user() {
            print_fallback(&schedule, &cron, &why, "would be written");
        }
        return Ok(Exit::Done);
    }

    write_units(&dir, &rendered, &schedule)?;
    match systemctl_user(&["daemon-reload"]) {
        Ok(_) => enable(&schedule)?,
        Err(why) => print_fallback(&schedule, &cron, &why, "were written"),
    }
    Ok(Exit::Done)
}

/// When the schedule `a` asks for runs, once its name, its time and its backup options
/// are known good. `Err` (a usage error) names the first one that is not, before any
/// file is written.
fn checked_when(a: &ScheduleAddArgs) -> Result<When> {
    units::check_name(&a.name).map_err(usage)?;
    let when = if let Some(t) = &a.daily {
        let (hour, minute) = units::parse_daily(t).map_err(usage)?;
        When::Daily { hour, minute }
    } else if let Some(t) = &a.every {
        When::Every(units::parse_every(t).map_err(usage)?)
    } else {
        When::OnPlug
    };
    if let Some(t) = &a.backup.template {
        crate::store::template::Template::parse(t).map_err(|e| usage(e.to_string()))?;
    }
    if when == When::OnPlug && !a.backup.from.is_empty() {
        return Err(usage(
            "--on-plug watches for phones; --from folders are for --daily or --every schedules",
        ));
    }
    Ok(when)
}

/// The command the schedule runs: this offload program, then `backup` on a timer or
/// `watch` for `--on-plug`, with `a`'s backup options. Scheduled runs never create a
/// store and always notify.
fn scheduled_command(a: &ScheduleAddArgs, when: &When) -> Result<Vec<OsString>> {
    // The command below sets these two itself.
    let options = argv::backup_args(&BackupArgs {
        require_store: false,
        notify: false,
        ..a.backup.clone()
    });
    let exe = std::env::current_exe().context("finding the offload program")?;
    let mut command: Vec<OsString> = vec![exe.into_os_string()];
    match when {
        // watch passes --require-store to every backup it starts.
        When::OnPlug => command.extend(["watch".into(), "--notify".into()]),
        _ => command.extend(["backup".into(), "--require-store".into(), "--notify".into()]),
    }
    command.extend(options);
    Ok(command)
}

/// Prints each unit file (`rendered`: name and text) under the path it would have in
/// `dir`, for `--print`; nothing is written.
fn print_units(dir: &Path, rendered: &[(String, String)]) {
    for (file, text) in rendered {
        outln!("# ==> {} <==", dir.join(file).display());
        out!("{text}");
        outln!();
    }
}

/// Writes the `rendered` unit files of `schedule` into `dir`, each atomically, and
/// says so for each. Refuses, before writing any, when one of their names is taken by
/// a file offload did not make.
fn write_units(dir: &Path, rendered: &[(String, String)], schedule: &Schedule) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, _) in rendered {
        let path = dir.join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if units::parse_header(&text).is_none() {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "{} exists and was not made by offload: choose another schedule name",
                        path.display()
                    ),
                ));
            }
        }
    }
    // A schedule added again with other options replaces the old one; a timer left from
    // a --daily schedule that becomes --on-plug must go.
    if schedule.when == When::OnPlug {
        let _ = std::fs::remove_file(dir.join(format!("offload-{}.timer", schedule.name)));
    }
    for (file, text) in rendered {
        let path = dir.join(file);
        write_atomic(&path, text.as_bytes())?;
        outln!("Wrote {}", path.display());
    }
    Ok(())
}

/// Enables and starts the main unit of `schedule`, whose files systemd has just read
/// again, and says when it runs and where its log is. `Err` when systemd refuses: the
/// units stay written, and the message says how to enable them by hand.
fn enable(schedule: &Schedule) -> Result<()> {
    let unit = units::main_unit(&schedule.name, &schedule.when);
    systemctl_user(&["enable", "--now", &unit]).map_err(|e| {
        fail(
            Exit::SomeFailed,
            format!("{e}\nThe units are written; fix the problem, then run `systemctl --user enable --now {unit}`."),
        )
    })?;
    match schedule.when {
        When::OnPlug => outln!(
            "Enabled and started {unit}: each phone is backed up when it is plugged in, \
             from login on. Its log: `journalctl --user -u {unit}`."
        ),
        _ => outln!(
            "Enabled and started {unit}: {}. Next run: `systemctl --user list-timers {unit}`; \
             log: `journalctl --user -u offload-{}.service`.",
            human_when(&schedule.when),
            schedule.name
        ),
    }
    // Without lingering, a user manager stops at logout and a nightly timer would not fire.
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() && !lingering() {
        outln!(
            "Note: user units run while you are logged in. To run them without a login, \
             run `loginctl enable-linger`."
        );
    }
    Ok(())
}

/// Whether the user manager runs without a login (`loginctl enable-linger`).
fn lingering() -> bool {
    let user = std::env::var("USER").unwrap_or_default();
    !user.is_empty() && Path::new("/var/lib/systemd/linger").join(user).exists()
}

fn human_when(when: &When) -> String {
    match when {
        When::Daily { hour, minute } => format!("runs every day at {hour:02}:{minute:02}"),
        When::Every(s) => format!("runs every {}", units::systemd_span(*s)),
        When::OnPlug => "runs when a phone is plugged in".into(),
    }
}

/// What to do without systemd: the crontab line, or for --on-plug, how to start watch.
fn print_fallback(
    schedule: &Schedule,
    cron: &Option<(String, Option<String>)>,
    why: &str,
    written: &str,
) {
    outln!(
        "systemd is not available here ({why}): the units {written}, but nothing will start them."
    );
    match cron {
        Some((line, note)) => {
            outln!("Without systemd, add this line to your crontab (`crontab -e`):");
            outln!("{line}");
            if let Some(n) = note {
                outln!("Note: {n}.");
            }
        }
        None => {
            let command: Vec<String> = schedule
                .command
                .iter()
                .map(|a| units::cron_quote(a).unwrap_or_else(|_| a.to_string_lossy().into_owned()))
                .collect();
            outln!(
                "Without systemd, cron cannot react to a phone being plugged in: `offload watch` \
                 must be running. Start it when you log in (your desktop's \"Startup \
                 Applications\"/autostart settings, or your shell's login file) with:"
            );
            outln!("{}", command.join(" "));
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("offload-tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    schedule: &'a Installed,
    /// `enabled`, `disabled`... as systemd says; absent without systemd.
    enabled: Option<String>,
    /// The crontab line that does the same, without systemd.
    crontab: Option<String>,
}

fn list(a: &ScheduleListArgs) -> Result<Exit> {
    let found = installed()?;
    let mut rows = Vec::new();
    let mut no_systemd = None;
    let systemd = if found.is_empty() {
        Ok(())
    } else {
        systemd_user()
    };
    for s in &found {
        let (enabled, crontab) = match systemd.clone().and_then(|_| is_enabled(&s.unit)) {
            Ok(state) => (Some(state), None),
            Err(why) => {
                no_systemd.get_or_insert(why);
                let line = units::crontab_line(&s.schedule).ok().flatten().map(|c| c.0);
                (None, line)
            }
        };
        rows.push(Listed {
            schedule: s,
            enabled,
            crontab,
        });
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Exit::Done);
    }
    if rows.is_empty() {
        outln!(
            "No schedules. Add one with `offload schedule add NAME --daily 02:00 [--to DEST]` \
             or `offload schedule add NAME --on-plug`."
        );
        return Ok(Exit::Done);
    }
    for r in &rows {
        let s = r.schedule;
        let state = match &r.enabled {
            Some(e) => e.clone(),
            None => "not run by systemd".into(),
        };
        outln!("{} ({}): {}", s.name, s.when, state);
        outln!("  command  {}", s.command);
        for f in &s.files {
            outln!("  unit     {}", f.display());
        }
        if !s.complete {
            outln!(
                "  problem  offload-{}.timer is missing: add the schedule again",
                s.name
            );
        }
        match (&r.crontab, s.schedule.when == When::OnPlug, &r.enabled) {
            (Some(line), _, None) => outln!("  crontab  {line}"),
            (None, true, None) => {
                outln!("  start    `offload watch` must be started at login (no systemd)")
            }
            _ => {}
        }
    }
    if let Some(why) = no_systemd {
        outln!("systemd is not available here ({why}).");
    }
    Ok(Exit::Done)
}

fn remove(a: &ScheduleRemoveArgs) -> Result<Exit> {
    units::check_name(&a.name).map_err(usage)?;
    let found = installed()?;
    let Some(s) = found.into_iter().find(|s| s.name == a.name) else {
        return Err(usage(format!(
            "There is no schedule named {:?} (`offload schedule list` shows them).",
            a.name
        )));
    };
    let systemd = systemctl_user(&["disable", "--now", &s.unit]);
    if let Err(why) = &systemd {
        // Disabling fails when systemd is absent, or when the unit was never enabled.
        tracing::info!("{why}");
    }
    for f in &s.files {
        std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
        outln!("Removed {}", f.display());
    }
    match systemctl_user(&["daemon-reload"]) {
        Ok(_) => outln!("Stopped and disabled {}.", s.unit),
        Err(why) => {
            outln!("systemd is not available here ({why}).");
            match units::crontab_line(&s.schedule).ok().flatten() {
                Some((line, _)) => {
                    outln!("If you added it to your crontab, remove this line (`crontab -e`):");
                    outln!("{line}");
                }
                None => outln!(
                    "If you start `offload watch` at login, remove it from your startup programs."
                ),
            }
        }
    }
    Ok(Exit::Done)
}
