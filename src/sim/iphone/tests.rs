//! The virtual iPhone at the wire level, through idevice's own client calls.

use idevice::afc::opcode::{AfcFopenMode, AfcOpcode};
use idevice::afc::AfcClient;
use idevice::lockdown::LockdownClient;
use idevice::usbmuxd::{UsbmuxdAddr, UsbmuxdListenEvent};
use idevice::IdeviceError;

use super::*;

fn sim(dir: &Path) -> RunningSim {
    std::fs::create_dir_all(dir.join("DCIM/100APPLE")).unwrap();
    std::fs::write(dir.join("DCIM/100APPLE/IMG_0001.JPG"), b"jpeg bytes").unwrap();
    start(IphoneArgs::new(dir)).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Raw usbmuxd request → reply body.
async fn mux_raw(addr: SocketAddr, body: &Dictionary) -> Dictionary {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut xml = Vec::new();
    plist::Value::Dictionary(body.clone())
        .to_writer_xml(&mut xml)
        .unwrap();
    let mut pkt = (16 + xml.len() as u32).to_le_bytes().to_vec();
    for w in [1u32, 8, 77] {
        pkt.extend_from_slice(&w.to_le_bytes());
    }
    pkt.extend_from_slice(&xml);
    s.write_all(&pkt).await.unwrap();
    let mut hdr = [0u8; 16];
    s.read_exact(&mut hdr).await.unwrap();
    assert_eq!(
        u32::from_le_bytes(hdr[12..16].try_into().unwrap()),
        77,
        "tag echoed"
    );
    let len = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize - 16;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    assert!(body.starts_with(b"<?xml"), "replies are XML");
    plist::from_bytes(&body).unwrap()
}

use plist::Dictionary;

fn msg(kind: &str, extra: &[(&str, plist::Value)]) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("MessageType".into(), kind.into());
    for (k, v) in extra {
        d.insert((*k).into(), v.clone());
    }
    d
}

#[test]
fn usbmuxd_answers_like_the_real_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    rt().block_on(async {
        let list = mux_raw(sim.addr, &msg("ListDevices", &[])).await;
        let entry = list["DeviceList"].as_array().unwrap()[0].as_dictionary().unwrap();
        assert_eq!(entry["MessageType"].as_string(), Some("Attached"));
        assert_eq!(entry["DeviceID"].as_unsigned_integer(), Some(1));
        let props = entry["Properties"].as_dictionary().unwrap();
        assert_eq!(props["SerialNumber"].as_string(), Some(sim.udid.as_str()));
        assert_eq!(props["ConnectionType"].as_string(), Some("USB"));
        assert_eq!(props["DeviceID"].as_unsigned_integer(), Some(1));

        let none = mux_raw(sim.addr, &msg("ReadPairRecord", &[("PairRecordID", "nope".into())])).await;
        assert_eq!(none["Number"].as_unsigned_integer(), Some(2));
        let port = |p: u16| plist::Value::from(p.to_be() as u64);
        let refused = mux_raw(
            sim.addr,
            &msg("Connect", &[("DeviceID", 1u64.into()), ("PortNumber", port(1234))]),
        )
        .await;
        assert_eq!(refused["Number"].as_unsigned_integer(), Some(3));
        let bad = mux_raw(
            sim.addr,
            &msg("Connect", &[("DeviceID", 9u64.into()), ("PortNumber", port(62078))]),
        )
        .await;
        assert_eq!(bad["Number"].as_unsigned_integer(), Some(2));
        let unknown = mux_raw(sim.addr, &msg("Frobnicate", &[])).await;
        assert_eq!(unknown["Number"].as_unsigned_integer(), Some(1));

        // idevice's own client: BUID, pair record, and Listen events through an unplug.
        let addr = UsbmuxdAddr::TcpSocket(sim.addr);
        let mut mux = addr.connect(0).await.unwrap();
        assert_eq!(mux.get_buid().await.unwrap().len(), 36);
        let record = mux.get_pair_record(&sim.udid).await.unwrap();
        assert_eq!(record.system_buid, mux.get_buid().await.unwrap());
        let mut listener = addr.connect(1).await.unwrap();
        let mut events = listener.listen().await.unwrap();
        assert!(matches!(next(&mut events).await, Some(Ok(UsbmuxdListenEvent::Connected(d))) if d.udid == sim.udid));
        sim.unplug();
        assert!(matches!(next(&mut events).await, Some(Ok(UsbmuxdListenEvent::Disconnected(1)))));
        assert!(mux.get_devices().await.unwrap().is_empty());
    });
}

