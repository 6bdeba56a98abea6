//! `offload doctor`: everything that can stand between a phone and its backup, checked
//! one by one, each with its fix.
//!
//! A check ends `ok`, `warning` (worth knowing, does not stop a backup now: usbmuxd
//! missing on a machine that may never see an iPhone, a FAT32 drive's 4 GiB limit) or
//! `problem` (a backup would fail or not happen: the drive missing, a damaged catalog, a
//! locked phone, a schedule that is not enabled). Exit 1 when there is any problem.
//! Nothing is written anywhere: the catalog is opened read-only, the store's lock is not
//! taken.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use indicatif::DecimalBytes;
use serde::Serialize;

use crate::args::DoctorArgs;
use crate::catalog::{Catalog, LastRun, CATALOG_FILE};
use crate::commands::schedule;
use crate::config;
use crate::error::Exit;
use crate::source::detect::{detect, DetectOptions};
use crate::source::iphone;
use crate::store::fsinfo::FsInfo;
use crate::store::{Identity, META_DIR};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warning,
    Problem,
}

#[derive(Debug, Serialize)]
struct Check {
    /// `usb`, `usbmuxd`, `iphone`, `phone`, `destination`, `catalog`, `schedule`, `last-run`.
    area: &'static str,
    status: Status,
    /// What was found.
    detail: String,
    /// What to do, for anything not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Serialize)]
struct Report {
    ok: bool,
    problems: usize,
    warnings: usize,
    checks: Vec<Check>,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn ok(&mut self, area: &'static str, detail: impl Into<String>) {
        self.push(area, Status::Ok, detail, None::<String>);
    }
    fn warn(&mut self, area: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(area, Status::Warning, detail, Some(fix));
    }
    fn problem(&mut self, area: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(area, Status::Problem, detail, Some(fix));
    }
    fn push(
        &mut self,
        area: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) {
        self.0.push(Check {
            area,
            status,
            detail: detail.into(),
            fix: fix.map(Into::into),
        });
    }
}

pub fn run(args: &DoctorArgs) -> Result<Exit> {
    let mut c = Checks::default();
    usb_access(&mut c);
    phones(&mut c);
    match config::load().and_then(|cfg| config::destinations(&args.dest, &cfg, true)) {
        Ok(dests) => {
            for d in dests {
                match d.locate() {
                    Ok(dest) => destination(&mut c, &dest),
                    Err(e) => c.problem(
                        "destination",
                        format!("{e:#}"),
                        "Plug in the backup drive (and mount it), or check its label with `lsblk -f`.",
                    ),
                }
            }
        }
        Err(e) => c.problem(
            "destination",
            format!("{e:#}"),
            "Fix the config file, or pass --to DEST.",
        ),
    }
    schedules(&mut c);

    let problems = c.0.iter().filter(|k| k.status == Status::Problem).count();
    let warnings = c.0.iter().filter(|k| k.status == Status::Warning).count();
    let report = Report {
        ok: problems == 0,
        problems,
        warnings,
        checks: c.0,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for k in &report.checks {
            let status = match k.status {
                Status::Ok => "ok",
                Status::Warning => "warning",
                Status::Problem => "PROBLEM",
            };
            outln!("{status:<8} {:<12} {}", k.area, k.detail);
            if let Some(fix) = &k.fix {
                outln!("{:<8} {:<12} fix: {fix}", "", "");
            }
        }
        outln!(
            "{}",
            match (problems, warnings) {
                (0, 0) => "All is well.".to_string(),
                (0, w) => format!("No problem; {w} warning(s)."),
                (p, w) => format!("{p} problem(s), {w} warning(s)."),
            }
        );
    }
    Ok(if problems == 0 {
        Exit::Done
    } else {
        Exit::SomeFailed
    })
}

/// Where udev rules live, the administrator's first.
const RULE_DIRS: &[&str] = &[
    "/etc/udev/rules.d",
    "/run/udev/rules.d",
    "/usr/lib/udev/rules.d",
    "/lib/udev/rules.d",
];
const RULES: &str = "69-offload.rules";
const INSTALL_RULES: &str =
    "Install offload's udev rules (`sudo scripts/install-udev.sh` from the source tree), then unplug and plug in the phone.";

/// USB access: the rules, and the device nodes of the phones and cameras plugged in.
fn usb_access(c: &mut Checks) {
    let rules = RULE_DIRS
        .iter()
        .map(|d| Path::new(d).join(RULES))
        .find(|p| p.exists());
    if !Path::new("/dev/bus/usb").exists() {
        c.ok(
            "usb",
            "No USB bus on this machine (no /dev/bus/usb): only virtual phones can be seen.",
        );
        return;
    }
    let root = rustix::process::geteuid().is_root();
    match (&rules, root) {
        (Some(p), _) => c.ok("usb", format!("udev rules installed: {}", p.display())),
        (None, true) => c.ok(
            "usb",
            "Running as root: phones can be opened without udev rules (runs as your user need them).",
        ),
        (None, false) => c.warn(
            "usb",
            "offload's udev rules are not installed: an Android phone may be visible but not openable without root (desktops often grant access already).",
            INSTALL_RULES,
        ),
    }
    for d in usb_phone_nodes() {
        let access = rustix::fs::access(
            &d.node,
            rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
        );
        match access {
            Ok(()) => c.ok(
                "usb",
                format!(
                    "{} ({}): {} can be opened",
                    d.name,
                    d.kind,
                    d.node.display()
                ),
            ),
            Err(e) => c.problem(
                "usb",
                format!(
                    "{} ({}): no permission to open {} ({e})",
                    d.name,
                    d.kind,
                    d.node.display()
                ),
                INSTALL_RULES,
            ),
        }
    }
}

struct UsbPhone {
    name: String,
    kind: &'static str,
    node: PathBuf,
}

/// MTP and PTP devices in sysfs (an interface named "MTP", or of class 06/01/01), with
/// their device nodes. iPhones are usbmuxd's business and are left out.
fn usb_phone_nodes() -> Vec<UsbPhone> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/bus/usb/devices") else {
        return out;
    };
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(':') || name.starts_with("usb") {
            continue;
        }
        let dev = e.path();
        if read(dev.join("idVendor")) == "05ac" {
            continue;
        }
        let mut kind = None;
        if let Ok(ifaces) = std::fs::read_dir(&dev) {
            for i in ifaces.flatten() {
                let iname = i.file_name().to_string_lossy().into_owned();
                if !iname.starts_with(&format!("{name}:")) {
                    continue;
                }
                let ip = i.path();
                let class = (
                    read(ip.join("bInterfaceClass")),
                    read(ip.join("bInterfaceSubClass")),
                    read(ip.join("bInterfaceProtocol")),
                );
                if read(ip.join("interface")).contains("MTP") {
                    kind = Some("MTP");
                } else if class == ("06".into(), "01".into(), "01".into()) {
                    kind = kind.or(Some("PTP"));
                }
            }
        }
        let Some(kind) = kind else { continue };
        let (Ok(bus), Ok(num)) = (
            read(dev.join("busnum")).parse::<u32>(),
            read(dev.join("devnum")).parse::<u32>(),
        ) else {
            continue;
        };
        let product = read(dev.join("product"));
        out.push(UsbPhone {
            name: if product.is_empty() {
                format!("USB device {name}")
            } else {
                product
            },
            kind,
            node: PathBuf::from(format!("/dev/bus/usb/{bus:03}/{num:03}")),
        });
    }
    out
}

