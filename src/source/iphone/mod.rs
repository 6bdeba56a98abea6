//! iPhones over usbmuxd → lockdownd → AFC, through the `idevice` crate.
//!
//! [`discover`] asks usbmuxd which iPhones are plugged in and, for each, either opens an
//! [`IphoneSource`] (pairing first if needed, which shows "Trust This Computer?" on the
//! phone) or reports why it cannot be read ([`Unreadable`]: locked, needs trust, trust
//! denied). The source lists `/DCIM` over AFC and streams files in 1–4 MiB round trips,
//! reconnecting and resuming by itself when the connection drops mid-file.
//!
//! Everything is blocking: each source owns a small tokio runtime and `block_on`s it.

pub mod photos_db;

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use idevice::afc::opcode::AfcOpcode;
use idevice::afc::AfcClient;
use idevice::lockdown::LockdownClient;
use idevice::pairing_file::PairingFile;
use idevice::usbmuxd::{Connection, UsbmuxdAddr, UsbmuxdDevice};
use idevice::{Idevice, IdeviceError};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::{
    skip_reason, DeviceInfo, Entry, FileRead, Listing, Skipped, Source, SourceError, SourceKind,
    StorageInfo,
};

/// Shown when usbmuxd cannot be reached.
pub const USBMUXD_NOT_RUNNING: &str = "usbmuxd is not running: install it (Debian: apt install usbmuxd) or start it (systemctl start usbmuxd)";
/// Shown while waiting for the user to answer the Trust dialog.
pub const TRUST_PROMPT: &str = "Tap 'Trust' on your iPhone and enter its passcode";
/// The phone is locked (or restarted and not unlocked since).
pub const UNLOCK: &str =
    "Unlock your iPhone (enter its passcode) and keep it unlocked, then run offload again";
/// The user answered "Don't Trust".
pub const TRUST_DENIED: &str =
    "You chose 'Don't Trust'. Unplug and plug in again to be asked again";
/// The Trust dialog was not answered in time.
pub const TRUST_TIMEOUT: &str = "Your iPhone did not answer 'Trust This Computer?' in time: unlock it, tap 'Trust', enter its passcode, then run offload again";
/// The phone went away during the run.
pub const GONE: &str = "Phone disconnected: plug it back in and run offload again.";

const LOCKDOWN_PORT: u16 = 62078;
const AFC_SERVICE: &str = "com.apple.afc";
const LABEL: &str = "offload";
/// Deeper than any camera roll; stops a device that lists a directory inside itself.
const MAX_DEPTH: usize = 16;

/// Knobs for discovery and reading. `Default` is what the CLI uses.
#[derive(Clone, Debug)]
pub struct Options {
    /// usbmuxd address, in `USBMUXD_SOCKET_ADDRESS` syntax (`host:port` is TCP, anything
    /// else a Unix socket path). `None`: that variable, else the platform default.
    pub usbmuxd: Option<String>,
    /// How long to wait for the user to answer the Trust dialog. Zero: ask once and report
    /// [`IphoneState::NeedsTrust`] if the dialog is up.
    pub trust_timeout: Duration,
    /// How often to ask again while the Trust dialog is up.
    pub poll_interval: Duration,
    /// Limit on each round trip to the phone; a phone that stays silent longer is treated
    /// as a dropped connection.
    pub io_timeout: Duration,
    /// Bytes per AFC Read round trip (clamped to 1–4 MiB).
    pub read_chunk: usize,
    /// Reconnections tried per read before giving up on the phone.
    pub reconnect_attempts: u32,
    /// Print the Trust prompt on stderr (once) while waiting.
    pub show_prompts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            usbmuxd: None,
            trust_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            io_timeout: Duration::from_secs(30),
            read_chunk: 4 << 20,
            reconnect_attempts: 3,
            show_prompts: true,
        }
    }
}

/// Why a connected iPhone cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IphoneState {
    /// Locked with a passcode, or restarted and not unlocked since.
    Locked,
    /// "Trust This Computer?" was not answered (in time).
    NeedsTrust,
    /// The user tapped "Don't Trust".
    TrustDenied,
    /// Something else failed talking to it (the message says what).
    Failed,
}

