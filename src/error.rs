//! Errors that end a command with a specific exit code and a message for the user.

use std::fmt;

/// Exit codes, as documented in `--help` and the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
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
