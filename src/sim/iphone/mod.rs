//! The virtual iPhone: a usbmuxd with one attached device, that device's lockdownd and
//! its AFC service, all served on one TCP address and backed by a directory.
//!
//! It speaks the wire protocols as real devices and the real usbmuxd do (see
//! `notes/iphone-protocol.md`), so that idevice, libimobiledevice and pymobiledevice3 can
//! all talk to it: point them at it with `USBMUXD_SOCKET_ADDRESS=127.0.0.1:PORT`.
//!
//! Run it as `offload sim iphone --dir DIR --listen 127.0.0.1:0`, or in-process with
//! [`start`] (tests).

// The in-process API (`IphoneArgs::new`, `RunningSim::stats`...) serves the tests and the
// demo, which is wired in separately.

mod afc;
mod crypto;
pub mod library;
mod lockdown;
mod usbmux;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// How the phone stands towards the host at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TrustState {
    /// A pair record exists in usbmuxd and the phone trusts it.
    Trusted,
    /// No pair record: pairing shows the Trust dialog (answers pending, then succeeds).
    Untrusted,
    /// Trusted, but locked after a reboot: sessions and pairing are refused until unlocked.
    Locked,
}

/// What to do with the served folder's Photos library at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PhotosDb {
    /// Write `PhotoData/Photos.sqlite` (+ `-wal`, `-shm`) for the files in DCIM and the
    /// manifest `photos-manifest.json` beside them, replacing what is there.
    Generate,
    /// Serve `PhotoData/` as it is (none, a damaged one, one from elsewhere).
    Keep,
}

/// Options of `offload sim iphone` (also the in-process configuration).
#[derive(Clone, Debug, Args)]
pub struct IphoneArgs {
    /// Folder served as the phone's media root (`/private/var/mobile/Media`): `DCIM/...`.
    #[arg(long)]
    pub dir: PathBuf,
    /// TCP address of the virtual usbmuxd (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, value_enum, default_value = "trusted")]
    pub state: TrustState,
    /// Untrusted: Pair answers PairingDialogResponsePending this many times, then succeeds.
    #[arg(long, default_value_t = 2)]
    pub trust_after: u32,
    /// Pair answers UserDeniedPairing (the user tapped "Don't Trust").
    #[arg(long)]
    pub deny_trust: bool,
    /// Keeps the device key, the device's trusted hosts and usbmuxd's pair records here,
    /// so that a second run remembers a pairing.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Device UDID (a 25-character dashed one by default).
    #[arg(long, default_value = "00008030-001A2D3A3E88802E")]
    pub udid: String,
    #[arg(long, default_value = "Virtual iPhone")]
    pub name: String,
    #[arg(long, default_value = "iPhone12,1")]
    pub product_type: String,
    #[arg(long, default_value = "17.5.1")]
    pub ios_version: String,
    /// The Photos library: generated for DCIM and the manifest, or kept as it is.
    #[arg(long, value_enum, default_value = "generate")]
    pub photos_db: PhotosDb,
    /// Fault: after this many AFC file bytes served in total, the phone is unplugged.
    #[arg(long)]
    pub unplug_after_bytes: Option<u64>,
    /// Fault: once this many AFC file bytes were served, one AFC connection drops.
    #[arg(long)]
    pub drop_connection_after_bytes: Option<u64>,
    /// Fault: reading this AFC path (e.g. `/DCIM/100APPLE/IMG_0002.HEIC`) fails.
    #[arg(long)]
    pub unreadable: Vec<String>,
    /// Fault: serve file data at this many kilobytes (1000 bytes) per second.
    #[arg(long)]
    pub slow_kbps: Option<u64>,
    /// Fault: a lying device: `AFC_PATH:+N` (or `:-N`) reports that file's size N bytes
    /// larger (smaller) than the bytes it serves. May be repeated.
    #[arg(long)]
    pub lie_size: Vec<String>,
    /// Keeps `{"file_opens", "bytes_served", "pairs", "sessions"}` here, rewritten atomically.
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// A lying device: a JSON object `{"AFC path as listed": "file under DIR"}` of extra
    /// entries whose names the file system could not hold (`..`, `/`, 300 bytes...).
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Same as `--overlay`, in-process.
    #[arg(skip)]
    pub overlay_entries: Vec<(String, String)>,
}

impl IphoneArgs {
    /// Defaults for serving `dir` on a free local port, trusted.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IphoneArgs {
            dir: dir.into(),
            listen: "127.0.0.1:0".parse().expect("valid address"),
            state: TrustState::Trusted,
            trust_after: 2,
            deny_trust: false,
            state_dir: None,
            udid: "00008030-001A2D3A3E88802E".into(),
            name: "Virtual iPhone".into(),
            product_type: "iPhone12,1".into(),
            ios_version: "17.5.1".into(),
            photos_db: PhotosDb::Generate,
            unplug_after_bytes: None,
            drop_connection_after_bytes: None,
            unreadable: Vec::new(),
            slow_kbps: None,
            lie_size: Vec::new(),
            stats: None,
            overlay: None,
            overlay_entries: Vec::new(),
        }
    }
}

