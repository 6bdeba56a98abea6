//! Keys and certificates of the virtual iPhone: the device's own RSA key pair and, for
//! `--state trusted`, a complete host pair record shaped like the ones libimobiledevice
//! and macOS store in usbmuxd.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding, SubjectPublicKeyInfo};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::GeneralizedTime;
use x509_cert::der::{Encode, EncodePem};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// A fresh 2048-bit RSA key (what iOS and the pairing hosts use).
pub fn new_rsa_key() -> Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).context("generating an RSA key")
}

/// PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`): the form libimobiledevice writes into pair records.
pub fn private_key_pem(key: &RsaPrivateKey) -> Result<String> {
    Ok(key.to_pkcs1_pem(LineEnding::LF)?.to_string())
}

pub fn private_key_from_pem(pem: &str) -> Result<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs1_pem(pem).context("reading the device key")
}

/// PKCS#8 DER, for rustls.
pub fn private_key_pkcs8_der(key: &RsaPrivateKey) -> Result<Vec<u8>> {
    Ok(key.to_pkcs8_der()?.as_bytes().to_vec())
}

/// The lockdown `DevicePublicKey` value: PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`), as real
/// devices send it (idevice's pairing code parses only this form).
pub fn public_key_pem(key: &RsaPrivateKey) -> Result<String> {
    Ok(RsaPublicKey::from(key).to_pkcs1_pem(LineEnding::LF)?)
}

/// An X.509 certificate for `subject_key`, signed by `signer`. Pairing certificates
/// carry empty or trivial names; nobody verifies them as a chain.
pub fn make_cert(
    subject_key: &RsaPublicKey,
    signer: &RsaPrivateKey,
    ca: bool,
    serial: u8,
) -> Result<Vec<u8>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let validity = Validity {
        not_before: Time::GeneralTime(GeneralizedTime::from_unix_duration(
            now - Duration::from_secs(3600),
        )?),
        not_after: Time::GeneralTime(GeneralizedTime::from_unix_duration(
            now + Duration::from_secs(10 * 365 * 86400),
        )?),
    };
    let profile = if ca {
        Profile::Root
    } else {
        Profile::Leaf {
            issuer: Name::default(),
            enable_key_agreement: false,
            enable_key_encipherment: true,
        }
    };
    let signing_key = rsa::pkcs1v15::SigningKey::<Sha256>::new(signer.clone());
    let spki = SubjectPublicKeyInfo::from_key(subject_key.clone())?;
    let subject = if ca {
        Name::default()
    } else {
        Name::from_str("CN=Device")?
    };
    let builder = CertificateBuilder::new(
        profile,
        SerialNumber::new(&[serial])?,
        validity,
        subject,
        spki,
        &signing_key,
    )?;
    let cert = builder.build::<rsa::pkcs1v15::Signature>()?;
    Ok(cert.to_der()?)
}

pub fn cert_pem(der: &[u8]) -> Result<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der)?;
    Ok(cert.to_pem(LineEnding::LF)?)
}

/// DER bytes of the first certificate in a PEM blob (pair records store PEM; TLS carries DER).
pub fn cert_der_from_pem(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// An uppercase UUID derived from `seed`, so that one UDID always gets the same BUID.
pub fn uuid_from(seed: &str) -> String {
    let h = Sha256::digest(seed.as_bytes());
    let hex: String = h[..16].iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A random uppercase UUID.
pub fn random_uuid() -> String {
    use rsa::rand_core::RngCore;
    let mut b = [0u8; 16];
    rsa::rand_core::OsRng.fill_bytes(&mut b);
    uuid_from(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// Random bytes (escrow bags).
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rsa::rand_core::RngCore;
    let mut b = vec![0u8; n];
    rsa::rand_core::OsRng.fill_bytes(&mut b);
    b
}

/// What the device keeps about one trusted host, and what usbmuxd keeps about the device.
pub struct GeneratedRecord {
    /// The usbmuxd pair record (an XML plist), as a host would have saved it.
    pub record: Vec<u8>,
    pub host_id: String,
    pub host_cert_der: Vec<u8>,
    pub root_cert_der: Vec<u8>,
    pub device_cert_der: Vec<u8>,
}

/// A pair record as a pairing host creates it: a root CA, a host certificate and a device
/// certificate (for the device's own public key), all signed by the root.
pub fn generate_pair_record(
    device_key: &RsaPrivateKey,
    udid: &str,
    system_buid: &str,
    wifi_mac: &str,
) -> Result<GeneratedRecord> {
    let root_key = new_rsa_key()?;
    let host_key = new_rsa_key()?;
    let root_cert = make_cert(&RsaPublicKey::from(&root_key), &root_key, true, 0)?;
    let host_cert = make_cert(&RsaPublicKey::from(&host_key), &root_key, false, 1)?;
    let device_cert = make_cert(&RsaPublicKey::from(device_key), &root_key, false, 2)?;
    let host_id = random_uuid();
    let mut d = plist::Dictionary::new();
    let data = |s: String| plist::Value::Data(s.into_bytes());
    d.insert("DeviceCertificate".into(), data(cert_pem(&device_cert)?));
    d.insert("EscrowBag".into(), plist::Value::Data(random_bytes(32)));
    d.insert("HostCertificate".into(), data(cert_pem(&host_cert)?));
    d.insert("HostID".into(), host_id.clone().into());
    d.insert("HostPrivateKey".into(), data(private_key_pem(&host_key)?));
    d.insert("RootCertificate".into(), data(cert_pem(&root_cert)?));
    d.insert("RootPrivateKey".into(), data(private_key_pem(&root_key)?));
    d.insert("SystemBUID".into(), system_buid.into());
    d.insert("UDID".into(), udid.into());
    d.insert("WiFiMACAddress".into(), wifi_mac.into());
    let mut record = Vec::new();
    plist::Value::Dictionary(d).to_writer_xml(&mut record)?;
    Ok(GeneratedRecord {
        record,
        host_id,
        host_cert_der: host_cert,
        root_cert_der: root_cert,
        device_cert_der: device_cert,
    })
}
