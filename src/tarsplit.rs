//! TARzan's tar splitter: a tar stream cut, as it passes, into the bytes a
//! backup stores inline and the member payloads it stores as objects of their
//! own (issue 15, item 4; `docs/streams.md`, "Tar streams").
//!
//! [`Splitter`] reads any [`Read`](std::io::Read) and yields [`Event`]s in
//! stream order: [`Event::Verbatim`] for every byte that is not a regular
//! member's payload (headers, pax and GNU extended records, long-name
//! blocks, sparse maps, padding, the end-of-archive blocks and whatever
//! follows them), and [`Event::Payload`] for each regular member's data,
//! streamed through a reader, never buffered whole. Concatenating the events'
//! bytes gives the input back byte for byte, so the stream is stored as an
//! index of [`Record`]s (verbatim bytes inline, payloads by reference) that
//! [`join`] turns back into the identical tar.
//!
//! Why its own parser and not the `tar` crate: a backup must give back the
//! exact bytes, so the parser has to account for every byte it passes over
//! (padding, extension blocks, sparse maps) and must never normalise a
//! header. It follows GNU tar's reading rules where tars disagree (which
//! member types carry data, how global pax records apply), since GNU tar is
//! what produces the streams this is for.
//!
//! Memory is bounded by one header group (at most [`MAX_EXTENDED`] bytes of
//! extended records) plus [`FLUSH`] bytes of pending verbatim data, whatever
//! the stream's size.

mod header;
mod index;
mod split;
#[cfg(test)]
mod tests;

use std::fmt;

pub use index::{IndexError, IndexReader, IndexWriter, JoinError, Record, join};
pub use split::{Event, PayloadReader, Splitter};

/// The largest extended header (pax records, GNU long name or link) or
/// sparse map the splitter accepts: a bigger one is a [`TarError`] (and with
/// `--tar-lenient` the stream is stored plain). Real archives stay far below
/// it (a long name is at most a few KiB; ACLs and xattrs a few hundred KiB).
pub(crate) const MAX_EXTENDED: usize = 4 << 20;

/// Verbatim bytes are handed out once this many are pending, so a long run
/// of non-payload bytes (a big non-regular member, trailing data) streams too.
pub(crate) const FLUSH: usize = 64 << 10;

/// What makes a stream not a valid tar, and where: the byte offset of the
/// header (or of the end of the stream) where the splitter gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid tar stream at byte {offset}: {kind}")]
pub struct TarError {
    /// The offset in the stream, from its first byte.
    pub offset: u64,
    /// What is wrong there.
    pub kind: TarErrorKind,
}

/// The ways a stream can fail to be a tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarErrorKind {
    /// The stream ends inside a 512-byte header block.
    TruncatedHeader {
        /// How many bytes of the block there are.
        got: usize,
    },
    /// The header's checksum field does not match its bytes.
    BadChecksum {
        /// The checksum field as it is in the header.
        stored: Vec<u8>,
        /// The sum of the header's bytes.
        computed: u64,
    },
    /// A numeric header field (or pax value) is not a number.
    BadNumber {
        /// The field's name (`size`, `chksum`, pax `size`, ...).
        field: &'static str,
        /// The field's bytes.
        value: Vec<u8>,
    },
    /// The stream ends inside a member's data or padding.
    UnexpectedEof {
        /// What was being read (`the payload of "PATH"`, ...).
        inside: String,
    },
    /// A pax extended header does not hold well-formed records.
    BadPax {
        /// What is wrong with them.
        what: String,
    },
    /// A GNU 1.0 sparse map does not parse.
    BadSparseMap {
        /// What is wrong with it.
        what: String,
    },
    /// An extended header or sparse map is larger than [`MAX_EXTENDED`].
    TooLarge {
        /// What it is.
        what: &'static str,
        /// Its size in bytes.
        size: u64,
    },
}

impl fmt::Display for TarErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TarErrorKind::TruncatedHeader { got } => {
                write!(f, "the stream ends inside a header ({got} of 512 bytes)")
            }
            TarErrorKind::BadChecksum { stored, computed } => write!(
                f,
                "bad header checksum (the field says \"{}\", the bytes sum to {computed:o} octal)",
                stored.escape_ascii()
            ),
            TarErrorKind::BadNumber { field, value } => write!(
                f,
                "the {field} field \"{}\" is not a number",
                value.escape_ascii()
            ),
            TarErrorKind::UnexpectedEof { inside } => {
                write!(f, "the stream ends inside {inside}")
            }
            TarErrorKind::BadPax { what } => write!(f, "bad pax extended header: {what}"),
            TarErrorKind::BadSparseMap { what } => write!(f, "bad GNU sparse map: {what}"),
            TarErrorKind::TooLarge { what, size } => write!(
                f,
                "{what} of {size} bytes is larger than the limit of {MAX_EXTENDED} bytes"
            ),
        }
    }
}

/// Whether `err`, or any error in its chain of sources, says the stream is
/// not a valid tar (a [`TarError`], also when it comes wrapped in the
/// [`std::io::Error`] a [`PayloadReader`] returns). The CLI's
/// `--tar-lenient` falls back to a plain stream on exactly these errors; a
/// read error of the input itself is not one.
pub fn is_tar_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        // `SplitError::Tar` is transparent: its source is the tar error's.
        if e.is::<TarError>() || matches!(e.downcast_ref(), Some(SplitError::Tar(_))) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && inner.is::<TarError>()
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// An error of [`Splitter::next_event`]: the stream is not a tar, or reading
/// it failed.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The stream is not a valid tar ([`is_tar_error`] says yes).
    #[error(transparent)]
    Tar(#[from] TarError),
    /// Reading the stream failed (not a tar error).
    #[error("reading the tar stream at byte {offset}")]
    Read {
        /// The offset in the stream where the read failed.
        offset: u64,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
}
