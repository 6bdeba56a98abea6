//! What a run tells the user: progress while it runs, a summary (or one JSON object)
//! at the end.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{DecimalBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::catalog::CloudOnly;
use crate::events::{Event, Events};
use crate::source::detect::Blocked;
use crate::source::{DeviceInfo, Skipped};

/// One source's result, also the shape of `devices[]` in `--json`.
#[derive(Debug, Default, Serialize)]
pub struct DeviceReport {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub copied: u64,
    pub bytes_copied: u64,
    pub already_backed_up: u64,
    pub duplicates: u64,
    /// Left for a later run by the selection (`--only`, `--since`...).
    pub filtered: u64,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Skipped>,
    /// Originals the phone's library lists that only iCloud holds: not failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cloud_only: Vec<CloudOnly>,
    /// Set when the run of this source stopped early (the phone went away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// Files planned but not reached (the run was stopped, or ended early): the next
    /// run copies them.
    #[serde(skip_serializing_if = "is_zero")]
    pub left: u64,
    /// Things worth knowing that did not stop the backup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl DeviceReport {
    pub fn new(info: &DeviceInfo) -> DeviceReport {
        DeviceReport {
            id: info.id.clone(),
            kind: info.kind.as_str().to_string(),
            name: info.name.clone(),
            warnings: info.warnings.clone(),
            ..DeviceReport::default()
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DeviceReport {
    /// One source's lines of the human summary (`would copy` in a dry run).
    fn human(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would copy" } else { "copied" };
        let mut out = format!(
            "{} ({}, {}):\n",
            crate::term::shown(&self.name),
            self.kind,
            crate::term::shown(&self.id)
        );
        out.push_str(&format!(
            "  {verb:<18} {} files, {}\n",
            self.copied,
            DecimalBytes(self.bytes_copied)
        ));
        out.push_str(&format!(
            "  {:<18} {}\n",
            "already backed up", self.already_backed_up
        ));
        out.push_str(&format!("  {:<18} {}\n", "duplicates", self.duplicates));
        if self.filtered > 0 {
            out.push_str(&format!(
                "  {:<18} {} (not selected; left for a later run)\n",
                "filtered out", self.filtered
            ));
        }
        if !self.skipped.is_empty() {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &self.skipped {
                *reasons.entry(s.reason.as_str()).or_default() += 1;
            }
            let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            out.push_str(&format!(
                "  {:<18} {} ({})\n",
                "skipped",
                self.skipped.len(),
                list.join(", ")
            ));
        }
        out.push_str(&self.problems());
        out
    }

    /// The lines of what went wrong or is worth knowing: failures with their reasons,
    /// iCloud-only originals, warnings, an early end, files left for the next run.
    fn problems(&self) -> String {
        let mut out = String::new();
        if !self.failed.is_empty() {
            out.push_str(&format!("  {:<18} {}\n", "failed", self.failed.len()));
            for f in &self.failed {
                out.push_str(&format!(
                    "    {}: {}\n",
                    crate::term::shown(&f.path),
                    crate::term::shown(&f.reason)
                ));
            }
        }
        if let Some(m) = cloud_message(&self.cloud_only) {
            out.push_str(&format!("  {m}\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("  warning: {}\n", crate::term::shown(w)));
        }
        if let Some(why) = &self.interrupted {
            out.push_str(&format!("  stopped: {why}\n"));
        }
        if self.left > 0 {
            out.push_str(&format!(
                "  {:<18} {} (the next run copies them)\n",
                "left", self.left
            ));
        }
        out
    }
}

/// The whole run, the `--json` object.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub destination: String,
    pub elapsed_s: f64,
    pub dry_run: bool,
    pub devices: Vec<DeviceReport>,
    /// Phones found that could not be read, each with what to do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<Blocked>,
    /// What stopped the run before its end (`SIGINT`, `SIGTERM`, `SIGHUP`), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl RunReport {
    /// "Stopped: 14 files saved, 86 left for the next run." for a stopped run.
    pub fn stopped_line(&self) -> Option<String> {
        let why = self.stopped.as_ref()?;
        let saved: u64 = self.devices.iter().map(|d| d.copied).sum();
        let left: u64 = self.devices.iter().map(|d| d.left).sum();
        Some(format!(
            "Stopped: {saved} files saved, {left} left for the next run ({why})."
        ))
    }

    /// The human summary, for stdout.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for d in &self.devices {
            out.push_str(&d.human(self.dry_run));
        }
        for b in &self.blocked {
            out.push_str(&format!(
                "{} ({}, {}): not read: {}\n",
                crate::term::shown(&b.name),
                b.kind,
                crate::term::shown(&b.id),
                crate::term::shown(&b.message)
            ));
        }
        if let Some(line) = self.stopped_line() {
            out.push_str(&line);
            out.push('\n');
        }
        let total_bytes: u64 = self.devices.iter().map(|d| d.bytes_copied).sum();
        let secs = self.elapsed_s.max(1e-9);
        out.push_str(&format!(
            "{} in {:.1} s ({}/s) to {}\n",
            match (self.dry_run, &self.stopped) {
                (true, _) => "Planned",
                (false, Some(_)) => "Ran",
                (false, None) => "Done",
            },
            self.elapsed_s,
            DecimalBytes((total_bytes as f64 / secs) as u64),
            self.destination
        ));
        out
    }
}

/// "312 photos and 4 videos are only in iCloud (Optimize iPhone Storage). They cannot be
/// copied over USB; choose 'Download and Keep Originals' on the iPhone to include them."
/// `None` when there are none.
pub fn cloud_message(cloud: &[CloudOnly]) -> Option<String> {
    if cloud.is_empty() {
        return None;
    }
    let videos = cloud.iter().filter(|c| c.kind == "video").count();
    let photos = cloud.len() - videos;
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let what = match (photos, videos) {
        (p, 0) => count(p, "photo", "photos"),
        (0, v) => count(v, "video", "videos"),
        (p, v) => format!(
            "{} and {}",
            count(p, "photo", "photos"),
            count(v, "video", "videos")
        ),
    };
    let verb = if cloud.len() == 1 { "is" } else { "are" };
    let them = if cloud.len() == 1 { "It" } else { "They" };
    let it = if cloud.len() == 1 { "it" } else { "them" };
    Some(format!(
        "{what} {verb} only in iCloud (Optimize iPhone Storage). {them} cannot be copied over \
         USB; choose 'Download and Keep Originals' on the iPhone to include {it}."
    ))
}

/// Progress while copying: bars on a terminal, plain lines elsewhere (logs, cron,
/// the journal), nothing with `--json` unless stderr is a terminal.
pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    plain: bool,
    last_line: Instant,
}

impl Progress {
    pub fn new(quiet_plain: bool) -> Progress {
        if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}  {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            let current = multi.add(ProgressBar::new(0));
            current
                .set_style(ProgressStyle::with_template("  {wide_msg}").expect("valid template"));
            Progress {
                bars: Some((multi, overall, current)),
                plain: false,
                last_line: Instant::now(),
            }
        } else {
            Progress {
                bars: None,
                plain: !quiet_plain,
                last_line: Instant::now(),
            }
        }
    }