/// Counters that tests read to prove what a client did. `file_opens` and
/// `bytes_served` count the camera roll's files (what a backup copies); reads of the
/// Photos library under `/PhotoData` are counted apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub file_opens: u64,
    pub bytes_served: u64,
    pub pairs: u64,
    pub sessions: u64,
    pub library_opens: u64,
    pub library_bytes: u64,
}

/// `offload sim iphone`: serves until the process is stopped.
pub fn run(args: IphoneArgs) -> Result<crate::error::Exit> {
    let sim = start(args)?;
    outln!("listening on {} udid={}", sim.addr, sim.udid);
    std::io::stdout().flush()?;
    // Serving happens on the simulator's own thread; SIGINT/SIGTERM end the process
    // (everything worth keeping was written when it changed).
    loop {
        std::thread::park();
    }
}

/// A virtual iPhone running on its own thread. Dropping it stops it.
pub struct RunningSim {
    /// Where its usbmuxd listens: set `USBMUXD_SOCKET_ADDRESS` to this.
    pub addr: SocketAddr,
    pub udid: String,
    // Read by the tests' accessors below.
    #[cfg_attr(not(test), allow(dead_code))]
    device: Arc<Device>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
impl RunningSim {
    pub fn stats(&self) -> Stats {
        self.device.lock().stats
    }
    /// Unplugs the phone now (as `--unplug-after-bytes` does).
    pub fn unplug(&self) {
        self.device.detach();
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a virtual iPhone: binds, prepares keys and records, and serves on a new thread.
pub fn start(args: IphoneArgs) -> Result<RunningSim> {
    let device = Arc::new(Device::new(args)?);
    let listener = std::net::TcpListener::bind(device.cfg.listen)
        .with_context(|| format!("listening on {}", device.cfg.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let dev = device.clone();
    let thread = std::thread::Builder::new()
        .name("sim-iphone".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = usbmux::serve(dev, listener) => {}
                    _ = stop_rx => {}
                }
            });
            rt.shutdown_background();
        })?;
    Ok(RunningSim {
        addr,
        udid: device.udid.clone(),
        device,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// What the phone knows about one host it trusts.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct TrustedHost {
    host_cert_der: Vec<u8>,
    root_cert_der: Vec<u8>,
    device_cert_der: Vec<u8>,
}

/// Attach/detach notifications for usbmuxd `Listen` clients.
#[derive(Clone, Copy, Debug)]
enum Event {
    Detached,
}

/// The one virtual device, shared by all connections.
struct Device {
    cfg: IphoneArgs,
    udid: String,
    buid: String,
    wifi_mac: String,
    /// Canonical media root.
    root: PathBuf,
    device_key_pkcs8: Vec<u8>,
    device_public_pem: String,
    /// AFC paths (with leading `/`) → files under `root`.
    overlay: Vec<(String, PathBuf)>,
    /// AFC paths (with leading `/`) listed but refused on open: iCloud placeholders.
    placeholders: HashSet<String>,
    /// `--lie-size`: AFC paths and how far off their reported size is.
    lies: Vec<(String, i64)>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    attached: watch::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    /// usbmuxd's pair records, by UDID.
    records: HashMap<String, Vec<u8>>,
    /// The device's trusted hosts, by HostID.
    trusted: HashMap<String, TrustedHost>,
    pair_attempts: u32,
    stats: Stats,
    afc_ports: HashSet<u16>,
    next_port: u16,
    next_fd: u64,
    dropped_once: bool,
}

const DEVICE_ID: u64 = 1;
const LOCKDOWN_PORT: u16 = 62078;

impl Device {
    fn new(cfg: IphoneArgs) -> Result<Device> {
        let root = cfg
            .dir
            .canonicalize()
            .with_context(|| format!("opening {}", cfg.dir.display()))?;
        if !root.is_dir() {
            bail!("{} is not a directory", root.display());
        }
        let udid = cfg.udid.clone();
        let buid = crypto::uuid_from(&format!("buid:{udid}"));
        let wifi_mac = {
            let h = crypto::uuid_from(&format!("mac:{udid}"))
                .to_lowercase()
                .replace('-', "");
            let hex: Vec<&str> = (0..6).map(|i| &h[i * 2..i * 2 + 2]).collect();
            hex.join(":")
        };
        if let Some(dir) = &cfg.state_dir {
            private_dir(dir)?;
        }
        // The device key lives as long as the state directory, so that certificates issued
        // for it in an earlier run still match.
        let key_path = cfg.state_dir.as_ref().map(|d| d.join("device-key.pem"));
        let device_key = match key_path.as_ref().filter(|p| p.exists()) {
            Some(p) => crypto::private_key_from_pem(&std::fs::read_to_string(p)?)?,
            None => {
                let k = crypto::new_rsa_key()?;
                if let Some(p) = &key_path {
                    write_atomic(p, crypto::private_key_pem(&k)?.as_bytes())?;
                }
                k
            }
        };
        let mut inner = Inner {
            next_port: 49152,
            next_fd: 1,
            ..Default::default()
        };
        if let Some(dir) = &cfg.state_dir {
            let rec = dir.join(format!("{udid}.plist"));
            if let Ok(bytes) = std::fs::read(&rec) {
                inner.records.insert(udid.clone(), bytes);
            }
            if let Ok(text) = std::fs::read_to_string(dir.join("device-trust.json")) {
                inner.trusted = serde_json::from_str(&text).unwrap_or_default();
            }
        }
        let trusted_from_start = matches!(cfg.state, TrustState::Trusted | TrustState::Locked);
        if trusted_from_start && !inner.records.contains_key(&udid) {
            let g = crypto::generate_pair_record(&device_key, &udid, &buid, &wifi_mac)?;
            inner.trusted.insert(
                g.host_id.clone(),
                TrustedHost {
                    host_cert_der: g.host_cert_der,
                    root_cert_der: g.root_cert_der,
                    device_cert_der: g.device_cert_der,
                },
            );
            inner.records.insert(udid.clone(), g.record);
        }
        let mut overlay_src = cfg.overlay_entries.clone();
        if let Some(p) = &cfg.overlay {
            let map: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&std::fs::read_to_string(p)?)
                    .with_context(|| format!("reading {}", p.display()))?;
            overlay_src.extend(map);
        }
        let mut overlay = Vec::new();
        for (afc, file) in overlay_src {
            let real = root.join(&file).canonicalize()?;
            if !real.starts_with(&root) || !real.is_file() {
                bail!(
                    "overlay file {file} is not a file inside {}",
                    root.display()
                );
            }
            let afc = if afc.starts_with('/') {
                afc
            } else {
                format!("/{afc}")
            };
            overlay.push((afc, real));
        }
        let placeholders = match cfg.photos_db {
            PhotosDb::Generate => library::generate(&root, &cfg.ios_version)
                .with_context(|| format!("generating the Photos library of {}", root.display()))?
                .placeholders
                .into_iter()
                .collect(),
            PhotosDb::Keep => library::placeholders(&root)?.into_iter().collect(),
        };
        let mut lies = Vec::new();
        for spec in &cfg.lie_size {
            let parsed = spec.rsplit_once(':').and_then(|(path, delta)| {
                let delta: i64 = delta.strip_prefix('+').unwrap_or(delta).parse().ok()?;
                Some((path.to_string(), delta))
            });
            match parsed {
                Some(lie) => lies.push(lie),
                None => bail!("--lie-size {spec}: expected AFC_PATH:+N or AFC_PATH:-N"),
            }
        }
        let (events, _) = broadcast::channel(16);
        let (attached, _) = watch::channel(true);
        let device = Device {
            device_key_pkcs8: crypto::private_key_pkcs8_der(&device_key)?,
            device_public_pem: crypto::public_key_pem(&device_key)?,
            cfg,
            udid,
            buid,
            wifi_mac,
            root,
            overlay,
            placeholders,
            lies,
            inner: Mutex::new(inner),
            events,
            attached,
        };
        device.persist(&device.lock());
        device.write_stats(&device.lock().stats);
        Ok(device)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_attached(&self) -> bool {
        *self.attached.borrow()
    }

    /// Unplugs: every device connection closes, listeners hear Detached, the device list
    /// is empty from now on.
    fn detach(&self) {
        if self.attached.send_replace(false) {
            let _ = self.events.send(Event::Detached);
        }
    }

    /// Changes the counters and rewrites the stats file.
    fn count(&self, f: impl FnOnce(&mut Stats)) {
        let mut inner = self.lock();
        f(&mut inner.stats);
        // Written under the lock so that concurrent connections never interleave writes.
        self.write_stats(&inner.stats);
    }

    fn write_stats(&self, stats: &Stats) {
        if let Some(path) = &self.cfg.stats {
            let _ = write_atomic(path, &serde_json::to_vec(stats).unwrap_or_default());
        }
    }

    /// Saves records and trusted hosts under the state directory, if any.
    fn persist(&self, inner: &Inner) {
        let Some(dir) = &self.cfg.state_dir else {
            return;
        };
        for (udid, rec) in &inner.records {
            let _ = write_atomic(&dir.join(format!("{udid}.plist")), rec);
        }
        if let Ok(json) = serde_json::to_vec(&inner.trusted) {
            let _ = write_atomic(&dir.join("device-trust.json"), &json);
        }
    }

    fn delete_record(&self, udid: &str) -> bool {
        let mut inner = self.lock();
        let had = inner.records.remove(udid).is_some();
        if let Some(dir) = &self.cfg.state_dir {
            let _ = std::fs::remove_file(dir.join(format!("{udid}.plist")));
        }
        had
    }
}

/// Creates `dir` and any missing parents readable by the owner only (0700): it holds
/// private keys. A folder that exists already is left as it is.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Replaces `path` with a new file holding `bytes`, readable by the owner only (0600)
/// from its creation: the state files hold private keys (the device key, the host key
/// in usbmuxd's pair records).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}
