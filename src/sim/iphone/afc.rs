//! The virtual AFC service: a read-only view of the media directory.
//!
//! Packets: 40-byte header (magic `CFA6LPAA`, u64 LE entire_len, this_len, packet_num,
//! operation), then the header payload (up to this_len), then the payload (up to
//! entire_len). Replies echo packet_num. Status and the FileOpen/FileTell results carry
//! their u64 in the header payload; Data carries its bytes in the payload.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Device;

const MAGIC: &[u8; 8] = b"CFA6LPAA";
const HEADER_LEN: u64 = 40;
/// Largest request we accept (a write of a few MiB is the biggest real packet).
const MAX_PACKET: u64 = 32 << 20;
/// Largest Read we serve in one reply; larger requests get a short read, as on a device.
const MAX_READ: u64 = 8 << 20;

// Operations.
const OP_STATUS: u64 = 0x01;
const OP_DATA: u64 = 0x02;
const OP_READ_DIR: u64 = 0x03;
const OP_GET_FILE_INFO: u64 = 0x0A;
const OP_GET_DEV_INFO: u64 = 0x0B;
const OP_FILE_OPEN: u64 = 0x0D;
const OP_FILE_OPEN_RES: u64 = 0x0E;
const OP_READ: u64 = 0x0F;
const OP_FILE_SEEK: u64 = 0x11;
const OP_FILE_TELL: u64 = 0x12;
const OP_FILE_TELL_RES: u64 = 0x13;
const OP_FILE_CLOSE: u64 = 0x14;
const OP_SET_CON_OPTIONS: u64 = 0x17;
const OP_FILE_LOCK: u64 = 0x1B;
/// Operations that change the file system: refused, this is a read-only camera roll.
const WRITE_OPS: &[u64] = &[
    0x05, 0x06, 0x07, 0x08, 0x09, 0x0C, 0x10, 0x15, 0x18, 0x1C, 0x1E, 0x22,
];

// Status codes.
const E_SUCCESS: u64 = 0;
const E_OP_HEADER_INVALID: u64 = 2;
const E_READ_ERROR: u64 = 4;
const E_UNKNOWN_PACKET_TYPE: u64 = 6;
const E_INVALID_ARG: u64 = 7;
const E_OBJECT_NOT_FOUND: u64 = 8;
const E_OBJECT_IS_DIR: u64 = 9;
const E_PERM_DENIED: u64 = 10;
const E_OP_NOT_SUPPORTED: u64 = 15;

const MODE_RDONLY: u64 = 1;

pub(super) async fn serve(dev: Arc<Device>, sock: TcpStream) {
    let mut attached = dev.attached.subscribe();
    tokio::select! {
        _ = run(&dev, sock) => {}
        _ = attached.wait_for(|a| !*a) => {}
    }
}

struct OpenFile {
    file: File,
    afc_path: String,
    pos: u64,
    /// Part of the Photos library (`/PhotoData/...`): counted apart, no faults.
    library: bool,
}

/// One reply.
enum Reply {
    Status(u64),
    Data(Vec<u8>),
    /// `len` bytes of a file from `offset` (see [`send_file`]).
    FileData {
        file: File,
        offset: u64,
        len: u64,
    },
    U64(u64, u64),
    /// Close the connection without replying (a fault).
    Hangup,
}

