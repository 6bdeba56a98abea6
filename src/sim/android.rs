//! Virtual Android phones: a directory served as an MTP phone by mtp-rs's virtual device,
//! plus the faults that real phones show in the field.
//!
//! mtp-rs keeps its virtual-device registry in process-wide statics, so a child process
//! cannot see a phone its parent registered: the `offload` binary registers its virtual
//! phones itself, from the environment, before discovery ([`super::install`]).
//! Discovery finds them through the engine's source provider, which registering a phone
//! installs.
//!
//! # Environment
//!
//! - `OFFLOAD_VIRTUAL_ANDROID=DIR[:DIR...]`: each DIR is served as a phone whose internal
//!   storage ("Internal shared storage") is DIR. Serial = DIR's last path component,
//!   model "Virtual Android", manufacturer "offload". Dates are the files' mtimes, reported
//!   zoneless on this computer's current UTC offset, the way a phone reports them.
//! - `OFFLOAD_VIRTUAL_FAULT=SPEC[,SPEC...]`: faults to inject. Each SPEC is `NAME[=VALUE]`,
//!   optionally prefixed with `SERIAL:` to aim it at one phone (otherwise it applies to
//!   every virtual phone). Counts are per phone and per run (this process):
//!   - `unplug-after-bytes=N`: the phone vanishes once N bytes of file content have been
//!     read (the read that crosses N is cut at N). From then on every call reports a
//!     disconnection and reopening fails.
//!   - `wedge-at-read=K`: the K-th read (1-based, one read = one download window) gets a
//!     device reset (`DeviceReset`), the way a wedged Samsung answers; the phone is
//!     healthy again once reopened.
//!   - `hang-at-read=K`: the K-th read never answers, the way a wedged Pixel behaves.
//!   - `unreadable=REL/PATH`: the phone refuses to describe the object at REL/PATH
//!     (relative to the storage, e.g. `DCIM/Camera/IMG_1.jpg`). May be repeated.
//!   - `locked`: the phone shows no storage, as a locked phone or one in charge-only mode
//!     does.
//!   - `lie-size=REL/PATH:+N` or `:-N`: the phone's listing gives the object at REL/PATH a
//!     size N bytes larger (or smaller) than the bytes it then sends, the way a phone whose
//!     media index is stale does. May be repeated.
//!
//!   Example: `OFFLOAD_VIRTUAL_FAULT=pixel:wedge-at-read=3,unreadable=DCIM/Camera/b.jpg`.
//! - `OFFLOAD_VIRTUAL_STATS=FILE`: keep read counters and write them to FILE as
//!   `{"reads": N, "bytes": N, "opens": N, "sessions": N}`, summed over the virtual phones,
//!   each time a file read ends and when a source is dropped. `reads` counts download
//!   windows, `bytes` file content read, `opens` files opened for reading, `sessions`
//!   device (re)opens. A rerun that copies nothing shows `reads`, `bytes` and `opens` at 0.
//!
//! The fault and counting layer ([`PhoneHooks`]) reaches the Android source through the
//! engine's [`MtpHooks`] seam, and only for a phone registered while
//! `OFFLOAD_VIRTUAL_FAULT` or `OFFLOAD_VIRTUAL_STATS` is set (or through [`register_phone`]
//! with faults or counting asked for): every other phone, real or virtual, goes through
//! the production code path untouched.

// Nothing calls this module until the commands are wired to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context};
use mtp_rs::virtual_device::{
    force_operation_wedge, register_virtual_device, VirtualDeviceConfig, VirtualStorageConfig,
};

use crate::source::provider::{HookFuture, MtpHooks};

/// Directories to serve as phones.
pub const ANDROID_ENV: &str = "OFFLOAD_VIRTUAL_ANDROID";
/// Faults to inject (see the module documentation for the format).
pub const FAULT_ENV: &str = "OFFLOAD_VIRTUAL_FAULT";
/// Where to write the read counters.
pub const STATS_ENV: &str = "OFFLOAD_VIRTUAL_STATS";

/// What a virtual phone's internal storage is called (what Android itself calls it).
pub const STORAGE_NAME: &str = "Internal shared storage";

/// Faults for one virtual phone. The default is a healthy phone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The phone vanishes after this many bytes of file content.
    pub unplug_after_bytes: Option<u64>,
    /// This read (1-based) gets a device reset.
    pub wedge_at_read: Option<u64>,
    /// This read (1-based) never answers.
    pub hang_at_read: Option<u64>,
    /// Storage-relative paths the phone refuses to describe.
    pub unreadable: Vec<String>,
    /// The phone shows no storage.
    pub locked: bool,
    /// Storage-relative paths whose listed size is off by this many bytes.
    pub lie_size: Vec<(String, i64)>,
}

