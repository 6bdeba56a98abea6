//! Command-line definitions (clap derive). Parsing only: no behaviour lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::config::DestArgs;
pub use crate::filter::FilterArgs;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  all done
  1  finished, but some files failed (each is listed with its reason)
  2  usage error
  3  no source or phone found, or it cannot be read (locked, not trusted, no permission)
  4  destination unusable (missing, full, locked by another run, not the expected store)
  5  the phone went away during the run (nothing partial was kept; run again)";

#[derive(Debug, Parser)]
#[command(
    name = "offload",
    version,
    about = "Back up a phone's camera roll over USB to a local or external drive. No network, no quota.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// More detail on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy what is new from a camera roll to the backup drive.
    #[command(after_help = EXIT_CODES)]
    Backup(BackupArgs),
    /// Per source: last backup, files and bytes stored, counts per category, what is
    /// only in iCloud.
    Status(StatusArgs),
    /// Copy a selection (from the phones, a folder or a backup) into a plain folder.
    #[command(after_help = EXIT_CODES)]
    Export(ExportArgs),
    /// The phones connected now, and why one cannot be read.
    Devices(DevicesArgs),
    /// Re-read the whole backup from the disk and compare every file with its hash.
    Verify(VerifyArgs),
    /// Rebuild a lost or damaged catalog from the files in the store.
    Reindex(ReindexArgs),
    /// Where the config file is, and the values in effect.
    Config(ConfigArgs),
    /// Delete from the phone what is verified on the backup drive(s). Lists only,
    /// unless --yes.
    FreeUp(FreeUpArgs),
    /// `demo` (here in the help) and the hidden `sim`: the commands of the virtual phones.
    #[cfg(feature = "sim")]
    #[command(flatten)]
    Sim(crate::commands::sim::SimCli),
    /// Back up on a timer or whenever a phone is plugged in (systemd user units).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Stay running and back up each phone once when it is plugged in.
    #[command(after_help = WATCH_HELP)]
    Watch(WatchArgs),
    /// Check USB access, usbmuxd, pairing, phones, the backup drive, the catalog and the
    /// schedules; print each problem with its fix.
    #[command(after_help = DOCTOR_HELP)]
    Doctor(DoctorArgs),
}

#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct BackupArgs {
    /// A folder holding a camera roll (an SD card, a camera, a mounted phone). Without
    /// --from, every connected phone is backed up.
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
    pub from: Vec<PathBuf>,

    /// Back up the connected phones too when --from is given.
    #[arg(long)]
    pub phones: bool,

    /// Only the phone with this serial, UDID or name.
    #[arg(long, value_name = "SERIAL|NAME")]
    pub device: Option<String>,

    /// Android: also back up WhatsApp, Telegram and Signal media.
    #[arg(long)]
    pub include_app_media: bool,

    #[command(flatten)]
    pub dest: DestArgs,

    /// Where files go inside the store. Tokens: {device} {year} {month} {day}
    /// {category} {name} {stem} {ext} {hash8}.
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Plan and report; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,

    /// Use the destination only if it already holds an offload store; never create one
    /// (exit 4 otherwise). Scheduled and plug-in runs pass it, so that an unplugged
    /// drive's empty mount point is never filled.
    #[arg(long)]
    pub require_store: bool,

    /// Post one desktop notification if the run copied files or hit a problem (needs
    /// `notify-send` and a session bus; silently skipped without them).
    #[arg(long)]
    pub notify: bool,
}

