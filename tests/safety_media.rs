//! Hostile media and what a copy keeps of its source: metadata reading does work linear
//! in the file and capped per file; stored and exported files keep the source's
//! modification time; the virtual iPhone keeps its private keys private.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::phones::{android_cmd, run_bounded, Sim};
use common::*;

/// 2019-03-01T12:00:00Z: the source's modification time of most files here.
const SOURCE_TIME: i64 = 1_551_441_600;
/// 2018-01-15T09:30:00Z: a second source time.
const OTHER_TIME: i64 = 1_516_008_600;

fn set_mtime(p: &Path, unix: i64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(unix as u64))
        .unwrap();
}

/// Writes `bytes` at `p` (creating its folders) with modification time `unix`.
fn write(p: &Path, bytes: &[u8], unix: i64) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
    set_mtime(p, unix);
}

fn mtime(p: &Path) -> i64 {
    fs::metadata(p)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `n` pseudo-random bytes from `seed`, after a JPEG start: distinct content per file.
fn photo(seed: &str, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut v);
    v[..4].copy_from_slice(b"\xFF\xD8\xFF\xDB");
    v
}

/// The store path of the file with this content.
fn stored_path(dest: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let h = blake3::hash(bytes).to_hex().to_string();
    let files = store_files(dest);
    let (rel, _) = files
        .iter()
        .find(|(_, hash)| **hash == h)
        .unwrap_or_else(|| panic!("not stored; the store holds {files:?}"));
    dest.join(rel)
}

/// "2019-03-01T12:00:00Z (1551441600)", for messages.
fn when(unix: i64) -> String {
    let t = jiff::Timestamp::from_second(unix).unwrap();
    format!("{t} ({unix})")
}

fn assert_time(p: &Path, want: i64, what: &str) {
    let got = mtime(p);
    assert_eq!(
        got,
        want,
        "{what}: {} has mtime {}, the source's is {}",
        p.display(),
        when(got),
        when(want)
    );
}

// ---------------------------------------------------------------------------------
// Bounded work on hostile media

/// A JPEG of `size` bytes made of 4-byte APP2..APP15 segments, then an EXIF APP1 whose
/// DateTimeOriginal is 2015-06-07 08:09:10, then the end of the image.
fn jpeg_of_tiny_segments(size: usize) -> Vec<u8> {
    let mut out = b"\xFF\xD8".to_vec();
    let mut code = 0xE2u8;
    while out.len() < size {
        out.extend_from_slice(&[0xFF, code, 0, 4, 0, 0]);
        code = if code == 0xEF { 0xE2 } else { code + 1 };
    }
    out.extend(exif_app1("2015:06:07 08:09:10"));
    out.extend_from_slice(b"\xFF\xD9");
    out
}

/// An APP1 segment holding a big-endian TIFF block with one entry: DateTimeOriginal.
fn exif_app1(date: &str) -> Vec<u8> {
    let mut value = date.as_bytes().to_vec();
    value.push(0);
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&0x9003u16.to_be_bytes());
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&(value.len() as u32).to_be_bytes());
    tiff.extend_from_slice(&26u32.to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend(value);
    let mut seg = b"\xFF\xE1".to_vec();
    seg.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend(tiff);
    seg
}

fn bmff_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// An ISO-BMFF file of brand `brand`, `size` bytes of empty `free` boxes after its
/// `ftyp`, then a `moov` whose `mvhd` says it was made on 2016-04-05 06:07:08 UTC.
fn bmff_of_tiny_boxes(brand: &[u8; 4], size: usize) -> Vec<u8> {
    let mut ftyp = brand.to_vec();
    ftyp.extend_from_slice(&[0; 4]);
    ftyp.extend_from_slice(brand);
    let mut out = bmff_box(b"ftyp", &ftyp);
    while out.len() < size {
        out.extend(bmff_box(b"free", b""));
    }
    out.extend(moov(1_459_836_428));
    out
}