impl Faults {
    fn is_empty(&self) -> bool {
        *self == Faults::default()
    }

    fn apply(&mut self, name: &str, value: Option<&str>, spec: &str) -> anyhow::Result<()> {
        let number = || -> anyhow::Result<u64> {
            let v = value.with_context(|| format!("fault `{spec}` needs a value: {name}=N"))?;
            v.parse()
                .with_context(|| format!("fault `{spec}`: `{v}` is not a whole number"))
        };
        match name {
            "unplug-after-bytes" => self.unplug_after_bytes = Some(number()?),
            "wedge-at-read" | "hang-at-read" => {
                let k = number()?;
                if k == 0 {
                    bail!("fault `{spec}`: reads are counted from 1");
                }
                if name == "wedge-at-read" {
                    self.wedge_at_read = Some(k);
                } else {
                    self.hang_at_read = Some(k);
                }
            }
            "unreadable" => match value {
                Some(path) if !path.is_empty() => {
                    self.unreadable.push(path.trim_matches('/').to_string())
                }
                _ => bail!("fault `{spec}` needs a path: unreadable=DCIM/Camera/IMG_1.jpg"),
            },
            "locked" if value.is_none() => self.locked = true,
            "lie-size" => {
                let parsed = value.and_then(|v| {
                    let (path, delta) = v.rsplit_once(':')?;
                    let delta: i64 = delta.strip_prefix('+').unwrap_or(delta).parse().ok()?;
                    (!path.is_empty()).then(|| (path.trim_matches('/').to_string(), delta))
                });
                match parsed {
                    Some(lie) => self.lie_size.push(lie),
                    None => bail!("fault `{spec}` needs a path and a signed byte count: lie-size=DCIM/Camera/IMG_1.jpg:+100"),
                }
            }
            _ => bail!(
                "unknown fault `{spec}` in {FAULT_ENV}: expected unplug-after-bytes=N, \
                 wedge-at-read=K, hang-at-read=K, unreadable=REL/PATH, locked or \
                 lie-size=REL/PATH:+N, optionally prefixed with SERIAL:"
            ),
        }
        Ok(())
    }
}

/// Parses `OFFLOAD_VIRTUAL_FAULT`: faults for every phone, and faults per serial.
fn parse_faults(text: &str) -> anyhow::Result<(Faults, HashMap<String, Faults>)> {
    let mut all = Faults::default();
    let mut per_serial: HashMap<String, Faults> = HashMap::new();
    for spec in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // The value (a path) may hold ':', so only the part before '=' can name a serial.
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (spec, None),
        };
        let (serial, name) = match key.split_once(':') {
            Some((serial, name)) => (Some(serial), name),
            None => (None, key),
        };
        let target = match serial {
            Some(serial) => per_serial.entry(serial.to_string()).or_default(),
            None => &mut all,
        };
        target.apply(name.trim(), value.map(str::trim), spec)?;
    }
    Ok((all, per_serial))
}

fn merge(mut base: Faults, extra: &Faults) -> Faults {
    base.unplug_after_bytes = extra.unplug_after_bytes.or(base.unplug_after_bytes);
    base.wedge_at_read = extra.wedge_at_read.or(base.wedge_at_read);
    base.hang_at_read = extra.hang_at_read.or(base.hang_at_read);
    base.unreadable.extend(extra.unreadable.iter().cloned());
    base.locked |= extra.locked;
    base.lie_size.extend(extra.lie_size.iter().cloned());
    base
}

/// Read counters of one virtual phone (see `OFFLOAD_VIRTUAL_STATS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Download windows asked for.
    pub reads: u64,
    /// Bytes of file content handed out.
    pub bytes: u64,
    /// Files opened for reading.
    pub opens: u64,
    /// Device sessions opened (the first one and every reopen).
    pub sessions: u64,
}

#[derive(Debug, Default)]
struct HookState {
    counters: Counters,
    unplugged: bool,
    /// The plug was pulled in the middle of a window: the rest of it never arrives.
    cut: bool,
}