/// An iPhone that is plugged in but cannot be read until the user acts.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub udid: String,
    pub state: IphoneState,
    /// What to do, for the user.
    pub message: String,
}

impl From<Unreadable> for SourceError {
    fn from(u: Unreadable) -> Self {
        SourceError::Blocked(u.message)
    }
}

/// usbmuxd could not be reached (not installed, not running, wrong address).
#[derive(Clone, Debug)]
pub struct NoUsbmuxd {
    /// [`USBMUXD_NOT_RUNNING`], plus the address tried.
    pub message: String,
}

impl From<NoUsbmuxd> for SourceError {
    fn from(e: NoUsbmuxd) -> Self {
        SourceError::Blocked(e.message)
    }
}

/// Finds the iPhones plugged in over USB and opens each: reads its pair record from
/// usbmuxd (pairing and saving a new one if there is none, waiting up to
/// `opts.trust_timeout` for the user), starts a lockdown session and the AFC service.
///
/// Errors: [`NoUsbmuxd`] when usbmuxd cannot be reached. Each phone that cannot be read
/// comes back as an [`Unreadable`] saying why; Wi-Fi-attached phones are ignored.
#[cfg_attr(not(test), allow(dead_code))]
pub fn discover_with(opts: &Options) -> Result<Vec<Result<IphoneSource, Unreadable>>, NoUsbmuxd> {
    discover_only(opts, None)
}

/// [`discover_with`], opening only the iPhone with this UDID when one is given (the
/// others are not even asked to trust this computer).
pub fn discover_only(
    opts: &Options,
    udid: Option<&str>,
) -> Result<Vec<Result<IphoneSource, Unreadable>>, NoUsbmuxd> {
    let addr = usbmuxd_addr(opts)?;
    let no_usbmuxd = |e: String| NoUsbmuxd {
        message: format!("{USBMUXD_NOT_RUNNING} ({}: {e})", describe(&addr)),
    };
    let devices = {
        let rt = runtime().map_err(|e| no_usbmuxd(e.to_string()))?;
        rt.block_on(list_usb_devices(&addr, opts.io_timeout))
            .map_err(no_usbmuxd)?
    };
    Ok(devices
        .into_iter()
        .filter(|d| udid.is_none_or(|u| d.udid.eq_ignore_ascii_case(u)))
        .map(|d| IphoneSource::open(addr.clone(), d, opts.clone()))
        .collect())
}

/// An iPhone usbmuxd says is plugged in, and whether usbmuxd holds a pair record for it
/// (without one, the phone must be trusted first).
#[derive(Clone, Debug, Serialize)]
pub struct Plugged {
    pub udid: String,
    pub paired: bool,
}

/// The iPhones plugged in over USB, and for each whether it is paired (usbmuxd
/// ReadPairRecord). Opens nothing on the phones. Returns the usbmuxd address tried too.
///
/// Errors: [`NoUsbmuxd`] when usbmuxd cannot be reached.
pub fn plugged(opts: &Options) -> Result<(String, Vec<Plugged>), NoUsbmuxd> {
    let addr = usbmuxd_addr(opts)?;
    let where_ = describe(&addr);
    let no_usbmuxd = |e: String| NoUsbmuxd {
        message: format!("{USBMUXD_NOT_RUNNING} ({where_}: {e})"),
    };
    let rt = runtime().map_err(|e| no_usbmuxd(e.to_string()))?;
    let devices = rt
        .block_on(list_usb_devices(&addr, opts.io_timeout))
        .map_err(no_usbmuxd)?;
    let mut out = Vec::new();
    for d in devices {
        let paired = rt.block_on(async {
            let fut = async {
                let mut mux = addr.connect(1).await?;
                mux.get_pair_record(&d.udid).await
            };
            matches!(tokio::time::timeout(opts.io_timeout, fut).await, Ok(Ok(_)))
        });
        out.push(Plugged {
            udid: d.udid,
            paired,
        });
    }
    Ok((where_, out))
}

/// What usbmuxd's Listen reports.
#[derive(Clone, Debug)]
pub enum Plug {
    /// Listening: usbmuxd answered at this address.
    Listening(String),
    /// An iPhone was plugged in over USB (usbmuxd's own id for it, and its UDID).
    Attached { mux_id: u32, udid: String },
    /// The iPhone with this usbmuxd id went away.
    Detached { mux_id: u32 },
}

