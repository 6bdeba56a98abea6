//! The virtual usbmuxd: the plist protocol (16-byte little-endian header, XML plist body)
//! on a TCP socket, with one attached device.

use std::sync::Arc;

use plist::{Dictionary, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Device, Event, DEVICE_ID, LOCKDOWN_PORT};

/// usbmuxd result codes.
const RESULT_OK: u64 = 0;
const RESULT_BADCOMMAND: u64 = 1;
const RESULT_BADDEV: u64 = 2;
const RESULT_CONNREFUSED: u64 = 3;
const RESULT_BADVERSION: u64 = 6;

const MESSAGE_PLIST: u32 = 8;
/// Real usbmuxd refuses bodies larger than this; so do we (a corrupt header must not
/// make us allocate gigabytes).
const MAX_BODY: u32 = 1 << 20;

pub(super) async fn serve(dev: Arc<Device>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                tokio::spawn(client(dev.clone(), sock));
            }
            Err(e) => {
                tracing::warn!("virtual usbmuxd: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads one request: the header, then exactly its body (no read-ahead, since after a
/// successful Connect the same socket becomes a raw pipe to the device).
async fn read_packet<S: AsyncRead + Unpin>(
    sock: &mut S,
) -> std::io::Result<(u32, u32, u32, Vec<u8>)> {
    let mut hdr = [0u8; 16];
    sock.read_exact(&mut hdr).await?;
    let word = |i: usize| u32::from_le_bytes(hdr[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let (len, version, message, tag) = (word(0), word(1), word(2), word(3));
    if !(16..=MAX_BODY).contains(&len) {
        return Err(std::io::Error::other("bad usbmuxd packet length"));
    }
    let mut body = vec![0u8; len as usize - 16];
    sock.read_exact(&mut body).await?;
    Ok((version, message, tag, body))
}

async fn send<S: AsyncWrite + Unpin>(
    sock: &mut S,
    tag: u32,
    body: Dictionary,
) -> std::io::Result<()> {
    let mut xml = Vec::new();
    Value::Dictionary(body)
        .to_writer_xml(&mut xml)
        .map_err(std::io::Error::other)?;
    let mut pkt = Vec::with_capacity(16 + xml.len());
    pkt.extend_from_slice(&(16 + xml.len() as u32).to_le_bytes());
    pkt.extend_from_slice(&1u32.to_le_bytes());
    pkt.extend_from_slice(&MESSAGE_PLIST.to_le_bytes());
    pkt.extend_from_slice(&tag.to_le_bytes());
    pkt.extend_from_slice(&xml);
    sock.write_all(&pkt).await?;
    sock.flush().await
}

async fn send_result<S: AsyncWrite + Unpin>(
    sock: &mut S,
    tag: u32,
    number: u64,
) -> std::io::Result<()> {
    let mut d = Dictionary::new();
    d.insert("MessageType".into(), "Result".into());
    d.insert("Number".into(), number.into());
    send(sock, tag, d).await
}

/// The device entry as the real daemon describes it in ListDevices and Attached.
fn device_entry(dev: &Device) -> Dictionary {
    let mut props = Dictionary::new();
    props.insert("ConnectionSpeed".into(), 480_000_000u64.into());
    props.insert("ConnectionType".into(), "USB".into());
    props.insert("DeviceID".into(), DEVICE_ID.into());
    props.insert("LocationID".into(), 0x1410_0000u64.into());
    props.insert("ProductID".into(), 0x12a8u64.into());
    props.insert("SerialNumber".into(), dev.udid.clone().into());
    props.insert("USBSerialNumber".into(), dev.udid.replace('-', "").into());
    let mut d = Dictionary::new();
    d.insert("DeviceID".into(), DEVICE_ID.into());
    d.insert("MessageType".into(), "Attached".into());
    d.insert("Properties".into(), Value::Dictionary(props));
    d
}

fn uint(d: &Dictionary, key: &str) -> Option<u64> {
    d.get(key).and_then(|v| v.as_unsigned_integer())
}

async fn client(dev: Arc<Device>, mut sock: TcpStream) {
    loop {
        let Ok((version, message, tag, body)) = read_packet(&mut sock).await else {
            return;
        };
        if message != MESSAGE_PLIST || version != 1 {
            // Only the plist protocol (what every current client speaks).
            if send_result(&mut sock, tag, RESULT_BADVERSION)
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let Ok(req) = plist::from_bytes::<Dictionary>(&body) else {
            if send_result(&mut sock, tag, RESULT_BADCOMMAND)
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let kind = req
            .get("MessageType")
            .and_then(|v| v.as_string())
            .unwrap_or("")
            .to_string();
        let sent = match kind.as_str() {
            "ListDevices" => {
                let list: Vec<Value> = if dev.is_attached() {
                    vec![Value::Dictionary(device_entry(&dev))]
                } else {
                    Vec::new()
                };
                let mut d = Dictionary::new();
                d.insert("DeviceList".into(), Value::Array(list));
                send(&mut sock, tag, d).await
            }
            "Listen" => {
                if send_result(&mut sock, tag, RESULT_OK).await.is_ok() {
                    listen(&dev, sock).await;
                }
                return;
            }
            "ReadBUID" => {
                let mut d = Dictionary::new();
                d.insert("BUID".into(), dev.buid.clone().into());
                send(&mut sock, tag, d).await
            }
            "ReadPairRecord" => {
                let id = req.get("PairRecordID").and_then(|v| v.as_string());
                let rec = id.and_then(|id| dev.lock().records.get(id).cloned());
                match rec {
                    Some(rec) => {
                        let mut d = Dictionary::new();
                        d.insert("PairRecordData".into(), Value::Data(rec));
                        send(&mut sock, tag, d).await
                    }
                    // What usbmuxd answers for a device it holds no record of.
                    None => send_result(&mut sock, tag, RESULT_BADDEV).await,
                }
            }
            "SavePairRecord" => {
                let id = req
                    .get("PairRecordID")
                    .and_then(|v| v.as_string())
                    .map(str::to_string)
                    .or_else(|| {
                        (uint(&req, "DeviceID") == Some(DEVICE_ID)).then(|| dev.udid.clone())
                    });
                match (id, req.get("PairRecordData").and_then(|v| v.as_data())) {
                    (Some(id), Some(data)) if plist::from_bytes::<Dictionary>(data).is_ok() => {
                        {
                            let mut inner = dev.lock();
                            inner.records.insert(id, data.to_vec());
                            dev.persist(&inner);
                        }
                        send_result(&mut sock, tag, RESULT_OK).await
                    }
                    _ => send_result(&mut sock, tag, RESULT_BADCOMMAND).await,
                }
            }
            "DeletePairRecord" => {
                let id = req
                    .get("PairRecordID")
                    .and_then(|v| v.as_string())
                    .unwrap_or("");
                let n = if dev.delete_record(id) {
                    RESULT_OK
                } else {
                    RESULT_BADDEV
                };
                send_result(&mut sock, tag, n).await
            }
            "Connect" => {
                let id = uint(&req, "DeviceID");
                // PortNumber is the port in network byte order, read as an integer.
                let port = uint(&req, "PortNumber").map(|p| (p as u16).swap_bytes());
                if id != Some(DEVICE_ID) || !dev.is_attached() {
                    send_result(&mut sock, tag, RESULT_BADDEV).await
                } else if port == Some(LOCKDOWN_PORT) {
                    if send_result(&mut sock, tag, RESULT_OK).await.is_ok() {
                        super::lockdown::serve(dev, sock).await;
                    }
                    return;
                } else if port.is_some_and(|p| dev.lock().afc_ports.contains(&p)) {
                    if send_result(&mut sock, tag, RESULT_OK).await.is_ok() {
                        super::afc::serve(dev, sock).await;
                    }
                    return;
                } else {
                    send_result(&mut sock, tag, RESULT_CONNREFUSED).await
                }
            }
            _ => send_result(&mut sock, tag, RESULT_BADCOMMAND).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// A Listen socket: Attached for the device now present, then Detached when it goes.
async fn listen(dev: &Device, mut sock: TcpStream) {
    let mut events = dev.events.subscribe();
    if dev.is_attached() && send(&mut sock, 0, device_entry(dev)).await.is_err() {
        return;
    }
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(Event::Detached) => {
                    let mut d = Dictionary::new();
                    d.insert("DeviceID".into(), DEVICE_ID.into());
                    d.insert("MessageType".into(), "Detached".into());
                    if send(&mut sock, 0, d).await.is_err() {
                        return;
                    }
                }
                Err(broadcast_err) => {
                    if matches!(broadcast_err, tokio::sync::broadcast::error::RecvError::Closed) {
                        return;
                    }
                }
            },
            n = sock.read(&mut probe) => {
                // The client hung up (or sent something a listener should not).
                if matches!(n, Ok(0) | Err(_)) {
                    return;
                }
            }
        }
    }
}
