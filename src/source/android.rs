//! Android phones over MTP, through mtp-rs.
//!
//! [`discover`] finds every MTP phone (on USB, and those of the installed
//! [`provider`](super::provider)) and opens each one as an [`AndroidSource`], or says why
//! it cannot be read and what the user should do.
//!
//! Things about MTP that shape this file:
//! - A phone has one session, and mtp-rs's calls hold it while they run. Every device call
//!   here is bounded by a timeout, because a wedged Android phone may simply never answer.
//! - Reads use `download_windowed`, which frees the session between windows, so abandoning
//!   a read between two windows is safe. Dropping a call in flight is what wedges Android,
//!   so after a timeout the device is dropped whole and reopened quietly before further use.
//! - Object handles last one session (and Android may re-key them): entries are keyed by
//!   storage name + path, and a private map resolves paths to handles for the current
//!   session only. Each entry also carries the object it was listed as, with the
//!   session's number: deleting (free-up) reads and deletes that object only, and only
//!   in that session, never whatever the path resolves to later.
//! - MTP dates are phone-local with no zone: they are read on this computer's time zone.

// Nothing calls this module until the commands are wired to it.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use mtp_rs::{
    ByteRange, Error as MtpError, MtpDevice, MtpDeviceInfo, ObjectHandle, ObjectInfo, Storage,
    StorageId, UsbSpeed, WindowedDownload,
};
use tokio::runtime::Runtime;

use super::provider::{provider, MtpHooks};
use super::{
    skip_reason, DeviceInfo, Entry, FileRead, Listing, ObjectRef, Skipped, Source, SourceError,
    SourceKind, StorageInfo,
};

/// Environment variable that overrides [`AndroidOptions::timeout`], in seconds (tests use
/// a short one to prove that a silent phone cannot hang a run).
pub const TIMEOUT_ENV: &str = "OFFLOAD_MTP_TIMEOUT_SECS";

/// What the user reads when the phone goes away mid-run.
pub const GONE_MESSAGE: &str = "Phone disconnected: plug it back in and run offload again.";

/// The fix for a phone that shows no storage.
pub const UNLOCK_MESSAGE: &str =
    "Unlock the phone and choose 'File transfer' in the USB notification";

/// Camera roll and media folders, from the storage root.
const MEDIA_FOLDERS: &[&[&str]] = &[&["DCIM"], &["Pictures"], &["Movies"]];

/// Messaging apps' media, listed with [`AndroidOptions::include_app_media`]: Android 11+
/// keeps it under `Android/media/<package>`, older phones at the top level.
const APP_MEDIA_FOLDERS: &[&[&str]] = &[
    &["Android", "media", "com.whatsapp", "WhatsApp", "Media"],
    &[
        "Android",
        "media",
        "com.whatsapp.w4b",
        "WhatsApp Business",
        "Media",
    ],
    &["Android", "media", "org.telegram.messenger"],
    &["Android", "media", "org.thoughtcrime.securesms"],
    &["WhatsApp", "Media"],
    &["WhatsApp Business", "Media"],
    &["Telegram"],
];

/// How to talk to Android phones.
#[derive(Clone, Debug)]
pub struct AndroidOptions {
    /// Also list messaging apps' media (WhatsApp, Telegram, Signal).
    pub include_app_media: bool,
    /// Longest wait for any one device call (open, list a folder, read a window).
    pub timeout: Duration,
    /// Bytes asked for per read. Each window is one bounded request that frees the
    /// phone's session when it returns.
    pub window: u32,
    /// Silence kept after a wedge before the first reopen: a wedged phone recovers only
    /// when left alone.
    pub quiet: Duration,
    /// Pauses before each reopen attempt after a wedge; one attempt per element.
    pub reopen_delays: Vec<Duration>,
}

impl Default for AndroidOptions {
    /// 30 s timeout, 8 MiB windows, 3 s of quiet then five reopens over ~30 s.
    fn default() -> Self {
        AndroidOptions {
            include_app_media: false,
            timeout: Duration::from_secs(30),
            window: 8 << 20,
            quiet: Duration::from_secs(3),
            reopen_delays: [0, 2, 4, 8, 15].map(Duration::from_secs).to_vec(),
        }
    }
}

impl AndroidOptions {
    /// The defaults, with the timeout from `OFFLOAD_MTP_TIMEOUT_SECS` when it is set to a
    /// positive number of seconds (fractions allowed).
    pub fn from_env() -> Self {
        let mut opts = AndroidOptions::default();
        if let Some(timeout) = std::env::var(TIMEOUT_ENV)
            .ok()
            .and_then(|v| parse_timeout(&v))
        {
            opts.timeout = timeout;
        }
        opts
    }
}

fn parse_timeout(text: &str) -> Option<Duration> {
    let secs = text.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// What [`discover`] found.
#[derive(Default)]
pub struct AndroidDiscovery {
    /// Phones that are open and can be listed and read.
    pub sources: Vec<AndroidSource>,
    /// Phones that are there but cannot be read, each with what the user must do.
    pub blocked: Vec<BlockedPhone>,
    /// Facts about the search itself worth a line in `offload devices`, such as
    /// "no USB devices" on a machine without a USB bus. Not errors.
    pub notes: Vec<String>,
}

/// A phone that was found but cannot be read.
#[derive(Debug)]
pub struct BlockedPhone {
    /// What is known of it (from USB, or from the phone when it could be opened); its
    /// storage list is empty unless the phone showed some.
    pub info: DeviceInfo,
    /// `Blocked` with the fix, or `Gone` if it vanished while being opened.
    pub error: SourceError,
}

/// Finds every MTP phone and opens each one.
///
/// Never fails: a machine with no USB bus (no `/sys/bus/usb`, as on CI) yields a note
/// "no USB devices" and still finds the virtual phones this process registered; a phone
/// that cannot be opened lands in [`AndroidDiscovery::blocked`] with its fix. Blocking:
/// must not be called from inside an async runtime.
#[cfg_attr(not(test), allow(dead_code))]
pub fn discover(opts: &AndroidOptions) -> AndroidDiscovery {
    discover_only(opts, None)
}

/// [`discover`], opening only the phone with this serial when one is given (a phone
/// busy elsewhere is then left alone).
pub fn discover_only(opts: &AndroidOptions, serial: Option<&str>) -> AndroidDiscovery {
    let mut found = AndroidDiscovery::default();
    let registered = provider().mtp_serials();
    let mut targets = plan_targets(MtpDevice::list_devices(), registered, &mut found.notes);
    if let Some(want) = serial {
        targets.retain(|(t, _, _)| matches!(t, Target::Serial(s) if s.eq_ignore_ascii_case(want)));
    }
    for (target, speed, usb_info) in targets {
        match AndroidSource::connect(target, speed, usb_info, opts) {
            Ok(source) => found.sources.push(source),
            Err(blocked) => found.blocked.push(*blocked),
        }
    }
    found
}

/// The MTP phones on USB now, by the id and name [`discover`] gives them, without
/// opening any (so that a phone busy with a backup is not disturbed): what
/// `offload watch` polls. The provider's phones are left out (the watcher asks it for
/// them); a machine without a USB bus has none.
pub fn usb_phones() -> Vec<DeviceInfo> {
    let virtual_serials = provider().mtp_serials();
    let Ok(listed) = MtpDevice::list_devices() else {
        return Vec::new();
    };
    listed
        .into_iter()
        .filter(|d| {
            d.serial_number
                .as_ref()
                .is_none_or(|s| !virtual_serials.contains(s))
        })
        .map(|d| {
            let target = match &d.serial_number {
                Some(s) if !s.is_empty() => Target::Serial(s.clone()),
                _ => Target::Location(d.location_id),
            };
            usb_identity(&target, d.manufacturer, d.product)
        })
        .collect()
}

/// The phones to open: those mtp-rs listed, plus the virtual phones this process
/// registered (`registered`) that the listing lacks.
///
/// mtp-rs lists USB before it adds its virtual devices, so a machine with no USB bus
/// (`list_devices` fails) hides the virtual phones too: that is a note, not an error, and
/// `registered` fills the gap.
fn plan_targets(
    listed: Result<Vec<MtpDeviceInfo>, MtpError>,
    registered: Vec<String>,
    notes: &mut Vec<String>,
) -> Vec<(Target, Option<UsbSpeed>, DeviceInfo)> {
    let listed = listed.unwrap_or_else(|e| {
        notes.push(format!("no USB devices ({e})"));
        Vec::new()
    });
    let mut targets: Vec<(Target, Option<UsbSpeed>, DeviceInfo)> = Vec::new();
    for d in listed {
        let target = match &d.serial_number {
            Some(s) if !s.is_empty() => Target::Serial(s.clone()),
            _ => Target::Location(d.location_id),
        };
        let info = usb_identity(&target, d.manufacturer.clone(), d.product.clone());
        targets.push((target, d.speed, info));
    }
    for serial in registered {
        let known = targets
            .iter()
            .any(|(t, _, _)| matches!(t, Target::Serial(s) if *s == serial));
        if !known {
            let target = Target::Serial(serial);
            let info = usb_identity(&target, None, None);
            targets.push((target, None, info));
        }
    }
    targets
}

/// How to find a phone again after dropping it.
#[derive(Clone, Debug)]
enum Target {
    Serial(String),
    Location(u64),
}

/// What a phone looks like before it is opened.
fn usb_identity(
    target: &Target,
    manufacturer: Option<String>,
    product: Option<String>,
) -> DeviceInfo {
    let serial = match target {
        Target::Serial(s) => Some(s.clone()),
        Target::Location(_) => None,
    };
    DeviceInfo {
        id: device_id(target, serial.as_deref()),
        kind: SourceKind::Android,
        name: phone_name(
            manufacturer.as_deref().unwrap_or(""),
            product.as_deref().unwrap_or(""),
        ),
        manufacturer,
        model: product,
        serial,
        storages: Vec::new(),
        warnings: Vec::new(),
    }
}

fn device_id(target: &Target, serial: Option<&str>) -> String {
    match (serial, target) {
        (Some(s), _) if !s.is_empty() => format!("android:{s}"),
        (_, Target::Serial(s)) => format!("android:{s}"),
        // A phone without a serial is rare; its port is the best identity there is.
        (_, Target::Location(loc)) => format!("android:usb-{loc:08x}"),
    }
}

/// "Pixel 9 Pro XL" stays as it is; a bare model code ("SM-S918B") gets its maker in front.
fn phone_name(manufacturer: &str, model: &str) -> String {
    let (manufacturer, model) = (manufacturer.trim(), model.trim());
    match (manufacturer.is_empty(), model.is_empty()) {
        (_, true) if !manufacturer.is_empty() => format!("{manufacturer} phone"),
        (_, true) => "Android phone".to_string(),
        (false, false) if !model.contains(' ') => format!("{manufacturer} {model}"),
        _ => model.to_string(),
    }
}

fn speed_warning(speed: Option<UsbSpeed>) -> Option<String> {
    match speed? {
        UsbSpeed::High => {
            Some("on a USB 2 link: expect ~30 MB/s at best; use a USB 3 port and cable".to_string())
        }
        UsbSpeed::Low | UsbSpeed::Full => {
            Some("on a USB 1 link: expect under 1 MB/s; use a USB 3 port and cable".to_string())
        }
        _ => None,
    }
}

fn exclusive_message(name: &str) -> String {
    format!(
        "{name}: another program is holding the phone. Usually it is the desktop's file \
         manager: on GNOME, gvfs-mtp (eject the phone in Files, or run `pkill -x gvfsd-mtp`); \
         on KDE, kiod with kio-mtp (close the phone in Dolphin, or run `pkill -x kiod6`, \
         kiod5 on Plasma 5); on a Mac, Android File Transfer (quit it). Another offload may \
         also be running. Close it, then run offload again."
    )
}

fn permission_message(name: &str) -> String {
    format!(
        "{name}: this user may not open the phone's USB device. Install offload's udev rule \
         with `sudo scripts/install-udev.sh` (or add the rule from the README's Android \
         section by hand), then unplug the phone and plug it back in."
    )
}

fn unlock_message(name: &str) -> String {
    format!("{name} shows no storage. {UNLOCK_MESSAGE}, then run offload again.")
}

/// Why a device call failed, in the terms this file acts on.
#[derive(Debug)]
enum CallError {
    /// mtp-rs returned an error.
    Device(MtpError),
    /// The phone did not answer within the timeout; the call was abandoned.
    TimedOut(Duration),
}

impl CallError {
    fn is_gone(&self) -> bool {
        matches!(
            self,
            CallError::Device(MtpError::Disconnected | MtpError::NoDevice)
        )
    }

    /// A session-level fault that a quiet reopen usually cures: a wedge reset, a stall
    /// (zero bytes before the end), transport trouble.
    fn needs_reopen(&self) -> bool {
        matches!(
            self,
            CallError::Device(
                MtpError::DeviceReset
                    | MtpError::Timeout
                    | MtpError::Busy
                    | MtpError::Io { .. }
                    | MtpError::InvalidData { .. }
            )
        )
    }

    fn is_stale(&self) -> bool {
        matches!(
            self,
            CallError::Device(MtpError::StaleHandle | MtpError::NotFound)
        )
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Device(e) => e.fmt(f),
            CallError::TimedOut(t) => write!(f, "the phone did not answer for {}", secs(*t)),
        }
    }
}