/// Listens to usbmuxd for iPhones plugged in and out, calling `on` for each event,
/// until the connection ends (usbmuxd stopped) or `on` returns false. usbmuxd first
/// reports every iPhone already plugged in. Blocking.
///
/// Errors: [`NoUsbmuxd`] when usbmuxd cannot be reached or the connection breaks; the
/// caller retries later, and must treat every iPhone as gone.
pub fn listen(opts: &Options, on: &mut dyn FnMut(Plug) -> bool) -> Result<(), NoUsbmuxd> {
    use idevice::usbmuxd::UsbmuxdListenEvent;

    let addr = usbmuxd_addr(opts)?;
    let where_ = describe(&addr);
    let no_usbmuxd = |e: String| NoUsbmuxd {
        message: format!("{USBMUXD_NOT_RUNNING} ({where_}: {e})"),
    };
    let rt = runtime().map_err(|e| no_usbmuxd(e.to_string()))?;
    rt.block_on(async {
        let mut mux = tokio::time::timeout(opts.io_timeout, addr.connect(2))
            .await
            .map_err(|_| no_usbmuxd("no answer".into()))?
            .map_err(|e| no_usbmuxd(e.to_string()))?;
        let mut stream = tokio::time::timeout(opts.io_timeout, mux.listen())
            .await
            .map_err(|_| no_usbmuxd("no answer".into()))?
            .map_err(|e| no_usbmuxd(e.to_string()))?;
        if !on(Plug::Listening(where_.clone())) {
            return Ok(());
        }
        loop {
            let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
            let go_on = match next {
                None => return Err(no_usbmuxd("usbmuxd closed the connection".into())),
                Some(Err(e)) => return Err(no_usbmuxd(e.to_string())),
                Some(Ok(UsbmuxdListenEvent::Connected(d))) => {
                    if d.connection_type != Connection::Usb {
                        continue;
                    }
                    on(Plug::Attached {
                        mux_id: d.device_id,
                        udid: d.udid,
                    })
                }
                Some(Ok(UsbmuxdListenEvent::Disconnected(id))) => on(Plug::Detached { mux_id: id }),
            };
            if !go_on {
                return Ok(());
            }
        }
    })
}

/// One iPhone, paired and connected, reading its camera roll over AFC.
pub struct IphoneSource {
    info: DeviceInfo,
    // Declared before `rt`: the connection's sockets belong to the runtime and are
    // dropped first.
    conn: Conn,
    rt: Runtime,
}

impl std::fmt::Debug for IphoneSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IphoneSource")
            .field("info", &self.info)
            .finish()
    }
}

impl IphoneSource {
    fn open(addr: UsbmuxdAddr, device: UsbmuxdDevice, opts: Options) -> Result<Self, Unreadable> {
        let udid = device.udid.clone();
        let fail = |m: String| Unreadable {
            udid: udid.clone(),
            state: IphoneState::Failed,
            message: m,
        };
        let rt = runtime().map_err(|e| fail(e.to_string()))?;
        let mut conn = Conn {
            addr,
            device,
            pairing: None,
            opts,
            afc: None,
        };
        let (values, storage) = rt.block_on(async {
            let pairing = conn.pairing().await?;
            let (values, afc) = conn.connect(&pairing, true).await?;
            conn.pairing = Some(pairing);
            conn.afc = Some(afc);
            let io = conn.opts.io_timeout;
            let di = timed(io, conn.afc.as_mut().expect("just set").get_device_info())
                .await
                .map_err(|e| e.into_unreadable(&udid))?;
            Ok::<_, Unreadable>((values, di))
        })?;
        let s = |k: &str| {
            values
                .get(k)
                .and_then(|v| v.as_string())
                .map(str::to_string)
        };
        let info = DeviceInfo {
            id: format!("iphone:{udid}"),
            kind: SourceKind::Iphone,
            name: s("DeviceName").unwrap_or_else(|| "iPhone".into()),
            manufacturer: Some("Apple".into()),
            // "iPhone12,1, iOS 17.5.1": the version matters when a phone misbehaves.
            model: match (s("ProductType"), s("ProductVersion")) {
                (Some(t), Some(v)) => Some(format!("{t}, iOS {v}")),
                (t, _) => t,
            },
            serial: s("SerialNumber"),
            storages: vec![StorageInfo {
                description: "iPhone storage".into(),
                capacity_bytes: storage.total_bytes as u64,
                free_bytes: storage.free_bytes as u64,
            }],
            warnings: Vec::new(),
        };
        Ok(IphoneSource { info, conn, rt })
    }
}