/// The fault-injecting, counting layer between the Android source and mtp-rs, for one
/// virtual phone. The source calls these hooks around each device call; mtp-rs does the
/// rest, so the production code path runs unchanged.
#[derive(Debug)]
pub struct PhoneHooks {
    serial: String,
    faults: Faults,
    state: Mutex<HookState>,
}

/// What a hook says about a device call.
pub use crate::source::provider::HookResult;

impl PhoneHooks {
    fn state(&self) -> std::sync::MutexGuard<'_, HookState> {
        // A panic elsewhere must not turn every later call into a second panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before the device is opened (discovery or reopen). An unplugged phone is not there.
    pub fn on_connect(&self) -> HookResult {
        let mut state = self.state();
        if state.unplugged {
            return Err(mtp_rs::Error::NoDevice);
        }
        state.counters.sessions += 1;
        Ok(())
    }

    /// Before any other device call.
    pub fn on_call(&self) -> HookResult {
        if self.state().unplugged {
            return Err(mtp_rs::Error::Disconnected);
        }
        Ok(())
    }

    /// Whether the phone hides its storages (locked, or charge-only).
    pub fn hides_storages(&self) -> bool {
        self.faults.locked
    }

    /// The size the listing reports for the object at the storage-relative `rel_path`
    /// whose true size is `size`.
    pub fn listed_size(&self, rel_path: &str, size: u64) -> u64 {
        match self.faults.lie_size.iter().find(|(p, _)| p == rel_path) {
            Some((_, delta)) => size.saturating_add_signed(*delta),
            None => size,
        }
    }

    /// A file is opened for reading.
    pub fn on_open_file(&self) {
        self.state().counters.opens += 1;
    }

    /// Before one download window is read: counts it, and arms a wedge or hangs when
    /// this is the read the faults name. A hang is a future that never completes: only
    /// the caller's timeout ends it.
    pub async fn before_read(&self) -> HookResult {
        let k = {
            let mut state = self.state();
            if state.unplugged {
                return Err(mtp_rs::Error::Disconnected);
            }
            state.counters.reads += 1;
            state.counters.reads
        };
        if self.faults.wedge_at_read == Some(k) {
            // mtp-rs answers the next operation (this read) with DeviceReset.
            force_operation_wedge(&self.serial);
        }
        if self.faults.hang_at_read == Some(k) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    /// After a window was read: counts its bytes, and pulls the plug when the byte budget
    /// runs out (the window that crosses it is cut there).
    pub fn after_read(&self, data: &mut Vec<u8>) {
        let mut state = self.state();
        let before = state.counters.bytes;
        if let Some(limit) = self.faults.unplug_after_bytes {
            if before + data.len() as u64 >= limit {
                let keep = limit.saturating_sub(before) as usize;
                state.cut |= keep < data.len();
                data.truncate(keep);
                state.unplugged = true;
            }
        }
        state.counters.bytes += data.len() as u64;
    }

    /// Before asking for the next window of a download, even one mtp-rs thinks is
    /// complete. mtp-rs counted a cut window whole, so without this a download cut in its
    /// last window would end as if the file were whole (a short file) instead of failing
    /// the way a real unplugged phone does. A window that ended exactly at the budget
    /// was delivered whole: the download ends normally if it was the last one.
    pub fn before_window(&self) -> HookResult {
        if self.state().cut {
            return Err(mtp_rs::Error::Disconnected);
        }
        Ok(())
    }

    /// This phone's counters so far.
    pub fn counters(&self) -> Counters {
        self.state().counters
    }
}

/// The seam's contracts are the inherent methods above; a released read or source is
/// when the counters file is brought up to date.
impl MtpHooks for PhoneHooks {
    fn on_connect(&self) -> HookResult {
        PhoneHooks::on_connect(self)
    }

    fn on_call(&self) -> HookResult {
        PhoneHooks::on_call(self)
    }

    fn hides_storages(&self) -> bool {
        PhoneHooks::hides_storages(self)
    }

    fn listed_size(&self, rel_path: &str, size: u64) -> u64 {
        PhoneHooks::listed_size(self, rel_path, size)
    }

    fn on_open_file(&self) {
        PhoneHooks::on_open_file(self)
    }

    fn before_window(&self) -> HookResult {
        PhoneHooks::before_window(self)
    }

    fn before_read(&self) -> HookFuture<'_> {
        Box::pin(PhoneHooks::before_read(self))
    }

    fn after_read(&self, data: &mut Vec<u8>) {
        PhoneHooks::after_read(self, data)
    }

    fn on_release(&self) {
        write_stats();
    }
}

