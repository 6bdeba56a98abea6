//! `offload`: back up a phone's camera roll over USB to a local or external drive.
//!
//! `main` parses the command line, runs one function per command and turns errors into
//! the documented exit codes.

#[macro_use]
extern crate offload;

mod args;
mod argv;
mod commands;
mod notify;
mod units;

// The engine's modules, under the names the command line's modules use.
use offload::{
    beneath, catalog, catalog_files, commit, config, error, events, filter, media, plan, report,
    source, stop, store, term, transfer,
};

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::error::{Exit, Fail};

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout with exit 0, usage errors on stderr with 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Done
            });
        }
    };
    init_logging(cli.verbose);
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(fail) = err.downcast_ref::<Fail>() {
                errln!("offload: {}", fail.message);
                return ExitCode::from(fail.code);
            }
            // A symbolic link inside the store, met by any command: the destination
            // cannot be used until it is removed.
            if let Some(link) = beneath::link_in(&err) {
                eprintln!("offload: {link}");
                return ExitCode::from(Exit::Destination);
            }
            // A closed pipe (`offload status | head`) is not an error worth a word.
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            errln!("offload: {err:#}");
            ExitCode::from(Exit::SomeFailed)
        }
    }
}

/// Runs one command; returns the exit code for a run that finished.
fn try_main(cli: Cli) -> anyhow::Result<Exit> {
    // The virtual phones (feature `sim`) join detection through the engine's source
    // provider, installed here before anything looks for phones; they live in this
    // process (mtp-rs's registry is per process). `watch` attaches each one itself when
    // it appears, as a real phone is plugged in.
    #[cfg(feature = "sim")]
    offload::sim::install(matches!(cli.command, Some(Command::Watch(_))))
        .map_err(|e| error::fail(Exit::Usage, e))?;
    // Commands that copy, hash or delete stop cleanly on SIGINT, SIGTERM and SIGHUP:
    // what they finished is kept (see `stop`). `watch` installs its own handling.
    if matches!(
        cli.command,
        None | Some(
            Command::Backup(_)
                | Command::Export(_)
                | Command::Verify(_)
                | Command::Reindex(_)
                | Command::FreeUp(_)
        )
    ) {
        stop::install();
    }
    match cli.command {
        // Plain `offload`: back up every connected phone to the default destination.
        None => commands::backup::run(&args::BackupArgs::default(), &mut Vec::new()),
        Some(Command::Backup(args)) => {
            let mut reports = Vec::new();
            let result = commands::backup::run(&args, &mut reports);
            if args.notify {
                notify::after_backup(&result, &reports);
            }
            result
        }
        Some(Command::Schedule(cmd)) => commands::schedule::run(&cmd),
        Some(Command::Watch(args)) => commands::watch::run(&args),
        Some(Command::Doctor(args)) => commands::doctor::run(&args),
        Some(Command::Devices(args)) => commands::devices::run(&args),
        Some(Command::Verify(args)) => commands::verify::run(&args),
        Some(Command::Reindex(args)) => commands::reindex::run(&args),
        Some(Command::Config(args)) => commands::config::run(&args),
        Some(Command::FreeUp(args)) => commands::free_up::run(&args),
        Some(Command::Status(args)) => commands::status::run(&args),
        Some(Command::Export(args)) => commands::export::run(&args),
        // `demo` and `sim` (feature `sim`).
        #[cfg(feature = "sim")]
        Some(Command::Sim(cmd)) => commands::sim::run(cmd),
    }
}

/// Phones hand data over in windows of several MiB, each a fresh buffer. glibc serves
/// allocations that large with a new `mmap` and returns them with `munmap`, so every
/// window costs page faults and the kernel zeroing each page: a quarter of the CPU of an
/// Android backup, measured. Keeping such blocks in the heap lets them be reused.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFFLOAD_LOG")
        // Parsers of hostile media log their complaints; the user sees the fallback date instead.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},nom_exif=off")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