impl Source for IphoneSource {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Lists `/DCIM` recursively (the originals; `PhotoData` holds no originals). Paths
    /// are the AFC paths without the leading slash, verbatim from the device. Then the
    /// Photos library adds what it knows (see [`photos_db`]).
    fn list(&mut self) -> Result<Listing, SourceError> {
        let mut attempt = 0;
        loop {
            match self.rt.block_on(self.conn.list()) {
                Ok(mut l) => {
                    self.read_photos_library(&mut l)?;
                    return Ok(l);
                }
                Err(PhoneError::Conn(e)) => {
                    attempt += 1;
                    self.conn.afc = None;
                    if attempt > self.conn.opts.reconnect_attempts
                        || !self.rt.block_on(self.conn.present())
                    {
                        tracing::debug!("iPhone lost while listing: {e}");
                        return Err(SourceError::Gone(GONE.into()));
                    }
                }
                Err(e) => return Err(e.into_source_error()),
            }
        }
    }

    /// Opens the file over AFC (read-only) and positions it at `offset`. The reader reads
    /// `Options::read_chunk` bytes per round trip, each under `io_timeout`; after a dropped
    /// connection it reconnects, reopens, seeks and goes on; when the phone is gone its
    /// error carries [`SourceError::Gone`]. The file is closed when the reader is dropped.
    fn open<'a>(
        &'a mut self,
        entry: &Entry,
        offset: u64,
    ) -> Result<Box<dyn FileRead + 'a>, SourceError> {
        let mut reader = AfcReader {
            rt: &self.rt,
            conn: &mut self.conn,
            path: format!("/{}", entry.path),
            fd: None,
            pos: offset,
            buf: Vec::new(),
            at: 0,
            eof: false,
        };
        let rt = reader.rt;
        rt.block_on(reader.with_retry(false))?;
        Ok(Box::new(reader))
    }
}

/// A failure talking to the phone, by what can be done about it.
#[derive(Debug)]
enum PhoneError {
    /// The connection broke or timed out: reconnecting may help.
    Conn(String),
    /// AFC refused this operation (no such file, read error...): this file only.
    Afc(String),
    /// The phone needs the user (locked, trust).
    User(IphoneState, String),
    /// The phone does not know our pair record's HostID any more (trust was reset).
    Forgotten,
    /// Anything else the phone or usbmuxd answered that makes no sense.
    Other(String),
}

impl PhoneError {
    fn from_idevice(e: IdeviceError) -> PhoneError {
        match e {
            IdeviceError::Afc(a) => PhoneError::Afc(a.to_string()),
            IdeviceError::PasswordProtected | IdeviceError::DeviceLocked => {
                PhoneError::User(IphoneState::Locked, UNLOCK.into())
            }
            IdeviceError::UserDeniedPairing => {
                PhoneError::User(IphoneState::TrustDenied, TRUST_DENIED.into())
            }
            IdeviceError::PairingDialogResponsePending => {
                PhoneError::User(IphoneState::NeedsTrust, TRUST_TIMEOUT.into())
            }
            IdeviceError::InvalidHostID => PhoneError::Forgotten,
            IdeviceError::Socket(e) => PhoneError::Conn(e.to_string()),
            IdeviceError::Usbmuxd(e) => PhoneError::Conn(format!("usbmuxd: {e}")),
            e => PhoneError::Other(e.to_string()),
        }
    }

    fn into_unreadable(self, udid: &str) -> Unreadable {
        let (state, message) = match self {
            PhoneError::User(s, m) => (s, m),
            PhoneError::Forgotten => (IphoneState::NeedsTrust, TRUST_TIMEOUT.into()),
            PhoneError::Conn(m) | PhoneError::Afc(m) | PhoneError::Other(m) => (
                IphoneState::Failed,
                format!("Cannot talk to the iPhone: {m}"),
            ),
        };
        Unreadable {
            udid: udid.into(),
            state,
            message,
        }
    }

