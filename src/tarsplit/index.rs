//! The index of a split tar: its records in stream order, serialised in a
//! compact, versioned, length-prefixed binary form, and [`join`], which
//! gives the tar back from the index and the payload objects.
//!
//! The form (version 1; `docs/streams.md`, "Tar streams", pinned by a golden test):
//!
//! ```text
//! index    = magic version record* end
//! magic    = "LBTARIDX"                      8 bytes
//! version  = 0x01                            1 byte
//! record   = "V" uvarint(len) bytes[len]     verbatim bytes, len <= 1 MiB
//!          | "P" uvarint(plen) path[plen]    a payload: the member's path
//!                uvarint(size)               and its length
//! end      = "E" uvarint(records) uvarint(total)
//! ```
//!
//! `uvarint` is unsigned LEB128 (7 bits a byte, low bits first, at most 10
//! bytes). `records` counts the records before `end`, `total` is the tar's
//! length; nothing may follow `end`. The n-th `P` record (from 0) is the
//! n-th payload of the stream: the stream store keeps the payload objects
//! in that order and hands them to [`join`] by that ordinal.

use std::io::{self, Read, Write};

use super::MAX_EXTENDED;

/// The magic bytes that start an index.
const MAGIC: &[u8; 8] = b"LBTARIDX";
/// The version of the form this module writes and reads.
const VERSION: u8 = 1;
/// The longest verbatim record: the writer cuts longer runs, so a reader
/// never holds more than this (or a path of [`MAX_EXTENDED`] bytes).
pub(super) const MAX_VERBATIM_RECORD: usize = 1 << 20;

/// One record of a split tar's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Bytes of the tar stored inline.
    Verbatim(Vec<u8>),
    /// A member's payload, stored as an object of its own.
    Payload {
        /// The member's effective path (raw bytes).
        path: Vec<u8>,
        /// The payload's length.
        size: u64,
    },
}

/// What is wrong with an index, or the I/O error reading it.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The bytes are not an index of a version this build reads.
    #[error("not a tar stream index (version {VERSION}): {0}")]
    Format(String),
    /// Reading the index failed.
    #[error("reading a tar stream index")]
    Read(#[source] io::Error),
}

/// Writes an index, record by record.
pub struct IndexWriter<W: Write> {
    out: W,
    records: u64,
    total: u64,
}

impl<W: Write> IndexWriter<W> {
    /// Starts an index on `out` (writes the magic and version).
    pub fn new(mut out: W) -> io::Result<IndexWriter<W>> {
        out.write_all(MAGIC)?;
        out.write_all(&[VERSION])?;
        Ok(IndexWriter {
            out,
            records: 0,
            total: 0,
        })
    }

    /// Appends verbatim bytes (cut into records of at most 1 MiB; nothing
    /// for an empty slice).
    pub fn verbatim(&mut self, bytes: &[u8]) -> io::Result<()> {
        for piece in bytes.chunks(MAX_VERBATIM_RECORD) {
            self.out.write_all(b"V")?;
            write_uvarint(&mut self.out, piece.len() as u64)?;
            self.out.write_all(piece)?;
            self.records += 1;
            self.total += piece.len() as u64;
        }
        Ok(())
    }

    /// Appends a payload record.
    pub fn payload(&mut self, path: &[u8], size: u64) -> io::Result<()> {
        self.out.write_all(b"P")?;
        write_uvarint(&mut self.out, path.len() as u64)?;
        self.out.write_all(path)?;
        write_uvarint(&mut self.out, size)?;
        self.records += 1;
        self.total += size;
        Ok(())
    }

    /// Appends a record.
    pub fn record(&mut self, record: &Record) -> io::Result<()> {
        match record {
            Record::Verbatim(bytes) => self.verbatim(bytes),
            Record::Payload { path, size } => self.payload(path, *size),
        }
    }

    /// Writes the end record and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"E")?;
        write_uvarint(&mut self.out, self.records)?;
        write_uvarint(&mut self.out, self.total)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads an index, record by record, checking its end record.
pub struct IndexReader<R> {
    input: R,
    records: u64,
    total: u64,
    ended: bool,
}

impl<R: Read> IndexReader<R> {
    /// Reads and checks the magic and version.
    pub fn new(mut input: R) -> Result<IndexReader<R>, IndexError> {
        let mut head = [0u8; 9];
        read_exact(&mut input, &mut head, "the magic")?;
        if &head[..8] != MAGIC {
            return Err(IndexError::Format("no magic".to_owned()));
        }
        if head[8] != VERSION {
            return Err(IndexError::Format(format!("version {}", head[8])));
        }
        Ok(IndexReader {
            input,
            records: 0,
            total: 0,
            ended: false,
        })
    }