async fn run(dev: &Device, mut sock: TcpStream) {
    let mut files: HashMap<u64, OpenFile> = HashMap::new();
    loop {
        let mut hdr = [0u8; HEADER_LEN as usize];
        if sock.read_exact(&mut hdr).await.is_err() {
            return;
        }
        let word = |i: usize| u64::from_le_bytes(hdr[i * 8..i * 8 + 8].try_into().expect("8"));
        let (entire, this, num, op) = (word(1), word(2), word(3), word(4));
        if &hdr[..8] != MAGIC || this < HEADER_LEN || entire < this || entire > MAX_PACKET {
            // Not AFC: a real device drops the connection.
            return;
        }
        let mut hp = vec![0u8; (this - HEADER_LEN) as usize];
        let mut payload = vec![0u8; (entire - this) as usize];
        if sock.read_exact(&mut hp).await.is_err() || sock.read_exact(&mut payload).await.is_err() {
            return;
        }
        let reply = handle(dev, &mut files, op, &hp).await;
        let mut from_file = None;
        let (op_out, head, body) = match reply {
            Reply::Status(code) => (OP_STATUS, code.to_le_bytes().to_vec(), Vec::new()),
            Reply::Data(d) => (OP_DATA, Vec::new(), d),
            Reply::FileData { file, offset, len } => {
                from_file = Some((file, offset, len));
                (OP_DATA, Vec::new(), Vec::new())
            }
            Reply::U64(op, v) => (op, v.to_le_bytes().to_vec(), Vec::new()),
            Reply::Hangup => return,
        };
        let body_len = body.len() as u64 + from_file.as_ref().map_or(0, |f| f.2);
        let this_len = HEADER_LEN + head.len() as u64;
        let mut out = Vec::with_capacity(this_len as usize + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(this_len + body_len).to_le_bytes());
        out.extend_from_slice(&this_len.to_le_bytes());
        out.extend_from_slice(&num.to_le_bytes());
        out.extend_from_slice(&op_out.to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&body);
        if sock.write_all(&out).await.is_err() {
            return;
        }
        if let Some((file, offset, len)) = from_file {
            // The header promised `len` bytes: a file that shrank meanwhile, like any
            // failure here, can only end the connection.
            if send_file(&mut sock, &file, offset, len).await.is_err() {
                return;
            }
        }
        // `--unplug-after-bytes`: the phone goes once the bytes that reached the limit are sent.
        if let Some(limit) = dev.cfg.unplug_after_bytes {
            let roll_read = op == OP_READ
                && u64_at(&hp, 0)
                    .and_then(|fd| files.get(&fd))
                    .is_some_and(|f| !f.library);
            if roll_read && dev.lock().stats.bytes_served >= limit {
                dev.detach();
                return;
            }
        }
    }
}

/// Sends `len` bytes of `file` from `offset` on `sock`. On Linux they go from the file
/// to the socket by `sendfile`, without passing through the simulator: a real iPhone
/// costs the computer no CPU to read its flash, so the simulator should cost as little
/// as it can, leaving the CPU to the client being measured.
#[cfg(target_os = "linux")]
async fn send_file(
    sock: &mut TcpStream,
    file: &File,
    mut offset: u64,
    mut len: u64,
) -> std::io::Result<()> {
    let sock = &*sock;
    while len > 0 {
        sock.writable().await?;
        let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
            let mut at = offset;
            rustix::fs::sendfile(sock, file, Some(&mut at), len.min(1 << 30) as usize)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                offset += n as u64;
                len -= n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Elsewhere, through a buffer.
#[cfg(not(target_os = "linux"))]
async fn send_file(
    sock: &mut TcpStream,
    file: &File,
    mut offset: u64,
    mut len: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    while len > 0 {
        let want = buf.len().min(len as usize);
        let n = file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        sock.write_all(&buf[..n]).await?;
        offset += n as u64;
        len -= n as u64;
    }
    Ok(())
}

/// A path from a packet: bytes up to the first NUL (clients may or may not send one).
fn path_of(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    b.get(i * 8..i * 8 + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8")))
}

/// The AFC path in canonical form (`/a/b`) with `.`, `..` and repeated slashes resolved
/// inside the root: `..` never climbs above it, as on a device.
fn normalize(path: &[u8]) -> Vec<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c.to_vec()),
        }
    }
    parts
}

