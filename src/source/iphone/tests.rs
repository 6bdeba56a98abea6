//! The iPhone source against the virtual iPhone, in-process.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::sim::iphone::{start, IphoneArgs, RunningSim, TrustState};

const BIG: usize = 9 * 1024 * 1024 + 12345;

/// Deterministic bytes, different per seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// An iPhone-like roll: two folders with the IMG_0001 roll-over clash, a live-photo pair,
/// a screenshot, a big video, a hidden file and the Photos library.
fn roll() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files: &[(&str, usize)] = &[
        ("DCIM/100APPLE/IMG_0001.HEIC", 300_000),
        ("DCIM/100APPLE/IMG_0002.HEIC", 200_000),
        ("DCIM/100APPLE/IMG_0002.MOV", 1_500_000),
        ("DCIM/100APPLE/IMG_0003.PNG", 50_000),
        ("DCIM/100APPLE/IMG_0004.MOV", BIG),
        ("DCIM/100APPLE/.hidden", 10),
        ("DCIM/101APPLE/IMG_0001.HEIC", 310_000),
        ("PhotoData/Photos.sqlite", 4096),
    ];
    for (i, (p, len)) in files.iter().enumerate() {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes(i as u64, *len)).unwrap();
    }
    dir
}

fn opts(sim: &RunningSim) -> Options {
    Options {
        usbmuxd: Some(sim.addr.to_string()),
        trust_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(10),
        io_timeout: Duration::from_secs(10),
        show_prompts: false,
        ..Options::default()
    }
}

fn only(found: Vec<Result<IphoneSource, Unreadable>>) -> Result<IphoneSource, Unreadable> {
    assert_eq!(found.len(), 1, "one phone attached");
    found.into_iter().next().unwrap()
}

fn open_one(sim: &RunningSim) -> IphoneSource {
    only(discover_with(&opts(sim)).expect("usbmuxd reachable")).expect("phone readable")
}

fn read_all(src: &mut IphoneSource, path: &str, offset: u64) -> Result<Vec<u8>, SourceError> {
    let entry = Entry::new(path, 0, 0);
    let mut r = src.open(&entry, offset)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(SourceError::from_io)?;
    Ok(out)
}

fn disk(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap()
}

#[test]
fn discovers_a_trusted_phone_and_lists_dcim() {
    let dir = roll();
    let sim = start(IphoneArgs::new(dir.path())).unwrap();
    let mut src = open_one(&sim);
    let info = src.info().clone();
    assert_eq!(info.id, format!("iphone:{}", sim.udid));
    assert_eq!(info.kind, SourceKind::Iphone);
    assert_eq!(info.name, "Virtual iPhone");
    assert_eq!(src.info().model.as_deref(), Some("iPhone12,1, iOS 17.5.1"));
    assert!(info.storages[0].free_bytes > 0 && info.storages[0].capacity_bytes > 0);

    let listing = src.list().unwrap();
    let paths: Vec<&str> = listing.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "DCIM/100APPLE/IMG_0001.HEIC",
            "DCIM/100APPLE/IMG_0002.HEIC",
            "DCIM/100APPLE/IMG_0002.MOV",
            "DCIM/100APPLE/IMG_0003.PNG",
            "DCIM/100APPLE/IMG_0004.MOV",
            "DCIM/101APPLE/IMG_0001.HEIC",
        ]
    );
    for e in &listing.entries {
        let meta = std::fs::metadata(dir.path().join(&e.path)).unwrap();
        assert_eq!(e.size, meta.len());
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(e.mtime, mtime.as_secs() as i64);
    }
    assert_eq!(listing.skipped.len(), 1);
    assert_eq!(listing.skipped[0].path, "DCIM/100APPLE/.hidden");
    assert!(listing.unreadable.is_empty());
    assert_eq!(sim.stats().file_opens, 0, "listing opens no file");
    assert_eq!(sim.stats().pairs, 0, "a trusted phone is not paired again");
}

#[test]
fn reads_every_file_whole_and_from_an_offset() {
    let dir = roll();
    let sim = start(IphoneArgs::new(dir.path())).unwrap();
    let mut src = open_one(&sim);
    let listing = src.list().unwrap();
    for e in &listing.entries {
        let got = read_all(&mut src, &e.path, 0).unwrap();
        assert_eq!(
            blake3::hash(&got),
            blake3::hash(&disk(dir.path(), &e.path)),
            "{}",
            e.path
        );
    }
    let big = "DCIM/100APPLE/IMG_0004.MOV";
    let tail = read_all(&mut src, big, 5_000_001).unwrap();
    assert_eq!(tail, disk(dir.path(), big)[5_000_001..]);

    // Whole replies handed over by `read_chunk`, after a few bytes taken by `read`: the
    // same bytes in the same order, each chunk one round trip at most.
    let opts = opts(&sim);
    let mut r = src.open(&Entry::new(big, 0, 0), 0).unwrap();
    let mut got = vec![0u8; 10];
    r.read_exact(&mut got).unwrap();
    let mut chunk = Vec::new();
    loop {
        let n = r.read_chunk(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= opts.read_chunk, "{n}");
        got.extend_from_slice(&chunk[..n]);
    }
    drop(r);
    assert_eq!(got, disk(dir.path(), big));
    let stats = sim.stats();
    assert_eq!(stats.file_opens, listing.entries.len() as u64 + 2);
    assert_eq!(stats.sessions, 1, "one session serves the whole run");
}

