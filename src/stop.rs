//! Requests to stop: SIGINT (Ctrl-C), SIGTERM (systemd, shutdown) and SIGHUP (the
//! terminal closed), and later a Stop button. Long work checks [`Stop::requested`]
//! between steps (between files, between chunks of a file) and ends cleanly: what was
//! finished is kept, only the piece in hand is dropped.
//!
//! A second signal means "now": the process exits at once from the signal handler.
//! That is safe for the store because nothing appears under a final name before it is
//! complete and durable; the next run sweeps the temp files.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// The first signal received, 0 while none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The exit code of a run stopped by `sig`: 128 + the signal's number for SIGINT
/// (130) and SIGTERM (143), the shell's convention; a closed terminal (SIGHUP) is
/// treated as SIGTERM (143), as systemd and shells do for a hang-up they asked for.
pub fn exit_code(sig: i32) -> u8 {
    match sig {
        libc::SIGINT => 130,
        _ => 143,
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe calls here: an atomic swap, write(2) and _exit(2).
    let first = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    if first.is_err() {
        const MSG: &[u8] = b"\noffload: stopped at once; nothing partial was kept under a final name (the next run sweeps the temp files)\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static buffer.
        unsafe {
            libc::write(libc::STDERR_FILENO, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(exit_code(sig) as libc::c_int);
        }
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP from now on: the first asks to stop, the second
/// exits at once.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` is async-signal-safe (see there); the sigaction struct is
        // fully initialised (zeroed, then the handler and an empty mask).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
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
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
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

    /// The exit code of a stopped run: 130 or 143 after a signal, 130 otherwise.
    pub fn exit_code(&self) -> u8 {
        exit_code(requested().unwrap_or(libc::SIGINT))
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
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGHUP), 143);
    }
}
