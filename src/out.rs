//! Writing for people on stdout and stderr without ever failing a run.
//!
//! `println!` panics when its write fails: a closed pipe (`offload backup | head -1`,
//! quitting `less`) or a closed terminal would then abort a backup between a copy and
//! its commit. What offload prints is progress and reports; the catalog and the store
//! are the record. So these macros write and ignore write errors, and the run goes on.

/// `println!` that ignores write errors (see the module's documentation).
#[macro_export]
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores write errors (see the module's documentation).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

/// `eprintln!` that ignores write errors (see the module's documentation).
#[macro_export]
macro_rules! errln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
