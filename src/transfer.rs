//! The one-pass copy: every chunk read from the device goes to the BLAKE3 hasher and
//! to a temp file on the destination drive. Nothing here knows names or the catalog.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};

use crate::source::{FileRead, SourceError};
use crate::stop::Stop;
use crate::store::Store;

/// Bytes per read into the copy's own buffers. Large enough for few system calls; small
/// enough that memory stays flat whatever the file size. (A reader may hand over a
/// chunk of its own instead, at most one device round trip: see [`FileRead::read_chunk`].)
pub const CHUNK: usize = crate::source::DEFAULT_CHUNK;

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
    /// A stop was asked for before the file was complete; its temp file is gone.
    Stopped,
}

/// The reading side of a run of copies: the files to read, in order. It is used on
/// a thread of its own, so that the next file is opened and read while the previous
/// one is still being hashed and written.
pub trait Files: Send {
    /// How many files there are.
    fn count(&self) -> usize;

    /// The size file `i` announced: fewer bytes is a failed read (a truncated photo
    /// must not be recorded as backed up), more is accepted (the bytes read are what
    /// is hashed and stored).
    fn expected(&self, i: usize) -> u64;

    /// Opens file `i` (`i < count()`) at its start. Errors as [`crate::source::Source::open`]:
    /// [`SourceError::Gone`] ends the run, anything else fails this file only.
    fn open(&mut self, i: usize) -> Result<Box<dyn FileRead + '_>, SourceError>;
}

/// The copying side of [`copy_all`], told on the calling thread what happens.
pub trait Copying {
    /// File `i` starts arriving.
    fn started(&mut self, _i: usize) {}

    /// `bytes` more bytes of the current file were written.
    fn advanced(&mut self, _bytes: u64) {}

    /// File `i` could not be opened. By default a failure of that file like any other.
    fn not_opened(&mut self, i: usize, error: SourceError) -> bool {
        self.finished(i, Err(CopyError::Source(error)))
    }

    /// File `i` is in its temp file (written and closed, not yet synced), or failed
    /// with no temp file left behind. Returns `false` to stop: no further file is
    /// opened, and what is being read is abandoned between two reads.
    fn finished(&mut self, i: usize, result: Result<Copied, CopyError>) -> bool;

    /// No file will be finished any more: told once, after the last [`Copying::finished`]
    /// and before waiting for the reading side to end, which a device that hangs in a
    /// read can delay until its timeout. What waits for the files (a commit) can go on.
    fn no_more_files(&mut self) {}
}

/// How often the copying side looks at a stop while the reading side is silent.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Streams `reader` into a new temp file of `store` (a store or an export folder),
/// hashing as it goes; `expected` as [`Files::expected`]. `pool` keeps chunk buffers
/// for the next file; `progress` is told each chunk's length. On any error, and when
/// `stop` is requested before the end ([`CopyError::Stopped`]), the temp file is removed.
pub fn copy(
    reader: &mut (dyn Read + Send),
    store: &dyn TempFiles,
    expected: u64,
    pool: &mut Vec<Vec<u8>>,
    progress: &mut dyn FnMut(u64),
    stop: &Stop,
) -> Result<Copied, CopyError> {
    struct One<'r> {
        reader: &'r mut (dyn Read + Send),
        expected: u64,
    }
    /// Any reader, read into the copy's buffers.
    struct Plain<'r>(&'r mut (dyn Read + Send));
    impl Read for Plain<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl FileRead for Plain<'_> {}
    impl Files for One<'_> {
        fn count(&self) -> usize {
            1
        }
        fn expected(&self, _: usize) -> u64 {
            self.expected
        }
        fn open(&mut self, _: usize) -> Result<Box<dyn FileRead + '_>, SourceError> {
            Ok(Box::new(Plain(&mut *self.reader)))
        }
    }
    struct OneResult<'p> {
        progress: &'p mut dyn FnMut(u64),
        result: Option<Result<Copied, CopyError>>,
    }
    impl Copying for OneResult<'_> {
        fn advanced(&mut self, bytes: u64) {
            (self.progress)(bytes)
        }
        fn finished(&mut self, _: usize, result: Result<Copied, CopyError>) -> bool {
            self.result = Some(result);
            false
        }
    }
    let mut one = OneResult {
        progress,
        result: None,
    };
    copy_all(&mut One { reader, expected }, store, pool, &mut one, stop);
    // No result: the stop came before the file's end.
    one.result.unwrap_or(Err(if stop.requested() {
        CopyError::Stopped
    } else {
        CopyError::Source(SourceError::File(
            "the copy ended before the file did".into(),
        ))
    }))
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