#[derive(Default)]
struct Registry {
    /// Serials of the phones registered by this process, in order.
    serials: Vec<String>,
    /// mtp-rs's location id of each phone, to unregister it.
    locations: HashMap<String, u64>,
    hooks: HashMap<String, Arc<PhoneHooks>>,
    stats_file: Option<PathBuf>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Serves `dir` as a virtual phone with internal storage `dir`, so that discovery finds it.
///
/// `serial` defaults to `dir`'s last path component. With non-default `faults` or with
/// `count` set, the phone gets a [`PhoneHooks`] layer. Returns the serial.
///
/// Errors: `dir` is not a directory, or a phone with that serial is already registered.
pub fn register_phone(
    dir: &Path,
    serial: Option<&str>,
    faults: Faults,
    count: bool,
) -> anyhow::Result<String> {
    if !dir.is_dir() {
        bail!(
            "{ANDROID_ENV}: {} is not a directory to serve as a phone",
            dir.display()
        );
    }
    let serial = match serial {
        Some(s) => s.to_string(),
        None => dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|s| !s.is_empty())
            .with_context(|| {
                format!(
                    "{ANDROID_ENV}: {} has no name to use as a serial",
                    dir.display()
                )
            })?,
    };
    // Discovery finds the phone through the provider.
    super::provide();
    let mut reg = registry();
    if reg.serials.contains(&serial) {
        bail!("{ANDROID_ENV}: two virtual phones would share the serial `{serial}`: give the directories different names");
    }
    let config = VirtualDeviceConfig {
        manufacturer: "offload".into(),
        model: "Virtual Android".into(),
        serial: serial.clone(),
        storages: vec![VirtualStorageConfig {
            description: STORAGE_NAME.into(),
            capacity: disk_capacity(dir),
            backing_dir: dir.to_path_buf(),
            read_only: false,
        }],
        // Nothing here reads device events; a watcher would only cost threads.
        watch_backing_dirs: false,
        undescribable_objects: faults.unreadable.clone(),
        utc_offset: local_offset(),
        dates_include_offset: false,
        ..Default::default()
    };
    // The crate's own registry is what `MtpDevice::list_devices` and `open_by_serial` use.
    let registered = register_virtual_device(&config);
    reg.locations.insert(serial.clone(), registered.location_id);
    if count || !faults.is_empty() {
        let hooks = PhoneHooks {
            serial: serial.clone(),
            faults,
            state: Mutex::default(),
        };
        reg.hooks.insert(serial.clone(), Arc::new(hooks));
    }
    reg.serials.push(serial.clone());
    Ok(serial)
}

/// Registers the phones named by `OFFLOAD_VIRTUAL_ANDROID`, with the faults of
/// `OFFLOAD_VIRTUAL_FAULT` and the counters of `OFFLOAD_VIRTUAL_STATS` (see the module
/// documentation). Call once, early, before discovery ([`super::install`] does).
/// Returns the serials registered (none when the variable is unset).
///
/// Errors: a directory that does not exist, two directories with one name, a fault spec
/// that does not parse, or a fault aimed at a serial that no directory has.
pub fn register_from_env() -> anyhow::Result<Vec<String>> {
    register_from(
        std::env::var_os(ANDROID_ENV),
        &std::env::var(FAULT_ENV).unwrap_or_default(),
        std::env::var_os(STATS_ENV).map(PathBuf::from),
    )
}

/// [`register_from_env`] with the variables' values passed in.
fn register_from(
    dirs: Option<std::ffi::OsString>,
    fault_text: &str,
    stats: Option<PathBuf>,
) -> anyhow::Result<Vec<String>> {
    let Some(dirs) = dirs.filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let (all, mut per_serial) = parse_faults(fault_text)?;
    let stats = stats.filter(|p| !p.as_os_str().is_empty());
    let dirs: Vec<PathBuf> = std::env::split_paths(&dirs)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    let names: Vec<Option<String>> = dirs
        .iter()
        .map(|d| {
            let path = d.canonicalize().ok()?;
            Some(path.file_name()?.to_string_lossy().into_owned())
        })
        .collect();
    // Check everything before registering anything.
    if let Some(serial) = per_serial
        .keys()
        .find(|s| !names.iter().any(|n| n.as_deref() == Some(s.as_str())))
    {
        bail!("{FAULT_ENV} names the serial `{serial}`, but no directory in {ANDROID_ENV} has that name");
    }
    if let Some(file) = &stats {
        registry().stats_file = Some(file.clone());
    }
    let mut serials = Vec::new();
    for (dir, name) in dirs.iter().zip(names) {
        let own = name.and_then(|n| per_serial.remove(&n));
        let faults = match own {
            Some(own) => merge(all.clone(), &own),
            None => all.clone(),
        };
        serials.push(register_phone(dir, None, faults, stats.is_some())?);
    }
    write_stats();
    Ok(serials)
}

