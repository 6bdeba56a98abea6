//! A bare AFC read loop through the `idevice` crate: the baseline that `offload backup` is
//! measured against (`scripts/bench_iphone.py`).
//!
//! usbmuxd at ADDR → the pair record from usbmuxd → a lockdown session → StartService
//! `com.apple.afc` → a recursive listing of `/DCIM` → each file read in 4 MiB round trips
//! (one AFC Read each) and written under OUTDIR. No hashing, no catalog, no dates.
//!
//! ```text
//! cargo run --release --example afc_read_loop -- ADDR OUTDIR [--list-only] [--fsync] [--syncfs] [--chunk BYTES]
//! ```
//!
//! ADDR is `host:port` (TCP, e.g. an `offload sim iphone`) or a Unix socket path
//! (`/var/run/usbmuxd`). `--list-only` lists and reads nothing; `--fsync` syncs each file
//! once written; `--syncfs` syncs OUTDIR's filesystem once, after the last file (the
//! cheapest way to make the copies durable). Prints one line: files, bytes, seconds listing, seconds in all.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use idevice::afc::opcode::AfcOpcode;
use idevice::afc::AfcClient;
use idevice::lockdown::LockdownClient;
use idevice::usbmuxd::{Connection, UsbmuxdAddr};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const LABEL: &str = "afc_read_loop";
const LOCKDOWN_PORT: u16 = 62078;

struct Args {
    addr: String,
    out: PathBuf,
    list_only: bool,
    fsync: bool,
    syncfs: bool,
    chunk: u64,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let (mut list_only, mut fsync, mut syncfs, mut chunk) = (false, false, false, 4u64 << 20);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list-only" => list_only = true,
            "--fsync" => fsync = true,
            "--syncfs" => syncfs = true,
            "--chunk" => chunk = it.next().ok_or("--chunk needs a value")?.parse()?,
            _ if a.starts_with("--") => return Err(format!("unknown option {a}").into()),
            _ => positional.push(a),
        }
    }
    let [addr, out] = <[String; 2]>::try_from(positional).map_err(|_| {
        "usage: afc_read_loop ADDR OUTDIR [--list-only] [--fsync] [--syncfs] [--chunk BYTES]"
    })?;
    Ok(Args {
        addr,
        out: out.into(),
        list_only,
        fsync,
        syncfs,
        chunk,
    })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let addr = if args.addr.contains(':') {
        UsbmuxdAddr::TcpSocket(args.addr.parse()?)
    } else {
        UsbmuxdAddr::UnixSocket(args.addr.clone())
    };
    let mut mux = addr.connect(0).await?;
    let device = mux
        .get_devices()
        .await?
        .into_iter()
        .find(|d| d.connection_type == Connection::Usb)
        .ok_or("usbmuxd lists no iPhone")?;
    let pairing = mux.get_pair_record(&device.udid).await?;

    let lockdown = addr
        .connect(1)
        .await?
        .connect_to_device(device.device_id, LOCKDOWN_PORT, LABEL)
        .await?;
    let mut lockdown = LockdownClient::new(lockdown);
    lockdown.start_session(&pairing).await?;
    let (port, ssl) = lockdown.start_service("com.apple.afc").await?;
    let mut service = addr
        .connect(2)
        .await?
        .connect_to_device(device.device_id, port, LABEL)
        .await?;
    if ssl {
        service.start_session(&pairing, false).await?;
    }
    let mut afc = AfcClient::new(service);

    let files = list(&mut afc).await?;
    let listed = started.elapsed().as_secs_f64();
    let mut bytes = 0u64;
    if !args.list_only {
        for (path, _) in &files {
            bytes += copy(&mut afc, path, &args).await?;
        }
        if args.syncfs {
            rustix::fs::syncfs(std::fs::File::open(&args.out)?)?;
        }
    }
    println!(
        "files={} bytes={bytes} list_s={listed:.3} total_s={:.3}",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every regular file under `/DCIM`: (AFC path, size).
async fn list(afc: &mut AfcClient) -> Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    let mut dirs = vec!["/DCIM".to_string()];
    while let Some(dir) = dirs.pop() {
        for name in afc.list_dir(dir.clone()).await? {
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{dir}/{name}");
            let info = afc.get_file_info_raw(path.clone()).await?;
            match info.get("st_ifmt").map(String::as_str) {
                Some("S_IFDIR") => dirs.push(path),
                Some("S_IFREG") => {
                    let size = info.get("st_size").and_then(|s| s.parse().ok());
                    files.push((path, size.unwrap_or(0)));
                }
                _ => {}
            }
        }
    }
    Ok(files)
}

/// Reads one file in `args.chunk` round trips into OUTDIR; returns its size.
async fn copy(afc: &mut AfcClient, path: &str, args: &Args) -> Result<u64> {
    let rel = Path::new(path.trim_start_matches('/'));
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("refusing the device's path {path:?}").into());
    }
    let dest = args.out.join(rel);
    std::fs::create_dir_all(dest.parent().expect("a file has a parent"))?;
    let mut out = std::fs::File::create(&dest)?;

    let mut open = 1u64.to_le_bytes().to_vec(); // mode 1: read only
    open.extend_from_slice(path.as_bytes());
    let res = afc.send_op(AfcOpcode::FileOpen, open, Vec::new()).await?;
    let fd = u64::from_le_bytes(
        res.header_payload
            .get(..8)
            .ok_or("FileOpen gave no handle")?
            .try_into()?,
    );
    let mut n = 0u64;
    let read = async {
        loop {
            let hp = [fd.to_le_bytes(), args.chunk.to_le_bytes()].concat();
            let data = afc.send_op(AfcOpcode::Read, hp, Vec::new()).await?.payload;
            if data.is_empty() {
                break;
            }
            out.write_all(&data)?;
            n += data.len() as u64;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    afc.send_op(AfcOpcode::FileClose, fd.to_le_bytes().to_vec(), Vec::new())
        .await?;
    read?;
    if args.fsync {
        out.sync_all()?;
    }
    Ok(n)
}
