//! Errors that end a command with a specific exit code and a message for the user.

use std::fmt;

/// Exit codes, as documented in `--help` and the README, in order of gravity: a run
/// that met several outcomes ends with the greatest (`max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// All done.
    Done = 0,
    /// Finished, but some files failed.
    SomeFailed = 1,
    /// The command line was wrong.
    Usage = 2,
    /// No source or phone, or it cannot be read.
    NoSource = 3,
    /// The destination cannot be used.
    Destination = 4,
    /// The phone went away mid-run.
    Gone = 5,
    /// Stopped by Ctrl-C (SIGINT); what was finished is kept.
    Interrupted = 130,
    /// Stopped by SIGTERM or SIGHUP; what was finished is kept.
    Terminated = 143,
}

impl Exit {
    /// The process's exit status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// An error whose message is written for the user (what happened, what to do) and
/// that ends the program with `code`.
#[derive(Debug)]
pub struct Fail {
    pub code: Exit,
    pub message: String,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// Builds an `anyhow::Error` that ends the program with `code`.
pub fn fail(code: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Fail {
        code,
        message: message.into(),
    })
}
