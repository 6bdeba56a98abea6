//! The one seam through which phones that no USB bus shows join the engine: the virtual
//! phones of feature `sim`, for `offload demo` and the tests.
//!
//! A [`Provider`] is installed once, at start-up, by whoever has such phones; the engine
//! asks it for the phones it serves (detection, `offload watch`) and for the hooks to run
//! around each call to one of them (the MTP link). Nothing is installed in a build
//! without `sim`: every question then gets the answer "none", and every device goes
//! through the production code path untouched.

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use mtp_rs::Error as MtpError;

use super::SourceKind;

/// What a hook says about a device call: `Err` is what the phone answers instead.
pub type HookResult = Result<(), MtpError>;

/// A hook that may wait before a device call goes ahead.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = HookResult> + Send + 'a>>;

/// Hooks around every call the Android source makes to one MTP phone, for faults and
/// counters. mtp-rs still makes each call: the hooks only fail it, delay it, or change
/// what it returned, so the source's own handling is what gets exercised.
///
/// Every method has a default that does nothing and lets the call through.
pub trait MtpHooks: Send + Sync {
    /// Before the device is opened (discovery or a reopen after a fault). `Err`: the
    /// phone cannot be opened, with that error (`NoDevice`: it is not there).
    fn on_connect(&self) -> HookResult {
        Ok(())
    }

    /// Before any other device call (storages, listing, object info, delete, starting
    /// a download). `Err`: the call fails with that error without reaching the device.
    fn on_call(&self) -> HookResult {
        Ok(())
    }

    /// Whether the storage list, once read, is shown empty (a locked phone, or one in
    /// charge-only mode).
    fn hides_storages(&self) -> bool {
        false
    }

    /// The size the listing reports for the object at `rel_path` (relative to its
    /// storage, `/`-separated) whose true size is `size`.
    fn listed_size(&self, _rel_path: &str, size: u64) -> u64 {
        size
    }

    /// A file is opened for reading (a plain read or free-up's read of the listed
    /// object), before its download starts.
    fn on_open_file(&self) {}

    /// Before each request for the next window of a download, the one that finds the
    /// end of the file included. `Err`: the download fails with that error.
    fn before_window(&self) -> HookResult {
        Ok(())
    }

    /// Before each window that carries file content is read. The returned future runs
    /// under the source's timeout: one that never completes is a phone that never
    /// answers. `Err`: the read fails with that error.
    fn before_read(&self) -> HookFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// After a window was read: may shorten `data`, which is then all the source gets.
    fn after_read(&self, _data: &mut Vec<u8>) {}

    /// A file read or the whole source has ended (its reader or source was dropped):
    /// the moment to publish what the hooks have counted.
    fn on_release(&self) {}
}

/// A phone a [`Provider`] has plugged in now, as `offload watch` sees it before any is
/// opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plugged {
    /// The id detection gives it (`android:<serial>`).
    pub id: String,
    pub kind: SourceKind,
    /// Its name, for the watcher's lines.
    pub name: String,
}

/// What a build adds to the devices the engine finds on its own.
///
/// Every method has a default that adds nothing: an engine with no provider installed
/// behaves as one whose provider keeps all the defaults.
pub trait Provider: Send + Sync {
    /// Serials of the MTP phones this process serves, in the order they were added.
    /// Discovery opens them even where mtp-rs cannot list USB devices at all (a machine
    /// without a USB bus), and `offload watch`'s USB poll leaves them out.
    fn mtp_serials(&self) -> Vec<String> {
        Vec::new()
    }

    /// The hooks to run around every call to the MTP phone with this serial, or `None`
    /// for a phone whose calls go to mtp-rs untouched. Asked once per source opened.
    fn mtp_hooks(&self, _serial: &str) -> Option<Arc<dyn MtpHooks>> {
        None
    }

    /// The phones plugged in now that `offload watch` must notice beside USB and
    /// usbmuxd, whether they are reachable yet or not (see [`Provider::attach`]).
    /// Polled every few seconds: cheap, and opens nothing.
    fn plugged(&self) -> Vec<Plugged> {
        Vec::new()
    }

    /// Makes the phone `id` from [`Provider::plugged`] reachable by discovery in this
    /// process, as plugging it in does for a real one. Called once per arrival.
    ///
    /// Errors: why it cannot be, in a line for the user (the watcher prints it and
    /// tries again when it next polls).
    fn attach(&self, _id: &str) -> Result<(), String> {
        Ok(())
    }

    /// Forgets a phone [`Provider::attach`] made reachable, once it has left and
    /// nothing in this process uses it any more.
    fn detach(&self, _id: &str) {}

    /// The environment of a child `offload` that backs up the phone `id` alone:
    /// variables to set (`Some`) or to remove (`None`), so that the child serves that
    /// phone if it is one of this provider's, and none of them otherwise.
    fn child_env(&self, _id: &str) -> Vec<(OsString, Option<OsString>)> {
        Vec::new()
    }

    /// A folder source has listed its files and not read any yet: a test may hold it
    /// here to change the folder at exactly that instant. Blocking.
    fn after_listing(&self) {}
}

/// The provider of a build with nothing to add.
struct Nothing;

impl Provider for Nothing {}

static PROVIDER: OnceLock<Box<dyn Provider>> = OnceLock::new();

/// Installs the provider for the rest of the process. Call it before anything looks for
/// devices. Returns false, keeping the first one, if one was installed already.
pub fn install(provider: Box<dyn Provider>) -> bool {
    PROVIDER.set(provider).is_ok()
}

/// The installed provider, or one that adds nothing.
pub fn provider() -> &'static dyn Provider {
    match PROVIDER.get() {
        Some(p) => p.as_ref(),
        None => &Nothing,
    }
}
