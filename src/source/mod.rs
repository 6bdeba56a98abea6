//! Sources: the places photos come from (a camera-roll folder, an Android phone over
//! MTP, an iPhone over AFC).
//!
//! A source only lists and streams. It knows nothing of the store, the catalog or the
//! destination drive: everything it returns is untrusted device input that the store
//! sanitises later.

pub mod android;
pub mod detect;
pub mod folder;
pub mod iphone;
pub mod provider;

use std::io::Read;

use serde::Serialize;

use crate::media::{Category, Clues, Tag};

/// One file being read from a source: its bytes in order, through [`Read`] or, for
/// whoever moves whole chunks (the copy), through [`FileRead::read_chunk`].
pub trait FileRead: Read + Send {
    /// Puts the next bytes of the file at the start of `buf` and returns how many; 0 at
    /// the end of the file. Errors as [`Read::read`]. `buf`'s old contents are discarded,
    /// and the reader may swap it for a buffer of its own of any length (never longer
    /// than one round trip to the device): a reader that already holds a whole chunk
    /// (an AFC reply) hands it over instead of copying it. By default, one `read` into
    /// `buf`, first grown to [`DEFAULT_CHUNK`] bytes: a buffer another reader handed over
    /// may be as short as the last bytes of its file.
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if buf.len() < DEFAULT_CHUNK {
            buf.resize(DEFAULT_CHUNK, 0);
        }
        self.read(buf)
    }
}

/// Bytes [`FileRead::read_chunk`] reads at least into, by default.
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// What kind of device a source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A mounted folder holding a camera roll (SD card, camera, a phone mounted by the desktop).
    Folder,
    /// An Android phone over MTP.
    Android,
    /// An iPhone over usbmuxd/lockdown/AFC.
    Iphone,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Folder => "folder",
            SourceKind::Android => "android",
            SourceKind::Iphone => "iphone",
        }
    }
}

/// One storage area of a device (internal storage, SD card).
#[derive(Clone, Debug, Serialize)]
pub struct StorageInfo {
    pub description: String,
    pub capacity_bytes: u64,
    pub free_bytes: u64,
}

/// Who a source is. `id` is the stable identity the catalog keys sightings on.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    /// Stable across runs and computers: `android:<serial>`, `iphone:<udid>`,
    /// `folder:<canonical path>`.
    pub id: String,
    pub kind: SourceKind,
    /// Human name, also what `{device}` expands to (untrusted: the store sanitises it).
    pub name: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub storages: Vec<StorageInfo>,
    /// Things the user should know that do not stop the backup (a USB 2 link, say).
    pub warnings: Vec<String>,
}

/// What a device's own library knows about one file, beyond its listing (iPhone:
/// Photos.sqlite). Empty for sources without a library (folders, Android), where the
/// file rules decide alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryFacts {
    /// The library knows this file (an asset, or a resource of one such as the `.MOV`
    /// of a Live Photo). A file it knows that cannot be opened is taken as an
    /// iCloud-only original, not as a failure.
    pub in_library: bool,
    /// What the library says the file is (screenshot, screen recording, live...).
    pub kind: Option<Category>,
    /// Tags the library gives it (favorite, hidden, burst, slo-mo, album:NAME...).
    pub tags: Vec<Tag>,
    /// When the library says it was taken, as the local wall-clock time of the shot.
    pub captured: Option<jiff::civil::DateTime>,
    /// A video by the library's account (for the iCloud-only count).
    pub is_video: bool,
    /// The original is only in iCloud ("Optimize iPhone Storage"): it cannot be copied
    /// over USB, and is reported instead of read.
    pub cloud_only: bool,
    /// The name to store the file under when its path's last part is not it (an edit
    /// render `…/IMG_0042/Adjustments/FullSizeRender.jpg` is `IMG_E0042.jpg`).
    pub name: Option<String>,
}

/// One file on a source.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path that identifies the file within the source, `/`-separated, as the device
    /// gives it (untrusted: may hold `..`, control characters, anything). For phones it
    /// starts with the storage's name so that two storages never share a key.
    pub path: String,
    /// Size the device reports. The transfer trusts the bytes it reads, not this.
    pub size: u64,
    /// Modification time the device reports, seconds since the Unix epoch.
    pub mtime: i64,
    /// What the device's library knows about it (default: nothing).
    pub facts: EntryFacts,
    /// The very object the device listed, for a source that can delete
    /// ([`Source::deleter`]); `None` elsewhere. [`Delete`] reads and deletes this object
    /// and no other: a path may lead elsewhere by the time it is looked up again.
    pub object: Option<ObjectRef>,
}