/// Serials of the virtual phones this process registered, in order. Discovery uses it
/// when the machine has no USB bus, where mtp-rs cannot list devices at all.
pub fn registered_serials() -> Vec<String> {
    registry().serials.clone()
}

/// The fault and counting layer for the phone with this serial, if it has one.
pub fn hooks_for(serial: &str) -> Option<Arc<PhoneHooks>> {
    registry().hooks.get(serial).cloned()
}

/// Writes the counters, summed over the virtual phones, to the `OFFLOAD_VIRTUAL_STATS`
/// file, replacing it whole (write then rename, so a reader never sees half a file).
/// Does nothing when the variable was not set. Errors are ignored: counters are a test
/// aid and must never fail a backup.
pub fn write_stats() {
    let (file, total) = {
        let reg = registry();
        let Some(file) = reg.stats_file.clone() else {
            return;
        };
        let mut total = Counters::default();
        for hooks in reg.hooks.values() {
            let c = hooks.counters();
            total.reads += c.reads;
            total.bytes += c.bytes;
            total.opens += c.opens;
            total.sessions += c.sessions;
        }
        (file, total)
    };
    let Ok(json) = serde_json::to_vec(&total) else {
        return;
    };
    let mut tmp = file.clone().into_os_string();
    tmp.push(".tmp");
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
}

/// Registers one directory of `OFFLOAD_VIRTUAL_ANDROID` as a phone, with the faults of
/// `OFFLOAD_VIRTUAL_FAULT` that concern it, and without counters: for `offload watch`,
/// which sees virtual phones come and go as their directories appear and vanish, the
/// way real phones are plugged in and out. Returns the serial.
pub fn register_dir(dir: &Path) -> anyhow::Result<String> {
    let (all, per_serial) = parse_faults(&std::env::var(FAULT_ENV).unwrap_or_default())?;
    let serial = dir_serial(dir).with_context(|| {
        format!(
            "{ANDROID_ENV}: {} has no name to use as a serial",
            dir.display()
        )
    })?;
    let faults = match per_serial.get(&serial) {
        Some(own) => merge(all, own),
        None => all,
    };
    register_phone(dir, Some(&serial), faults, false)
}

/// The serial a directory is served under: its own name, once it exists.
pub fn dir_serial(dir: &Path) -> Option<String> {
    let path = dir.canonicalize().ok()?;
    let name = path.file_name()?.to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}

