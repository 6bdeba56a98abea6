//! The virtual lockdownd (device port 62078): u32 big-endian length + plist framing,
//! pairing, the StartSession TLS upgrade, and StartService for AFC.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use plist::{Dictionary, Value};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{crypto, Device, TrustState, TrustedHost};

const MAX_PLIST: u32 = 4 << 20;

pub(super) async fn serve(dev: Arc<Device>, sock: TcpStream) {
    let mut attached = dev.attached.subscribe();
    tokio::select! {
        r = run(dev.clone(), sock) => {
            if let Err(e) = r {
                tracing::debug!("virtual lockdownd: connection ended: {e:#}");
            }
        }
        // Unplugged: the socket closes under the client.
        _ = attached.wait_for(|a| !*a) => {}
    }
}

/// What the conversation asks of the connection after a reply.
enum Next {
    Close,
    StartTls(TrustedHost),
    StopTls,
}

async fn run(dev: Arc<Device>, mut sock: TcpStream) -> Result<()> {
    loop {
        match conversation(&dev, &mut sock, false).await? {
            Next::Close | Next::StopTls => return Ok(()),
            Next::StartTls(host) => {
                let config = tls_config(&dev, &host)?;
                let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(sock).await?;
                match conversation(&dev, &mut tls, true).await? {
                    Next::StopTls => {
                        // Clients that stop the session shut TLS down (close_notify) and
                        // go on in plaintext on the same socket.
                        let mut b = [0u8; 1];
                        match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut b)).await {
                            Ok(Ok(0)) => sock = tls.into_inner().0,
                            _ => return Ok(()),
                        }
                    }
                    _ => return Ok(()),
                }
            }
        }
    }
}

async fn read_plist<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<Dictionary>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_PLIST {
        return Err(anyhow!("lockdown message of {len} bytes"));
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await?;
    // XML or binary: plist::from_bytes tells them apart.
    Ok(Some(plist::from_bytes(&body)?))
}

async fn write_plist<S: AsyncWrite + Unpin>(s: &mut S, d: Dictionary) -> Result<()> {
    let mut xml = Vec::new();
    Value::Dictionary(d).to_writer_xml(&mut xml)?;
    let mut msg = (xml.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&xml);
    s.write_all(&msg).await?;
    s.flush().await?;
    Ok(())
}

fn reply(request: &str) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("Request".into(), request.into());
    d
}

fn error(request: &str, name: &str) -> Dictionary {
    let mut d = reply(request);
    d.insert("Error".into(), name.into());
    d
}