/// The directory (`/a/b/`) whose listing shows an overlay entry, and the name it shows
/// there. Only the deepest real directory among the entry's leading components (never
/// reached through `.`, `..` or an empty component) lists it, with the rest (slashes and
/// all) as its name: listing every directory that is a textual prefix would make a
/// recursive listing meet one entry several times, under several names.
fn overlay_home<'a>(root: &Path, afc: &'a str) -> (String, &'a str) {
    let mut dir = String::from("/");
    let mut real = root.to_path_buf();
    let mut rest = afc.trim_start_matches('/');
    while let Some((first, tail)) = rest.split_once('/') {
        if matches!(first, "" | "." | "..") {
            break;
        }
        real.push(first);
        if !real.is_dir() {
            break;
        }
        dir.push_str(first);
        dir.push('/');
        rest = tail;
    }
    (dir, rest)
}

/// Where an AFC path lives on disk, or why it cannot be reached.
enum Target {
    /// Under the root; the path itself is not followed if it is a symlink.
    Path(PathBuf),
    /// An overlay entry: a regular file under the root.
    Overlay(PathBuf),
}

fn resolve(dev: &Device, raw: &[u8]) -> Result<Target, u64> {
    // A lying device answers for names its file system could not hold, verbatim.
    let as_str = String::from_utf8_lossy(raw);
    let key = if as_str.starts_with('/') {
        as_str.to_string()
    } else {
        format!("/{as_str}")
    };
    if let Some((_, real)) = dev.overlay.iter().find(|(p, _)| *p == key) {
        return Ok(Target::Overlay(real.clone()));
    }
    let parts = normalize(raw);
    let mut real = dev.root.clone();
    for p in &parts {
        real.push(OsStr::from_bytes(p));
    }
    // The parent must resolve (through any symlinks) to somewhere inside the root.
    if let Some(parent) = real.parent().filter(|_| !parts.is_empty()) {
        match parent.canonicalize() {
            Ok(c) if c.starts_with(&dev.root) => {}
            _ => return Err(E_OBJECT_NOT_FOUND),
        }
    }
    if std::fs::symlink_metadata(&real).is_err() {
        return Err(E_OBJECT_NOT_FOUND);
    }
    Ok(Target::Path(real))
}

/// The file or directory a path leads to, following symlinks only inside the root.
fn follow(dev: &Device, t: Target) -> Result<PathBuf, u64> {
    match t {
        Target::Overlay(p) => Ok(p),
        Target::Path(p) => match p.canonicalize() {
            Ok(c) if c.starts_with(&dev.root) => Ok(c),
            _ => Err(E_OBJECT_NOT_FOUND),
        },
    }
}

fn kv(pairs: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Nanoseconds since the Unix epoch, negative before it (a file dated 1904).
fn nanos(t: std::io::Result<std::time::SystemTime>) -> Option<i128> {
    let t = t.ok()?;
    Some(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    })
}