/// A WebM of `size` bytes: its header, then a segment of 2-byte Void elements. Not
/// walked ahead of the parser: the time limit on reading metadata bounds it.
fn webm_of_tiny_elements(size: usize) -> Vec<u8> {
    let mut out = b"\x1A\x45\xDF\xA3\x87\x42\x82\x84webm".to_vec();
    out.extend_from_slice(b"\x18\x53\x80\x67\x01\xFF\xFF\xFF\xFF\xFF\xFF\xFF");
    while out.len() < size {
        out.extend_from_slice(b"\xEC\x80");
    }
    out
}

/// A `moov` box holding only an `mvhd` with this creation time (Unix seconds).
fn moov(unix: u32) -> Vec<u8> {
    let since_1904 = unix + 2_082_844_800;
    let mut mvhd = vec![0u8; 4];
    for v in [since_1904, since_1904, 1000, 1000, 0x10000] {
        mvhd.extend_from_slice(&v.to_be_bytes());
    }
    mvhd.extend_from_slice(&0x100u16.to_be_bytes());
    mvhd.extend_from_slice(&[0; 10 + 36 + 24]);
    mvhd.extend_from_slice(&2u32.to_be_bytes());
    bmff_box(b"moov", &bmff_box(b"mvhd", &mvhd))
}

/// Runs `cmd` to its end and returns its result and the CPU time (user + system) it
/// used. A run still going after `limit` is killed and fails the test.
// The child is reaped by `wait4` itself, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn run_cpu(mut cmd: Command, s: &Scratch, limit: Duration) -> (Done, Duration) {
    let (out, err) = (s.path("cpu.stdout"), s.path("cpu.stderr"));
    let mut child = cmd
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child (not yet reaped) without blocking.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid {
            break (status, usage);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("offload was still reading metadata after {limit:?}: its work is unbounded");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let done = Done {
        code,
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    };
    (done, cpu)
}

#[test]
fn files_of_many_tiny_segments_or_boxes_are_read_in_bounded_work_and_dated_by_the_next_rule() {
    let s = Scratch::new();
    let roll = s.path("roll/DCIM/Camera");
    // Each bomb is well past the caps (4096 segments or boxes) and holds a real date
    // at its end, which is therefore not read: the file's mtime dates it.
    let bombs: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bomb.jpg", jpeg_of_tiny_segments(4 << 20), "JPEG segments"),
        (
            "bomb.mov",
            bmff_of_tiny_boxes(b"qt  ", 2 << 20),
            "top-level boxes",
        ),
        (
            "bomb.heic",
            bmff_of_tiny_boxes(b"heic", 2 << 20),
            "top-level boxes",
        ),
    ];
    // Parts no walk here knows: reading stops when its time is up.
    let webm = webm_of_tiny_elements(2 << 20);
    write(&roll.join("bomb.webm"), &webm, SOURCE_TIME);
    // The same structures under the caps: the date at their end is found.
    let fine: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "few-segments.jpg",
            jpeg_of_tiny_segments(4000 * 6),
            "2015-06-07T08:09:10",
            "exif",
        ),
        (
            "few-boxes.mov",
            bmff_of_tiny_boxes(b"qt  ", 4000 * 8),
            // 06:07:08 UTC is 08:07:08 in Paris (summer time).
            "2016-04-05T08:07:08",
            "quicktime",
        ),
    ];
    let mut total = webm.len();
    for (name, bytes, _) in &bombs {
        write(&roll.join(name), bytes, SOURCE_TIME);
        total += bytes.len();
    }
    for (name, bytes, ..) in &fine {
        write(&roll.join(name), bytes, SOURCE_TIME);
        total += bytes.len();
    }
    let dest = s.path("dest");
    let mut cmd = s.cmd(&[
        "backup",
        "--from",
        s.path("roll").to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ]);
    cmd.env("OFFLOAD_LOG", "offload=debug");
    let (r, cpu) = run_cpu(cmd, &s, Duration::from_secs(90));
    r.ok();
    // Reading the metadata of these files costs milliseconds (the WebM: at most its
    // 3 s limit); copying and hashing them (a debug build) well under a second. The
    // limit is generous: one second per MB and ten more. Before the walks were
    // bounded, the 4 MB JPEG alone took minutes.
    let limit = Duration::from_secs(10 + (total >> 20) as u64);
    assert!(
        cpu < limit,
        "backing up {} MB of hostile media took {cpu:?} of CPU (limit {limit:?})",
        total >> 20
    );
    eprintln!(
        "{} MB of hostile media backed up with {cpu:?} of CPU",
        total >> 20
    );

    let cat = catalog_files(&dest);
    let row = |bytes: &[u8]| {
        let h = blake3::hash(bytes).to_hex().to_string();
        cat.values()
            .find(|v| v.0 == h)
            .cloned()
            .unwrap_or_else(|| panic!("not stored: {cat:?}"))
    };
    for (name, bytes, what) in &bombs {
        let (_, captured, source, _) = row(bytes);
        // 12:00 UTC is 13:00 in Paris.
        assert_eq!(
            (captured.as_str(), source.as_str()),
            ("2019-03-01T13:00:00", "mtime"),
            "{name}"
        );
        let line = format!("metadata walk: 4096 {what} walked in");
        let logged = r
            .stderr
            .lines()
            .find(|l| l.contains(&line) && l.ends_with("gave up"));
        assert!(
            logged.is_some(),
            "{name}: no `{line} ...: gave up` line; the walk is not capped:\n{}",
            r.stderr
        );
    }
    assert_eq!(
        {
            let (_, captured, source, _) = row(&webm);
            (captured, source)
        },
        ("2019-03-01T13:00:00".to_string(), "mtime".to_string()),
        "bomb.webm"
    );
    assert!(
        r.stderr.contains("metadata read stopped: its time is up"),
        "bomb.webm: its reading was not stopped:\n{}",
        r.stderr
    );
    for (name, bytes, date, source) in &fine {
        let (_, captured, ds, _) = row(bytes);
        assert_eq!((captured.as_str(), ds.as_str()), (*date, *source), "{name}");
    }
    assert_eq!(store_files(&dest).len(), bombs.len() + fine.len() + 1);
}

