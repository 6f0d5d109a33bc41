//! Preparing a file's upload body: one read that hashes, probes and
//! compresses into a spool; then bodies opened once per upload attempt.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use liblzma::stream::{Check, Stream};

use super::gate::XzSlot;
use super::{Encoder, Encoding};

/// How many leading bytes of a file the probe compresses.
pub(crate) const PROBE_SIZE: usize = 64 << 10;

/// The probe's zstd level: the fastest, it only has to tell text-like data
/// from data that is already compressed.
const PROBE_LEVEL: i32 = 1;

/// The probe must save at least 1/`PROBE_MIN_SAVING` of the sample (5 %).
const PROBE_MIN_SAVING: u64 = 20;

/// The read buffer.
pub(super) const CHUNK: usize = 128 << 10;

/// What to upload for one file, made by [`Encoder::prepare`].
#[derive(Debug)]
pub struct Prepared {
    /// The encoding actually used (`None`: the raw bytes are sent). This is
    /// what the edge's `enc` says.
    pub encoding: Option<Encoding>,
    /// BLAKE3 of the raw file bytes as read during `prepare`.
    pub raw_hash: [u8; 32],
    /// How many raw bytes `prepare` read.
    pub raw_size: u64,
    /// The size of the body that [`Prepared::open`] yields.
    pub body_size: u64,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// The file itself, read again (and verified) for every attempt through
    /// the descriptor `prepare` read, with positioned reads: never opened
    /// again by name, so a path swapped for a symlink meanwhile is not
    /// followed.
    Raw(Arc<File>),
    /// The compressed bytes in an unlinked temporary file, read with
    /// positioned reads so that bodies opened from it share no cursor.
    Spool(Arc<File>),
}

impl Prepared {
    /// Opens the body for one upload attempt; call it again for a retry.
    ///
    /// A compressed body is read from its spool from the start. A raw body
    /// opens the file again and hashes what it yields: once `raw_size` bytes
    /// have been read, their hash must be `raw_hash` (checked before the last
    /// of them is returned), and the file must end there. Otherwise the read
    /// fails with an [`io::ErrorKind::InvalidData`] error saying that the file
    /// changed while it was uploaded ([`is_file_changed`] recognises it): a
    /// changed file never goes out under the hash of other bytes. Opening the
    /// file again will not help; prepare it again (or leave it for the next
    /// run).
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match &self.body {
            Body::Raw(file) => Box::new(Verifying {
                file: Arc::clone(file),
                pos: 0,
                hasher: blake3::Hasher::new(),
                seen: 0,
                verified: false,
                expected_len: self.raw_size,
                expected_hash: self.raw_hash,
            }),
            Body::Spool(file) => Box::new(Spool {
                file: Arc::clone(file),
                pos: 0,
                len: self.body_size,
            }),
        })
    }

    /// A body of the raw bytes.
    fn raw(file: File, hasher: &blake3::Hasher, raw_size: u64) -> Self {
        Prepared {
            encoding: None,
            raw_hash: *hasher.finalize().as_bytes(),
            raw_size,
            body_size: raw_size,
            body: Body::Raw(Arc::new(file)),
        }
    }
}

impl Encoder {
    /// Prepares the body to upload for the regular file at `path`, given its
    /// rule decision ([`Encoder::choose`]).
    ///
    /// Reads the file once, hashing its raw bytes. With a decision of
    /// `Some(codec)`, a probe first compresses the first `PROBE_SIZE` bytes
    /// with zstd level 1; if that does not save at least 5 % the file is
    /// sent as it is. Otherwise the whole file is compressed with `codec`
    /// (xz: the configured preset, CRC64 check; zstd: the configured level,
    /// one frame with a checksum) into an unlinked temporary file
    /// (`tempfile::tempfile`, so under `$TMPDIR`), which is discarded if it is
    /// not smaller than the file.
    pub fn prepare(&self, path: &Path, decision: Option<Encoding>) -> io::Result<Prepared> {
        self.prepare_file(File::open(path)?, decision)
    }

    /// [`Encoder::prepare`] of a file already opened (the upload opens it
    /// relative to held directory descriptors, without following links).
    /// Reads from the file's current position, which must be its start.
    pub(crate) fn prepare_file(
        &self,
        mut file: File,
        decision: Option<Encoding>,
    ) -> io::Result<Prepared> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0; CHUNK];
        let Some(codec) = decision else {
            let raw_size = hash_rest(&mut file, &mut hasher, &mut buf, 0)?;
            return Ok(Prepared::raw(file, &hasher, raw_size));
        };

        let head = read_head(&mut file, self.probe_size)?;
        hasher.update(&head);
        let mut raw_size = head.len() as u64;
        if self.probe_size > 0 && !compressible(&head) {
            let raw_size = hash_rest(&mut file, &mut hasher, &mut buf, raw_size)?;
            return Ok(Prepared::raw(file, &hasher, raw_size));
        }

        let mut sink = self.compressor(codec, tempfile::tempfile().map_err(spool_error)?)?;
        sink.write_all(&head).map_err(spool_error)?;
        drop(head);
        loop {
            let n = read_some(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            raw_size += n as u64;
            sink.write_all(&buf[..n]).map_err(spool_error)?;
        }
        let spool = sink.finish().map_err(spool_error)?;
        if spool.count >= raw_size {
            return Ok(Prepared::raw(file, &hasher, raw_size));
        }
        Ok(Prepared {
            encoding: Some(codec),
            raw_hash: *hasher.finalize().as_bytes(),
            raw_size,
            body_size: spool.count,
            body: Body::Spool(Arc::new(spool.file)),
        })
    }

    fn compressor(&self, codec: Encoding, spool: File) -> io::Result<Compressor> {
        let out = Counting {
            file: spool,
            count: 0,
        };
        Ok(match codec {
            Encoding::Xz => {
                // Taken before the encoder allocates its ~94 MiB.
                let slot = XzSlot::acquire(self.xz_max_parallel);
                let stream = Stream::new_easy_encoder(self.xz_preset(), Check::Crc64)
                    .map_err(|e| io::Error::other(format!("xz encoder: {e}")))?;
                Compressor::Xz(liblzma::write::XzEncoder::new_stream(out, stream), slot)
            }
            Encoding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, self.zstd_level)?;
                encoder.include_checksum(true)?;
                Compressor::Zstd(encoder)
            }
        })
    }
}