/// usbmuxd, the pair record of each iPhone, and the state of every phone.
fn phones(c: &mut Checks) {
    let opts = iphone::Options {
        io_timeout: Duration::from_secs(10),
        ..iphone::Options::default()
    };
    match iphone::plugged(&opts) {
        Ok((addr, list)) => {
            c.ok(
                "usbmuxd",
                format!(
                    "usbmuxd answers at {addr} ({} iPhone(s) plugged in)",
                    list.len()
                ),
            );
            for p in list {
                if p.paired {
                    c.ok("iphone", format!("iPhone {}: paired (usbmuxd holds its pair record)", p.udid));
                } else {
                    c.problem(
                        "iphone",
                        format!("iPhone {}: not paired with this computer yet", p.udid),
                        "Unlock the iPhone, run `offload devices`, tap 'Trust' on the phone and enter its passcode.",
                    );
                }
            }
        }
        Err(e) => c.warn(
            "usbmuxd",
            format!("iPhones cannot be seen: {}", e.message),
            "Install usbmuxd (Debian/Ubuntu: `sudo apt install usbmuxd`; Fedora: `sudo dnf install usbmuxd`) and plug the iPhone in, which starts it; or `sudo systemctl start usbmuxd`. Not needed for Android phones.",
        ),
    }
    // Asks an iPhone to trust this computer once, never waits.
    let found = detect(&DetectOptions {
        trust_timeout: Some(Duration::ZERO),
        ..DetectOptions::default()
    });
    if found.sources.is_empty() && found.blocked.is_empty() {
        c.ok("phone", "No phone connected.");
    }
    for s in &found.sources {
        let i = s.info();
        c.ok("phone", format!("{} ({}): ready", i.name, i.id));
        for w in &i.warnings {
            c.warn(
                "phone",
                format!("{} ({}): {w}", i.name, i.id),
                "See the warning.",
            );
        }
    }
    for b in &found.blocked {
        c.problem(
            "phone",
            format!("{} ({}): {}", b.name, b.id, b.state),
            b.message.clone(),
        );
    }
}