fn secs(t: Duration) -> String {
    if t.subsec_millis() == 0 {
        format!("{} s", t.as_secs())
    } else {
        format!("{:.1} s", t.as_secs_f64())
    }
}

/// Maps a failure that ends an open or a listing (not a file) to what the caller does.
fn blocking_error(name: &str, f: &CallError) -> SourceError {
    match f {
        _ if f.is_gone() => SourceError::Gone(GONE_MESSAGE.to_string()),
        CallError::Device(MtpError::ExclusiveAccess) => {
            SourceError::Blocked(exclusive_message(name))
        }
        CallError::Device(MtpError::PermissionDenied) => {
            SourceError::Blocked(permission_message(name))
        }
        // A locked phone, or one in charge-only mode, may just not answer.
        CallError::TimedOut(t) => SourceError::Blocked(format!(
            "{name} did not answer for {}. {UNLOCK_MESSAGE}; if it still does not answer, \
             unplug it, plug it back in and run offload again.",
            secs(*t)
        )),
        CallError::Device(e) => SourceError::Blocked(format!(
            "{name} could not be read ({e}). Unplug it, plug it back in and run offload again."
        )),
    }
}

/// The number the next device session gets (see [`Link::session`]).
static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The one door to the phone: every mtp-rs call goes through here, under the timeout and,
/// for a phone the installed provider gives hooks (faults, counters), through them.
struct Link {
    target: Target,
    timeout: Duration,
    /// `None` after a wedge or a timeout, until reopened.
    device: Option<MtpDevice>,
    /// The storages of the current session.
    storages: Vec<Storage>,
    /// The number of the session opened last (0 before any); the current one's while
    /// `device` is `Some`. Object handles are valid in the session that handed them
    /// out only.
    session: u64,
    /// `None` for every phone the provider does not hook: no hook code runs for it.
    hooks: Option<Arc<dyn MtpHooks>>,
}

impl Link {
    fn new(target: Target, timeout: Duration) -> Link {
        Link {
            hooks: match &target {
                Target::Serial(s) => provider().mtp_hooks(s),
                Target::Location(_) => None,
            },
            target,
            timeout,
            device: None,
            storages: Vec::new(),
            session: 0,
        }
    }

    fn on_call(&self) -> Result<(), CallError> {
        if let Some(hooks) = &self.hooks {
            hooks.on_call().map_err(CallError::Device)?;
        }
        Ok(())
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, MtpError>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(CallError::Device),
            Err(_) => Err(CallError::TimedOut(self.timeout)),
        }
    }

    fn device(&self) -> Result<&MtpDevice, CallError> {
        // Callers reopen first; reaching here without a device is a session that died.
        self.device
            .as_ref()
            .ok_or(CallError::Device(MtpError::DeviceReset))
    }

    /// Drops the session: the phone is left alone until the next [`Link::open`].
    fn drop_device(&mut self) {
        self.storages.clear();
        self.device = None;
    }

    async fn open(&mut self) -> Result<(), CallError> {
        self.drop_device();
        if let Some(hooks) = &self.hooks {
            hooks.on_connect().map_err(CallError::Device)?;
        }
        // mtp-rs's own USB timeout is set longer than ours, so that a silent phone is
        // always met by ours and handled one way (that file fails, the phone is reopened).
        let builder = MtpDevice::builder().timeout(self.timeout + Duration::from_secs(5));
        let device = match &self.target {
            Target::Serial(s) => self.bounded(builder.open_by_serial(s)).await?,
            Target::Location(l) => self.bounded(builder.open_by_location(*l)).await?,
        };
        self.device = Some(device);
        // Unique in the process, so that an entry from another source's listing never
        // passes for one of this session.
        self.session = NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Reads the storage list afresh (free space, a card inserted since).
    async fn refresh_storages(&mut self) -> Result<(), CallError> {
        self.on_call()?;
        let mut storages = self.bounded(self.device()?.storages()).await?;
        if self.hooks.as_ref().is_some_and(|h| h.hides_storages()) {
            storages.clear();
        }
        storages.sort_by_key(|s| s.id().0);
        self.storages = storages;
        Ok(())
    }

    /// Deletes one object.
    async fn delete(&self, storage: StorageId, handle: ObjectHandle) -> Result<(), CallError> {
        self.on_call()?;
        let storage = self.storage(storage)?;
        self.bounded(storage.delete(handle)).await
    }

    /// What the phone says of one object now.
    async fn object_info(
        &self,
        storage: StorageId,
        handle: ObjectHandle,
    ) -> Result<ObjectInfo, CallError> {
        self.on_call()?;
        let storage = self.storage(storage)?;
        self.bounded(storage.get_object_info(handle)).await
    }

    fn storage(&self, id: StorageId) -> Result<&Storage, CallError> {
        self.storages
            .iter()
            .find(|s| s.id() == id)
            .ok_or(CallError::Device(MtpError::NotFound))
    }

    /// One folder's children, read with the property-list path where the phone has it.
    async fn children(
        &self,
        storage: StorageId,
        parent: Option<ObjectHandle>,
    ) -> Result<mtp_rs::ObjectCollection, CallError> {
        self.on_call()?;
        let storage = self.storage(storage)?;
        self.bounded(storage.collect_objects(parent)).await
    }

    async fn start(
        &self,
        storage: StorageId,
        handle: ObjectHandle,
        offset: u64,
        window: u32,
    ) -> Result<WindowedDownload, CallError> {
        self.on_call()?;
        let storage = self.storage(storage)?;
        self.bounded(storage.download_windowed(handle, ByteRange::From(offset), window))
            .await
    }

    /// The next window of a download, or `None` at the end of the file.
    async fn window(&self, download: &mut WindowedDownload) -> Result<Option<Vec<u8>>, CallError> {
        let call = async {
            if let Some(hooks) = &self.hooks {
                // A phone unplugged in the middle of the last window fails the download
                // rather than letting it end short.
                hooks.before_window()?;
                // At the end of the file mtp-rs sends nothing: that is not a read.
                if download.offset() < download.size() {
                    hooks.before_read().await?;
                }
            }
            download.next_window().await.transpose()
        };
        let mut data = self.bounded(call).await?;
        if let (Some(hooks), Some(bytes)) = (&self.hooks, data.as_mut()) {
            hooks.after_read(bytes);
        }
        Ok(data)
    }

    fn on_open_file(&self) {
        if let Some(hooks) = &self.hooks {
            hooks.on_open_file();
        }
    }

    fn on_release(&self) {
        if let Some(hooks) = &self.hooks {
            hooks.on_release();
        }
    }
}

