//! The one-pass copy: every chunk read from the device goes to the BLAKE3 hasher and
//! to a temp file on the destination drive. Nothing here knows names or the catalog.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::source::SourceError;
use crate::store::Store;

/// Bytes per read. Large enough for few round trips on phones (AFC, MTP windows) and
/// few system calls; small enough that memory stays flat whatever the file size.
pub const CHUNK: usize = 1 << 20;

/// How many leading bytes are kept for content sniffing.
pub const HEAD: usize = 64 * 1024;

/// A file read completely into a temp file (written, not yet synced).
pub struct Copied {
    pub temp: PathBuf,
    pub file: File,
    pub hash: blake3::Hash,
    pub size: u64,
    /// The first [`HEAD`] bytes, for deciding what the file is.
    pub head: Vec<u8>,
}

/// Why a copy failed: the source's fault (see [`SourceError`]) or the destination's.
#[derive(Debug)]
pub enum CopyError {
    Source(SourceError),
    Dest(io::Error),
}

/// Streams `reader` into a new temp file of `store`, hashing as it goes.
/// `expected` is the size the device announced: fewer bytes is a failed read (a
/// truncated photo must not be recorded as backed up), more is accepted (the bytes
/// read are what is hashed and stored). `progress` is told each chunk's length.
/// On any error the temp file is removed.
pub fn copy(
    reader: &mut dyn Read,
    store: &Store,
    expected: u64,
    buf: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<Copied, CopyError> {
    let (temp, file) = store.temp_file().map_err(CopyError::Dest)?;
    let result = fill(reader, &file, expected, buf, progress);
    match result {
        Ok((hash, size, head)) => Ok(Copied {
            temp,
            file,
            hash,
            size,
            head,
        }),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

fn fill(
    reader: &mut dyn Read,
    mut file: &File,
    expected: u64,
    buf: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<(blake3::Hash, u64, Vec<u8>), CopyError> {
    buf.resize(CHUNK, 0);
    let mut hasher = blake3::Hasher::new();
    let mut head = Vec::new();
    let mut size = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Source(SourceError::from_io(e))),
        };
        let chunk = &buf[..n];
        if head.len() < HEAD {
            let take = (HEAD - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(chunk);
        file.write_all(chunk).map_err(CopyError::Dest)?;
        size += n as u64;
        progress(n as u64);
    }
    if size < expected {
        return Err(CopyError::Source(SourceError::File(format!(
            "the device sent {size} of the {expected} bytes it announced; will retry next run"
        ))));
    }
    Ok((hasher.finalize(), size, head))
}