#[test]
fn untrusted_phone_pairs_after_the_dialog_and_saves_the_record() {
    let dir = roll();
    let state = tempfile::tempdir().unwrap();
    let mut args = IphoneArgs::new(dir.path());
    args.state = TrustState::Untrusted;
    args.trust_after = 3;
    args.state_dir = Some(state.path().to_path_buf());
    let sim = start(args.clone()).unwrap();
    let mut src = open_one(&sim);
    assert_eq!(src.list().unwrap().entries.len(), 6);
    assert_eq!(sim.stats().pairs, 1);
    drop(src);
    // Same simulator: usbmuxd now holds the record.
    let _src = open_one(&sim);
    assert_eq!(sim.stats().pairs, 1, "paired once");
    drop(sim);
    // A new simulator process with the same state directory remembers the pairing.
    let sim = start(args).unwrap();
    let mut src = open_one(&sim);
    assert_eq!(src.list().unwrap().entries.len(), 6);
    assert_eq!(sim.stats().pairs, 0);
}

#[test]
fn a_phone_that_forgot_us_is_paired_again() {
    let dir = roll();
    let sim = start(IphoneArgs::new(dir.path())).unwrap();
    // "Reset Location & Privacy" on the phone: it forgets the host, usbmuxd keeps the record.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let addr = UsbmuxdAddr::TcpSocket(sim.addr);
            let mut mux = addr.connect(0).await.unwrap();
            let record = mux.get_pair_record(&sim.udid).await.unwrap();
            let dev = mux.get_device(&sim.udid).await.unwrap();
            let mux = addr.connect(0).await.unwrap();
            let idev = mux
                .connect_to_device(dev.device_id, 62078, "t")
                .await
                .unwrap();
            LockdownClient::new(idev)
                .unpair(record.host_id)
                .await
                .unwrap();
        });
    let mut src = open_one(&sim);
    assert_eq!(sim.stats().pairs, 1);
    assert_eq!(src.list().unwrap().entries.len(), 6);
}

#[test]
fn unanswered_trust_dialog_reports_needs_trust() {
    let dir = roll();
    let mut args = IphoneArgs::new(dir.path());
    args.state = TrustState::Untrusted;
    args.trust_after = 1000;
    let sim = start(args).unwrap();
    let mut o = opts(&sim);
    o.trust_timeout = Duration::from_millis(100);
    let u = only(discover_with(&o).unwrap()).unwrap_err();
    assert_eq!(u.state, IphoneState::NeedsTrust);
    assert_eq!(u.udid, sim.udid);
    assert!(u.message.contains("Trust"));
    assert!(matches!(SourceError::from(u), SourceError::Blocked(_)));
}

#[test]
fn dont_trust_is_reported_with_what_to_do() {
    let dir = roll();
    let mut args = IphoneArgs::new(dir.path());
    args.state = TrustState::Untrusted;
    args.deny_trust = true;
    let sim = start(args).unwrap();
    let u = only(discover_with(&opts(&sim)).unwrap()).unwrap_err();
    assert_eq!(u.state, IphoneState::TrustDenied);
    assert_eq!(u.message, TRUST_DENIED);
}

#[test]
fn locked_phone_asks_to_be_unlocked() {
    let dir = roll();
    let mut args = IphoneArgs::new(dir.path());
    args.state = TrustState::Locked;
    let sim = start(args).unwrap();
    let u = only(discover_with(&opts(&sim)).unwrap()).unwrap_err();
    assert_eq!(u.state, IphoneState::Locked);
    assert!(u.message.starts_with("Unlock your iPhone"));
    assert_eq!(sim.stats().sessions, 0);
}