/// Records in `listing.unreadable` each object of the folder at `path` that the phone
/// listed but would not describe.
fn report_undescribed(path: &str, skipped: Vec<mtp_rs::SkippedObject>, listing: &mut Listing) {
    for s in skipped {
        listing.unreadable.push(Skipped {
            path: format!("{path}/(object #{})", s.handle.0),
            reason: format!(
                "the phone listed this object but would not describe it ({})",
                s.error
            ),
        });
    }
}

/// Reports a second object listed at the entry path `child`, and marks the entry
/// already listed there as ambiguous.
///
/// Two objects, one name: a name that was not UTF-8 on the phone reads the lossy way as
/// another's; two long names that MTP cuts to the same 254 characters. One entry per
/// path, or the second would be read as the first and never backed up (found by the
/// torture test of hostile names): report it instead, and mark the first as ambiguous,
/// so that free-up never deletes by this name.
fn report_same_name(child: String, listing: &mut Listing) {
    if let Some(first) = listing.entries.iter_mut().rev().find(|e| e.path == child) {
        if let Some(object) = first.object.as_mut() {
            object.ambiguous = true;
        }
    }
    listing.unreadable.push(Skipped {
        path: child,
        reason: "the phone lists another file with this very name in this folder, so the \
                 two cannot be told apart: rename one of them on the phone"
            .into(),
    });
}

/// A storage of the current session, with the unique name entry paths start with.
#[derive(Clone, Debug)]
struct StorageSlot {
    id: StorageId,
    name: String,
}

/// An Android phone, open over MTP. Created by [`discover`].
///
/// Owns a small tokio runtime: its blocking methods run mtp-rs's async calls on it, so
/// they must not be called from inside another async runtime.
pub struct AndroidSource {
    runtime: Runtime,
    inner: Inner,
}

struct Inner {
    link: Link,
    info: DeviceInfo,
    opts: AndroidOptions,
    storages: Vec<StorageSlot>,
    /// Entry path → object of the current session. Never kept across sessions: handles
    /// are per session.
    handles: HashMap<String, (StorageId, ObjectHandle)>,
    zone: jiff::tz::TimeZone,
}

impl AndroidSource {
    /// Opens the phone, reads its identity and storages. `usb_info` is what was known
    /// before opening it.
    ///
    /// Errors: the phone as known, with the `Blocked` (and its fix) or `Gone` to report.
    fn connect(
        target: Target,
        speed: Option<UsbSpeed>,
        usb_info: DeviceInfo,
        opts: &AndroidOptions,
    ) -> Result<AndroidSource, Box<BlockedPhone>> {
        let blocked = |info: DeviceInfo, error: SourceError| Box::new(BlockedPhone { info, error });
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let error = SourceError::Blocked(format!("cannot start the USB runtime: {e}"));
                return Err(blocked(usb_info, error));
            }
        };
        let mut link = Link::new(target.clone(), opts.timeout);
        if let Err(f) = runtime.block_on(link.open()) {
            let error = blocking_error(&usb_info.name, &f);
            return Err(blocked(usb_info, error));
        }
        let mtp = link.device.as_ref().map(|d| d.device_info().clone());
        let (manufacturer, model, mtp_serial) = mtp
            .map(|i| (i.manufacturer, i.model, i.serial_number))
            .unwrap_or_default();
        let serial = Some(mtp_serial)
            .filter(|s| !s.trim().is_empty())
            .or(match &target {
                Target::Serial(s) => Some(s.clone()),
                Target::Location(_) => None,
            });
        let mut info = DeviceInfo {
            id: device_id(&target, serial.as_deref()),
            kind: SourceKind::Android,
            name: phone_name(&manufacturer, &model),
            manufacturer: Some(manufacturer).filter(|s| !s.is_empty()),
            model: Some(model).filter(|s| !s.is_empty()),
            serial,
            storages: Vec::new(),
            warnings: speed_warning(speed).into_iter().collect(),
        };
        let mut inner = Inner {
            link,
            info: info.clone(),
            opts: opts.clone(),
            storages: Vec::new(),
            handles: HashMap::new(),
            zone: jiff::tz::TimeZone::system(),
        };
        if let Err(f) = runtime.block_on(inner.load_storages()) {
            let error = blocking_error(&info.name, &f);
            return Err(blocked(info, error));
        }
        if inner.storages.is_empty() {
            let message = unlock_message(&info.name);
            return Err(blocked(info, SourceError::Blocked(message)));
        }
        info.storages = inner.storage_infos();
        inner.info = info;
        Ok(AndroidSource { runtime, inner })
    }
}

impl Inner {
    async fn load_storages(&mut self) -> Result<(), CallError> {
        self.link.refresh_storages().await?;
        let mut slots: Vec<StorageSlot> = Vec::new();
        for s in &self.link.storages {
            let base = s.info().description.trim();
            let base = if base.is_empty() {
                format!("Storage {:08x}", s.id().0)
            } else {
                base.to_string()
            };
            // Two storages with one description (two "SD card"s) must not share keys.
            let mut name = base.clone();
            let mut n = 2;
            while slots.iter().any(|slot| slot.name == name) {
                name = format!("{base} ({n})");
                n += 1;
            }
            slots.push(StorageSlot { id: s.id(), name });
        }
        self.storages = slots;
        // Handles belong to the session that handed them out.
        self.handles.clear();
        Ok(())
    }

    fn storage_infos(&self) -> Vec<StorageInfo> {
        self.storages
            .iter()
            .filter_map(|slot| {
                let s = self.link.storage(slot.id).ok()?;
                Some(StorageInfo {
                    description: slot.name.clone(),
                    capacity_bytes: s.info().total_capacity,
                    free_bytes: s.info().free_space,
                })
            })
            .collect()
    }

    /// Drops the session, keeps quiet, and reopens with spaced retries.
    ///
    /// Errors: `Gone` when every reopen failed (the phone is not coming back by itself).
    async fn recover(&mut self, why: &CallError) -> Result<(), SourceError> {
        tracing::info!("{}: {why}; reopening the phone", self.info.name);
        self.link.drop_device();
        self.handles.clear();
        if why.is_gone() {
            return Err(SourceError::Gone(GONE_MESSAGE.to_string()));
        }
        tokio::time::sleep(self.opts.quiet).await;
        let mut last = None;
        for delay in self.opts.reopen_delays.clone() {
            tokio::time::sleep(delay).await;
            match self.link.open().await {
                Ok(()) => match self.load_storages().await {
                    Ok(()) => return Ok(()),
                    Err(f) => last = Some(f),
                },
                Err(f) => last = Some(f),
            }
            self.link.drop_device();
        }
        tracing::warn!(
            "{}: the phone did not come back: {}",
            self.info.name,
            last.map(|f| f.to_string()).unwrap_or_default()
        );
        Err(SourceError::Gone(GONE_MESSAGE.to_string()))
    }

    /// Reopens a session dropped after a timeout, before the next call.
    async fn ensure_open(&mut self) -> Result<(), SourceError> {
        if self.link.device.is_some() {
            return Ok(());
        }
        self.recover(&CallError::Device(MtpError::DeviceReset))
            .await
    }