#[test]
fn lockdown_and_afc_behave_like_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    rt().block_on(async {
        let addr = UsbmuxdAddr::TcpSocket(sim.addr);
        let mut mux = addr.connect(0).await.unwrap();
        let dev = mux.get_device(&sim.udid).await.unwrap();
        let pairing = mux.get_pair_record(&sim.udid).await.unwrap();
        let provider = dev.to_provider(addr.clone(), "test");
        use idevice::provider::IdeviceProvider;

        let mut lockdown = LockdownClient::new(provider.connect(62078).await.unwrap());
        assert_eq!(
            lockdown.idevice.get_type().await.unwrap(),
            "com.apple.mobile.lockdown"
        );
        let e = lockdown
            .get_value(Some("NoSuchKey"), None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("MissingValue"), "{e}");
        let e = lockdown.start_service("com.apple.afc").await.unwrap_err();
        assert!(matches!(e, IdeviceError::SessionInactive), "{e:?}");
        let mut stranger = pairing.clone();
        stranger.host_id = "00000000-0000-0000-0000-000000000000".into();
        let e = lockdown.start_session(&stranger).await.unwrap_err();
        assert!(matches!(e, IdeviceError::InvalidHostID), "{e:?}");

        let mut lockdown = LockdownClient::new(provider.connect(62078).await.unwrap());
        lockdown.start_session(&pairing).await.unwrap();
        let all = lockdown.get_value(None, None).await.unwrap();
        assert_eq!(
            all.as_dictionary().unwrap()["DeviceClass"].as_string(),
            Some("iPhone")
        );
        let e = lockdown
            .start_service("com.apple.mobilebackup2")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("InvalidService"), "{e}");
        let (port, ssl) = lockdown.start_service("com.apple.afc").await.unwrap();
        assert!(!ssl);

        let mut afc = AfcClient::new(provider.connect(port).await.unwrap());
        assert_eq!(
            afc.list_dir("/DCIM/100APPLE").await.unwrap(),
            [".", "..", "IMG_0001.JPG"]
        );
        let info = afc
            .get_file_info("/DCIM/100APPLE/IMG_0001.JPG")
            .await
            .unwrap();
        assert_eq!((info.size, info.st_ifmt.as_str()), (10, "S_IFREG"));
        assert_eq!(afc.get_device_info().await.unwrap().model, "iPhone12,1");
        let e = afc.get_file_info("/DCIM/nothing").await.unwrap_err();
        assert!(matches!(
            e,
            IdeviceError::Afc(idevice::afc::errors::AfcError::ObjectNotFound)
        ));
        // A read-only camera roll: no writes, deletes or renames.
        assert!(afc.remove("/DCIM/100APPLE/IMG_0001.JPG").await.is_err());
        assert!(afc
            .rename("/DCIM/100APPLE/IMG_0001.JPG", "/x")
            .await
            .is_err());
        assert!(afc.mk_dir("/DCIM/new").await.is_err());
        let mut hp = (AfcFopenMode::WrOnly as u64).to_le_bytes().to_vec();
        hp.extend_from_slice(b"/DCIM/100APPLE/IMG_0001.JPG");
        assert!(afc
            .send_op(AfcOpcode::FileOpen, hp, Vec::new())
            .await
            .is_err());
        let mut f = afc
            .open("/DCIM/100APPLE/IMG_0001.JPG", AfcFopenMode::RdOnly)
            .await
            .unwrap();
        assert_eq!(f.read_entire().await.unwrap(), b"jpeg bytes");
        f.close().await.unwrap();
    });
    assert!(dir.path().join("DCIM/100APPLE/IMG_0001.JPG").exists());
    assert_eq!(sim.stats().file_opens, 1);
}

#[test]
fn stats_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    std::fs::create_dir_all(dir.path().join("roll")).unwrap();
    let mut args = IphoneArgs::new(dir.path().join("roll"));
    args.stats = Some(stats.clone());
    let _sim = start(args).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(v["file_opens"], 0);
    assert_eq!(v["pairs"], 0);
}

/// `StreamExt::next`, with only the `Stream` trait.
async fn next<S: futures_core::Stream + ?Sized>(s: &mut std::pin::Pin<Box<S>>) -> Option<S::Item> {
    std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await
}