#[test]
fn no_usbmuxd_says_how_to_get_it() {
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = Options {
        usbmuxd: Some(free.to_string()),
        io_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let e = discover_with(&o).unwrap_err();
    assert!(e.message.starts_with(USBMUXD_NOT_RUNNING), "{}", e.message);
}

#[test]
fn dropped_connection_mid_file_resumes_by_itself() {
    let dir = roll();
    let mut args = IphoneArgs::new(dir.path());
    args.drop_connection_after_bytes = Some(5 * 1024 * 1024 + 7);
    let sim = start(args).unwrap();
    let mut src = open_one(&sim);
    let big = "DCIM/100APPLE/IMG_0004.MOV";
    let got = read_all(&mut src, big, 0).unwrap();
    assert_eq!(blake3::hash(&got), blake3::hash(&disk(dir.path(), big)));
    let stats = sim.stats();
    assert_eq!(stats.sessions, 2, "reconnected once");
    assert_eq!(stats.file_opens, 2, "reopened once");
    assert_eq!(stats.bytes_served, BIG as u64, "resumed where it stopped");
    // The source goes on working after the resume.
    let small = "DCIM/100APPLE/IMG_0003.PNG";
    assert_eq!(
        read_all(&mut src, small, 0).unwrap(),
        disk(dir.path(), small)
    );
}

#[test]
fn unplugged_phone_mid_file_is_gone() {
    let dir = roll();
    let mut args = IphoneArgs::new(dir.path());
    args.unplug_after_bytes = Some(3 * 1024 * 1024);
    let sim = start(args).unwrap();
    let mut src = open_one(&sim);
    let err = read_all(&mut src, "DCIM/100APPLE/IMG_0004.MOV", 0).unwrap_err();
    assert!(matches!(&err, SourceError::Gone(m) if m == GONE), "{err:?}");
    assert!(matches!(src.list(), Err(SourceError::Gone(_))));
    let found = discover_with(&opts(&sim)).unwrap();
    assert!(found.is_empty(), "usbmuxd lists no phone after the unplug");
}

#[test]
fn an_unreadable_file_fails_alone() {
    let dir = roll();
    let mut args = IphoneArgs::new(dir.path());
    args.unreadable = vec!["/DCIM/100APPLE/IMG_0002.HEIC".into()];
    let sim = start(args).unwrap();
    let mut src = open_one(&sim);
    let err = read_all(&mut src, "DCIM/100APPLE/IMG_0002.HEIC", 0).unwrap_err();
    assert!(matches!(err, SourceError::File(_)), "{err:?}");
    let err = read_all(&mut src, "DCIM/100APPLE/IMG_9999.HEIC", 0).unwrap_err();
    assert!(matches!(err, SourceError::File(_)), "{err:?}");
    let ok = "DCIM/100APPLE/IMG_0002.MOV";
    assert_eq!(read_all(&mut src, ok, 0).unwrap(), disk(dir.path(), ok));
    assert_eq!(sim.stats().sessions, 1, "no reconnect for a file error");
}

#[test]
fn hostile_names_come_back_raw_and_reads_stay_inside_the_roll() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.JPG"), b"outside the roll").unwrap();
    let dir = roll();
    std::os::unix::fs::symlink(
        outside.path().join("secret.JPG"),
        dir.path().join("DCIM/100APPLE/link.JPG"),
    )
    .unwrap();
    let long = format!("{}.JPG", "A".repeat(296));
    let hostile = [
        // (A name that starts with `.` would be skipped as hidden: `x/` keeps it listed.)
        "/DCIM/100APPLE/x/../../../../etc/passwd".to_string(),
        "/DCIM/100APPLE/IMG\u{1}\n\u{7f}.JPG".to_string(),
        format!("/DCIM/100APPLE/{long}"),
    ];
    let mut args = IphoneArgs::new(dir.path());
    args.overlay_entries = hostile
        .iter()
        .map(|p| (p.clone(), "DCIM/100APPLE/IMG_0003.PNG".to_string()))
        .collect();
    let sim = start(args).unwrap();
    let mut src = open_one(&sim);
    let listing = src.list().unwrap();
    let png = disk(dir.path(), "DCIM/100APPLE/IMG_0003.PNG");
    for h in &hostile {
        let e = listing
            .entries
            .iter()
            .find(|e| e.path == h[1..])
            .unwrap_or_else(|| panic!("{h:?} listed verbatim"));
        assert_eq!(e.name().len(), h.rsplit('/').next().unwrap().len());
        assert_eq!(read_all(&mut src, &e.path, 0).unwrap(), png);
    }
    assert!(listing
        .skipped
        .iter()
        .any(|s| s.path == "DCIM/100APPLE/link.JPG" && s.reason == "symbolic link"));
    // Whatever path a client asks for, the phone never serves a byte from outside.
    for p in [
        "DCIM/100APPLE/link.JPG",
        "DCIM/../../../../../../../../etc/passwd",
        "../secret.JPG",
    ] {
        assert!(
            matches!(read_all(&mut src, p, 0), Err(SourceError::File(_))),
            "{p}"
        );
    }
}