// ---------------------------------------------------------------------------------
// Keep the phone's dates

#[test]
fn a_folder_backup_keeps_each_files_mtime_or_else_its_capture_date() {
    let s = Scratch::new();
    let roll = s.path("card/DCIM/100MEDIA");
    let plain = photo("plain", 5000);
    write(&roll.join("DSC_0001.JPG"), &plain, SOURCE_TIME);
    // No time from the source (mtime 0): the date in its name, 10:11:12 in Paris.
    let undated = photo("undated", 5000);
    write(&roll.join("IMG_20210704_101112.jpg"), &undated, 0);
    let dest = s.path("dest");
    s.backup_from("card", &dest).ok();
    assert_time(&stored_path(&dest, &plain), SOURCE_TIME, "stored");
    assert_time(
        &stored_path(&dest, &undated),
        1_625_386_272,
        "stored with no source time",
    );

    // The same content seen again with another time is a duplicate: the stored file
    // is not rewritten, and keeps the time it was stored with.
    let again = s.path("again/DCIM/100MEDIA");
    write(&again.join("copy.jpg"), &plain, OTHER_TIME);
    s.backup_from("again", &dest).ok();
    assert_eq!(store_files(&dest).len(), 2);
    assert_time(&stored_path(&dest, &plain), SOURCE_TIME, "a duplicate");
}

#[test]
fn an_android_backup_keeps_the_phones_modification_dates() {
    let s = Scratch::new();
    let phone = s.path("pixel");
    let bytes = photo("android", 7000);
    write(&phone.join("DCIM/Camera/PXL_0001.jpg"), &bytes, SOURCE_TIME);
    let dest = s.path("dest");
    let args = ["backup", "--to", dest.to_str().unwrap(), "--json"];
    run_bounded(android_cmd(&s, &[&phone], "", &args), &s).ok();
    let got = mtime(&stored_path(&dest, &bytes));
    // The virtual phone states local times on today's UTC offset, not the offset of
    // the file's date as a real phone does: across a DST change it is an hour off.
    assert!(
        (got - SOURCE_TIME).abs() <= 3600,
        "stored with mtime {}, the phone's is {}",
        when(got),
        when(SOURCE_TIME)
    );
}