/// Serves requests until the connection ends or the TLS state must change.
async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(
    dev: &Device,
    s: &mut S,
    in_session: bool,
) -> Result<Next> {
    loop {
        let Some(req) = read_plist(s).await? else {
            return Ok(Next::Close);
        };
        let request = req
            .get("Request")
            .and_then(|v| v.as_string())
            .unwrap_or("")
            .to_string();
        let r = request.as_str();
        let mut next = None;
        let answer = match r {
            "QueryType" => {
                let mut d = reply(r);
                d.insert("Type".into(), "com.apple.mobile.lockdown".into());
                d
            }
            "GetValue" => get_value(dev, &req),
            "SetValue" => error(r, "SetProhibited"),
            "RemoveValue" => error(r, "RemoveProhibited"),
            "Pair" => pair(dev, &req),
            "ValidatePair" => {
                match host_id_of(&req).filter(|h| dev.lock().trusted.contains_key(h)) {
                    Some(_) => reply(r),
                    None => error(r, "InvalidHostID"),
                }
            }
            "Unpair" => {
                let host = host_id_of(&req).unwrap_or_default();
                let mut inner = dev.lock();
                if inner.trusted.remove(&host).is_some() {
                    dev.persist(&inner);
                    reply(r)
                } else {
                    error(r, "InvalidHostID")
                }
            }
            "StartSession" if in_session => error(r, "SessionActive"),
            "StartSession" => {
                let host = req.get("HostID").and_then(|v| v.as_string()).unwrap_or("");
                let trusted = dev.lock().trusted.get(host).cloned();
                match trusted {
                    // A phone rebooted and not unlocked since cannot unlock its pairing
                    // keys (escrow): it refuses sessions with the error every client maps
                    // to "unlock it" (libimobiledevice, pymobiledevice3 and idevice alike).
                    Some(_) if dev.cfg.state == TrustState::Locked => error(r, "PasswordProtected"),
                    Some(h) => {
                        dev.count(|s| s.sessions += 1);
                        let mut d = reply(r);
                        d.insert("EnableSessionSSL".into(), true.into());
                        d.insert("SessionID".into(), crypto::random_uuid().into());
                        next = Some(Next::StartTls(h));
                        d
                    }
                    None => error(r, "InvalidHostID"),
                }
            }
            "StopSession" if in_session => {
                next = Some(Next::StopTls);
                reply(r)
            }
            "StopSession" => error(r, "SessionInactive"),
            "StartService" if !in_session => error(r, "SessionInactive"),
            "StartService" => {
                let service = req.get("Service").and_then(|v| v.as_string()).unwrap_or("");
                if service == "com.apple.afc" {
                    let port = {
                        let mut inner = dev.lock();
                        let p = inner.next_port;
                        inner.next_port = if p >= 65000 { 49152 } else { p + 1 };
                        inner.afc_ports.insert(p);
                        p
                    };
                    let mut d = reply(r);
                    d.insert("Port".into(), (port as u64).into());
                    d.insert("Service".into(), service.into());
                    d
                } else {
                    error(r, "InvalidService")
                }
            }
            "Goodbye" => {
                let mut d = reply(r);
                d.insert("Result".into(), "Success".into());
                next = Some(Next::Close);
                d
            }
            _ => error(r, "InvalidRequest"),
        };
        write_plist(s, answer).await?;
        if let Some(n) = next {
            return Ok(n);
        }
    }
}

fn host_id_of(req: &Dictionary) -> Option<String> {
    req.get("PairRecord")
        .and_then(|v| v.as_dictionary())
        .and_then(|d| d.get("HostID"))
        .and_then(|v| v.as_string())
        .map(str::to_string)
}

fn device_values(dev: &Device) -> Dictionary {
    let mut d = Dictionary::new();
    let c = &dev.cfg;
    let major: u64 = c
        .ios_version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(17);
    d.insert("ActivationState".into(), "Activated".into());
    d.insert("BasebandVersion".into(), "3.02.01".into());
    d.insert(
        "BluetoothAddress".into(),
        bluetooth_mac(&dev.wifi_mac).into(),
    );
    d.insert(
        "BuildVersion".into(),
        format!("{}F{}", major + 4, 90).into(),
    );
    d.insert("CPUArchitecture".into(), "arm64e".into());
    d.insert("DeviceClass".into(), "iPhone".into());
    d.insert("DeviceColor".into(), "1".into());
    d.insert("DeviceName".into(), c.name.clone().into());
    d.insert(
        "DevicePublicKey".into(),
        Value::Data(dev.device_public_pem.clone().into_bytes()),
    );
    d.insert("HardwareModel".into(), "N104AP".into());
    d.insert("HostAttached".into(), true.into());
    d.insert("ModelNumber".into(), "MWLT2".into());
    d.insert("PasswordProtected".into(), true.into());
    d.insert("ProductName".into(), "iPhone OS".into());
    d.insert("ProductType".into(), c.product_type.clone().into());
    d.insert("ProductVersion".into(), c.ios_version.clone().into());
    d.insert("ProtocolVersion".into(), "2".into());
    d.insert("RegionInfo".into(), "LL/A".into());
    d.insert(
        "SerialNumber".into(),
        crypto::uuid_from(&dev.udid)[..12].replace('-', "X").into(),
    );
    d.insert("TimeZone".into(), "Europe/Berlin".into());
    d.insert("TrustedHostAttached".into(), true.into());
    d.insert("UniqueChipID".into(), 0x001A_2D3A_3E88_802Eu64.into());
    d.insert("UniqueDeviceID".into(), dev.udid.clone().into());
    d.insert("WiFiAddress".into(), dev.wifi_mac.clone().into());
    d
}