    fn into_source_error(self) -> SourceError {
        match self {
            PhoneError::Conn(_) => SourceError::Gone(GONE.into()),
            PhoneError::User(_, m) => SourceError::Blocked(m),
            PhoneError::Forgotten => SourceError::Blocked(TRUST_TIMEOUT.into()),
            PhoneError::Afc(m) | PhoneError::Other(m) => SourceError::File(m),
        }
    }
}

/// Everything needed to (re)connect to one phone, and the live AFC connection.
struct Conn {
    addr: UsbmuxdAddr,
    device: UsbmuxdDevice,
    pairing: Option<PairingFile>,
    opts: Options,
    afc: Option<AfcClient>,
}

impl Conn {
    /// Runs one round trip under the I/O timeout.
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, IdeviceError>>,
    ) -> Result<T, PhoneError> {
        match tokio::time::timeout(self.opts.io_timeout, fut).await {
            Ok(r) => r.map_err(PhoneError::from_idevice),
            Err(_) => Err(PhoneError::Conn("the iPhone did not answer in time".into())),
        }
    }

    /// A new usbmuxd connection tunnelled to `port` on the phone.
    async fn connect_port(&self, port: u16) -> Result<Idevice, PhoneError> {
        let mux = self.timed(self.addr.connect(self.device.device_id)).await?;
        self.timed(mux.connect_to_device(self.device.device_id, port, LABEL))
            .await
    }

    /// Whether usbmuxd still lists the phone.
    async fn present(&self) -> bool {
        list_usb_devices(&self.addr, self.opts.io_timeout)
            .await
            .is_ok_and(|l| l.iter().any(|d| d.udid == self.device.udid))
    }

    /// The pair record usbmuxd keeps for this phone; pairs (and saves one) if there is none.
    async fn pairing(&self) -> Result<PairingFile, Unreadable> {
        let mut mux = self
            .timed(self.addr.connect(self.device.device_id))
            .await
            .map_err(|e| e.into_unreadable(&self.device.udid))?;
        // usbmuxd answers a Result (no PairRecordData) when it holds no record: idevice
        // reports that as an unexpected response.
        match self.timed(mux.get_pair_record(&self.device.udid)).await {
            Ok(p) => Ok(p),
            Err(PhoneError::Other(_)) => self.pair().await,
            Err(e) => Err(e.into_unreadable(&self.device.udid)),
        }
    }

    /// Pairs: asks the phone to trust us until the user answers or `trust_timeout` passes,
    /// then saves the new record in usbmuxd.
    async fn pair(&self) -> Result<PairingFile, Unreadable> {
        let udid = &self.device.udid;
        let un = |e: PhoneError| e.into_unreadable(udid);
        let mut mux = self
            .timed(self.addr.connect(self.device.device_id))
            .await
            .map_err(un)?;
        let buid = self.timed(mux.get_buid()).await.map_err(un)?;
        let host_id = host_id();
        let deadline = Instant::now() + self.opts.trust_timeout;
        let mut prompted = false;
        let mut lockdown = LockdownClient::new(self.connect_port(LOCKDOWN_PORT).await.map_err(un)?);
        let record = loop {
            match self
                .timed(lockdown.pair_once(host_id.clone(), buid.clone(), Some(LABEL)))
                .await
            {
                Ok(p) => break p,
                Err(PhoneError::User(IphoneState::NeedsTrust, m)) => {
                    if Instant::now() + self.opts.poll_interval > deadline {
                        return Err(Unreadable {
                            udid: udid.clone(),
                            state: IphoneState::NeedsTrust,
                            message: m,
                        });
                    }
                    if !prompted && self.opts.show_prompts {
                        errln!("{TRUST_PROMPT}");
                    }
                    prompted = true;
                    tokio::time::sleep(self.opts.poll_interval).await;
                }
                Err(e) => return Err(un(e)),
            }
        };
        let bytes = record
            .clone()
            .serialize()
            .map_err(|e| un(PhoneError::from_idevice(e)))?;
        self.timed(mux.save_pair_record(udid, bytes))
            .await
            .map_err(un)?;
        Ok(record)
    }

    /// A lockdown session (TLS) → the phone's values and a started AFC service. With
    /// `may_repair`, a phone that no longer knows our pair record is paired again.
    async fn connect(
        &mut self,
        pairing: &PairingFile,
        may_repair: bool,
    ) -> Result<(plist::Dictionary, AfcClient), Unreadable> {
        let udid = self.device.udid.clone();
        let un = |e: PhoneError| e.into_unreadable(&udid);
        let mut lockdown = LockdownClient::new(self.connect_port(LOCKDOWN_PORT).await.map_err(un)?);
        match self.timed(lockdown.start_session(pairing)).await {
            Ok(_) => {}
            Err(PhoneError::Forgotten) if may_repair => {
                return self.repair().await;
            }
            Err(e) => return Err(un(e)),
        }
        let values = self
            .timed(lockdown.get_value(None, None))
            .await
            .map_err(un)?
            .into_dictionary()
            .unwrap_or_default();
        let (port, ssl) = self
            .timed(lockdown.start_service(AFC_SERVICE))
            .await
            .map_err(un)?;
        let mut idevice = self.connect_port(port).await.map_err(un)?;
        if ssl {
            self.timed(idevice.start_session(pairing, false))
                .await
                .map_err(un)?;
        }
        Ok((values, AfcClient::new(idevice)))
    }

    /// The phone forgot us (trust reset): pair again once, then connect.
    async fn repair(&mut self) -> Result<(plist::Dictionary, AfcClient), Unreadable> {
        let pairing = self.pair().await?;
        let r = Box::pin(self.connect(&pairing, false)).await?;
        self.pairing = Some(pairing);
        Ok(r)
    }

    /// The AFC client, reconnecting (session + StartService) if the last one was lost.
    async fn afc(&mut self) -> Result<&mut AfcClient, PhoneError> {
        if self.afc.is_none() {
            let pairing = self
                .pairing
                .clone()
                .ok_or(PhoneError::Other("not paired".into()))?;
            let (_, afc) = self
                .connect(&pairing, false)
                .await
                .map_err(|u| match u.state {
                    IphoneState::Failed => PhoneError::Conn(u.message),
                    s => PhoneError::User(s, u.message),
                })?;
            self.afc = Some(afc);
        }
        Ok(self.afc.as_mut().expect("connected above"))
    }

    async fn list(&mut self) -> Result<Listing, PhoneError> {
        let mut listing = Listing::default();
        let io = self.opts.io_timeout;
        let mut stack = vec![("/DCIM".to_string(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let afc = self.afc().await?;
            let names = match timed(io, afc.list_dir(dir.clone())).await {
                Ok(n) => n,
                // A phone with no photos at all may have no DCIM.
                Err(PhoneError::Afc(_)) if dir == "/DCIM" => return Ok(listing),
                Err(PhoneError::Afc(m)) => {
                    listing.unreadable.push(Skipped {
                        path: dir[1..].to_string(),
                        reason: m,
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            for name in names {
                if name == "." || name == ".." {
                    continue;
                }
                let path = format!("{dir}/{name}");
                let rel = path[1..].to_string();
                if let Some(reason) = skip_reason(&name) {
                    listing.skipped.push(Skipped {
                        path: rel,
                        reason: reason.into(),
                    });
                    continue;
                }
                let afc = self.afc().await?;
                let kv = match timed(io, afc.get_file_info_raw(path.clone())).await {
                    Ok(kv) => kv,
                    Err(PhoneError::Afc(m)) => {
                        listing.unreadable.push(Skipped {
                            path: rel,
                            reason: m,
                        });
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if let Some(folder) = list_item(&kv, path, rel, depth, &mut listing) {
                    stack.push(folder);
                }
            }
        }
        listing.entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listing)
    }
}

/// Puts the item at the AFC path `path` (`rel` without its leading slash), `depth`
/// folders below `/DCIM` and described by its AFC file info `kv`, where it belongs in
/// `listing`: a regular file in `entries`; a link or special file in `skipped`; a file
/// without size or date, or a folder too deep, in `unreadable`.
///
/// Returns a folder to walk into, with its depth.
fn list_item(
    kv: &HashMap<String, String>,
    path: String,
    rel: String,
    depth: usize,
    listing: &mut Listing,
) -> Option<(String, usize)> {
    let num = |k: &str| kv.get(k).and_then(|v| v.parse::<i128>().ok());
    match kv.get("st_ifmt").map(String::as_str) {
        Some("S_IFDIR") if depth < MAX_DEPTH => return Some((path, depth + 1)),
        Some("S_IFDIR") => listing.unreadable.push(Skipped {
            path: rel,
            reason: "folders nested too deep".into(),
        }),
        Some("S_IFREG") => match (num("st_size"), num("st_mtime")) {
            (Some(size), Some(mtime)) => listing.entries.push(Entry {
                path: rel,
                size: size.clamp(0, u64::MAX as i128) as u64,
                // AFC gives nanoseconds.
                mtime: (mtime.div_euclid(1_000_000_000)) as i64,
                facts: Default::default(),
                object: None,
            }),
            _ => listing.unreadable.push(Skipped {
                path: rel,
                reason: "the iPhone gave no size or date for it".into(),
            }),
        },
        other => listing.skipped.push(Skipped {
            path: rel,
            reason: match other {
                Some("S_IFLNK") => "symbolic link".into(),
                _ => "not a regular file".into(),
            },
        }),
    }
    None
}

async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, IdeviceError>>,
) -> Result<T, PhoneError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(PhoneError::from_idevice),
        Err(_) => Err(PhoneError::Conn("the iPhone did not answer in time".into())),
    }
}

/// Streams one file. AFC calls are issued directly (FileOpen / Read / Seek / Close) rather
/// than through idevice's file handle, so that each round trip has the size we choose and
/// the file is closed on every path, including drop.
struct AfcReader<'a> {
    rt: &'a Runtime,
    conn: &'a mut Conn,
    path: String,
    fd: Option<u64>,
    /// Offset of the next byte to fetch from the phone.
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    eof: bool,
}

impl AfcReader<'_> {
    /// Opens (or reopens after a reconnect) the file and seeks to `pos`.
    async fn ensure_open(&mut self) -> Result<u64, PhoneError> {
        if let Some(fd) = self.fd {
            return Ok(fd);
        }
        let io = self.conn.opts.io_timeout;
        let afc = self.conn.afc().await?;
        let mut hp = 1u64.to_le_bytes().to_vec(); // mode 1: read only
        hp.extend_from_slice(self.path.as_bytes());
        let res = timed(io, afc.send_op(AfcOpcode::FileOpen, hp, Vec::new())).await?;
        let fd = res
            .header_payload
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| PhoneError::Other("FileOpen answer carries no file handle".into()))?;
        self.fd = Some(fd);
        if self.pos > 0 {
            let hp = [fd.to_le_bytes(), 0u64.to_le_bytes(), self.pos.to_le_bytes()].concat();
            timed(io, afc.send_op(AfcOpcode::FileSeek, hp, Vec::new())).await?;
        }
        Ok(fd)
    }

    /// One Read round trip.
    async fn fetch_once(&mut self) -> Result<Vec<u8>, PhoneError> {
        let fd = self.ensure_open().await?;
        let io = self.conn.opts.io_timeout;
        let len = self.conn.opts.read_chunk.clamp(1 << 20, 4 << 20) as u64;
        let afc = self.conn.afc().await?;
        let hp = [fd.to_le_bytes(), len.to_le_bytes()].concat();
        let res = timed(io, afc.send_op(AfcOpcode::Read, hp, Vec::new())).await?;
        Ok(res.payload)
    }

    /// Opens (`fetch == false`) or fetches one chunk, reconnecting after a dropped
    /// connection while the phone is still there.
    async fn with_retry(&mut self, fetch: bool) -> Result<Vec<u8>, SourceError> {
        let mut attempts = 0;
        loop {
            let r = if fetch {
                self.fetch_once().await
            } else {
                self.ensure_open().await.map(|_| Vec::new())
            };
            match r {
                Ok(v) => return Ok(v),
                Err(PhoneError::Conn(e)) => {
                    // The old connection (and its handle) is gone with the socket.
                    self.fd = None;
                    self.conn.afc = None;
                    attempts += 1;
                    tracing::debug!(
                        "iPhone connection lost at {} byte {}: {e}",
                        self.path,
                        self.pos
                    );
                    if attempts > self.conn.opts.reconnect_attempts || !self.conn.present().await {
                        return Err(SourceError::Gone(GONE.into()));
                    }
                    tokio::time::sleep(Duration::from_millis(200 * attempts as u64)).await;
                }
                Err(PhoneError::Afc(m)) => {
                    return Err(SourceError::File(format!(
                        "the iPhone refused to read it: {m}"
                    )))
                }
                Err(e) => return Err(e.into_source_error()),
            }
        }
    }
}