/// Says which file failed: the spool's, not the source's.
fn spool_error(err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!(
            "compressing into a temporary file in {}: {err}",
            std::env::temp_dir().display()
        ),
    )
}

/// Whether the probe finds `sample` worth compressing.
pub(super) fn compressible(sample: &[u8]) -> bool {
    if sample.is_empty() {
        return false;
    }
    match zstd::bulk::compress(sample, PROBE_LEVEL) {
        Ok(packed) => {
            let len = sample.len() as u64;
            packed.len() as u64 <= len - len / PROBE_MIN_SAVING
        }
        // Cannot happen with a valid level; let the real compression decide.
        Err(_) => true,
    }
}

/// Reads up to `limit` bytes (fewer only at the end of the file).
fn read_head(file: &mut File, limit: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(limit);
    file.take(limit as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// One read, retried when interrupted.
fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Hashes the rest of `file`; returns `seen` plus the bytes hashed.
fn hash_rest(
    file: &mut File,
    hasher: &mut blake3::Hasher,
    buf: &mut [u8],
    mut seen: u64,
) -> io::Result<u64> {
    loop {
        let n = read_some(file, buf)?;
        if n == 0 {
            return Ok(seen);
        }
        hasher.update(&buf[..n]);
        seen += n as u64;
    }
}

/// A compressing writer into the spool.
enum Compressor {
    /// The encoder with its slot of the process-wide xz limit, freed when
    /// the encoder is dropped (after `finish`, or on an error).
    Xz(liblzma::write::XzEncoder<Counting>, XzSlot),
    Zstd(zstd::stream::write::Encoder<'static, Counting>),
}

impl Compressor {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Xz(w, _) => w.write_all(data),
            Compressor::Zstd(w) => w.write_all(data),
        }
    }

    fn finish(self) -> io::Result<Counting> {
        match self {
            Compressor::Xz(w, _slot) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

/// The spool file, counting what is written to it.
struct Counting {
    file: File,
    count: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A reader of the spool with its own position.
struct Spool {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl Read for Spool {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the compression spool file is shorter than what was written to it",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A reader of the raw file that checks it still has the prepared bytes.
struct Verifying {
    file: Arc<File>,
    /// Where the next positioned read starts.
    pos: u64,
    hasher: blake3::Hasher,
    /// Bytes read (and hashed) so far; never more than `expected_len`.
    seen: u64,
    /// Whether the `expected_len` bytes read had the expected hash.
    verified: bool,
    expected_len: u64,
    expected_hash: [u8; 32],
}

impl Verifying {
    fn changed(&self, how: Change) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            FileChanged {
                how,
                expected_len: self.expected_len,
            },
        )
    }

    /// One positioned read at `pos`, retried when interrupted.
    fn read_at(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, self.pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    fn verify(&mut self) -> io::Result<()> {
        if *self.hasher.finalize().as_bytes() != self.expected_hash {
            return Err(self.changed(Change::Content));
        }
        self.verified = true;
        Ok(())
    }
}

impl Read for Verifying {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.seen == self.expected_len {
            if !self.verified {
                // Only for an empty file: otherwise the last read verified.
                self.verify()?;
            }
            // The expected bytes are all out: the file must end here.
            let mut probe = [0u8; 1];
            if self.read_at(&mut probe)? != 0 {
                return Err(self.changed(Change::Grew));
            }
            return Ok(0);
        }
        let left = self.expected_len - self.seen;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.read_at(&mut buf[..want])?;
        if n == 0 {
            return Err(self.changed(Change::Shrank));
        }
        self.pos += n as u64;
        self.hasher.update(&buf[..n]);
        self.seen += n as u64;
        if self.seen == self.expected_len {
            // Before the last bytes go out, so that a reader that stops at
            // the expected length never sends wrong bytes either.
            self.verify()?;
        }
        Ok(n)
    }
}

/// The error inside an [`io::ErrorKind::InvalidData`] error of a raw body
/// whose file changed after [`Encoder::prepare`].
#[derive(Debug)]
struct FileChanged {
    how: Change,
    expected_len: u64,
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Content,
    Shrank,
    Grew,
}

impl fmt::Display for FileChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.how {
            Change::Content => "its content differs from",
            Change::Shrank => "it is now shorter than",
            Change::Grew => "it is now longer than",
        };
        write!(
            f,
            "the file changed while it was uploaded: {how} the {} bytes read before the upload",
            self.expected_len
        )
    }
}

impl std::error::Error for FileChanged {}

/// Whether `err` is the error of a raw body whose file changed after
/// [`Encoder::prepare`] (see [`Prepared::open`]).
pub fn is_file_changed(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::InvalidData
        && err.get_ref().is_some_and(|inner| inner.is::<FileChanged>())
}
