//! Finding a drive by its filesystem label or UUID: where is "PHOTOS" mounted now?

use std::path::{Path, PathBuf};
use std::process::Command;

use super::fsinfo::{mounts, Mount};

/// One mounted block-device filesystem.
#[derive(Clone, Debug)]
pub struct Mounted {
    pub device: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

/// Every filesystem mounted from a block device (`/dev/...`), with its label and UUID
/// where they can be read: from `/dev/disk/by-label` and `by-uuid` (udev's links), else
/// from `blkid` (util-linux), which reads the superblock.
pub fn mounted() -> Vec<Mounted> {
    let links = |dir: &str| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let target = std::fs::canonicalize(e.path()).ok()?;
                        Some((unescape_udev(&e.file_name().to_string_lossy()), target))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let by_label = links("/dev/disk/by-label");
    let by_uuid = links("/dev/disk/by-uuid");
    let mut out = Vec::new();
    for Mount {
        mount_point,
        fstype,
        source,
    } in mounts()
    {
        if !source.starts_with("/dev/") {
            continue;
        }
        let device = std::fs::canonicalize(&source).unwrap_or_else(|_| PathBuf::from(&source));
        let find = |list: &[(String, PathBuf)]| {
            list.iter()
                .find(|(_, t)| *t == device)
                .map(|(n, _)| n.clone())
        };
        let (mut label, mut uuid) = (find(&by_label), find(&by_uuid));
        if label.is_none() && uuid.is_none() {
            (label, uuid) = blkid(&device);
        }
        out.push(Mounted {
            device,
            mount_point,
            fstype,
            label,
            uuid,
        });
    }
    out
}

/// Where the filesystem labelled (or with the UUID) `name` is mounted, if it is.
/// Labels compare without regard to case, as FAT and exFAT store them upper-cased.
pub fn find(name: &str) -> Option<Mounted> {
    mounted().into_iter().find(|m| {
        m.label
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(name))
            || m.uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(name))
    })
}

/// LABEL and UUID of a block device from `blkid -o export`.
fn blkid(device: &Path) -> (Option<String>, Option<String>) {
    // `-c /dev/null`: read the superblock now. blkid's cache trusts an entry for a
    // couple of seconds, so a drive just swapped in on the same device node (a loop
    // device reused by a test, a USB drive replugged as the same /dev/sdX) was reported
    // with the label of the one before it.
    let Ok(out) = Command::new("blkid")
        .args([
            "-c",
            "/dev/null",
            "-o",
            "export",
            "-s",
            "LABEL",
            "-s",
            "UUID",
        ])
        .arg(device)
        .output()
    else {
        return (None, None);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(unescape_blkid)
    };
    (get("LABEL"), get("UUID"))
}

/// `blkid -o export` escapes spaces and shell characters with a backslash.
fn unescape_blkid(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// udev writes unsafe bytes of a label as `\x20`.
fn unescape_udev(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Ok(n) = u8::from_str_radix(&v[i + 2..i + 4], 16) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape_udev(r"MY\x20PHOTOS"), "MY PHOTOS");
        assert_eq!(unescape_blkid(r"MY\ PHOTOS"), "MY PHOTOS");
    }
}