/// What a filesystem allows, in words.
fn name_rules(fstype: &str) -> &'static str {
    match fstype {
        "vfat" | "msdos" | "fat" | "fuse.fusefat" | "fusefat" | "exfat" | "fuse.exfat" | "ntfs"
        | "ntfs3" | "fuseblk" => {
            "names: case-insensitive, no \\ : * ? \" < > | (offload writes names legal there)"
        }
        _ => "names: case-sensitive; offload still writes names legal on FAT, exFAT and NTFS",
    }
}

/// Checks one destination folder, step by step: that it holds an offload store, that
/// it can be written, the room and limits of its filesystem, then its catalog and
/// last run. Stops at the first finding that makes the rest meaningless.
fn destination(c: &mut Checks, dest: &Path) {
    if !is_folder(c, dest) {
        return;
    }
    let fs = FsInfo::of(dest).ok();
    if !holds_store(c, dest, fs.as_ref()) {
        return;
    }
    writable(c, dest);
    if let Some(fs) = &fs {
        free_space(c, fs);
        file_limits(c, fs);
    }
    // A backup under way holds the lock: its catalog is busy, not damaged.
    let running = crate::store::busy::in_use(dest);
    if running {
        c.ok("destination", "a backup is running on it now");
    }
    catalog(c, dest, running);
}

/// The fix for a destination that is missing or holds no store: most often the drive
/// is not plugged in; else the store was never made.
fn plug_in_or_create(dest: &Path) -> String {
    let d = dest.display();
    format!(
        "Plug in the backup drive and check that it is mounted. To start a new backup there, run `offload backup --to {d}` once."
    )
}

/// Whether `dest` is an existing folder; records a problem when it is not.
fn is_folder(c: &mut Checks, dest: &Path) -> bool {
    let d = dest.display();
    if !dest.exists() {
        c.problem(
            "destination",
            format!("{d} does not exist."),
            plug_in_or_create(dest),
        );
        return false;
    }
    if !dest.is_dir() {
        c.problem(
            "destination",
            format!("{d} is not a folder."),
            "Pass --to with the folder of the backup.",
        );
        return false;
    }
    true
}