/// What the reading thread hands over, in order.
enum FromReader {
    /// File `i` opened; its chunks follow.
    Start(usize),
    /// The next chunk of the current file: the buffer and how much of it is filled.
    Chunk(Vec<u8>, usize),
    /// The current file ended.
    End,
    /// File `i` failed to open.
    NotOpened(usize, SourceError),
    /// The current file (`i`) failed while being read.
    Failed(usize, SourceError),
}

/// One temp file being written: hashed, its head kept, its write-back started early.
struct TempWrite {
    temp: PathBuf,
    file: File,
    hasher: blake3::Hasher,
    head: Vec<u8>,
    size: u64,
    flushed: u64,
}

impl TempWrite {
    fn new(store: &dyn TempFiles) -> io::Result<TempWrite> {
        let (temp, file) = store.temp_file()?;
        Ok(TempWrite {
            temp,
            file,
            hasher: blake3::Hasher::new(),
            head: Vec::new(),
            size: 0,
            flushed: 0,
        })
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk)?;
        self.size += chunk.len() as u64;
        if self.size - self.flushed >= WRITEBACK_STEP {
            start_writeback(&self.file, self.flushed, self.size - self.flushed);
            self.flushed = self.size;
        }
        Ok(())
    }

    /// Closes the file; an error (a short read included) removes it.
    fn finish(self, expected: u64) -> Result<Copied, CopyError> {
        if self.size > self.flushed {
            start_writeback(&self.file, self.flushed, self.size - self.flushed);
        }
        if self.size < expected {
            let size = self.size;
            self.abandon();
            return Err(CopyError::Source(SourceError::File(format!(
                "the device sent {size} of the {expected} bytes it announced; will retry next run"
            ))));
        }
        Ok(Copied {
            temp: self.temp,
            hash: self.hasher.finalize(),
            size: self.size,
            head: self.head,
        })
    }

    fn abandon(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Copies every file of `files` into its own temp file of `store`, in one pass each,
/// on two threads: one opens and reads the files in turn into a small ring of
/// buffers, this one hashes each chunk and writes it. Reading (a USB round trip, or a
/// kernel copy from a card) then overlaps hashing and writing, also across files: the
/// next file is opened and read while the end of the previous one is written. Memory
/// stays at [`IN_FLIGHT`] chunks whatever the files' sizes.
///
/// `copying` hears of each file as it starts, grows and ends; it decides whether to go
/// on after each. `pool` keeps the chunk buffers from one call to the next.
///
/// A requested `stop` is seen before each file is opened and before each read: no
/// more is read, every file already finished has been handed to `copying`, and the one
/// being read is abandoned (its temp file removed). The caller tells a stopped run from
/// a finished one by asking `stop`.
pub fn copy_all(
    files: &mut dyn Files,
    store: &dyn TempFiles,
    pool: &mut Vec<Vec<u8>>,
    copying: &mut dyn Copying,
    stop: &Stop,
) {
    let count = files.count();
    let sizes: Vec<u64> = (0..count).map(|i| files.expected(i)).collect();
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<FromReader>(IN_FLIGHT);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        // Buffers are reused from file to file: fresh ones would cost a page fault per
        // 4 KiB on every file.
        for _ in 0..IN_FLIGHT {
            let buf = pool.pop().unwrap_or_else(|| vec![0u8; CHUNK]);
            empty_tx.send(buf).expect("room for every buffer");
        }
        let reading = scope.spawn(move || read_files(files, &full_tx, empty_rx, stop));
        let mut writing = Writing {
            store,
            copying: &mut *copying,
            sizes: &sizes,
            current: None,
        };
        loop {
            // A device that hangs in a read sends nothing: a stop must not wait for it.
            let message = match full_rx.recv_timeout(STOP_POLL) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) if stop.requested() => break,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if !writing.handle(message, &empty_tx) {
                break;
            }
        }
        // Stopped early: whatever is half written goes, and the reading side sees the
        // channels close and stops after its read in flight.
        if let Some((_, w)) = writing.current.take() {
            w.abandon();
        }
        copying.no_more_files();
        drop(full_rx);
        drop(empty_tx);
        if let Ok((empty, spare)) = reading.join() {
            pool.extend(empty.try_iter());
            pool.extend(spare);
        }
    })
}