impl AfcReader<'_> {
    /// Makes sure unread bytes are in `buf` (one Read round trip when it is used up);
    /// false at the end of the file.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.at < self.buf.len() {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        let rt = self.rt;
        let chunk = rt
            .block_on(self.with_retry(true))
            .map_err(SourceError::into_io)?;
        if chunk.is_empty() {
            self.eof = true;
            return Ok(false);
        }
        self.pos += chunk.len() as u64;
        self.buf = chunk;
        self.at = 0;
        Ok(true)
    }
}

impl FileRead for AfcReader<'_> {
    /// Hands over each AFC reply whole (1–4 MiB): copying it out would cost the reading
    /// thread, the one that sets the pace, a sixth of its CPU.
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if !self.fill()? {
            return Ok(0);
        }
        if self.at > 0 {
            // Part of this reply went through `read`: the rest is copied.
            buf.clear();
            buf.extend_from_slice(&self.buf[self.at..]);
        } else {
            std::mem::swap(buf, &mut self.buf);
        }
        self.buf.clear();
        self.at = 0;
        Ok(buf.len())
    }
}

impl Read for AfcReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for AfcReader<'_> {
    fn drop(&mut self) {
        // Phones have few file slots: close what we opened, whatever happened.
        if let (Some(fd), Some(afc)) = (self.fd.take(), self.conn.afc.as_mut()) {
            let fut = afc.send_op(AfcOpcode::FileClose, fd.to_le_bytes().to_vec(), Vec::new());
            // The timer must be created inside the runtime.
            let closed = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), fut).await });
            if !matches!(closed, Ok(Ok(_))) {
                // A half-finished exchange leaves the connection unusable.
                self.conn.afc = None;
            }
        }
    }
}

fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn usbmuxd_addr(opts: &Options) -> Result<UsbmuxdAddr, NoUsbmuxd> {
    let parsed = match &opts.usbmuxd {
        None => UsbmuxdAddr::from_env_var().map_err(|e| e.to_string()),
        Some(s) if s.contains(':') => s
            .parse()
            .map(UsbmuxdAddr::TcpSocket)
            .map_err(|e: std::net::AddrParseError| e.to_string()),
        Some(s) => Ok(UsbmuxdAddr::UnixSocket(s.clone())),
    };
    parsed.map_err(|e| NoUsbmuxd {
        message: format!("{USBMUXD_NOT_RUNNING} (bad USBMUXD_SOCKET_ADDRESS: {e})"),
    })
}

fn describe(addr: &UsbmuxdAddr) -> String {
    match addr {
        UsbmuxdAddr::UnixSocket(p) => p.clone(),
        UsbmuxdAddr::TcpSocket(a) => a.to_string(),
    }
}

async fn list_usb_devices(
    addr: &UsbmuxdAddr,
    limit: Duration,
) -> Result<Vec<UsbmuxdDevice>, String> {
    let fut = async {
        let mut mux = addr.connect(0).await?;
        mux.get_devices().await
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(list)) => Ok(list
            .into_iter()
            .filter(|d| d.connection_type == Connection::Usb)
            .collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// A HostID for a new pairing: a random UUID, uppercase like the ones other hosts use.
fn host_id() -> String {
    let mut b = [0u8; 16];
    getrandom_fill(&mut b);
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Random bytes without another dependency: hash the time, the pid and an address.
fn getrandom_fill(out: &mut [u8]) {
    let seed = format!(
        "{:?}{}{:p}",
        std::time::SystemTime::now(),
        std::process::id(),
        out.as_ptr()
    );
    let h = blake3::hash(seed.as_bytes());
    for (o, b) in out.iter_mut().zip(h.as_bytes()) {
        *o = *b;
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests;