    fn local_seconds(&self, dt: &mtp_rs::DateTime) -> Option<i64> {
        if dt.offset.is_some() {
            return dt.to_unix_seconds();
        }
        // Phone-local, no zone: read it on this computer's zone, with the DST rule of
        // that date rather than of today.
        let civil = jiff::civil::DateTime::new(
            i16::try_from(dt.year).ok()?,
            dt.month as i8,
            dt.day as i8,
            dt.hour as i8,
            dt.minute as i8,
            dt.second as i8,
            0,
        )
        .ok()?;
        Some(
            civil
                .to_zoned(self.zone.clone())
                .ok()?
                .timestamp()
                .as_second(),
        )
    }

    fn mtime(&self, info: &ObjectInfo) -> i64 {
        info.modified
            .as_ref()
            .or(info.created.as_ref())
            .and_then(|dt| self.local_seconds(dt))
            .unwrap_or(0)
    }

    /// One pass over the camera-roll folders of every storage.
    async fn list_once(&mut self) -> Result<Listing, CallError> {
        self.load_storages().await?;
        let mut listing = Listing::default();
        let mut roots: Vec<&[&str]> = MEDIA_FOLDERS.to_vec();
        if self.opts.include_app_media {
            roots.extend_from_slice(APP_MEDIA_FOLDERS);
        }
        for slot in self.storages.clone() {
            // Folder listings already read in this storage, by parent, so that the app
            // media paths walk `Android/media` once.
            let mut seen: HashMap<Option<ObjectHandle>, Vec<ObjectInfo>> = HashMap::new();
            for root in &roots {
                let mut parent = None;
                let mut rel = Vec::new();
                let mut found = true;
                for part in root.iter() {
                    if let std::collections::hash_map::Entry::Vacant(slot_entry) =
                        seen.entry(parent)
                    {
                        let children = self.link.children(slot.id, parent).await?;
                        // Unreadable objects above the media folders are not media.
                        slot_entry.insert(children.objects);
                    }
                    let child = seen[&parent]
                        .iter()
                        .find(|o| o.is_folder() && o.filename.eq_ignore_ascii_case(part));
                    match child {
                        Some(o) => {
                            parent = Some(o.handle);
                            rel.push(o.filename.clone());
                        }
                        None => {
                            found = false;
                            break;
                        }
                    }
                }
                if let (true, Some(folder)) = (found, parent) {
                    let path = format!("{}/{}", slot.name, rel.join("/"));
                    self.walk(&slot, folder, path, &mut listing).await?;
                }
            }
        }
        listing.entries.sort_by(|a, b| a.path.cmp(&b.path));
        listing.entries.dedup_by(|a, b| a.path == b.path);
        listing.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        listing.unreadable.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listing)
    }

    /// Lists a folder tree, one property-list request set per folder, skipping (and
    /// recording) hidden and trash folders without descending into them.
    async fn walk(
        &mut self,
        slot: &StorageSlot,
        folder: ObjectHandle,
        path: String,
        listing: &mut Listing,
    ) -> Result<(), CallError> {
        let mut stack = vec![(folder, path)];
        while let Some((handle, path)) = stack.pop() {
            let Some(collection) = self.folder_children(slot, handle, &path, listing).await? else {
                continue;
            };
            report_undescribed(&path, collection.skipped, listing);
            for object in collection.objects {
                let child = format!("{path}/{}", object.filename);
                if let Some(reason) = skip_reason(&object.filename) {
                    listing.skipped.push(Skipped {
                        path: child,
                        reason: reason.to_string(),
                    });
                } else if object.is_folder() {
                    stack.push((object.handle, child));
                } else {
                    self.list_file(slot, &object, child, listing);
                }
            }
        }
        Ok(())
    }

    /// The children of the folder `handle` (at entry path `path`), or `None` when the
    /// phone refused to list this folder, which is then in `listing.unreadable`.
    ///
    /// Errors: any other failure, which is the session's, not the folder's.
    async fn folder_children(
        &self,
        slot: &StorageSlot,
        handle: ObjectHandle,
        path: &str,
        listing: &mut Listing,
    ) -> Result<Option<mtp_rs::ObjectCollection>, CallError> {
        match self.link.children(slot.id, Some(handle)).await {
            Ok(c) => Ok(Some(c)),
            // The phone refused this folder only (an answer, not a broken session):
            // report it and go on with the rest.
            Err(CallError::Device(
                e @ (MtpError::Other { .. } | MtpError::AccessDenied | MtpError::Unsupported),
            )) => {
                listing.unreadable.push(Skipped {
                    path: path.to_string(),
                    reason: format!("the phone would not list this folder ({e})"),
                });
                Ok(None)
            }
            Err(f) => Err(f),
        }
    }

    /// Adds the file `object`, at entry path `child`, to `listing` and to the handle map,
    /// unless it was already listed through another media folder, or another object
    /// already has this path (then reported as unreadable, see [`report_same_name`]).
    fn list_file(
        &mut self,
        slot: &StorageSlot,
        object: &ObjectInfo,
        child: String,
        listing: &mut Listing,
    ) {
        match self.handles.get(&child) {
            // Met again through another media folder: once is enough.
            Some((_, h)) if *h == object.handle => return,
            Some(_) => {
                report_same_name(child, listing);
                return;
            }
            None => {}
        }
        self.handles.insert(child.clone(), (slot.id, object.handle));
        let mut size = object.size;
        if let Some(hooks) = &self.link.hooks {
            size = hooks.listed_size(&child[slot.name.len() + 1..], size);
        }
        listing.entries.push(Entry {
            path: child,
            size,
            mtime: self.mtime(object),
            facts: Default::default(),
            object: Some(ObjectRef {
                session: self.link.session,
                storage: slot.id.0,
                handle: object.handle.0,
                ambiguous: false,
            }),
        });
    }

    /// The object behind an entry path in this session: from the map the last listing
    /// filled, else by walking the path folder by folder (after a reopen).
    async fn resolve(
        &mut self,
        path: &str,
    ) -> Result<Option<(StorageId, ObjectHandle)>, CallError> {
        if let Some(found) = self.handles.get(path) {
            return Ok(Some(*found));
        }
        let Some(slot) = self
            .storages
            .iter()
            .filter(|s| path.starts_with(&format!("{}/", s.name)))
            .max_by_key(|s| s.name.len())
            .cloned()
        else {
            return Ok(None);
        };
        let rel = &path[slot.name.len() + 1..];
        let mut parent = None;
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let children = self.link.children(slot.id, parent).await?;
            let Some(child) = children
                .objects
                .into_iter()
                .find(|o| o.filename == *part && o.is_folder() != last)
            else {
                return Ok(None);
            };
            parent = Some(child.handle);
        }
        let found = parent.map(|h| (slot.id, h));
        if let Some(f) = found {
            self.handles.insert(path.to_string(), f);
        }
        Ok(found)
    }

    /// Starts a windowed download of `path` at `offset`, re-resolving a stale handle and
    /// reopening a wedged phone once each.
    async fn start(&mut self, path: &str, offset: u64) -> Result<WindowedDownload, SourceError> {
        let mut stale_retried = false;
        let mut reopened = false;
        loop {
            self.ensure_open().await?;
            let attempt = async {
                let Some((storage, handle)) = self.resolve(path).await? else {
                    return Ok(None);
                };
                self.link
                    .start(storage, handle, offset, self.opts.window)
                    .await
                    .map(Some)
            }
            .await;
            match attempt {
                Ok(Some(download)) => return Ok(download),
                Ok(None) => {
                    return Err(SourceError::File(format!(
                        "{path} is no longer on the phone"
                    )))
                }
                Err(f) if f.is_stale() && !stale_retried => {
                    // Android re-keys handles on a media rescan: look the path up again.
                    stale_retried = true;
                    self.handles.clear();
                }
                Err(f) if f.is_gone() => return Err(SourceError::Gone(GONE_MESSAGE.into())),
                // Here it means an offset past the end: the file changed on the phone.
                Err(CallError::Device(e @ MtpError::InvalidData { .. })) => {
                    return Err(SourceError::File(format!(
                        "{path} changed on the phone since it was listed ({e})"
                    )))
                }
                Err(f) if f.needs_reopen() && !reopened => {
                    reopened = true;
                    self.recover(&f).await?;
                }
                Err(f @ CallError::TimedOut(_)) => {
                    self.link.drop_device();
                    return Err(self.timeout_error(path, &f));
                }
                Err(f) => {
                    return Err(SourceError::File(format!(
                        "the phone would not read {path}: {f}"
                    )))
                }
            }
        }
    }

    /// The storage and handle of the object `entry` was listed as, if it was listed in
    /// the session open now.
    ///
    /// Errors: `File` saying what to do when it was not (no object, or a session since
    /// dropped or reopened).
    fn listed(&self, entry: &Entry) -> Result<(StorageId, ObjectHandle), SourceError> {
        let Some(object) = entry.object else {
            return Err(SourceError::File(format!(
                "{} was not listed from the phone in this run",
                entry.path
            )));
        };
        if self.link.device.is_none() {
            return Err(SourceError::File(
                "the phone stopped answering earlier in this run, and what was listed \
                 cannot be named for sure after it is reopened: run offload free-up again"
                    .into(),
            ));
        }
        if object.session != self.link.session {
            return Err(SourceError::File(
                "the phone was reopened since this file was listed, so the listing no \
                 longer names it for sure: run offload free-up again"
                    .into(),
            ));
        }
        Ok((StorageId(object.storage), ObjectHandle(object.handle)))
    }

    /// What a failed call on a listed object means, for [`super::Delete`]: the object is
    /// not looked up again and the phone not reopened, so every failure ends this
    /// file's check. A call abandoned in flight leaves the session suspect: it is
    /// dropped (and the next call reopens the phone, refusing older entries).
    fn listed_failure(&mut self, path: &str, f: CallError) -> SourceError {
        if f.is_gone() {
            return SourceError::Gone(GONE_MESSAGE.to_string());
        }
        if matches!(f, CallError::TimedOut(_)) || f.needs_reopen() {
            self.link.drop_device();
        }
        if f.is_stale() {
            return SourceError::File(format!(
                "{path} is no longer the object that was listed (the phone deleted or \
                 re-indexed it); run offload again"
            ));
        }
        SourceError::File(format!("the phone would not read {path}: {f}"))
    }

    fn timeout_error(&self, path: &str, f: &CallError) -> SourceError {
        SourceError::File(format!(
            "{f} while reading {path}; offload gave up on this file and reopens the \
             phone for the next one"
        ))
    }
}

