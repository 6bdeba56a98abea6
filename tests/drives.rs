//! Destinations on real drives: found by label, refused when unplugged, FAT/exFAT name
//! rules, several destinations caught up. Needs root (loop devices, mounts).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A filesystem image on a loop device, mounted; unmounted and detached on drop.
struct Drive {
    mnt: PathBuf,
    loopdev: Option<String>,
    mounted: bool,
}

impl Drive {
    /// `kind`: "ext4" (kernel) or "exfat" (FUSE, exfat-fuse).
    fn new(dir: &Path, kind: &str, label: &str) -> Option<Drive> {
        let img = dir.join(format!("{label}.img"));
        fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
        let (mkfs, args): (&str, Vec<&str>) = match kind {
            "ext4" => ("mkfs.ext4", vec!["-q", "-L", label]),
            _ => ("mkfs.exfat", vec!["-L", label]),
        };
        let ok = Command::new(mkfs)
            .args(&args)
            .arg(&img)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            cannot_run(
                &format!("{mkfs} is missing or failed (Debian: e2fsprogs, exfatprogs)"),
                "drives by label",
            );
            return None;
        }
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {out:?}");
        let loopdev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mnt = dir.join(format!("mnt-{label}"));
        fs::create_dir_all(&mnt).unwrap();
        let mut d = Drive {
            mnt,
            loopdev: Some(loopdev),
            mounted: false,
        };
        d.mount(kind);
        Some(d)
    }

    fn mount(&mut self, kind: &str) {
        let dev = self.loopdev.as_deref().unwrap();
        let st = match kind {
            "ext4" => Command::new("mount")
                .arg(dev)
                .arg(&self.mnt)
                .output()
                .unwrap(),
            _ => Command::new("mount.exfat-fuse")
                .arg(dev)
                .arg(&self.mnt)
                .output()
                .unwrap(),
        };
        assert!(st.status.success(), "mount {kind}: {st:?}");
        self.mounted = true;
    }

    fn unmount(&mut self) {
        let st = Command::new("umount").arg(&self.mnt).status().unwrap();
        assert!(st.success(), "umount");
        self.mounted = false;
    }
}

impl Drop for Drive {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(l) = self.loopdev.take() {
            let _ = Command::new("losetup").args(["-d", &l]).status();
        }
    }
}

fn need_root(what: &str) -> bool {
    if !is_root() {
        cannot_run("not root (loop devices and mounts need it)", what);
        return false;
    }
    true
}

/// A label unique to this test run, at most 11 characters (FAT's limit).
fn label(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

#[test]
#[ignore = "needs root, a loop device and mkfs.ext4 (Debian: e2fsprogs) for a labelled ext4 drive; run by .ci/run"]
fn a_drive_is_found_by_label_and_an_unplugged_one_is_refused() {
    if !need_root("--to-drive and the unplugged-drive refusal") {
        return;
    }
    let s = Scratch::new();
    let l = label("OFL");
    let Some(mut drive) = Drive::new(s.dir.path(), "ext4", &l) else {
        return;
    };
    let sd = s.path("SD");
    s.roll("SD", &[]);
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to-drive",
        &l,
        "--json",
    ]);
    r.ok();
    let store = drive.mnt.join("offload");
    assert_eq!(
        r.json()["destination"].as_str().unwrap(),
        store.to_str().unwrap()
    );
    assert!(store.join(".offload/store.json").exists());
    let stored = store_files(&store).len();
    assert!(stored > 10);

    // Unplugged: the mount point is an empty folder again. Nothing may be written there.
    drive.unmount();
    let entries = |p: &Path| fs::read_dir(p).unwrap().count();
    assert_eq!(entries(&drive.mnt), 0);
    let r = s.run(&["backup", "--from", sd.to_str().unwrap(), "--to-drive", &l]);
    r.code(4);
    assert!(
        r.stderr.contains(&format!("The drive {l} is not mounted")),
        "{}",
        r.stderr
    );
    // The same through the config, as a scheduled run does it.
    fs::create_dir_all(s.path("config/offload")).unwrap();
    fs::write(
        s.path("config/offload/config.toml"),
        format!("drive = {l:?}\n"),
    )
    .unwrap();
    let r = s.run(&["backup", "--from", sd.to_str().unwrap(), "--require-store"]);
    r.code(4);
    assert!(r.stderr.contains("is not mounted"), "{}", r.stderr);
    // A path on the unplugged drive, from a scheduled run, is not created either.
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        store.to_str().unwrap(),
        "--require-store",
    ]);
    r.code(4);
    assert_eq!(
        entries(&drive.mnt),
        0,
        "nothing written into the empty mount point"
    );

    drive.mount("ext4");
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--require-store",
        "--json",
    ]);
    r.ok();
    assert_eq!(r.json()["devices"][0]["copied"], 0);
    assert_eq!(store_files(&store).len(), stored);
}

