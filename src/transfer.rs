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

/// A file read completely into a temp file (written and closed, not yet synced).
pub struct Copied {
    pub temp: PathBuf,
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
    reader: &mut (dyn Read + Send),
    store: &Store,
    expected: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<Copied, CopyError> {
    let (temp, file) = store.temp_file().map_err(CopyError::Dest)?;
    let result = fill(reader, &file, expected, progress);
    match result {
        Ok((hash, size, head)) => Ok(Copied {
            temp,
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

/// Bytes written between two nudges of the kernel's write-back.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Asks the kernel to start writing this range to the disk now, without waiting. The
/// later `syncfs`/`fsync` then finds most data already on its way, so the copy and the
/// disk work overlap instead of the run ending with one long wait. Only a hint: the
/// durability guarantee still comes from the sync before the rename.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a valid, open file descriptor; no memory is shared.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Buffers in flight between the reading thread and the hashing/writing one.
const IN_FLIGHT: usize = 4;

/// The copy loop, on two threads: one reads from the device into a small ring of
/// buffers, this one hashes each chunk and writes it. Reading (a USB round trip, or a
/// kernel copy from a card) then overlaps hashing and writing instead of adding to them.
fn fill(
    reader: &mut (dyn Read + Send),
    mut file: &File,
    expected: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(blake3::Hash, u64, Vec<u8>), CopyError> {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(IN_FLIGHT);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        for _ in 0..IN_FLIGHT {
            empty_tx.send(vec![0u8; CHUNK]).expect("room for every buffer");
        }
        scope.spawn(move || {
            // Ends at end of file, on an error, or when the writing side hangs up.
            for mut buf in empty_rx {
                let got = loop {
                    match reader.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let last = !matches!(got, Ok(n) if n > 0);
                if full_tx.send(got.map(|n| (buf, n))).is_err() || last {
                    break;
                }
            }
        });

        let mut hasher = blake3::Hasher::new();
        let mut head = Vec::new();
        let mut size = 0u64;
        let mut flushed = 0u64;
        loop {
            let (buf, n) = match full_rx.recv() {
                Ok(Ok((_, 0))) => break,
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Err(CopyError::Source(SourceError::from_io(e))),
                Err(_) => unreachable!("the reading thread always sends its last word"),
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
            if size - flushed >= WRITEBACK_STEP {
                start_writeback(file, flushed, size - flushed);
                flushed = size;
            }
            // The reader may have finished already: a closed channel is not an error.
            let _ = empty_tx.send(buf);
        }
        if size > flushed {
            start_writeback(file, flushed, size - flushed);
        }
        if size < expected {
            return Err(CopyError::Source(SourceError::File(format!(
                "the device sent {size} of the {expected} bytes it announced; will retry next run"
            ))));
        }
        Ok((hasher.finalize(), size, head))
    })
}