pub const WATCH_HELP: &str = "\
Events: one line each on stderr; with --json, one JSON object per line on stdout:
  {\"event\": \"watching\"|\"arrived\"|\"waiting\"|\"backup-started\"|\"backup-finished\"|
             \"skipped\"|\"left\"|\"stopped\", \"device\": ID, ...}
Each phone is backed up once per arrival, one at a time, by `offload backup --device ID
--require-store`. SIGINT/SIGTERM stop the running backup (nothing partial is kept) and
then watch, with exit 0.";

pub const DOCTOR_HELP: &str = "\
Each check prints ok, warning or problem, and a fix for anything not ok.
Exit codes:
  0  no problem (warnings allowed: things that do not stop a backup now)
  1  at least one problem";

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule: systemd user units that run `offload backup` (or `offload watch`
    /// for --on-plug), enabled at once. Without systemd, prints the crontab line.
    Add(Box<ScheduleAddArgs>),
    /// The schedules offload made, and whether each is enabled.
    List(ScheduleListArgs),
    /// Stop, disable and delete a schedule's units.
    Remove(ScheduleRemoveArgs),
}

#[derive(Debug, Clone, Args)]
#[command(
    group(clap::ArgGroup::new("when").required(true).args(["daily", "every", "on_plug"])),
    mut_arg("require_store", |a| a.hide(true)),
    mut_arg("notify", |a| a.hide(true)),
)]
pub struct ScheduleAddArgs {
    /// Name of the schedule (letters, digits, `-`, `_`): units offload-NAME.service/.timer.
    pub name: String,
    /// Every day at this local time (24-hour HH:MM); a run missed while the computer was
    /// off happens at the next start.
    #[arg(long, value_name = "HH:MM")]
    pub daily: Option<String>,
    /// At this interval (`30min`, `6h`, `1d`, `1h30min`), counted from the last run.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Whenever a phone is plugged in: a service running `offload watch`.
    #[arg(long)]
    pub on_plug: bool,
    /// Print the units (or crontab line) and change nothing.
    #[arg(long)]
    pub print: bool,
    #[command(flatten)]
    pub backup: BackupArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleRemoveArgs {
    /// Name given to `schedule add`.
    pub name: String,
}

#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("from", |a| a.hide(true)),
    mut_arg("phones", |a| a.hide(true)),
    mut_arg("require_store", |a| a.hide(true)),
    mut_arg("device", |a| a.help("Only watch for the phone with this serial, UDID, id or name")),
    mut_arg("json", |a| a.help("Print each event as one JSON object per line on stdout")),
)]
pub struct WatchArgs {
    /// Backup options, passed to each run (`--from` is not accepted: watch is for phones).
    /// --device limits watching to that phone; --json prints events as NDJSON.
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Seconds between two looks for new phones.
    #[arg(long, hide = true, default_value_t = 2.0)]
    pub poll_secs: f64,
    /// Seconds between two checks of a phone that waits (locked, not trusted).
    #[arg(long, hide = true, default_value_t = 5.0)]
    pub recheck_secs: f64,
    /// Seconds between two tries when the destination is absent.
    #[arg(long, hide = true, default_value_t = 30.0)]
    pub dest_recheck_secs: f64,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub dest: DestArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The format `--convert-heic` converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeicTarget {
    Jpeg,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The folder to copy into (created if missing). It stays a plain folder: no catalog.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,

    /// Export from an offload backup (through its catalog) instead of the phones.
    #[arg(long, value_name = "DEST", conflicts_with_all = ["from", "phones", "device"])]
    pub from_store: Option<PathBuf>,

    /// Export from a folder holding a camera roll. Without --from or --from-store,
    /// from every connected phone.
    #[arg(long, value_name = "PATH")]
    pub from: Vec<PathBuf>,

    /// Export from the connected phones too when --from is given.
    #[arg(long)]
    pub phones: bool,

    /// Only the phone with this serial, UDID or name.
    #[arg(long, value_name = "SERIAL|NAME")]
    pub device: Option<String>,

    /// Android: also take WhatsApp, Telegram and Signal media.
    #[arg(long)]
    pub include_app_media: bool,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Where files go inside DIR (default {year}/{month}/{name}). Tokens: {device}
    /// {year} {month} {day} {category} {name} {stem} {ext} {hash8}.
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "flat")]
    pub template: Option<String>,

    /// Every file directly in DIR (the template {name}).
    #[arg(long)]
    pub flat: bool,

    /// Convert HEIC/HEIF photos, keeping their capture date and orientation (needs a
    /// build with the cargo feature `heic`).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub convert_heic: Option<HeicTarget>,

    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dest: DestArgs,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub dest: DestArgs,
    /// Only files that came from this phone or folder (serial, UDID, name or id).
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// Check a random share of the files, in percent, for a quick run.
    #[arg(long, value_name = "PERCENT")]
    pub sample: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub dest: DestArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FreeUpArgs {
    #[command(flatten)]
    pub dest: DestArgs,
    /// Only the phone with this serial, UDID or name.
    #[arg(long, value_name = "SERIAL|NAME")]
    pub device: Option<String>,
    /// Only files taken longer ago than this: 90d, 2w, 3months (or 3mo), 1y, 48h.
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Which files: the same selection as `backup` and `export` take.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Verified copies required, on that many present destinations.
    #[arg(long, default_value_t = 1)]
    pub copies: u32,
    /// Really delete. Without it, the list is printed and nothing is deleted.
    #[arg(long)]
    pub yes: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