async fn handle(dev: &Device, files: &mut HashMap<u64, OpenFile>, op: u64, hp: &[u8]) -> Reply {
    match op {
        OP_READ_DIR => {
            let raw = path_of(hp);
            let dir = match resolve(dev, raw).and_then(|t| follow(dev, t)) {
                Ok(d) => d,
                Err(e) => return Reply::Status(e),
            };
            let Ok(rd) = std::fs::read_dir(&dir) else {
                return Reply::Status(if dir.is_file() {
                    E_INVALID_ARG
                } else {
                    E_READ_ERROR
                });
            };
            let mut names: Vec<Vec<u8>> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().as_bytes().to_vec())
                .collect();
            let mut prefix = String::from("/");
            for p in normalize(raw) {
                prefix.push_str(&String::from_utf8_lossy(&p));
                prefix.push('/');
            }
            for (p, _) in &dev.overlay {
                let (home, name) = overlay_home(&dev.root, p);
                if home == prefix {
                    names.push(name.as_bytes().to_vec());
                }
            }
            names.sort();
            let mut out = b".\0..\0".to_vec();
            for n in names {
                out.extend_from_slice(&n);
                out.push(0);
            }
            Reply::Data(out)
        }
        OP_GET_FILE_INFO => {
            let (meta, link) = match resolve(dev, path_of(hp)) {
                Ok(Target::Overlay(p)) => (std::fs::metadata(p), None),
                Ok(Target::Path(p)) => (std::fs::symlink_metadata(&p), std::fs::read_link(&p).ok()),
                Err(e) => return Reply::Status(e),
            };
            let Ok(m) = meta else {
                return Reply::Status(E_OBJECT_NOT_FOUND);
            };
            let ifmt = if m.file_type().is_symlink() {
                "S_IFLNK"
            } else if m.is_dir() {
                "S_IFDIR"
            } else {
                "S_IFREG"
            };
            let mtime = nanos(m.modified()).unwrap_or(0);
            let birth = nanos(m.created()).unwrap_or(mtime);
            let size = match lie_for(dev, path_of(hp)) {
                Some(delta) => m.len().saturating_add_signed(delta),
                None => m.len(),
            };
            let mut pairs = vec![
                ("st_size", size.to_string()),
                ("st_blocks", m.blocks().to_string()),
                ("st_nlink", m.nlink().to_string()),
                ("st_ifmt", ifmt.to_string()),
                ("st_mtime", mtime.to_string()),
                ("st_birthtime", birth.to_string()),
            ];
            if let Some(l) = link {
                pairs.push(("st_link_target", l.to_string_lossy().into_owned()));
            }
            Reply::Data(kv(&pairs))
        }
        OP_GET_DEV_INFO => Reply::Data(kv(&[
            ("Model", dev.cfg.product_type.clone()),
            ("FSTotalBytes", "127989493760".into()),
            ("FSFreeBytes", "41234567168".into()),
            ("FSBlockSize", "4096".into()),
        ])),
        OP_FILE_OPEN => {
            let (Some(mode), Some(rest)) = (u64_at(hp, 0), hp.get(8..)) else {
                return Reply::Status(E_OP_HEADER_INVALID);
            };
            if mode != MODE_RDONLY {
                return Reply::Status(E_PERM_DENIED);
            }
            let raw = path_of(rest);
            let real = match resolve(dev, raw).and_then(|t| follow(dev, t)) {
                Ok(p) => p,
                Err(e) => return Reply::Status(e),
            };
            if real.is_dir() {
                return Reply::Status(E_OBJECT_IS_DIR);
            }
            let canonical = canonical(raw);
            // An optimised original: listed in DCIM, but its bytes are in iCloud.
            if dev.placeholders.contains(&canonical) {
                return Reply::Status(E_OBJECT_NOT_FOUND);
            }
            let Ok(file) = File::open(&real) else {
                return Reply::Status(E_PERM_DENIED);
            };
            let library = canonical.starts_with("/PhotoData/");
            let fd = {
                let mut inner = dev.lock();
                let fd = inner.next_fd;
                inner.next_fd += 1;
                if library {
                    inner.stats.library_opens += 1;
                } else {
                    inner.stats.file_opens += 1;
                }
                dev.write_stats(&inner.stats);
                fd
            };
            let afc_path = String::from_utf8_lossy(raw).into_owned();
            files.insert(
                fd,
                OpenFile {
                    file,
                    afc_path,
                    pos: 0,
                    library,
                },
            );
            Reply::U64(OP_FILE_OPEN_RES, fd)
        }
        OP_READ => {
            let (Some(fd), Some(len)) = (u64_at(hp, 0), u64_at(hp, 1)) else {
                return Reply::Status(E_OP_HEADER_INVALID);
            };
            let Some(f) = files.get_mut(&fd) else {
                return Reply::Status(E_INVALID_ARG);
            };
            if is_unreadable(dev, &f.afc_path) {
                return Reply::Status(E_READ_ERROR);
            }
            let mut len = len.min(MAX_READ);
            if !f.library {
                let mut inner = dev.lock();
                let served = inner.stats.bytes_served;
                if let Some(limit) = dev.cfg.unplug_after_bytes {
                    len = len.min(limit.saturating_sub(served));
                }
                if let Some(at) = dev.cfg.drop_connection_after_bytes {
                    if !inner.dropped_once {
                        if served >= at {
                            inner.dropped_once = true;
                            return Reply::Hangup;
                        }
                        len = len.min(at - served);
                    }
                }
            }
            // No more than the file still holds.
            let left = f
                .file
                .metadata()
                .map(|m| m.len().saturating_sub(f.pos))
                .unwrap_or(len);
            let Ok(file) = f.file.try_clone() else {
                return Reply::Status(E_READ_ERROR);
            };
            let got = len.min(left);
            let offset = f.pos;
            f.pos += got;
            if let Some(kbps) = dev.cfg.slow_kbps.filter(|k| *k > 0) {
                tokio::time::sleep(Duration::from_secs_f64(got as f64 / (kbps as f64 * 1000.0)))
                    .await;
            }
            if f.library {
                dev.count(|s| s.library_bytes += got);
            } else {
                dev.count(|s| s.bytes_served += got);
            }
            Reply::FileData {
                file,
                offset,
                len: got,
            }
        }
        OP_FILE_SEEK => {
            let (Some(fd), Some(whence), Some(off)) = (u64_at(hp, 0), u64_at(hp, 1), u64_at(hp, 2))
            else {
                return Reply::Status(E_OP_HEADER_INVALID);
            };
            let Some(f) = files.get_mut(&fd) else {
                return Reply::Status(E_INVALID_ARG);
            };
            let off = off as i64;
            let base = match whence {
                0 => 0i64,
                1 => f.pos as i64,
                2 => f.file.metadata().map(|m| m.len() as i64).unwrap_or(0),
                _ => return Reply::Status(E_INVALID_ARG),
            };
            match base.checked_add(off) {
                Some(p) if p >= 0 => {
                    f.pos = p as u64;
                    Reply::Status(E_SUCCESS)
                }
                _ => Reply::Status(E_INVALID_ARG),
            }
        }
        OP_FILE_TELL => match u64_at(hp, 0).and_then(|fd| files.get(&fd)) {
            Some(f) => Reply::U64(OP_FILE_TELL_RES, f.pos),
            None => Reply::Status(E_INVALID_ARG),
        },
        OP_FILE_CLOSE => match u64_at(hp, 0).and_then(|fd| files.remove(&fd)) {
            Some(_) => Reply::Status(E_SUCCESS),
            None => Reply::Status(E_INVALID_ARG),
        },
        OP_FILE_LOCK | OP_SET_CON_OPTIONS => Reply::Status(E_SUCCESS),
        op if WRITE_OPS.contains(&op) => Reply::Status(E_PERM_DENIED),
        0x04 | 0x16 | 0x19 | 0x1A | 0x1D => Reply::Status(E_OP_NOT_SUPPORTED),
        _ => Reply::Status(E_UNKNOWN_PACKET_TYPE),
    }
}

/// `DCIM//100APPLE/./x` → `/DCIM/100APPLE/x`.
fn canonical(raw: &[u8]) -> String {
    let mut out = String::new();
    for p in normalize(raw) {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(&p));
    }
    out
}

/// An AFC path in one spelling, for matching fault options.
fn norm(p: &str) -> String {
    normalize(p.as_bytes())
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_unreadable(dev: &Device, afc_path: &str) -> bool {
    let this = norm(afc_path);
    dev.cfg.unreadable.iter().any(|u| norm(u) == this)
}

/// `--lie-size`: how far off the size reported for this path is.
fn lie_for(dev: &Device, raw: &[u8]) -> Option<i64> {
    let this = norm(&String::from_utf8_lossy(raw));
    dev.lies
        .iter()
        .find(|(p, _)| norm(p) == this)
        .map(|(_, d)| *d)
}