/// Whether `dest` holds an offload store (its `store.json` reads); records which store
/// and where it is mounted (`fs`), or, when there is none, a problem: the usual cause
/// is an empty mount point, the drive not mounted on it.
fn holds_store(c: &mut Checks, dest: &Path, fs: Option<&FsInfo>) -> bool {
    let d = dest.display();
    let identity = std::fs::read(dest.join(META_DIR).join("store.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Identity>(&b).ok());
    let mount = mounted_on(fs);
    match &identity {
        Some(id) => {
            c.ok(
                "destination",
                format!(
                    "{d}: offload store {} (created {}), {mount}",
                    id.store_id, id.created
                ),
            );
            true
        }
        None => {
            c.problem(
                "destination",
                format!("{d} holds no offload backup (no {META_DIR}/store.json), {mount}: if the backup drive should be mounted here, it is not (this is the empty mount point)."),
                plug_in_or_create(dest),
            );
            false
        }
    }
}

/// "on SOURCE (TYPE) mounted at POINT", `?` for what the system does not say; empty
/// when the filesystem could not be read at all.
fn mounted_on(fs: Option<&FsInfo>) -> String {
    fs.map(|f| {
        format!(
            "on {} ({}) mounted at {}",
            if f.mount_source.is_empty() {
                "?"
            } else {
                &f.mount_source
            },
            if f.fstype.is_empty() { "?" } else { &f.fstype },
            f.mount_point.display()
        )
    })
    .unwrap_or_default()
}

/// Records whether this user can write to the store at `dest`: both the folder and its
/// `META_DIR`, on a filesystem not mounted read-only.
fn writable(c: &mut Checks, dest: &Path) {
    let d = dest.display();
    let meta = dest.join(META_DIR);
    // A read-only mount refuses every write whatever the permissions say, and tells
    // of a drive with errors: it is named first.
    let read_only = rustix::fs::statvfs(dest)
        .map(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
        .unwrap_or(false);
    let writable = [dest, meta.as_path()]
        .iter()
        .all(|p| rustix::fs::access(*p, rustix::fs::Access::WRITE_OK).is_ok());
    if read_only {
        c.problem(
            "destination",
            format!("{d} is on a filesystem mounted read-only"),
            "Remount it read-write (a drive with errors is often mounted read-only: check it with fsck, or its write-protect switch).",
        );
    } else if !writable {
        c.problem(
            "destination",
            format!("{d} is not writable by this user"),
            format!("Give your user write access to {d} and {d}/{META_DIR}, or run offload as the owner."),
        );
    } else {
        c.ok("destination", format!("{d} is writable"));
    }
}

/// Records the free space of the store's filesystem: a problem under 64 MiB, a warning
/// under 1 GiB.
fn free_space(c: &mut Checks, fs: &FsInfo) {
    let free = format!(
        "{} free of {}",
        DecimalBytes(fs.free_bytes),
        DecimalBytes(fs.total_bytes)
    );
    if fs.total_bytes == 0 {
        c.ok("destination", "free space: not reported by this filesystem");
    } else if fs.free_bytes < 64 << 20 {
        c.problem(
            "destination",
            format!("almost full: {free}"),
            "Free some space on the drive, or use a bigger one.",
        );
    } else if fs.free_bytes < 1 << 30 {
        c.warn(
            "destination",
            format!("little space left: {free}"),
            "Free some space on the drive soon.",
        );
    } else {
        c.ok("destination", free);
    }
}

/// Records what the store's filesystem allows: its file-size limit (a warning, as long
/// videos will be refused) and its rules for names.
fn file_limits(c: &mut Checks, fs: &FsInfo) {
    let fstype = if fs.fstype.is_empty() {
        "unknown"
    } else {
        &fs.fstype
    };
    match fs.max_file_size {
        Some(limit) => c.warn(
            "destination",
            format!(
                "filesystem {fstype}: files over {} cannot be stored (long videos are refused with the reason); {}",
                DecimalBytes(limit),
                name_rules(&fs.fstype)
            ),
            "For long videos, use a drive formatted exFAT, NTFS or ext4.",
        ),
        None => c.ok(
            "destination",
            format!("filesystem {fstype}: no file-size limit; {}", name_rules(&fs.fstype)),
        ),
    }
}

/// Checks the catalog of the store at `dest`: there, intact, and how its last run
/// ended. `running`: a backup holds the store now, so a run marked running is live.
fn catalog(c: &mut Checks, dest: &Path, running: bool) {
    let d = dest.display();
    let path = dest.join(META_DIR).join(CATALOG_FILE);
    if !path.exists() {
        c.warn(
            "catalog",
            format!("{} does not exist", path.display()),
            format!("If backups were made here, rebuild it with `offload reindex --to {d}`; else the first backup makes it."),
        );
        return;
    }
    let Some(last) = intact(c, dest, &path) else {
        return;
    };
    match last {
        Some((name, key, run)) => last_run(c, dest, &name, &key, &run, running),
        None => c.ok("last-run", "no backup has run yet"),
    }
}

/// The source name, source key and record of a catalog's last run.
type LastRunOf = (String, String, LastRun);

/// Opens the catalog at `path` read-only and runs SQLite's quick_check on it. Intact:
/// records so and returns its last run (`Some(None)` when none has run yet). Damaged
/// or unreadable: records a problem, whose fix names the copy kept after the last good
/// run, and returns `None`.
fn intact(c: &mut Checks, dest: &Path, path: &Path) -> Option<Option<LastRunOf>> {
    let d = dest.display();
    let bak = dest.join(META_DIR).join("catalog.sqlite.bak");
    // A catalog whose last run cannot be read is as damaged as one that fails the check.
    let checked = Catalog::open_read_only(path).and_then(|cat| {
        let problem = cat.quick_check()?;
        let last = cat.last_run()?;
        Ok((problem, last))
    });
    let fix = format!(
        "Restore the copy made after the last good run ({}) over {}, or rebuild the catalog with `offload reindex --to {d}`.",
        bak.display(),
        path.display()
    );
    match checked {
        Ok((None, last)) => {
            c.ok(
                "catalog",
                format!("{}: intact (quick_check ok)", path.display()),
            );
            Some(last)
        }
        Ok((Some(problem), _)) => {
            c.problem(
                "catalog",
                format!("{} is damaged: {problem}", path.display()),
                fix,
            );
            None
        }
        Err(e) => {
            c.problem(
                "catalog",
                format!("{} is damaged: {e:#}", path.display()),
                fix,
            );
            None
        }
    }
}

/// Records how the last run (`run`, of source `name` with key `key`) on the store at
/// `dest` ended, with what to do about anything but a clean end. `running`: a backup
/// holds the store now, so a run still marked running is that one, not a dead one.
fn last_run(c: &mut Checks, dest: &Path, name: &str, key: &str, run: &LastRun, running: bool) {
    let d = dest.display();
    let when = run.finished.clone().unwrap_or(run.started.clone());
    let detail = format!(
        "{name} ({key}) at {when}: {}, {} copied, {} failed",
        run.result, run.copied, run.failed
    );
    match run.result.as_str() {
        "ok" => c.ok("last-run", detail),
        "failures" => c.warn(
            "last-run",
            detail,
            format!("`offload status --to {d}` lists what failed and why; the next run tries those files again."),
        ),
        "interrupted" => c.warn(
            "last-run",
            detail,
            "That run ended early (the phone went away, or offload was killed or the computer \
             stopped): the files it had stored are kept; the next run copies the rest.",
        ),
        "stopped" => c.warn(
            "last-run",
            detail,
            "That run was stopped (Ctrl-C, or the computer shutting down): the files it had \
             stored are kept; the next run copies the rest.",
        ),
        "running" if running => c.ok("last-run", format!("{name} ({key}): running since {}", run.started)),
        "running" => c.warn(
            "last-run",
            format!("{name} ({key}) started at {} and never finished (stopped or killed)", run.started),
            "Nothing partial was kept; the next run cleans up and copies the rest.",
        ),
        _ => c.problem(
            "last-run",
            detail,
            "Writing to the drive failed: check the drive (space, errors, `dmesg`), then run offload again.",
        ),
    }
}

fn schedules(c: &mut Checks) {
    let found = match schedule::installed() {
        Ok(f) => f,
        Err(e) => {
            c.warn(
                "schedule",
                format!("cannot read the unit folder: {e:#}"),
                "Check $XDG_CONFIG_HOME/systemd/user.",
            );
            return;
        }
    };
    if found.is_empty() {
        c.ok(
            "schedule",
            "no schedules (`offload schedule add NAME --daily 02:00` or `--on-plug` adds one)",
        );
        return;
    }
    let systemd = schedule::systemd_user();
    for s in found {
        let label = format!("{} ({})", s.name, s.when);
        if !s.complete {
            c.problem(
                "schedule",
                format!("{label}: offload-{}.timer is missing", s.name),
                format!("Add it again: `offload schedule remove {0}` then `offload schedule add {0} ...`.", s.name),
            );
            continue;
        }
        if let Some(program) = s.schedule.command.first() {
            if !Path::new(program).exists() {
                c.problem(
                    "schedule",
                    format!("{label}: its program {} is not there any more", Path::new(program).display()),
                    format!("Add the schedule again with the offload you use now: `offload schedule add {} ...`.", s.name),
                );
                continue;
            }
        }
        match systemd.clone().and_then(|_| schedule::is_enabled(&s.unit)) {
            Ok(state) if state == "enabled" => {
                c.ok("schedule", format!("{label}: {} enabled", s.unit))
            }
            Ok(state) => c.problem(
                "schedule",
                format!("{label}: {} is {state}", s.unit),
                format!("systemctl --user enable --now {}", s.unit),
            ),
            Err(why) => c.warn(
                "schedule",
                format!("{label}: systemd cannot be asked ({why})"),
                match crate::units::crontab_line(&s.schedule).ok().flatten() {
                    Some((line, _)) => format!(
                        "Without systemd, make sure your crontab (`crontab -l`) has: {line}"
                    ),
                    None => "Without systemd, start `offload watch` when you log in.".to_string(),
                },
            ),
        }
    }
}