/// `OFFLOAD_VIRTUAL_FAULT` reduced to the faults that apply to the phone `serial`
/// (those for every phone, and those aimed at it), for a run that serves that phone only.
pub fn faults_for(text: &str, serial: &str) -> String {
    text.split(',')
        .map(str::trim)
        .filter(|spec| {
            let key = spec.split_once('=').map(|(k, _)| k).unwrap_or(spec);
            match key.split_once(':') {
                Some((s, _)) => s == serial,
                None => !spec.is_empty(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Serialises the tests that register or open virtual phones: mtp-rs's registries and
/// fault hooks are process-wide, keyed by serial.
#[cfg(test)]
pub fn test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets a phone registered by [`register_phone`], as if it were unplugged (tests
/// register and drop phones by the dozen in one process; `offload watch` drops a phone
/// whose directory vanished).
pub fn unregister_phone(serial: &str) {
    let mut reg = registry();
    reg.serials.retain(|s| s != serial);
    reg.hooks.remove(serial);
    if let Some(location) = reg.locations.remove(serial) {
        mtp_rs::virtual_device::unregister_virtual_device(location);
    }
}

/// Size of the filesystem holding `dir`, reported as the phone's capacity.
fn disk_capacity(dir: &Path) -> u64 {
    match rustix::fs::statvfs(dir) {
        Ok(st) => st.f_blocks.saturating_mul(st.f_frsize),
        Err(_) => 64 << 30,
    }
}

/// This computer's UTC offset now: a virtual phone keeps the same clock as its owner.
fn local_offset() -> mtp_rs::UtcOffset {
    let seconds = jiff::tz::TimeZone::system()
        .to_offset(jiff::Timestamp::now())
        .seconds();
    mtp_rs::UtcOffset::from_minutes((seconds / 60) as i16).unwrap_or(mtp_rs::UtcOffset::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse() {
        let (all, per) = parse_faults(
            "unplug-after-bytes=1000, pixel:wedge-at-read=3,unreadable=DCIM/a:b.jpg,locked,\
             lie-size=DCIM/x:y.jpg:+10,pixel:lie-size=/DCIM/z.jpg:-3",
        )
        .unwrap();
        assert_eq!(all.lie_size, vec![("DCIM/x:y.jpg".to_string(), 10)]);
        assert_eq!(per["pixel"].lie_size, vec![("DCIM/z.jpg".to_string(), -3)]);
        assert!(parse_faults("lie-size=DCIM/a.jpg").is_err());
        assert!(parse_faults("lie-size=:+1").is_err());
        assert_eq!(all.unplug_after_bytes, Some(1000));
        assert_eq!(all.unreadable, vec!["DCIM/a:b.jpg".to_string()]);
        assert!(all.locked);
        assert_eq!(per["pixel"].wedge_at_read, Some(3));
        assert!(parse_faults("wedge-at-read=0").is_err());
        assert!(parse_faults("hang-at-read").is_err());
        assert!(parse_faults("melt").is_err());
        assert!(parse_faults("").unwrap().0.is_empty());
    }

    #[test]
    fn faults_are_narrowed_to_one_phone() {
        let text = "locked, pixel:wedge-at-read=3,other:unreadable=DCIM/a:b.jpg,unreadable=x:y";
        assert_eq!(
            faults_for(text, "pixel"),
            "locked,pixel:wedge-at-read=3,unreadable=x:y"
        );
        assert_eq!(faults_for(text, "third"), "locked,unreadable=x:y");
        assert_eq!(faults_for("", "pixel"), "");
    }

    #[test]
    fn registers_phones_from_the_environment_and_writes_counters() {
        let _lock = test_lock();
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("env-a"), root.path().join("env-b"));
        std::fs::create_dir_all(a.join("DCIM")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let stats = root.path().join("stats.json");
        let dirs = std::env::join_paths([&a, &b]).unwrap();

        // A fault aimed at a serial no directory has is a mistake worth stopping for.
        let err = register_from(Some(dirs.clone()), "nope:locked", None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!registered_serials().contains(&"env-a".to_string()));

        let serials = register_from(
            Some(dirs),
            "env-b:locked,wedge-at-read=2",
            Some(stats.clone()),
        )
        .unwrap();
        assert_eq!(serials, ["env-a", "env-b"]);
        assert!(registered_serials().ends_with(&serials));
        let hooks_a = hooks_for("env-a").unwrap();
        let hooks_b = hooks_for("env-b").unwrap();
        assert!(!hooks_a.hides_storages());
        assert!(hooks_b.hides_storages());
        assert_eq!(hooks_b.faults.wedge_at_read, Some(2));

        hooks_a.on_open_file();
        hooks_a.after_read(&mut vec![0u8; 5]);
        write_stats();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
        assert_eq!(json["opens"], 1);
        assert_eq!(json["bytes"], 5);
        assert_eq!(json["reads"], 0);

        registry().stats_file = None;
        for s in serials {
            unregister_phone(&s);
        }
        assert!(register_from(None, "locked", None).unwrap().is_empty());
    }

    #[test]
    fn unplug_cuts_the_window_that_crosses_the_budget() {
        let hooks = PhoneHooks {
            serial: "cut".into(),
            faults: Faults {
                unplug_after_bytes: Some(10),
                ..Faults::default()
            },
            state: Mutex::default(),
        };
        let mut first = vec![0u8; 6];
        hooks.after_read(&mut first);
        assert_eq!(first.len(), 6);
        assert!(hooks.on_call().is_ok());
        assert!(hooks.before_window().is_ok());
        let mut second = vec![0u8; 6];
        hooks.after_read(&mut second);
        assert_eq!(second.len(), 4);
        assert!(matches!(hooks.on_call(), Err(mtp_rs::Error::Disconnected)));
        assert!(matches!(
            hooks.before_window(),
            Err(mtp_rs::Error::Disconnected)
        ));
        assert!(matches!(hooks.on_connect(), Err(mtp_rs::Error::NoDevice)));
        assert_eq!(hooks.counters().bytes, 10);
    }
}