#[test]
#[ignore = "needs root, a loop device, FUSE, mkfs.exfat and mount.exfat-fuse (Debian: exfatprogs, exfat-fuse); run by .ci/run"]
fn exfat_takes_every_hostile_name() {
    if !need_root("exFAT name rules on a real exFAT filesystem") {
        return;
    }
    let s = Scratch::new();
    let l = label("EXF");
    let Some(drive) = Drive::new(s.dir.path(), "exfat", &l) else {
        return;
    };
    let sd = s.path("SD");
    let names = [
        "a:b*c?.jpg",
        "CON.jpg",
        "nul",
        "trail. ",
        "x\ny\u{7}.jpg",
        "Caf\u{e9}.jpg",
        "Cafe\u{301}.jpg",
        "CASE.jpg",
        "case.jpg",
        " lead.jpg",
        "<>|\"\\.jpg",
        "com1.txt.jpg",
    ];
    for (i, n) in names.iter().enumerate() {
        let p = sd.join("DCIM").join(n);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("content {i}")).unwrap();
    }
    let long = "\u{e9}".repeat(120) + ".jpg";
    fs::write(sd.join("DCIM").join(&long), b"long one").unwrap();
    let dest = drive.mnt.join("store");
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    r.ok();
    let dev = &r.json()["devices"][0];
    assert_eq!(
        dev["copied"].as_u64().unwrap() as usize,
        names.len() + 1,
        "{dev}"
    );
    let stored = store_files(&dest);
    assert_eq!(
        stored.len(),
        names.len() + 1,
        "no two names collapsed on exFAT: {stored:#?}"
    );
    let want: std::collections::BTreeSet<String> = source_files(&sd).into_values().collect();
    let got: std::collections::BTreeSet<String> = stored.into_values().collect();
    assert_eq!(got, want);
    assert_store_consistent(&dest);
}

#[test]
#[ignore = "needs root, a loop device and mkfs.ext4 (Debian: e2fsprogs) for a labelled ext4 drive; run by .ci/run"]
fn two_destinations_and_an_absent_one_caught_up() {
    if !need_root("several destinations with a drive plugged in later") {
        return;
    }
    let s = Scratch::new();
    let l = label("TWO");
    let Some(mut drive) = Drive::new(s.dir.path(), "ext4", &l) else {
        return;
    };
    drive.unmount();
    let sd = s.path("SD");
    s.roll("SD", &[]);
    let a = s.path("A");
    let args = [
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        a.to_str().unwrap(),
        "--to-drive",
        &l,
    ];
    let r = s.run(&args);
    r.ok();
    assert!(
        r.stderr.contains(&format!("skipped the drive {l}")) && r.stderr.contains("caught up"),
        "{}",
        r.stderr
    );
    let in_a = store_files(&a);
    assert!(in_a.len() > 10);

    drive.mount("ext4");
    let r = s.run(&args);
    r.ok();
    let b = drive.mnt.join("offload");
    let in_b = store_files(&b);
    let hashes = |m: &std::collections::BTreeMap<String, String>| {
        m.values()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        hashes(&in_b),
        hashes(&in_a),
        "the drive caught up with everything"
    );
    assert_eq!(store_files(&a), in_a, "A unchanged");
    assert_store_consistent(&a);
    assert_store_consistent(&b);
    // Both absent: the run fails with exit 4.
    drive.unmount();
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to-drive",
        &l,
        "--to-drive",
        "NOSUCHDRIVE",
    ]);
    r.code(4);
}