impl Source for AndroidSource {
    fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// Lists `DCIM`, `Pictures` and `Movies` of every storage (and the messaging apps'
    /// media with [`AndroidOptions::include_app_media`]), one folder at a time through
    /// mtp-rs's property-list path. Hidden, trash, pending and thumbnail files and folders
    /// go to `skipped` (a skipped folder is one line, not descended into); objects the
    /// phone lists but will not describe, and folders it will not list, go to
    /// `unreadable`. Entry paths are `<storage name>/<path in the storage>`.
    ///
    /// A wedge, a timeout or a re-keyed handle during the listing reopens the phone and
    /// lists again, once.
    ///
    /// Errors: `Blocked` when the phone shows no storage (locked, charge-only) or keeps
    /// failing; `Gone` when it is unplugged.
    fn list(&mut self) -> Result<Listing, SourceError> {
        let inner = &mut self.inner;
        self.runtime.block_on(async {
            let mut retried = false;
            loop {
                inner.ensure_open().await?;
                let result = inner.list_once().await;
                match result {
                    Ok(listing) if inner.storages.is_empty() => {
                        debug_assert!(listing.entries.is_empty());
                        return Err(SourceError::Blocked(unlock_message(&inner.info.name)));
                    }
                    Ok(listing) => {
                        inner.info.storages = inner.storage_infos();
                        return Ok(listing);
                    }
                    Err(f) if f.is_gone() => {
                        return Err(SourceError::Gone(GONE_MESSAGE.to_string()))
                    }
                    Err(f)
                        if !retried
                            && (f.needs_reopen()
                                || f.is_stale()
                                || matches!(f, CallError::TimedOut(_))) =>
                    {
                        retried = true;
                        inner.recover(&f).await?;
                    }
                    Err(f) => {
                        inner.link.drop_device();
                        return Err(blocking_error(&inner.info.name, &f));
                    }
                }
            }
        })
    }

    fn deleter(&mut self) -> Option<&mut dyn super::Delete> {
        Some(self)
    }

    /// Streams `entry` from `offset` with mtp-rs's windowed download
    /// ([`AndroidOptions::window`] bytes per request, the session freed between them).
    ///
    /// Inside the reader: a wedge (device reset, a stall, transport trouble) drops the
    /// phone, waits, reopens it and resumes from the byte reached, up to three times per
    /// file; a re-keyed handle is looked up again. Errors carried by the reader's
    /// `io::Error` ([`SourceError::from_io`]): `Gone` when the phone is unplugged or does
    /// not come back; `File` when this file cannot be read, including a call the phone
    /// did not answer within [`AndroidOptions::timeout`] (the session is then dropped and
    /// reopened on the next call, so the source stays usable or declares itself `Gone`).
    fn open<'a>(
        &'a mut self,
        entry: &Entry,
        offset: u64,
    ) -> Result<Box<dyn FileRead + 'a>, SourceError> {
        self.inner.link.on_open_file();
        let download = self
            .runtime
            .block_on(self.inner.start(&entry.path, offset))?;
        Ok(Box::new(AndroidReader {
            source: self,
            path: entry.path.clone(),
            listed: None,
            offset,
            download: Some(download),
            buffer: Vec::new(),
            position: 0,
            done: false,
            failed: None,
            recoveries: 0,
        }))
    }
}

impl super::Delete for AndroidSource {
    /// Starts a windowed download of the listed object's handle; a failure of the read
    /// is not retried (see [`super::Delete::open_listed`]).
    fn open_listed<'a>(&'a mut self, entry: &Entry) -> Result<Box<dyn FileRead + 'a>, SourceError> {
        self.inner.link.on_open_file();
        let (storage, handle) = self.inner.listed(entry)?;
        let inner = &mut self.inner;
        let download = self.runtime.block_on(async {
            let window = inner.opts.window;
            inner
                .link
                .start(storage, handle, 0, window)
                .await
                .map_err(|f| inner.listed_failure(&entry.path, f))
        })?;
        Ok(Box::new(AndroidReader {
            source: self,
            path: entry.path.clone(),
            listed: Some((storage, handle)),
            offset: 0,
            download: Some(download),
            buffer: Vec::new(),
            position: 0,
            done: false,
            failed: None,
            recoveries: 0,
        }))
    }

    /// Deletes the listed object's handle over MTP, then asks the phone for that handle
    /// again: an object it no longer describes is gone.
    fn delete(&mut self, entry: &Entry) -> Result<(), SourceError> {
        let (storage, handle) = self.inner.listed(entry)?;
        let inner = &mut self.inner;
        self.runtime.block_on(async {
            match inner.link.delete(storage, handle).await {
                Ok(()) => {}
                Err(f) if f.is_gone() => return Err(SourceError::Gone(GONE_MESSAGE.to_string())),
                // Android re-keys objects on a media rescan: the handle checked is no
                // longer this file's, and nothing was deleted.
                Err(f) if f.is_stale() => {
                    return Err(SourceError::File(
                        "the phone no longer knows the object that was checked (it \
                         re-indexed or removed it), so nothing was deleted: run offload \
                         free-up again"
                            .into(),
                    ))
                }
                Err(f) => {
                    // A call abandoned in flight leaves the session suspect, and the
                    // object may or may not be gone: it is not counted as deleted.
                    if matches!(f, CallError::TimedOut(_)) || f.needs_reopen() {
                        inner.link.drop_device();
                    }
                    return Err(SourceError::File(format!(
                        "the phone refused to delete it ({f}); if it is gone all the same, \
                         the next free-up no longer lists it"
                    )));
                }
            }
            inner.handles.retain(|_, h| *h != (storage, handle));
            // Deleted is what the phone no longer describes by the handle it deleted.
            match inner.link.object_info(storage, handle).await {
                Err(f) if f.is_stale() => Ok(()),
                Err(f) if f.is_gone() => Err(SourceError::Gone(GONE_MESSAGE.to_string())),
                Err(f) => {
                    if matches!(f, CallError::TimedOut(_)) || f.needs_reopen() {
                        inner.link.drop_device();
                    }
                    Err(SourceError::File(format!(
                        "the phone said it deleted it, but could not confirm it ({f}); if \
                         it is gone, the next free-up no longer lists it"
                    )))
                }
                Ok(_) => Err(SourceError::File(
                    "the phone said it deleted it, but it is still there".into(),
                )),
            }
        })
    }
}

impl Drop for AndroidSource {
    fn drop(&mut self) {
        self.inner.link.on_release();
    }
}

/// Most reopens one file may cost before it is reported failed.
const MAX_RECOVERIES: u32 = 3;

/// A blocking reader over a windowed download.
struct AndroidReader<'a> {
    source: &'a mut AndroidSource,
    path: String,
    /// The listed object to read, for [`super::Delete::open_listed`]: never looked up
    /// again by path, no reopen after a fault. `None`: read whatever `path` names, with
    /// recovery.
    listed: Option<(StorageId, ObjectHandle)>,
    /// Offset of the first byte not yet fetched from the phone.
    offset: u64,
    /// `None` after a reopen, until restarted at `offset`.
    download: Option<WindowedDownload>,
    buffer: Vec<u8>,
    position: usize,
    done: bool,
    /// Once failed, the reader keeps failing the same way rather than read on.
    failed: Option<(bool, String)>,
    recoveries: u32,
}