    /// The next record, or `None` after the end record (checked: the record
    /// count, the total length, nothing after it).
    pub fn next_record(&mut self) -> Result<Option<Record>, IndexError> {
        if self.ended {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        read_exact(&mut self.input, &mut tag, "a record")?;
        let record = match &tag {
            b"V" => {
                let len = self.length(MAX_VERBATIM_RECORD, "verbatim record")?;
                let mut bytes = vec![0; len];
                read_exact(&mut self.input, &mut bytes, "verbatim bytes")?;
                self.total += len as u64;
                Record::Verbatim(bytes)
            }
            b"P" => {
                let len = self.length(MAX_EXTENDED, "payload path")?;
                let mut path = vec![0; len];
                read_exact(&mut self.input, &mut path, "a payload path")?;
                let size = read_uvarint(&mut self.input)?;
                self.total = self
                    .total
                    .checked_add(size)
                    .ok_or_else(|| IndexError::Format("a total past 2^64".to_owned()))?;
                Record::Payload { path, size }
            }
            b"E" => {
                let records = read_uvarint(&mut self.input)?;
                let total = read_uvarint(&mut self.input)?;
                if (records, total) != (self.records, self.total) {
                    return Err(IndexError::Format(format!(
                        "the end record says {records} records and {total} bytes, \
                         the index holds {} and {}",
                        self.records, self.total
                    )));
                }
                let mut more = [0u8; 1];
                if read_some(&mut self.input, &mut more)? != 0 {
                    return Err(IndexError::Format("bytes after the end record".to_owned()));
                }
                self.ended = true;
                return Ok(None);
            }
            other => {
                return Err(IndexError::Format(format!(
                    "an unknown record type {:?}",
                    other.escape_ascii().to_string()
                )));
            }
        };
        self.records += 1;
        Ok(Some(record))
    }

    fn length(&mut self, limit: usize, what: &str) -> Result<usize, IndexError> {
        let len = read_uvarint(&mut self.input)?;
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= limit)
            .ok_or_else(|| IndexError::Format(format!("a {what} of {len} bytes")))
    }
}

/// Why [`join`] could not give the tar back.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The index is damaged or of another version.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A payload object is not as long as its record says.
    #[error("payload {ordinal} (\"{path}\") is {got} bytes long, the index says {expected}")]
    PayloadLength {
        /// Its ordinal among the payloads.
        ordinal: u64,
        /// The member's path (escaped).
        path: String,
        /// The length in the index.
        expected: u64,
        /// The length read (at most one byte more than `expected`).
        got: u64,
    },
    /// Opening or reading a payload object failed.
    #[error("reading payload {ordinal} (\"{path}\")")]
    Payload {
        /// Its ordinal among the payloads.
        ordinal: u64,
        /// The member's path (escaped).
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the tar failed.
    #[error("writing the tar stream")]
    Write(#[source] io::Error),
}

/// Gives the tar back: writes the index's records in order to `out`, the
/// verbatim ones from the index and the n-th payload from `open(n, path,
/// size)`, checking each payload's length and the index's end record.
/// Returns the number of bytes written.
pub fn join<R, W, P, F>(index: R, mut open: F, out: &mut W) -> Result<u64, JoinError>
where
    R: Read,
    W: Write,
    P: Read,
    F: FnMut(u64, &[u8], u64) -> io::Result<P>,
{
    let mut index = IndexReader::new(index)?;
    let mut ordinal = 0u64;
    let mut written = 0u64;
    while let Some(record) = index.next_record()? {
        match record {
            Record::Verbatim(bytes) => {
                out.write_all(&bytes).map_err(JoinError::Write)?;
                written += bytes.len() as u64;
            }
            Record::Payload { path, size } => {
                let shown = || path.escape_ascii().to_string();
                let payload_err = |source| JoinError::Payload {
                    ordinal,
                    path: shown(),
                    source,
                };
                let body = open(ordinal, &path, size).map_err(payload_err)?;
                // One byte more than the record says, to tell a long object.
                let mut body = body.take(size.saturating_add(1));
                let got = copy(&mut body, out, size).map_err(|e| match e {
                    CopyError::Read(e) => payload_err(e),
                    CopyError::Write(e) => JoinError::Write(e),
                })?;
                if got != size {
                    return Err(JoinError::PayloadLength {
                        ordinal,
                        path: shown(),
                        expected: size,
                        got,
                    });
                }
                written += size;
                ordinal += 1;
            }
        }
    }
    out.flush().map_err(JoinError::Write)?;
    Ok(written)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `input` to `out`, writing at most `limit` bytes (a longer input
/// is counted but not written); returns the bytes read.
fn copy<W: Write>(input: &mut impl Read, out: &mut W, limit: u64) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let keep = usize::try_from(limit.saturating_sub(got))
            .unwrap_or(usize::MAX)
            .min(n);
        out.write_all(&buf[..keep]).map_err(CopyError::Write)?;
        got += n as u64;
    }
}

fn write_uvarint(out: &mut impl Write, mut value: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut len = 0;
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            buf[len] = low;
            len += 1;
            break;
        }
        buf[len] = low | 0x80;
        len += 1;
    }
    out.write_all(&buf[..len])
}

fn read_uvarint(input: &mut impl Read) -> Result<u64, IndexError> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        read_exact(input, &mut byte, "a number")?;
        let bits = u64::from(byte[0] & 0x7f);
        if i == 9 && byte[0] > 1 {
            return Err(IndexError::Format("a number past 2^64".to_owned()));
        }
        value |= bits << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(IndexError::Format("a number past 2^64".to_owned()))
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), IndexError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            IndexError::Format(format!("it ends inside {what}"))
        } else {
            IndexError::Read(e)
        }
    })
}

fn read_some(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, IndexError> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other.map_err(IndexError::Read),
        }
    }
}
