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

/// Where temp files are made: on the destination's filesystem, so that the final rename
/// is atomic (the store's `.offload/tmp/`, an export's hidden work folder).
pub trait TempFiles {
    /// A new, empty file that nothing else uses.
    fn temp_file(&self) -> io::Result<(PathBuf, File)>;
}

impl TempFiles for Store {
    fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        Store::temp_file(self)
    }
}

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

/// Streams `reader` into a new temp file of `store` (a store or an export folder),
/// hashing as it goes.
/// `expected` is the size the device announced: fewer bytes is a failed read (a
/// truncated photo must not be recorded as backed up), more is accepted (the bytes
/// read are what is hashed and stored). `pool` keeps chunk buffers for the next file.
/// `progress` is told each chunk's length.
/// On any error the temp file is removed.
pub fn copy(
    reader: &mut (dyn Read + Send),
    store: &dyn TempFiles,
    expected: u64,
    pool: &mut Vec<Vec<u8>>,
    progress: &mut dyn FnMut(u64),
) -> Result<Copied, CopyError> {
    let (temp, file) = store.temp_file().map_err(CopyError::Dest)?;
    let result = fill(reader, &file, expected, pool, progress);
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
    pool: &mut Vec<Vec<u8>>,
    progress: &mut dyn FnMut(u64),
) -> Result<(blake3::Hash, u64, Vec<u8>), CopyError> {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) =
            std::sync::mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(IN_FLIGHT);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        // Buffers are reused from file to file: fresh ones would cost a page fault per
        // 4 KiB on every file.
        for _ in 0..IN_FLIGHT {
            let buf = pool.pop().unwrap_or_else(|| vec![0u8; CHUNK]);
            empty_tx.send(buf).expect("room for every buffer");
        }
        let reading = scope.spawn(move || {
            // Ends at end of file, on an error, or when the writing side hangs up; hands
            // back the queue of free buffers.
            while let Ok(mut buf) = empty_rx.recv() {
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
            empty_rx
        });

        let mut hasher = blake3::Hasher::new();
        let mut head = Vec::new();
        let mut size = 0u64;
        let mut flushed = 0u64;
        loop {
            let (buf, n) = match full_rx.recv() {
                Ok(Ok((buf, 0))) => {
                    pool.push(buf);
                    break;
                }
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
        if let Ok(empty) = reading.join() {
            pool.extend(empty.try_iter());
        }
        if size < expected {
            return Err(CopyError::Source(SourceError::File(format!(
                "the device sent {size} of the {expected} bytes it announced; will retry next run"
            ))));
        }
        Ok((hasher.finalize(), size, head))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn data(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        blake3::Hasher::new()
            .update(b"t")
            .finalize_xof()
            .fill(&mut v);
        v
    }

    /// Yields `ok` bytes of `data`, then an error.
    struct Failing {
        data: Cursor<Vec<u8>>,
        ok: u64,
        err: fn() -> io::Error,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.position() >= self.ok {
                return Err((self.err)());
            }
            let room = (self.ok - self.data.position()) as usize;
            let n = room.min(buf.len());
            self.data.read(&mut buf[..n])
        }
    }

    #[test]
    fn one_pass_hash_and_copy_with_buffer_reuse() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), true).unwrap();
        let mut pool = Vec::new();
        for size in [0, 1, CHUNK - 1, CHUNK, 5 * CHUNK + 17] {
            let bytes = data(size);
            let mut seen = 0;
            let c = copy(
                &mut Cursor::new(bytes.clone()),
                &store,
                size as u64,
                &mut pool,
                &mut |n| seen += n,
            )
            .unwrap_or_else(|_| panic!("copy of {size} bytes"));
            assert_eq!(c.hash, blake3::hash(&bytes));
            assert_eq!((c.size, seen), (size as u64, size as u64));
            assert_eq!(c.head, bytes[..size.min(HEAD)]);
            assert_eq!(std::fs::read(&c.temp).unwrap(), bytes);
        }
        assert_eq!(pool.len(), IN_FLIGHT, "buffers come back for the next file");
    }

    #[test]
    fn short_and_failed_reads_leave_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), true).unwrap();
        let tmp = d.path().join(".offload/tmp");
        let mut pool = Vec::new();
        let short = copy(
            &mut Cursor::new(data(100)),
            &store,
            200,
            &mut pool,
            &mut |_| {},
        );
        assert!(
            matches!(short, Err(CopyError::Source(SourceError::File(m))) if m.contains("100 of the 200"))
        );
        let mut gone = Failing {
            data: Cursor::new(data(3 * CHUNK)),
            ok: (CHUNK + 5) as u64,
            err: || SourceError::Gone("unplugged".into()).into_io(),
        };
        let r = copy(&mut gone, &store, 3 * CHUNK as u64, &mut pool, &mut |_| {});
        assert!(matches!(r, Err(CopyError::Source(SourceError::Gone(_)))));
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
