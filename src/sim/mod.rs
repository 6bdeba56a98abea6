//! Virtual devices and sample data for `offload demo` and the tests.
//!
//! The virtual phones reach the engine through one seam, the engine's
//! [`Provider`]: [`install`] puts theirs in place, and the engine asks it for phones and
//! hooks without knowing that they are virtual.

pub mod android;
pub mod gen;
pub mod iphone;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::source::provider::{self, MtpHooks, Plugged, Provider};
use crate::source::SourceKind;

/// Installs the virtual phones' provider, then registers the phones of
/// `OFFLOAD_VIRTUAL_ANDROID` (with their faults and counters) unless `watching`: the
/// watcher registers each one itself when its directory appears, as a real phone is
/// plugged in. Call it once, first thing, before anything looks for phones: mtp-rs's
/// registry of virtual devices lives in this process only.
///
/// Errors: the message for a variable that cannot be used (see [`android`]).
pub fn install(watching: bool) -> Result<(), String> {
    provide();
    if !watching {
        android::register_from_env().map_err(|e| format!("{}: {e:#}", android::ANDROID_ENV))?;
    }
    Ok(())
}

/// Installs the provider if it is not there yet (registering a phone does it too, so
/// that a test or the demo that registers one finds it through discovery).
pub(crate) fn provide() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        provider::install(Box::new(VirtualPhones::default()));
    });
}

/// The provider of the virtual phones.
#[derive(Default)]
struct VirtualPhones {
    /// The directories of `OFFLOAD_VIRTUAL_ANDROID`, read when first polled: each is a
    /// phone plugged in while it exists.
    watched: OnceLock<Vec<PathBuf>>,
    /// Id → directory of the phones the last poll saw plugged in.
    seen: Mutex<HashMap<String, PathBuf>>,
    /// Id → (directory, serial) of the phones attached and not yet detached.
    attached: Mutex<HashMap<String, (PathBuf, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later call into a second panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Provider for VirtualPhones {
    fn mtp_serials(&self) -> Vec<String> {
        android::registered_serials()
    }

    fn mtp_hooks(&self, serial: &str) -> Option<Arc<dyn MtpHooks>> {
        android::hooks_for(serial).map(|h| h as Arc<dyn MtpHooks>)
    }

    /// The directories of `OFFLOAD_VIRTUAL_ANDROID` that exist now, by their serial.
    fn plugged(&self) -> Vec<Plugged> {
        let dirs = self.watched.get_or_init(|| {
            std::env::var_os(android::ANDROID_ENV)
                .map(|v| {
                    std::env::split_paths(&v)
                        .filter(|d| !d.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default()
        });
        let mut seen = lock(&self.seen);
        let mut out = Vec::new();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            if let Some(serial) = android::dir_serial(dir) {
                let id = format!("android:{serial}");
                seen.insert(id.clone(), dir.clone());
                out.push(Plugged {
                    id,
                    kind: SourceKind::Android,
                    name: "Virtual Android".to_string(),
                });
            }
        }
        out
    }

    /// Registers the phone's directory, with the faults aimed at it and no counters.
    fn attach(&self, id: &str) -> Result<(), String> {
        if lock(&self.attached).contains_key(id) {
            return Ok(());
        }
        let Some(dir) = lock(&self.seen).get(id).cloned() else {
            return Err(format!("{id}: no virtual phone has this id"));
        };
        let serial =
            android::register_dir(&dir).map_err(|e| format!("{}: {e:#}", dir.display()))?;
        lock(&self.attached).insert(id.to_string(), (dir, serial));
        Ok(())
    }

    fn detach(&self, id: &str) {
        if let Some((_, serial)) = lock(&self.attached).remove(id) {
            android::unregister_phone(&serial);
        }
    }

    /// The child registers virtual phones from the environment, and a directory that is
    /// not there is an error for it: it is handed the phone it backs up only, with the
    /// faults that concern that phone.
    fn child_env(&self, id: &str) -> Vec<(OsString, Option<OsString>)> {
        let (android_env, fault_env) = (
            OsString::from(android::ANDROID_ENV),
            OsString::from(android::FAULT_ENV),
        );
        match lock(&self.attached).get(id) {
            Some((dir, serial)) => {
                let faults = std::env::var(android::FAULT_ENV).unwrap_or_default();
                vec![
                    (android_env, Some(dir.clone().into_os_string())),
                    (fault_env, Some(android::faults_for(&faults, serial).into())),
                ]
            }
            None => vec![(android_env, None), (fault_env, None)],
        }
    }

    fn after_listing(&self) {
        pause_after_listing();
    }
}

/// Names a file that a folder source creates once it has listed its files, then waits
/// for it to be removed (at most a minute): a test changes the folder in that pause,
/// between the listing and the reading, at exactly that instant.
pub const PAUSE_AFTER_LISTING_ENV: &str = "OFFLOAD_SIM_PAUSE_AFTER_LISTING";

/// The pause of [`PAUSE_AFTER_LISTING_ENV`], when it is set; nothing otherwise.
pub fn pause_after_listing() {
    let Some(flag) = std::env::var_os(PAUSE_AFTER_LISTING_ENV) else {
        return;
    };
    let flag = std::path::PathBuf::from(flag);
    if std::fs::write(&flag, b"listed\n").is_err() {
        return;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while flag.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