/// One object as a device listed it, valid only in the session that listed it (MTP
/// object handles are per session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// Which session of the source listed it: the source counts its (re)connections,
    /// and refuses an object from an earlier one.
    pub session: u64,
    /// The storage that holds the object, in the device's terms (MTP: the storage
    /// token), needed to address it.
    pub storage: u64,
    /// The device's handle of the object (MTP: the object handle token).
    pub handle: u64,
    /// Another object of the device shows under the same path (a name that is not
    /// UTF-8, read the lossy way; two long names that MTP cuts to the same 254
    /// characters). Which of them was backed up cannot be told from the path, so
    /// nothing is deleted on the strength of this entry.
    pub ambiguous: bool,
}

impl Entry {
    /// An entry the device knows nothing more about.
    pub fn new(path: impl Into<String>, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            size,
            mtime,
            facts: EntryFacts::default(),
            object: None,
        }
    }

    /// The last path component: the file's own name on the device.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The name to store the file under: the library's name for it if it has one,
    /// else [`Entry::name`] (untrusted either way: the store sanitises it).
    pub fn file_name(&self) -> &str {
        self.facts.name.as_deref().unwrap_or_else(|| self.name())
    }

    /// What the entry itself tells of what the file is, for [`crate::media::classify`]
    /// and [`crate::media::examine`]: its path and its library's kind and tags, with
    /// `head` (the first bytes, once read) and whether it is half of a Live Photo pair.
    pub fn clues<'a>(&'a self, head: Option<&'a [u8]>, live_pair: bool) -> Clues<'a> {
        Clues {
            path: &self.path,
            head,
            lens: None,
            device_kind: self.facts.kind,
            device_tags: &self.facts.tags,
            live_pair,
        }
    }
}

/// A file the listing left out on purpose, or could not read.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What `Source::list` found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Candidate files, in a stable order.
    pub entries: Vec<Entry>,
    /// Left out by rule (hidden, trash, thumbnails...), with the reason.
    pub skipped: Vec<Skipped>,
    /// Objects the device listed but could not describe: reported as failures.
    pub unreadable: Vec<Skipped>,
    /// Files the device's library lists whose original is not on the device at all
    /// (iCloud-only): reported, never read. Their `facts.cloud_only` is set.
    pub cloud_only: Vec<Entry>,
    /// Things the user should know about this listing (a library that could not be
    /// read, say), each said once.
    pub warnings: Vec<String>,
}

/// Why a source call failed, sorted by what the caller must do about it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The device went away (unplugged, connection lost for good). Stop the run: exit 5.
    #[error("{0}")]
    Gone(String),
    /// The device is there but cannot be read until the user acts (unlock, trust, USB
    /// mode, permissions). The message says what to do. Exit 3.
    #[error("{0}")]
    Blocked(String),
    /// This one file could not be read; the others may still be fine.
    #[error("{0}")]
    File(String),
}

impl SourceError {
    /// Wraps the error for a `Read` implementation, so that the transfer can recover it
    /// with [`SourceError::from_io`].
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    /// Recovers a `SourceError` carried in an I/O error; any other I/O error is a
    /// failure of that one file.
    pub fn from_io(err: std::io::Error) -> SourceError {
        if err.get_ref().is_some_and(|e| e.is::<SourceError>()) {
            match err.into_inner().map(|e| e.downcast::<SourceError>()) {
                Some(Ok(e)) => return *e,
                Some(Err(e)) => return SourceError::File(e.to_string()),
                None => unreachable!("checked get_ref above"),
            }
        }
        SourceError::File(err.to_string())
    }
}

/// A place photos come from. One value per connected device or folder.
///
/// Methods are blocking: a device source runs its own async runtime inside, so that the
/// transfer loop stays a plain, easy-to-audit sequence of reads and writes.
pub trait Source: Send {
    /// Identity of the device, known once the source is opened.
    fn info(&self) -> &DeviceInfo;

    /// Lists the camera roll. Reads no file content.
    ///
    /// Errors: `Blocked` when the device refuses to be listed until the user acts,
    /// `Gone` when it disappears.
    fn list(&mut self) -> Result<Listing, SourceError>;