impl AndroidReader<'_> {
    fn fail(&mut self, error: SourceError) -> std::io::Error {
        let gone = matches!(error, SourceError::Gone(_));
        self.failed = Some((gone, error.to_string()));
        error.into_io()
    }

    /// Fetches the next window into the buffer; `false` at the end of the file.
    fn fill(&mut self) -> Result<bool, SourceError> {
        let AndroidSource { runtime, inner } = &mut *self.source;
        runtime.block_on(async {
            loop {
                let download = match self.download.as_mut() {
                    Some(d) => d,
                    // A listed object's download is started once, in `open_listed`.
                    None if self.listed.is_some() => {
                        return Err(SourceError::File(format!(
                            "the phone stopped reading {} at byte {}",
                            self.path, self.offset
                        )))
                    }
                    None => self
                        .download
                        .insert(inner.start(&self.path, self.offset).await?),
                };
                let failure = match inner.link.window(download).await {
                    Ok(Some(bytes)) => {
                        self.offset += bytes.len() as u64;
                        self.buffer = bytes;
                        self.position = 0;
                        return Ok(true);
                    }
                    Ok(None) => return Ok(false),
                    Err(f) => f,
                };
                self.download = None;
                if self.listed.is_some() {
                    return Err(inner.listed_failure(&self.path, failure));
                }
                match failure {
                    f if f.is_gone() => return Err(SourceError::Gone(GONE_MESSAGE.into())),
                    f @ CallError::TimedOut(_) => {
                        // The call was abandoned in flight: the session is suspect. Leave
                        // the phone alone now and reopen it on the next call.
                        inner.link.drop_device();
                        return Err(inner.timeout_error(&self.path, &f));
                    }
                    f if (f.needs_reopen() || f.is_stale()) && self.recoveries < MAX_RECOVERIES => {
                        self.recoveries += 1;
                        if f.is_stale() {
                            inner.handles.remove(&self.path);
                        } else {
                            inner.recover(&f).await?;
                        }
                    }
                    f => {
                        return Err(SourceError::File(format!(
                            "the phone stopped reading {} at byte {}: {f}",
                            self.path, self.offset
                        )))
                    }
                }
            }
        })
    }
}

// MTP windows (8 MiB) are copied out in chunks rather than handed over whole: four of
// them in flight would double the memory of a run.
impl FileRead for AndroidReader<'_> {}