/// The reading side of [`copy_all`], on its own thread: opens and reads the files in
/// turn into the free buffers and hands them over in order. Ends after the last file,
/// after a vanished device, when a stop is asked, or when the copying side hangs up;
/// returns the free buffers.
fn read_files(
    files: &mut dyn Files,
    full_tx: &SyncSender<FromReader>,
    empty_rx: Receiver<Vec<u8>>,
    stop: &Stop,
) -> (Receiver<Vec<u8>>, Vec<Vec<u8>>) {
    let mut spare: Vec<Vec<u8>> = Vec::new();
    'files: for i in 0..files.count() {
        if stop.requested() {
            break;
        }
        let expected = files.expected(i);
        let mut reader = match files.open(i) {
            Ok(r) => r,
            Err(e) => {
                let gone = matches!(e, SourceError::Gone(_));
                if full_tx.send(FromReader::NotOpened(i, e)).is_err() || gone {
                    break;
                }
                continue;
            }
        };
        if full_tx.send(FromReader::Start(i)).is_err() {
            break;
        }
        let mut read = 0u64;
        loop {
            // A file read to its announced size is finished by the read that finds
            // its end, stop or not: it is complete.
            if stop.requested() && read < expected {
                break 'files;
            }
            let Some(mut buf) = spare.pop().or_else(|| empty_rx.recv().ok()) else {
                break 'files;
            };
            let got = loop {
                // A reader that panics on what a device sent fails this file, not the
                // run: the panic must not pass for the end of the copy.
                let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    reader.read_chunk(&mut buf)
                }));
                match attempt {
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(other) => break other,
                    Err(_) => {
                        break Err(io::Error::other(
                            "reading it failed unexpectedly (the device sent data offload \
                             could not handle); it is retried on the next run",
                        ))
                    }
                }
            };
            if let Ok(n) = &got {
                read += *n as u64;
            }
            let message = match got {
                Ok(0) => {
                    spare.push(buf);
                    FromReader::End
                }
                Ok(n) => FromReader::Chunk(buf, n),
                Err(e) => {
                    spare.push(buf);
                    FromReader::Failed(i, SourceError::from_io(e))
                }
            };
            let last = !matches!(message, FromReader::Chunk(..));
            let gone = matches!(message, FromReader::Failed(_, SourceError::Gone(_)));
            if full_tx.send(message).is_err() || gone {
                break 'files;
            }
            if last {
                break;
            }
        }
    }
    (empty_rx, spare)
}

/// The hashing and writing side of [`copy_all`], on the calling thread.
struct Writing<'a> {
    store: &'a dyn TempFiles,
    copying: &'a mut dyn Copying,
    /// What each file announced.
    sizes: &'a [u64],
    /// The file being written; `None` between files and after the current one failed
    /// (its failure is reported at once, its remaining chunks are dropped).
    current: Option<(usize, TempWrite)>,
}