    /// A source starts copying `files` files of `bytes` bytes.
    fn start(&mut self, name: &str, files: usize, bytes: u64) {
        if let Some((_, overall, _)) = &self.bars {
            overall.reset();
            overall.set_length(bytes);
            overall.set_position(0);
            overall.set_prefix(crate::term::shown(name).into_owned());
            overall.set_message(format!("0/{files} files"));
        } else if self.plain {
            errln!(
                "{}: {files} new files, {} to copy",
                crate::term::shown(name),
                DecimalBytes(bytes)
            );
        }
    }

    fn current(&self, path: &str) {
        if let Some((_, _, current)) = &self.bars {
            current.set_message(crate::term::shown(path).into_owned());
        }
    }

    fn advance(&mut self, bytes: u64) {
        if let Some((_, overall, _)) = &self.bars {
            overall.inc(bytes);
        }
    }

    /// `done` of `files` files are finished; `line` describes the last one.
    fn file_done(&mut self, done: usize, files: usize, line: &str) {
        if let Some((_, overall, _)) = &self.bars {
            overall.set_message(format!("{done}/{files} files"));
        } else if self.plain {
            // One line per file, but not a flood: at most ~10 lines a second.
            if self.last_line.elapsed() >= Duration::from_millis(100) || done == files {
                errln!("[{done}/{files}] {}", crate::term::shown(line));
                self.last_line = Instant::now();
            }
        }
    }

    /// A message that must be seen (a failure, a warning), above the bars.
    fn println(&self, line: &str) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => errln!("{line}"),
        }
    }

    /// Clears the bars, before a summary is printed.
    pub fn finish(&mut self) {
        if let Some((_, overall, current)) = self.bars.take() {
            current.finish_and_clear();
            overall.finish_and_clear();
        }
    }
}

/// The command line's rendering of the events: bars on a terminal, a line per file
/// (at most ~10 a second) elsewhere.
impl Events for Progress {
    fn event(&mut self, event: Event) {
        match event {
            Event::SourceStarted { name, files, bytes } => self.start(&name, files as usize, bytes),
            Event::FileStarted { path } => self.current(&path),
            Event::Progress { bytes } => self.advance(bytes),
            // "read", not "copied": the file is safe only once its batch is committed.
            Event::FileRead {
                path,
                size,
                done,
                files,
            } => self.file_done(
                done as usize,
                files as usize,
                &format!("read {path} ({})", DecimalBytes(size)),
            ),
            Event::FileDone { path, done, files } => {
                self.file_done(done as usize, files as usize, &path)
            }
            Event::FileFailed { path, reason } => self.println(&format!(
                "failed: {}: {}",
                crate::term::shown(&path),
                crate::term::shown(&reason)
            )),
            Event::RunDone => self.finish(),
            Event::BatchCommitted { .. } | Event::SourceDone { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(kinds: &[&str]) -> Vec<CloudOnly> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| CloudOnly {
                path: format!("DCIM/100APPLE/IMG_{i:04}"),
                kind: k.to_string(),
                captured: None,
            })
            .collect()
    }

    #[test]
    fn the_icloud_message() {
        let mut kinds = vec!["photo"; 312];
        kinds.extend(["video"; 4]);
        assert_eq!(
            cloud_message(&cloud(&kinds)).unwrap(),
            "312 photos and 4 videos are only in iCloud (Optimize iPhone Storage). They cannot \
             be copied over USB; choose 'Download and Keep Originals' on the iPhone to include them."
        );
        assert_eq!(
            cloud_message(&cloud(&["video"])).unwrap(),
            "1 video is only in iCloud (Optimize iPhone Storage). It cannot be copied over USB; \
             choose 'Download and Keep Originals' on the iPhone to include it."
        );
        assert!(cloud_message(&[]).is_none());
    }
}
