//! What long work tells while it runs: events, handed to a consumer it is given. The
//! command line draws progress bars and lines from them (`report::Progress`); an app
//! can stream them. The result of the work is its report, returned at the end.

use serde::Serialize;

/// One thing that happened during a backup, an export, a verify or a reindex.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A source (a phone, a folder, a backup being checked) was listed and planned:
    /// `files` files of `bytes` bytes are to be read.
    SourceStarted {
        name: String,
        files: u64,
        bytes: u64,
    },
    /// The file at `path` (as the source names it) starts.
    FileStarted { path: String },
    /// `bytes` more bytes of the current file went through.
    Progress { bytes: u64 },
    /// The file was read completely (`done` of `files`): not yet safe until its batch
    /// is committed.
    FileRead {
        path: String,
        size: u64,
        done: u64,
        files: u64,
    },
    /// The file was handled (checked, indexed, exported): `done` of `files`.
    FileDone { path: String, done: u64, files: u64 },
    /// The file failed, and why; the rest goes on.
    FileFailed { path: String, reason: String },
    /// `files` files of `bytes` bytes are now durable in the store and recorded.
    BatchCommitted { files: u64, bytes: u64 },
    /// The source's work ended (finished, stopped or interrupted: its report says).
    SourceDone { name: String },
    /// The whole run ended; its report follows.
    RunDone,
}

/// Where events go. Called from the thread doing the work (the copy's and the
/// commit's), so a consumer is `Send`; it must not block for long: the work waits.
pub trait Events: Send {
    fn event(&mut self, event: Event);
}

/// A consumer that keeps nothing (tests, callers that need only the report).
#[derive(Debug, Default)]
pub struct Ignore;

impl Events for Ignore {
    fn event(&mut self, _: Event) {}
}

/// A consumer that keeps every event, in order (tests).
#[derive(Debug, Default)]
pub struct Record(pub Vec<Event>);

impl Events for Record {
    fn event(&mut self, event: Event) {
        self.0.push(event);
    }
}