impl Writing<'_> {
    /// Acts on one message of the reading side, giving chunk buffers back through
    /// `empty_tx`. Returns false when the copying side wants to stop.
    fn handle(&mut self, message: FromReader, empty_tx: &SyncSender<Vec<u8>>) -> bool {
        match message {
            FromReader::Start(i) => {
                self.copying.started(i);
                match TempWrite::new(self.store) {
                    Ok(w) => {
                        self.current = Some((i, w));
                        true
                    }
                    Err(e) => self.copying.finished(i, Err(CopyError::Dest(e))),
                }
            }
            FromReader::Chunk(buf, n) => {
                let written = self.current.as_mut().map(|(_, w)| w.write(&buf[..n]));
                // The reader may have finished already: a closed channel is not an error.
                let _ = empty_tx.send(buf);
                match written {
                    Some(Ok(())) => {
                        self.copying.advanced(n as u64);
                        true
                    }
                    Some(Err(e)) => {
                        let (i, w) = self.current.take().expect("a file is being written");
                        w.abandon();
                        self.copying.finished(i, Err(CopyError::Dest(e)))
                    }
                    None => true,
                }
            }
            FromReader::End => match self.current.take() {
                Some((i, w)) => self.copying.finished(i, w.finish(self.sizes[i])),
                None => true,
            },
            FromReader::NotOpened(i, e) => self.copying.not_opened(i, e),
            FromReader::Failed(i, e) => match self.current.take() {
                Some((_, w)) => {
                    w.abandon();
                    self.copying.finished(i, Err(CopyError::Source(e)))
                }
                // Its destination failed first, and was reported then.
                None => true,
            },
        }
    }
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

    impl FileRead for Failing {}

    /// Hands over buffers of its own, of uneven sizes (some larger than [`CHUNK`]), as
    /// the iPhone's reader hands over its AFC replies.
    struct Handing {
        data: Vec<u8>,
        at: usize,
        turn: usize,
    }

    impl Read for Handing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl FileRead for Handing {
        fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
            const SIZES: [usize; 3] = [3 * CHUNK, 7, CHUNK + 1];
            let n = SIZES[self.turn % SIZES.len()].min(self.data.len() - self.at);
            self.turn += 1;
            *buf = self.data[self.at..self.at + n].to_vec();
            self.at += n;
            Ok(n)
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
                &Stop::new(),
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
            &Stop::new(),
        );
        assert!(
            matches!(short, Err(CopyError::Source(SourceError::File(m))) if m.contains("100 of the 200"))
        );
        let mut gone = Failing {
            data: Cursor::new(data(3 * CHUNK)),
            ok: (CHUNK + 5) as u64,
            err: || SourceError::Gone("unplugged".into()).into_io(),
        };
        let r = copy(
            &mut gone,
            &store,
            3 * CHUNK as u64,
            &mut pool,
            &mut |_| {},
            &Stop::new(),
        );
        assert!(matches!(r, Err(CopyError::Source(SourceError::Gone(_)))));
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    /// A file that fails: its index, the bytes delivered before failing, the error.
    type Failure = (usize, u64, fn() -> io::Error);

    /// Files for [`copy_all`]: contents, with the ones that fail to open (`None`)
    /// or fail after some bytes; records which were opened.
    struct Roll {
        files: Vec<Option<Vec<u8>>>,
        failing: Vec<Failure>,
        opened: Vec<usize>,
        /// Asks this stop when the file of this index is opened.
        stop_at: Option<(usize, Stop)>,
    }

    impl Files for Roll {
        fn count(&self) -> usize {
            self.files.len()
        }
        fn expected(&self, i: usize) -> u64 {
            self.files[i].as_ref().map_or(0, |d| d.len() as u64)
        }
        fn open(&mut self, i: usize) -> Result<Box<dyn FileRead + '_>, SourceError> {
            self.opened.push(i);
            if let Some((at, stop)) = &self.stop_at {
                if *at == i {
                    stop.request();
                }
            }
            let Some(data) = self.files[i].clone() else {
                return Err(SourceError::File("no such file".into()));
            };
            match self.failing.iter().find(|f| f.0 == i) {
                Some(&(_, ok, err)) => Ok(Box::new(Failing {
                    data: Cursor::new(data),
                    ok,
                    err,
                })),
                None => Ok(Box::new(Handing {
                    data,
                    at: 0,
                    turn: 0,
                })),
            }
        }
    }

    #[derive(Default)]
    struct Seen {
        started: Vec<usize>,
        bytes: u64,
        /// Index → Ok(hash) or the error's text.
        finished: Vec<(usize, Result<blake3::Hash, String>)>,
        stop_after: Option<usize>,
    }

    impl Copying for Seen {
        fn started(&mut self, i: usize) {
            self.started.push(i);
        }
        fn advanced(&mut self, bytes: u64) {
            self.bytes += bytes;
        }
        fn finished(&mut self, i: usize, result: Result<Copied, CopyError>) -> bool {
            let r = match result {
                Ok(c) => {
                    assert_eq!(std::fs::read(&c.temp).unwrap().len() as u64, c.size);
                    Ok(c.hash)
                }
                Err(CopyError::Source(e)) => Err(e.to_string()),
                Err(CopyError::Dest(e)) => Err(format!("dest: {e}")),
                Err(CopyError::Stopped) => Err("stopped".into()),
            };
            self.finished.push((i, r));
            self.stop_after != Some(i)
        }
    }

    #[test]
    fn many_files_in_order_with_failures_in_between() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), true).unwrap();
        let sizes = [3 * CHUNK + 5, 0, 10, 2 * CHUNK, CHUNK + 1];
        let mut roll = Roll {
            files: sizes.iter().map(|&n| Some(data(n))).collect(),
            failing: vec![(3, CHUNK as u64 + 7, || io::Error::other("bad sector"))],
            opened: Vec::new(),
            stop_at: None,
        };
        roll.files[1] = None;
        let mut seen = Seen::default();
        let mut pool = Vec::new();
        copy_all(&mut roll, &store, &mut pool, &mut seen, &Stop::new());
        assert_eq!(roll.opened, [0, 1, 2, 3, 4]);
        assert_eq!(
            seen.started,
            [0, 2, 3, 4],
            "a file that did not open never starts"
        );
        let order: Vec<usize> = seen.finished.iter().map(|f| f.0).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        for (i, r) in &seen.finished {
            match i {
                1 => assert_eq!(r.as_ref().unwrap_err(), "no such file"),
                3 => assert!(r.as_ref().unwrap_err().contains("bad sector"), "{r:?}"),
                _ => assert_eq!(r.as_ref().unwrap(), &blake3::hash(&data(sizes[*i]))),
            }
        }
        // Three good files are left in temp files; the failed one is gone.
        let tmp = d.path().join(".offload/tmp");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 3);
        assert_eq!(pool.len(), IN_FLIGHT, "every buffer comes back");
    }

    #[test]
    fn a_vanished_device_or_a_stop_opens_nothing_more() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), true).unwrap();
        // Files of several chunks: the reading side runs ahead by what the channel holds,
        // which is several files when each is one chunk.
        let files = || {
            (0..6)
                .map(|i| Some(data(CHUNK * 7 + i)))
                .collect::<Vec<_>>()
        };
        let mut roll = Roll {
            files: files(),
            failing: vec![(2, 100, || SourceError::Gone("unplugged".into()).into_io())],
            opened: Vec::new(),
            stop_at: None,
        };
        let mut seen = Seen::default();
        copy_all(&mut roll, &store, &mut Vec::new(), &mut seen, &Stop::new());
        assert_eq!(
            roll.opened,
            [0, 1, 2],
            "nothing is opened after the device went"
        );
        assert_eq!(seen.finished.len(), 3);
        assert_eq!(seen.finished[2].1.as_ref().unwrap_err(), "unplugged");

        // The copying side stops after file 1: the reading side may have opened the
        // next file already, never more.
        let mut roll = Roll {
            files: files(),
            failing: Vec::new(),
            opened: Vec::new(),
            stop_at: None,
        };
        let mut seen = Seen {
            stop_after: Some(1),
            ..Seen::default()
        };
        copy_all(&mut roll, &store, &mut Vec::new(), &mut seen, &Stop::new());
        assert!(roll.opened.len() <= 3, "{:?}", roll.opened);
        assert_eq!(seen.finished.len(), 2);
        let tmp = d.path().join(".offload/tmp");
        // Files 0 and 1 of the first call, 0 and 1 of the second: nothing half-written.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 4);
    }

    #[test]
    fn a_stop_keeps_every_finished_file_and_drops_only_the_one_in_hand() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), true).unwrap();
        let stop = Stop::new();
        let mut roll = Roll {
            files: (0..6).map(|i| Some(data(CHUNK * 3 + i))).collect(),
            failing: Vec::new(),
            opened: Vec::new(),
            stop_at: Some((3, stop.clone())),
        };
        let mut seen = Seen::default();
        copy_all(&mut roll, &store, &mut Vec::new(), &mut seen, &stop);
        assert_eq!(
            roll.opened,
            [0, 1, 2, 3],
            "nothing is opened after the stop"
        );
        let done: Vec<usize> = seen.finished.iter().map(|f| f.0).collect();
        assert_eq!(
            done,
            [0, 1, 2],
            "every file read before the stop is handed over"
        );
        assert!(seen.finished.iter().all(|f| f.1.is_ok()));
        let tmp = d.path().join(".offload/tmp");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            3,
            "the three finished files are kept, the one in hand is gone"
        );

        // One file: a stop before its end is `Stopped`, and leaves no temp file.
        let stop = Stop::new();
        stop.request();
        let r = copy(
            &mut Cursor::new(data(2 * CHUNK)),
            &store,
            2 * CHUNK as u64,
            &mut Vec::new(),
            &mut |_| {},
            &stop,
        );
        assert!(matches!(r, Err(CopyError::Stopped)));
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 3);
    }

    /// A reader that panics on its first read.
    struct Panicking;

    impl Read for Panicking {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("hostile data");
        }
    }
    impl FileRead for Panicking {}

    #[test]
    fn a_reader_that_panics_fails_its_file_and_the_copy_goes_on() {
        struct Two;
        impl Files for Two {
            fn count(&self) -> usize {
                2
            }
            fn expected(&self, i: usize) -> u64 {
                [10, 3][i]
            }
            fn open(&mut self, i: usize) -> Result<Box<dyn FileRead + '_>, SourceError> {
                Ok(match i {
                    0 => Box::new(Panicking),
                    _ => Box::new(Handing {
                        data: data(3),
                        at: 0,
                        turn: 0,
                    }),
                })
            }
        }
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), true).unwrap();
        let mut seen = Seen::default();
        copy_all(&mut Two, &store, &mut Vec::new(), &mut seen, &Stop::new());
        assert_eq!(seen.finished.len(), 2, "{:?}", seen.finished);
        assert!(seen.finished[0]
            .1
            .as_ref()
            .unwrap_err()
            .contains("unexpectedly"));
        assert!(seen.finished[1].1.is_ok());
        let r = copy(
            &mut Panicking,
            &store,
            10,
            &mut Vec::new(),
            &mut |_| {},
            &Stop::new(),
        );
        assert!(matches!(r, Err(CopyError::Source(_))), "not a stop");
    }

    /// Temp files that cannot be written (opened read-only), as on a failing drive.
    struct Unwritable(PathBuf);

    impl TempFiles for Unwritable {
        fn temp_file(&self) -> io::Result<(PathBuf, File)> {
            let path = self
                .0
                .join(format!("t{}", std::fs::read_dir(&self.0)?.count()));
            File::create(&path)?;
            Ok((path.clone(), File::open(&path)?))
        }
    }

    #[test]
    fn a_write_that_fails_is_reported_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut roll = Roll {
            files: vec![Some(data(3 * CHUNK)), Some(data(10))],
            failing: Vec::new(),
            opened: Vec::new(),
            stop_at: None,
        };
        let mut seen = Seen::default();
        copy_all(
            &mut roll,
            &Unwritable(d.path().into()),
            &mut Vec::new(),
            &mut seen,
            &Stop::new(),
        );
        assert_eq!(seen.finished.len(), 2, "{:?}", seen.finished);
        for (_, r) in &seen.finished {
            assert!(r.as_ref().unwrap_err().starts_with("dest: "), "{r:?}");
        }
        assert_eq!(seen.bytes, 0);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "temp files left"
        );
    }
}
