//! Requests to stop: SIGINT (Ctrl-C), SIGTERM (systemd, shutdown) and SIGHUP (the
//! terminal closed), and later a Stop button. Long work checks [`Stop::requested`]
//! between steps (between files, between chunks of a file) and ends cleanly: what was
//! finished is kept, only the piece in hand is dropped.
//!
//! A second Ctrl-C means "now": the process exits at once from the signal handler.
//! That is safe for the store because nothing appears under a final name before it is
//! complete and durable; the next run sweeps the temp files. A repeated SIGTERM or
//! SIGHUP only asks again: they come in pairs without anyone insisting (a closing
//! terminal's shell and the kernel both send SIGHUP; systemd signals every process of
//! a unit, and a parent passes the signal on). A signal the process was started to
//! ignore (`nohup`, a background job's SIGINT) stays ignored.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Once};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::low_level;

/// The first signal received, 0 while none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// What a second signal says on stderr before the process ends.
const AT_ONCE: &[u8] = b"\noffload: stopped at once; nothing partial was kept under a final name (the next run sweeps the temp files)\n";

/// The exit code of a run stopped by `sig`: 128 + the signal's number for SIGINT
/// (130) and SIGTERM (143), the shell's convention; a closed terminal (SIGHUP) is
/// treated as SIGTERM (143), as systemd and shells do for a hang-up they asked for.
pub fn exit_code(sig: i32) -> u8 {
    match sig {
        SIGINT => 130,
        _ => 143,
    }
}

/// The action on each caught signal. It runs inside the signal handler, so it does only
/// async-signal-safe things: an atomic exchange, write(2) and _exit(2).
fn on_signal(sig: i32) {
    let first = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    if first.is_err() && sig == SIGINT {
        let _ = rustix::io::write(rustix::stdio::stderr(), AT_ONCE);
        low_level::exit(exit_code(sig).into());
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP from now on (except those the process was
/// started to ignore): the first asks to stop, a second SIGINT exits at once. Calling
/// it again changes nothing.
pub fn install() {
    // Twice registered, one signal would run the action twice and exit at once.
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            if ignored(sig) {
                continue;
            }
            // SAFETY: the action is async-signal-safe (see `on_signal`): it neither
            // allocates nor takes a lock.
            let registered = unsafe { low_level::register(sig, move || on_signal(sig)) };
            if let Err(e) = registered {
                tracing::warn!("cannot catch signal {sig}: {e}");
            }
        }
    });
}

/// True when `sig` is ignored by this process (inherited from `nohup`, or SIGINT in a
/// background job of a shell without job control).
fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`,
    // a zeroed struct of the right type.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The signal that asked to stop, if any.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The signal's name, for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// A request to stop one piece of work, shared by whoever may ask and the work that
/// checks it. Every `Stop` also hears the process's signals (see [`install`]).
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks the work to stop at its next check.
    #[allow(dead_code)] // The app's Stop button; tests.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once a stop was asked for, by [`Stop::request`] or by a signal.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst) || requested().is_some()
    }

    /// Why the work stopped, for messages and reports ("SIGINT", "a request").
    pub fn reason(&self) -> &'static str {
        match requested() {
            Some(sig) => name(sig),
            None => "a request",
        }
    }

    /// How a stopped run ends: 130 after SIGINT (and a stop asked for otherwise), 143
    /// after SIGTERM or SIGHUP.
    pub fn exit(&self) -> crate::error::Exit {
        match requested() {
            Some(SIGTERM | SIGHUP) => crate::error::Exit::Terminated,
            _ => crate::error::Exit::Interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_seen_by_every_clone_and_codes_follow_the_shell() {
        let a = Stop::new();
        let b = a.clone();
        assert!(!b.requested() || requested().is_some());
        a.request();
        assert!(b.requested());
        assert_eq!(exit_code(SIGINT), 130);
        assert_eq!(exit_code(SIGTERM), 143);
        assert_eq!(exit_code(SIGHUP), 143);
    }
}