    /// Opens `entry` for reading from byte `offset` (0 for the whole file). The reader
    /// yields the file's bytes until end of file. Its I/O errors carry a
    /// [`SourceError`] (see [`SourceError::from_io`]): `Gone` stops the run, anything
    /// else fails this file only. A source that can resume after a transient fault
    /// (a wedged phone, a dropped connection) does so inside the reader.
    fn open<'a>(
        &'a mut self,
        entry: &Entry,
        offset: u64,
    ) -> Result<Box<dyn FileRead + 'a>, SourceError>;

    /// The optional ability to delete files, for `offload free-up`; `None` where
    /// deleting would do harm (an iPhone: AFC deletes leave its Photos library
    /// inconsistent) or is not the tool's business (a folder).
    fn deleter(&mut self) -> Option<&mut dyn Delete> {
        None
    }
}

/// Deleting from a device. Optional: see [`Source::deleter`].
///
/// Both methods act on the very object `entry` was listed as ([`Entry::object`]), in
/// the session that listed it: never on whatever its path leads to now, and never after
/// the device was reopened (its handles may then name other objects). An entry without
/// an object of the current session is refused with `File`: list again.
pub trait Delete {
    /// Opens the listed object for reading from its first byte, so that its content
    /// can be checked before [`Delete::delete`]. Unlike [`Source::open`], it does not
    /// look the path up again nor reopen the device: a fault fails the read (`File`),
    /// and a reopen needed after it makes later calls refuse their entries. `Gone` when
    /// the device went away.
    fn open_listed<'a>(&'a mut self, entry: &Entry) -> Result<Box<dyn FileRead + 'a>, SourceError>;

    /// Deletes the listed object and confirms that the device no longer has it.
    /// `Ok` means it is gone (even when the device answered the delete with an error
    /// but the object is gone all the same). Errors: `File` when the device refuses, or
    /// the object is still there; `Gone` when the device went away. The caller has
    /// verified the backup copies and the object's content first.
    fn delete(&mut self, entry: &Entry) -> Result<(), SourceError>;
}

/// Files a camera-roll listing leaves out on purpose, with the reason shown to the user.
/// Shared by every source so that a folder and a phone skip the same things.
pub fn skip_reason(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower == ".thumbnails" || lower == ".thumbdata" {
        return Some("thumbnail cache");
    }
    if lower.starts_with(".trashed-") {
        return Some("in the phone's trash");
    }
    if lower.starts_with(".pending-") {
        return Some("still being written by the phone");
    }
    if lower == ".ds_store" || lower == "thumbs.db" || lower == "desktop.ini" {
        return Some("system file");
    }
    if name.starts_with('.') {
        return Some("hidden");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_rules() {
        assert_eq!(skip_reason(".thumbnails"), Some("thumbnail cache"));
        assert_eq!(
            skip_reason(".trashed-1712345678-IMG_1.jpg"),
            Some("in the phone's trash")
        );
        assert_eq!(
            skip_reason(".pending-1712345678-VID.mp4"),
            Some("still being written by the phone")
        );
        assert_eq!(skip_reason(".DS_Store"), Some("system file"));
        assert_eq!(skip_reason("Thumbs.db"), Some("system file"));
        assert_eq!(skip_reason(".nomedia"), Some("hidden"));
        assert_eq!(skip_reason("IMG_0001.JPG"), None);
    }

    #[test]
    fn source_error_survives_io_wrapping() {
        let e = SourceError::Gone("unplugged".into()).into_io();
        assert!(matches!(SourceError::from_io(e), SourceError::Gone(m) if m == "unplugged"));
        let plain = std::io::Error::other("disk says no");
        assert!(matches!(SourceError::from_io(plain), SourceError::File(_)));
    }

    #[test]
    fn default_read_chunk_reads_a_whole_chunk_into_a_short_buffer() {
        struct Bytes(std::io::Cursor<Vec<u8>>);
        impl Read for Bytes {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0.read(buf)
            }
        }
        impl FileRead for Bytes {}
        let data: Vec<u8> = (0..3 * DEFAULT_CHUNK).map(|i| i as u8).collect();
        let mut r = Bytes(std::io::Cursor::new(data.clone()));
        // As short as the last bytes of a file another reader handed over.
        let mut buf = vec![9u8; 7];
        assert_eq!(r.read_chunk(&mut buf).unwrap(), DEFAULT_CHUNK);
        assert_eq!(buf[..DEFAULT_CHUNK], data[..DEFAULT_CHUNK]);
    }
}
