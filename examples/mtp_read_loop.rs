//! The transport's ceiling for the Android benchmark (`scripts/bench_android.py`): a bare
//! loop that reads a virtual Android phone's camera roll with mtp-rs's windowed download
//! into files, with nothing of offload around it (no hashing, no catalog, no layout).
//!
//! ```text
//! mtp_read_loop PHONE_DIR OUT_DIR [--window BYTES] [--fsync] [--syncfs] [--list-only]
//! ```
//!
//! PHONE_DIR is served as a phone the way `OFFLOAD_VIRTUAL_ANDROID` serves it (same
//! mtp-rs virtual device, same storage, opened by serial). The loop lists `DCIM`,
//! `Pictures` and `Movies` folder by folder with the property-list path
//! (`Storage::collect_objects`, as offload does; hidden files and folders skipped), then
//! downloads each file with `download_windowed` (8 MiB windows, offload's default) into
//! OUT_DIR/<path on the phone>. `--fsync` syncs each file before the next (offload makes
//! its copies durable too); `--syncfs` syncs OUT_DIR's filesystem once, after the last file
//! (the cheapest way to make the copies durable). `--list-only` stops after the listing.
//!
//! Prints one JSON line: files, bytes, list_s, read_s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mtp_rs::virtual_device::{register_virtual_device, VirtualDeviceConfig, VirtualStorageConfig};
use mtp_rs::{ByteRange, MtpDevice, ObjectHandle};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    phone: PathBuf,
    out: PathBuf,
    window: u32,
    fsync: bool,
    syncfs: bool,
    list_only: bool,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let (mut window, mut fsync, mut syncfs, mut list_only) = (8u32 << 20, false, false, false);
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("--window") => {
                window = it
                    .next()
                    .and_then(|v| v.to_str()?.parse().ok())
                    .ok_or("--window needs a number of bytes")?
            }
            Some("--fsync") => fsync = true,
            Some("--syncfs") => syncfs = true,
            Some("--list-only") => list_only = true,
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [phone, out] = <[PathBuf; 2]>::try_from(positional).map_err(|_| {
        "usage: mtp_read_loop PHONE_DIR OUT_DIR [--window BYTES] [--fsync] [--syncfs] [--list-only]"
    })?;
    Ok(Args {
        phone,
        out,
        window,
        fsync,
        syncfs,
        list_only,
    })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let phone = args.phone.canonicalize()?;
    let serial = phone
        .file_name()
        .ok_or("PHONE_DIR has no name")?
        .to_string_lossy()
        .into_owned();
    // The same device offload's `OFFLOAD_VIRTUAL_ANDROID` registers (src/sim/android.rs).
    let _device = register_virtual_device(&VirtualDeviceConfig {
        manufacturer: "offload".into(),
        model: "Virtual Android".into(),
        serial: serial.clone(),
        storages: vec![VirtualStorageConfig {
            description: "Internal shared storage".into(),
            capacity: 64 << 30,
            backing_dir: phone.clone(),
            read_only: false,
        }],
        watch_backing_dirs: false,
        dates_include_offset: false,
        ..Default::default()
    });
    // offload runs mtp-rs on a current-thread runtime too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&args, &serial))
}

async fn run(args: &Args, serial: &str) -> Result<()> {
    let started = Instant::now();
    let device = MtpDevice::open_by_serial(serial).await?;
    let storage = device
        .storages()
        .await?
        .into_iter()
        .next()
        .ok_or("the phone shows no storage")?;

    // Listing: the top level once, then each media folder tree one folder at a time.
    let mut files: Vec<(ObjectHandle, String, u64)> = Vec::new();
    let mut stack: Vec<(ObjectHandle, String)> = Vec::new();
    for object in storage.collect_objects(None).await?.objects {
        let media = ["DCIM", "Pictures", "Movies"]
            .iter()
            .any(|m| object.filename.eq_ignore_ascii_case(m));
        if object.is_folder() && media {
            stack.push((object.handle, object.filename));
        }
    }
    while let Some((folder, path)) = stack.pop() {
        for object in storage.collect_objects(Some(folder)).await?.objects {
            if object.filename.starts_with('.') {
                continue;
            }
            let child = format!("{path}/{}", object.filename);
            if object.is_folder() {
                stack.push((object.handle, child));
            } else {
                files.push((object.handle, child, object.size));
            }
        }
    }
    let list_s = started.elapsed().as_secs_f64();

    let read_started = Instant::now();
    let mut bytes = 0u64;
    if !args.list_only {
        for (handle, path, size) in &files {
            let got = download(&storage, *handle, &args.out.join(path), args).await?;
            if got != *size {
                return Err(format!("{path}: read {got} of {size} bytes").into());
            }
            bytes += got;
        }
        if args.syncfs {
            rustix::fs::syncfs(std::fs::File::open(&args.out)?)?;
        }
    }
    println!(
        "{{\"files\": {}, \"bytes\": {bytes}, \"list_s\": {list_s:.3}, \"read_s\": {:.3}}}",
        files.len(),
        read_started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn download(
    storage: &mtp_rs::Storage,
    handle: ObjectHandle,
    target: &Path,
    args: &Args,
) -> Result<u64> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::File::create(target)?;
    let mut download = storage
        .download_windowed(handle, ByteRange::Full, args.window)
        .await?;
    let mut written = 0u64;
    while let Some(window) = download.next_window().await {
        let window = window?;
        file.write_all(&window)?;
        written += window.len() as u64;
    }
    if args.fsync {
        file.sync_all()?;
    }
    Ok(written)
}