#[test]
fn an_iphone_backup_keeps_the_phones_modification_dates() {
    let s = Scratch::new();
    let phone = s.path("phone");
    let bytes = photo("iphone", 9000);
    write(
        &phone.join("DCIM/100APPLE/IMG_0001.JPG"),
        &bytes,
        SOURCE_TIME,
    );
    let sim = Sim::start(&s, &phone, &[]);
    let dest = s.path("dest");
    sim.run(&s, &["backup", "--to", dest.to_str().unwrap()])
        .ok();
    assert_time(
        &stored_path(&dest, &bytes),
        SOURCE_TIME,
        "stored from the iPhone",
    );
}

#[test]
fn exported_files_keep_the_source_time_from_the_store_and_from_a_folder() {
    let s = Scratch::new();
    let roll = s.path("card/DCIM/100MEDIA");
    let a = photo("export a", 6000);
    let b = photo("export b", 6000);
    write(&roll.join("A.JPG"), &a, SOURCE_TIME);
    write(&roll.join("B.JPG"), &b, OTHER_TIME);
    let dest = s.path("dest");
    s.backup_from("card", &dest).ok();

    let out = s.path("from-store");
    s.run(&[
        "export",
        "--from-store",
        dest.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--flat",
    ])
    .ok();
    assert_time(&out.join("A.JPG"), SOURCE_TIME, "exported from the store");
    assert_time(&out.join("B.JPG"), OTHER_TIME, "exported from the store");

    let out = s.path("from-card");
    s.run(&[
        "export",
        "--from",
        s.path("card").to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--flat",
    ])
    .ok();
    assert_time(&out.join("A.JPG"), SOURCE_TIME, "exported from a folder");
    assert_time(&out.join("B.JPG"), OTHER_TIME, "exported from a folder");
}

#[cfg(feature = "heic")]
#[test]
fn a_heic_converted_on_export_keeps_the_source_time() {
    let Some(fx) = fixtures("the time of a HEIC converted to JPEG") else {
        return;
    };
    let s = Scratch::new();
    let card = s.path("card/DCIM/100APPLE");
    fs::create_dir_all(&card).unwrap();
    fs::copy(fx.join("IMG_5195.HEIC"), card.join("IMG_5195.HEIC")).unwrap();
    set_mtime(&card.join("IMG_5195.HEIC"), SOURCE_TIME);
    let dest = s.path("dest");
    s.backup_from("card", &dest).ok();
    for (from, out) in [("--from", "out-card"), ("--from-store", "out-store")] {
        let src = if from == "--from" {
            s.path("card")
        } else {
            dest.clone()
        };
        let out = s.path(out);
        s.run(&[
            "export",
            from,
            src.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--flat",
            "--convert-heic",
            "jpeg",
        ])
        .ok();
        assert_time(&out.join("IMG_5195.jpg"), SOURCE_TIME, from);
    }
}

// ---------------------------------------------------------------------------------
// Private keys

#[test]
fn the_virtual_iphone_keeps_its_keys_and_pair_records_private() {
    let s = Scratch::new();
    let phone = s.path("phone");
    write(
        &phone.join("DCIM/100APPLE/IMG_0001.JPG"),
        &photo("keys", 3000),
        SOURCE_TIME,
    );
    // A state folder whose parent does not exist yet: both are made private.
    let state = s.path("state/sim");
    let sim = Sim::spawn(&s, &phone, &["--state-dir", state.to_str().unwrap()]);
    let dest = s.path("dest");
    sim.run(&s, &["backup", "--to", dest.to_str().unwrap()])
        .ok();
    drop(sim);

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for dir in [&state, &s.path("state")] {
        assert_eq!(mode(dir), 0o700, "{} is {:o}", dir.display(), mode(dir));
    }
    let names: Vec<String> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.contains(&"device-key.pem".to_string())
            && names.contains(&format!("{}.plist", common::phones::UDID)),
        "{names:?}"
    );
    for name in &names {
        let p = state.join(name);
        assert_eq!(mode(&p), 0o600, "{name} is {:o}", mode(&p));
    }
}