impl Read for AndroidReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if let Some((gone, message)) = &self.failed {
            let error = if *gone {
                SourceError::Gone(message.clone())
            } else {
                SourceError::File(message.clone())
            };
            return Err(error.into_io());
        }
        if out.is_empty() {
            return Ok(0);
        }
        while self.position >= self.buffer.len() {
            if self.done {
                return Ok(0);
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    self.buffer = Vec::new();
                    self.position = 0;
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        let n = out.len().min(self.buffer.len() - self.position);
        out[..n].copy_from_slice(&self.buffer[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

impl Drop for AndroidReader<'_> {
    fn drop(&mut self) {
        self.source.inner.link.on_release();
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::android::{self as sim, Faults};
    use std::path::{Path, PathBuf};
    use std::sync::MutexGuard;
    use std::time::Instant;

    /// Virtual phones live in process-wide registries, and mtp-rs's fault hooks find a
    /// phone by serial: tests that open phones run one at a time.
    fn serial_lock() -> MutexGuard<'static, ()> {
        sim::test_lock()
    }

    /// Deterministic bytes that do not compress or repeat (xorshift).
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The storage-relative files of the sample roll.
    const ROLL: &[(&str, usize)] = &[
        ("DCIM/Camera/PXL_20240315_143022123.jpg", 300_000),
        ("DCIM/Camera/PXL_20240316_101500456.MP.jpg", 700_000),
        ("DCIM/Camera/.trashed-1712345678-PXL_old.jpg", 1_000),
        ("DCIM/Camera/.pending-1712345678-VID.mp4", 1_000),
        ("DCIM/.thumbnails/1.jpg", 500),
        ("DCIM/Camera/empty.jpg", 0),
        (
            "Pictures/Screenshots/Screenshot_20240317-090000.png",
            50_000,
        ),
        ("Movies/clip.mp4", 2_500_000),
        ("Download/doc.pdf", 1_000),
        (
            "Android/media/com.whatsapp/WhatsApp/Media/WhatsApp Images/IMG-20240101-WA0001.jpg",
            40_000,
        ),
        (
            "Android/media/com.whatsapp/WhatsApp/Media/.Statuses/s.jpg",
            1_000,
        ),
        ("Telegram/Telegram Images/t.jpg", 30_000),
        (".hidden_in_root.jpg", 100),
    ];

    /// A registered virtual phone over a temporary directory; unregistered on drop.
    struct Phone {
        serial: String,
        dir: tempfile::TempDir,
    }

    impl Phone {
        fn new(serial: &str, faults: Faults) -> Phone {
            let dir = tempfile::tempdir().unwrap();
            for (i, (rel, len)) in ROLL.iter().enumerate() {
                let path = dir.path().join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, bytes(i as u64 + 1, *len)).unwrap();
            }
            let serial = sim::register_phone(dir.path(), Some(serial), faults, true).unwrap();
            Phone { serial, dir }
        }

        fn file(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn connect(&self, opts: &AndroidOptions) -> AndroidSource {
            let target = Target::Serial(self.serial.clone());
            let usb_info = usb_identity(&target, None, None);
            match AndroidSource::connect(target, None, usb_info, opts) {
                Ok(source) => source,
                Err(b) => panic!("cannot open {}: {}", self.serial, b.error),
            }
        }

        fn counters(&self) -> sim::Counters {
            sim::hooks_for(&self.serial).unwrap().counters()
        }
    }

    impl Drop for Phone {
        fn drop(&mut self) {
            sim::unregister_phone(&self.serial);
        }
    }

    fn opts() -> AndroidOptions {
        AndroidOptions {
            include_app_media: false,
            timeout: Duration::from_secs(5),
            // Small windows, so that a 2.5 MB file takes ten reads.
            window: 256 << 10,
            quiet: Duration::from_millis(10),
            reopen_delays: vec![Duration::ZERO, Duration::from_millis(20)],
        }
    }

    const STORAGE: &str = "Internal shared storage";

    fn entry<'a>(listing: &'a Listing, rel: &str) -> &'a Entry {
        let path = format!("{STORAGE}/{rel}");
        listing
            .entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not listed"))
    }

    fn read_all(
        source: &mut AndroidSource,
        entry: &Entry,
        offset: u64,
    ) -> Result<Vec<u8>, SourceError> {
        let mut reader = source.open(entry, offset)?;
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .map_err(SourceError::from_io)?;
        Ok(data)
    }

    fn hash(data: &[u8]) -> blake3::Hash {
        blake3::hash(data)
    }

    fn file_hash(path: &Path) -> blake3::Hash {
        hash(&std::fs::read(path).unwrap())
    }

    #[test]
    fn timeout_from_env_text() {
        assert_eq!(parse_timeout("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("0"), None);
        assert_eq!(parse_timeout("soon"), None);
    }

    #[test]
    fn names_and_speed_warnings() {
        assert_eq!(phone_name("Google", "Pixel 9 Pro XL"), "Pixel 9 Pro XL");
        assert_eq!(phone_name("samsung", "SM-S918B"), "samsung SM-S918B");
        assert_eq!(phone_name("", ""), "Android phone");
        assert!(speed_warning(Some(UsbSpeed::High))
            .unwrap()
            .contains("USB 2"));
        assert!(speed_warning(Some(UsbSpeed::Super)).is_none());
        assert!(speed_warning(None).is_none());
    }

    #[test]
    fn targets_with_and_without_a_usb_bus() {
        let _lock = serial_lock();
        let phone = Phone::new("plan-1", Faults::default());
        let listed_info = mtp_rs::virtual_device::register_virtual_device(
            &mtp_rs::virtual_device::VirtualDeviceConfig {
                serial: "plan-2".into(),
                storages: vec![mtp_rs::virtual_device::VirtualStorageConfig {
                    description: "x".into(),
                    capacity: 1,
                    backing_dir: phone.dir.path().to_path_buf(),
                    read_only: true,
                }],
                ..Default::default()
            },
        );
        mtp_rs::virtual_device::unregister_virtual_device(listed_info.location_id);

        // A bus that lists devices (virtual ones included): no note, no duplicates.
        let mut notes = Vec::new();
        let targets = plan_targets(
            Ok(vec![listed_info.clone()]),
            vec!["plan-2".into(), "plan-1".into()],
            &mut notes,
        );
        assert!(notes.is_empty());
        let serials: Vec<_> = targets.iter().map(|(_, _, i)| i.id.clone()).collect();
        assert_eq!(serials, ["android:plan-2", "android:plan-1"]);

        // No bus: a note, and the registered virtual phones are still there.
        let mut notes = Vec::new();
        let targets = plan_targets(
            Err(MtpError::Io {
                message: "/sys/bus/usb/devices: not found".into(),
            }),
            vec!["plan-1".into()],
            &mut notes,
        );
        assert_eq!(targets.len(), 1);
        assert!(notes[0].starts_with("no USB devices"), "{notes:?}");
    }

    #[test]
    fn discovery_finds_virtual_phones_with_their_identity() {
        let _lock = serial_lock();
        let phone = Phone::new("disc-1", Faults::default());
        let found = discover(&opts());
        if !Path::new("/sys/bus/usb/devices").exists() {
            assert!(
                found.notes.iter().any(|n| n.starts_with("no USB devices")),
                "{:?}",
                found.notes
            );
        }
        let source = found
            .sources
            .iter()
            .find(|s| s.info().serial.as_deref() == Some(phone.serial.as_str()))
            .expect("the virtual phone is found");
        let info = source.info();
        assert_eq!(info.id, "android:disc-1");
        assert_eq!(info.kind, SourceKind::Android);
        assert_eq!(info.name, "Virtual Android");
        assert_eq!(info.manufacturer.as_deref(), Some("offload"));
        assert_eq!(info.model.as_deref(), Some("Virtual Android"));
        assert_eq!(info.storages.len(), 1);
        assert_eq!(info.storages[0].description, STORAGE);
        assert!(info.storages[0].capacity_bytes > 0);
        assert!(info.storages[0].free_bytes <= info.storages[0].capacity_bytes);
        assert!(info.warnings.is_empty());
    }

    #[test]
    fn locked_phone_is_blocked_with_the_fix() {
        let _lock = serial_lock();
        let phone = Phone::new(
            "locked-1",
            Faults {
                locked: true,
                ..Faults::default()
            },
        );
        let found = discover(&opts());
        assert!(found
            .sources
            .iter()
            .all(|s| s.info().serial.as_deref() != Some(phone.serial.as_str())));
        let blocked = found
            .blocked
            .iter()
            .find(|b| b.info.serial.as_deref() == Some(phone.serial.as_str()))
            .expect("the locked phone is reported");
        assert_eq!(blocked.info.name, "Virtual Android");
        match &blocked.error {
            SourceError::Blocked(m) => assert!(m.contains(UNLOCK_MESSAGE), "{m}"),
            other => panic!("expected Blocked, got {other:?}"),
        }
    }

    #[test]
    fn lists_the_camera_roll_and_skips_trash_and_hidden() {
        let _lock = serial_lock();
        let phone = Phone::new("list-1", Faults::default());
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        let paths: Vec<_> = listing.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "Internal shared storage/DCIM/Camera/PXL_20240315_143022123.jpg",
                "Internal shared storage/DCIM/Camera/PXL_20240316_101500456.MP.jpg",
                "Internal shared storage/DCIM/Camera/empty.jpg",
                "Internal shared storage/Movies/clip.mp4",
                "Internal shared storage/Pictures/Screenshots/Screenshot_20240317-090000.png",
            ]
        );
        let skipped: Vec<_> = listing
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    "Internal shared storage/DCIM/.thumbnails",
                    "thumbnail cache"
                ),
                (
                    "Internal shared storage/DCIM/Camera/.pending-1712345678-VID.mp4",
                    "still being written by the phone"
                ),
                (
                    "Internal shared storage/DCIM/Camera/.trashed-1712345678-PXL_old.jpg",
                    "in the phone's trash"
                ),
            ]
        );
        assert!(listing.unreadable.is_empty());

        // Sizes and dates are the files'.
        let clip = entry(&listing, "Movies/clip.mp4");
        let meta = std::fs::metadata(phone.file("Movies/clip.mp4")).unwrap();
        assert_eq!(clip.size, meta.len());
        let file_mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        // The phone's clock runs on today's offset; the reading uses the file date's.
        assert!(
            (clip.mtime - file_mtime).abs() <= 3600,
            "{} vs {file_mtime}",
            clip.mtime
        );
        let zone = jiff::tz::TimeZone::system();
        let now = zone.to_offset(jiff::Timestamp::now());
        let then = zone.to_offset(jiff::Timestamp::from_second(file_mtime).unwrap());
        if now == then {
            assert_eq!(clip.mtime, file_mtime);
        }
        // Listing reads no file content.
        assert_eq!(phone.counters().reads, 0);
    }

    #[test]
    fn app_media_only_when_asked() {
        let _lock = serial_lock();
        let phone = Phone::new("list-2", Faults::default());
        let mut source = phone.connect(&AndroidOptions {
            include_app_media: true,
            ..opts()
        });
        let listing = source.list().unwrap();
        entry(
            &listing,
            "Android/media/com.whatsapp/WhatsApp/Media/WhatsApp Images/IMG-20240101-WA0001.jpg",
        );
        entry(&listing, "Telegram/Telegram Images/t.jpg");
        assert_eq!(listing.entries.len(), 7);
        assert!(listing.skipped.iter().any(|s| s.path
            == "Internal shared storage/Android/media/com.whatsapp/WhatsApp/Media/.Statuses"
            && s.reason == "hidden"));
        assert!(!listing.entries.iter().any(|e| e.path.contains("Download")));
    }

    #[test]
    fn reads_every_file_whole_and_from_an_offset() {
        let _lock = serial_lock();
        let phone = Phone::new("read-1", Faults::default());
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        for e in &listing.entries {
            let rel = e.path.strip_prefix(&format!("{STORAGE}/")).unwrap();
            let data = read_all(&mut source, e, 0).unwrap();
            assert_eq!(hash(&data), file_hash(&phone.file(rel)), "{rel}");
        }
        let clip = entry(&listing, "Movies/clip.mp4").clone();
        let tail = read_all(&mut source, &clip, 1_000_001).unwrap();
        let whole = std::fs::read(phone.file("Movies/clip.mp4")).unwrap();
        assert_eq!(hash(&tail), hash(&whole[1_000_001..]));
        assert!(read_all(&mut source, &clip, clip.size).unwrap().is_empty());
        match read_all(&mut source, &clip, clip.size + 1) {
            Err(SourceError::File(m)) => assert!(m.contains("changed on the phone"), "{m}"),
            other => panic!("expected a File error, got {:?}", other.map(|d| d.len())),
        }
        let c = phone.counters();
        assert_eq!(c.opens, listing.entries.len() as u64 + 3);
        assert_eq!(c.sessions, 1, "no reopen for a bad offset");
        // 2.5 MB in 256 KiB windows is 10 reads; the others fit in 1-3.
        assert!(c.reads >= 10 + 6, "{c:?}");
    }

    #[test]
    fn a_fresh_session_finds_entries_by_path() {
        let _lock = serial_lock();
        let phone = Phone::new("read-2", Faults::default());
        let listing = phone.connect(&opts()).list().unwrap();
        // Another source (another session) was never listed: paths, not handles, lead.
        let mut source = phone.connect(&opts());
        let e = entry(
            &listing,
            "Pictures/Screenshots/Screenshot_20240317-090000.png",
        );
        let data = read_all(&mut source, e, 0).unwrap();
        assert_eq!(
            hash(&data),
            file_hash(&phone.file("Pictures/Screenshots/Screenshot_20240317-090000.png"))
        );
        let missing = Entry::new(format!("{STORAGE}/DCIM/Camera/gone.jpg"), 1, 0);
        assert!(matches!(
            read_all(&mut source, &missing, 0),
            Err(SourceError::File(_))
        ));
    }

    #[test]
    fn unplug_mid_file_is_gone() {
        let _lock = serial_lock();
        for (n, limit) in [300_000u64, 1_500_000, 2_500_000].into_iter().enumerate() {
            let phone = Phone::new(
                &format!("unplug-{n}"),
                Faults {
                    unplug_after_bytes: Some(limit),
                    ..Faults::default()
                },
            );
            let mut source = phone.connect(&opts());
            let listing = source.list().unwrap();
            let clip = entry(&listing, "Movies/clip.mp4").clone();
            let mut reader = source.open(&clip, 0).unwrap();
            let mut data = Vec::new();
            let err = reader.read_to_end(&mut data);
            let at_end = limit == clip.size;
            if at_end {
                // The last byte came just before the plug was pulled: the file is whole.
                assert_eq!(data.len() as u64, clip.size);
            } else {
                assert_eq!(data.len() as u64, limit);
                match SourceError::from_io(err.unwrap_err()) {
                    SourceError::Gone(m) => assert_eq!(m, GONE_MESSAGE),
                    other => panic!("expected Gone, got {other:?}"),
                }
                // Reading on keeps saying so.
                let mut more = [0u8; 16];
                assert!(matches!(
                    SourceError::from_io(reader.read(&mut more).unwrap_err()),
                    SourceError::Gone(_)
                ));
            }
            drop(reader);
            let other = entry(&listing, "DCIM/Camera/PXL_20240315_143022123.jpg").clone();
            assert!(matches!(
                read_all(&mut source, &other, 0),
                Err(SourceError::Gone(_))
            ));
            assert!(matches!(source.list(), Err(SourceError::Gone(_))));
        }
    }

    #[test]
    fn wedge_is_recovered_and_the_file_completes() {
        let _lock = serial_lock();
        let phone = Phone::new(
            "wedge-1",
            Faults {
                wedge_at_read: Some(4),
                ..Faults::default()
            },
        );
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        let clip = entry(&listing, "Movies/clip.mp4").clone();
        let data = read_all(&mut source, &clip, 0).unwrap();
        assert_eq!(hash(&data), file_hash(&phone.file("Movies/clip.mp4")));
        let c = phone.counters();
        assert_eq!(c.sessions, 2, "the phone was reopened once: {c:?}");
        // Resumed where it stopped: 10 windows plus the one that failed.
        assert_eq!(c.reads, 11, "{c:?}");
        assert_eq!(c.bytes, clip.size);
    }

    #[test]
    fn a_silent_phone_fails_the_file_within_the_timeout_and_recovers() {
        let _lock = serial_lock();
        let phone = Phone::new(
            "hang-1",
            Faults {
                hang_at_read: Some(2),
                ..Faults::default()
            },
        );
        let timeout = Duration::from_millis(500);
        let mut source = phone.connect(&AndroidOptions { timeout, ..opts() });
        let listing = source.list().unwrap();
        let clip = entry(&listing, "Movies/clip.mp4").clone();
        let started = Instant::now();
        let result = read_all(&mut source, &clip, 0);
        let took = started.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(2),
            "{took:?}"
        );
        match result {
            Err(SourceError::File(m)) => {
                assert!(m.contains("did not answer for 0.5 s"), "{m}");
                assert!(m.contains("Movies/clip.mp4"), "{m}");
            }
            other => panic!("expected a File error, got {:?}", other.map(|d| d.len())),
        }
        // The source reopens the phone and carries on.
        let data = read_all(&mut source, &clip, 0).unwrap();
        assert_eq!(hash(&data), file_hash(&phone.file("Movies/clip.mp4")));
        assert!(source.list().is_ok());
        assert_eq!(phone.counters().sessions, 2);
    }

    #[test]
    fn an_unreadable_object_is_reported_and_the_rest_listed() {
        let _lock = serial_lock();
        let bad = "DCIM/Camera/PXL_20240316_101500456.MP.jpg";
        let phone = Phone::new(
            "unreadable-1",
            Faults {
                unreadable: vec![bad.into()],
                ..Faults::default()
            },
        );
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        assert_eq!(listing.unreadable.len(), 1, "{:?}", listing.unreadable);
        assert!(listing.unreadable[0]
            .path
            .starts_with("Internal shared storage/DCIM/Camera/(object #"));
        assert!(!listing.entries.iter().any(|e| e.path.ends_with(bad)));
        entry(&listing, "DCIM/Camera/PXL_20240315_143022123.jpg");
        assert_eq!(listing.entries.len(), 4);
        // Asked for anyway (a listing from before it broke): that file fails, alone.
        let e = Entry::new(format!("{STORAGE}/{bad}"), 700_000, 0);
        match read_all(&mut source, &e, 0) {
            Err(SourceError::File(m)) => assert!(m.contains(bad), "{m}"),
            other => panic!("expected a File error, got {:?}", other.map(|d| d.len())),
        }
        let good = entry(&listing, "DCIM/Camera/PXL_20240315_143022123.jpg").clone();
        assert!(read_all(&mut source, &good, 0).is_ok());
    }

    #[test]
    fn blocked_states_say_what_to_do() {
        let busy = blocking_error("Pixel 9", &CallError::Device(MtpError::ExclusiveAccess));
        let SourceError::Blocked(m) = busy else {
            panic!("exclusive access is Blocked")
        };
        for holder in ["gvfs", "kiod", "Android File Transfer", "another offload"] {
            assert!(
                m.to_lowercase().contains(&holder.to_lowercase()),
                "{holder}: {m}"
            );
        }
        let denied = blocking_error("Pixel 9", &CallError::Device(MtpError::PermissionDenied));
        assert!(matches!(denied, SourceError::Blocked(m) if m.contains("scripts/install-udev.sh")));
        let silent = blocking_error("Pixel 9", &CallError::TimedOut(Duration::from_secs(30)));
        assert!(
            matches!(silent, SourceError::Blocked(m) if m.contains("30 s") && m.contains(UNLOCK_MESSAGE))
        );
        let gone = blocking_error("Pixel 9", &CallError::Device(MtpError::Disconnected));
        assert!(matches!(gone, SourceError::Gone(m) if m == GONE_MESSAGE));
    }

    fn read_listed(source: &mut AndroidSource, entry: &Entry) -> Result<Vec<u8>, SourceError> {
        let deleter = source.deleter().expect("an Android phone deletes");
        let mut reader = deleter.open_listed(entry)?;
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .map_err(SourceError::from_io)?;
        Ok(data)
    }

    fn delete(source: &mut AndroidSource, entry: &Entry) -> Result<(), SourceError> {
        source
            .deleter()
            .expect("an Android phone deletes")
            .delete(entry)
    }

    #[test]
    fn reads_and_deletes_the_listed_object_only() {
        let _lock = serial_lock();
        let phone = Phone::new("exact-1", Faults::default());
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        let rel = "DCIM/Camera/PXL_20240315_143022123.jpg";
        let e = entry(&listing, rel).clone();
        assert!(e.object.is_some_and(|o| !o.ambiguous));
        let data = read_listed(&mut source, &e).unwrap();
        assert_eq!(hash(&data), file_hash(&phone.file(rel)));

        // Named by its path alone: refused.
        let bare = Entry::new(e.path.clone(), e.size, e.mtime);
        assert!(matches!(
            read_listed(&mut source, &bare),
            Err(SourceError::File(_))
        ));
        assert!(matches!(
            delete(&mut source, &bare),
            Err(SourceError::File(_))
        ));
        // From another source's session: refused.
        let mut other = phone.connect(&opts());
        assert!(matches!(delete(&mut other, &e), Err(SourceError::File(_))));
        drop(other);
        assert!(phone.file(rel).exists());

        delete(&mut source, &e).unwrap();
        assert!(!phone.file(rel).exists());
        // Deleted once; asked again, the phone no longer knows it.
        assert!(matches!(delete(&mut source, &e), Err(SourceError::File(_))));
    }

    #[test]
    fn a_listed_object_is_not_deleted_after_a_reopen_or_a_rekey() {
        let _lock = serial_lock();
        let phone = Phone::new("exact-2", Faults::default());
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        let rel = "DCIM/Camera/PXL_20240315_143022123.jpg";
        let e = entry(&listing, rel).clone();
        // Re-keyed by the phone's media scanner: the handle checked is no longer it.
        mtp_rs::virtual_device::rekey_virtual_object(&phone.serial, Path::new(rel)).unwrap();
        match delete(&mut source, &e) {
            Err(SourceError::File(m)) => assert!(m.contains("nothing was deleted"), "{m}"),
            other => panic!("expected a File error, got {other:?}"),
        }
        assert!(phone.file(rel).exists());
        // Reopened: every entry of the earlier listing is refused.
        let other = entry(&listing, "Movies/clip.mp4").clone();
        source
            .runtime
            .block_on(
                source
                    .inner
                    .recover(&CallError::Device(MtpError::DeviceReset)),
            )
            .unwrap();
        match delete(&mut source, &other) {
            Err(SourceError::File(m)) => assert!(m.contains("reopened"), "{m}"),
            other => panic!("expected a File error, got {other:?}"),
        }
        assert!(phone.file("Movies/clip.mp4").exists());
        // Listed again, it is deleted.
        let listing = source.list().unwrap();
        delete(&mut source, entry(&listing, "Movies/clip.mp4")).unwrap();
        assert!(!phone.file("Movies/clip.mp4").exists());
    }

    #[test]
    fn names_the_phone_shows_as_one_are_marked_ambiguous() {
        let _lock = serial_lock();
        let phone = Phone::new("twins-1", Faults::default());
        let camera = phone.file("DCIM/Camera");
        use std::os::unix::ffi::OsStrExt;
        for name in [&b"IMG_\xff.jpg"[..], b"IMG_\xfe.jpg"] {
            std::fs::write(camera.join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
        }
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        let twin = entry(&listing, "DCIM/Camera/IMG_\u{fffd}.jpg");
        assert!(twin.object.is_some_and(|o| o.ambiguous), "{twin:?}");
        assert_eq!(listing.unreadable.len(), 1, "{:?}", listing.unreadable);
        let plain = entry(&listing, "DCIM/Camera/PXL_20240315_143022123.jpg");
        assert!(plain.object.is_some_and(|o| !o.ambiguous));
    }

    #[test]
    fn a_rekeyed_handle_is_looked_up_again() {
        let _lock = serial_lock();
        let phone = Phone::new("rekey-1", Faults::default());
        let mut source = phone.connect(&opts());
        let listing = source.list().unwrap();
        let rel = "DCIM/Camera/PXL_20240315_143022123.jpg";
        // Android's media scanner re-keys objects under a host that cached handles.
        mtp_rs::virtual_device::rekey_virtual_object(&phone.serial, Path::new(rel)).unwrap();
        let data = read_all(&mut source, entry(&listing, rel), 0).unwrap();
        assert_eq!(hash(&data), file_hash(&phone.file(rel)));
        assert_eq!(phone.counters().sessions, 1, "no reopen needed");
    }
}