/// The Bluetooth address: the Wi-Fi one plus one, as on Apple hardware.
fn bluetooth_mac(wifi: &str) -> String {
    let last = wifi
        .rsplit(':')
        .next()
        .and_then(|h| u8::from_str_radix(h, 16).ok());
    match (last, wifi.rfind(':')) {
        (Some(b), Some(i)) => format!("{}:{:02x}", &wifi[..i], b.wrapping_add(1)),
        _ => wifi.to_string(),
    }
}

fn get_value(dev: &Device, req: &Dictionary) -> Dictionary {
    let key = req.get("Key").and_then(|v| v.as_string());
    let domain = req.get("Domain").and_then(|v| v.as_string());
    let values = match domain {
        None => device_values(dev),
        Some("com.apple.disk_usage") => {
            let mut d = Dictionary::new();
            d.insert("TotalDiskCapacity".into(), 128_000_000_000u64.into());
            d.insert("TotalDataCapacity".into(), 113_000_000_000u64.into());
            d.insert("AmountDataAvailable".into(), 41_000_000_000u64.into());
            d
        }
        Some(_) => Dictionary::new(),
    };
    let mut d = reply("GetValue");
    if let Some(dom) = domain {
        d.insert("Domain".into(), dom.into());
    }
    match key {
        None => {
            d.insert("Value".into(), Value::Dictionary(values));
        }
        Some(k) => match values.get(k) {
            Some(v) => {
                d.insert("Key".into(), k.into());
                d.insert("Value".into(), v.clone());
            }
            None => {
                d.insert("Key".into(), k.into());
                d.insert("Error".into(), "MissingValue".into());
            }
        },
    }
    d
}

/// Pair: the Trust dialog. The host sends a pair record whose DeviceCertificate it issued
/// for our public key; on "Trust" the device remembers that host.
fn pair(dev: &Device, req: &Dictionary) -> Dictionary {
    let r = "Pair";
    if dev.cfg.state == TrustState::Locked {
        return error(r, "PasswordProtected");
    }
    let Some(rec) = req.get("PairRecord").and_then(|v| v.as_dictionary()) else {
        return error(r, "InvalidPairRecord");
    };
    let pem = |k: &str| {
        rec.get(k)
            .and_then(|v| v.as_data())
            .and_then(crypto::cert_der_from_pem)
    };
    let (Some(host_id), Some(host_cert), Some(root_cert), Some(device_cert)) = (
        rec.get("HostID").and_then(|v| v.as_string()),
        pem("HostCertificate"),
        pem("RootCertificate"),
        pem("DeviceCertificate"),
    ) else {
        return error(r, "InvalidPairRecord");
    };
    if dev.cfg.deny_trust {
        return error(r, "UserDeniedPairing");
    }
    let mut inner = dev.lock();
    if dev.cfg.state == TrustState::Untrusted && inner.pair_attempts < dev.cfg.trust_after {
        inner.pair_attempts += 1;
        return error(r, "PairingDialogResponsePending");
    }
    inner.trusted.insert(
        host_id.to_string(),
        TrustedHost {
            host_cert_der: host_cert,
            root_cert_der: root_cert,
            device_cert_der: device_cert,
        },
    );
    inner.stats.pairs += 1;
    dev.write_stats(&inner.stats);
    dev.persist(&inner);
    drop(inner);
    let mut d = reply(r);
    d.insert("EscrowBag".into(), Value::Data(crypto::random_bytes(32)));
    d
}

/// The device as TLS server: its certificate is the one the host issued it at pairing;
/// it asks for a client certificate and accepts the host's or root certificate of that
/// pairing by their bytes (pairing certificates do not form a verifiable chain).
fn tls_config(dev: &Device, host: &TrustedHost) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PairedHostVerifier {
        accepted: vec![host.host_cert_der.clone(), host.root_cert_der.clone()],
        algorithms: provider.signature_verification_algorithms,
    });
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(dev.device_key_pkcs8.clone()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(host.device_cert_der.clone())],
            key,
        )?;
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PairedHostVerifier {
    accepted: Vec<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PairedHostVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self
            .accepted
            .iter()
            .any(|c| c.as_slice() == end_entity.as_ref())
        {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
