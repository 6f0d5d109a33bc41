//! The splitter: a tar stream into verbatim bytes and member payloads.

use std::io::{self, Read};

use super::header::{
    BLOCK, Header, Magic, Pax, parse_decimal, sparse_extension_continues, until_nul,
};
use super::{FLUSH, MAX_EXTENDED, SplitError, TarError, TarErrorKind};

/// One piece of the stream, in stream order.
pub enum Event<'a, R> {
    /// Bytes stored as they are: headers, extended records, long names,
    /// sparse maps, padding, end-of-archive blocks, trailing data. Never
    /// empty, at most [`FLUSH`] bytes plus one header group.
    Verbatim(Vec<u8>),
    /// A regular member's data (for a sparse member: its stored data
    /// section, without a GNU 1.0 sparse map), to be read from `reader`.
    Payload {
        /// The member's effective path: a pax `path` (or
        /// `GNU.sparse.name`) or GNU long name applied, as raw bytes.
        path: Vec<u8>,
        /// The payload's length in bytes.
        size: u64,
        /// The payload's bytes; it gives exactly `size` bytes, or an error.
        /// Bytes left unread are skipped by the next
        /// [`Splitter::next_event`].
        reader: PayloadReader<'a, R>,
    },
}

/// Where the splitter is in the stream.
#[derive(Debug)]
enum State {
    /// At a header block.
    Header,
    /// A payload's header group has been handed out as verbatim; the
    /// payload event comes next.
    PayloadNext { path: Vec<u8>, size: u64, pad: u64 },
    /// Inside a payload: `left` bytes of it, then `pad` bytes of padding.
    Payload { left: u64, pad: u64, path: Vec<u8> },
    /// `left` more bytes of verbatim member data or padding, then a header.
    Data { left: u64, inside: &'static str },
    /// After the first zero block: everything is verbatim.
    Trailing,
    /// The stream has ended.
    Done,
}

/// The extended headers read so far for the next member.
#[derive(Default)]
struct Pending {
    /// A GNU `L` long name.
    long_name: Option<Vec<u8>>,
    /// The member's own pax (`x`) records.
    pax: Pax,
    /// Whether any extended header is waiting for its member.
    any: bool,
}

/// A tar stream being split into [`Event`]s (see the module docs).
pub struct Splitter<R> {
    input: R,
    /// Bytes consumed from `input`.
    offset: u64,
    /// Verbatim bytes not handed out yet.
    verbatim: Vec<u8>,
    state: State,
    /// The global pax (`g`) records, which apply to every later member.
    global: Pax,
    pending: Pending,
}

impl<R: Read> Splitter<R> {
    /// A splitter over `input`, which starts at the tar's first byte.
    pub fn new(input: R) -> Splitter<R> {
        Splitter {
            input,
            offset: 0,
            verbatim: Vec::new(),
            state: State::Header,
            global: Pax::default(),
            pending: Pending::default(),
        }
    }

    /// How many bytes of the stream have been read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The input, and the bytes read from it that no event has handed out
    /// yet. After a tar error the stream is, in order: the bytes of the
    /// events so far (with whatever part of a payload was read), these
    /// bytes, and the rest of the input; so `--tar-lenient` can go on
    /// storing it as a plain stream without losing a byte.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.input, self.verbatim)
    }

    /// The next piece of the stream, or `None` once it has ended. An error
    /// says the stream is not a valid tar ([`SplitError::Tar`]) or could not
    /// be read; after an error the splitter is not to be used again.
    pub fn next_event(&mut self) -> Result<Option<Event<'_, R>>, SplitError> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::PayloadNext { path, size, pad } => {
                    self.state = State::Payload {
                        left: size,
                        pad,
                        path: path.clone(),
                    };
                    return Ok(Some(Event::Payload {
                        path,
                        size,
                        reader: PayloadReader { splitter: self },
                    }));
                }
                State::Payload { left: 0, pad, .. } => self.state = after_payload(pad),
                State::Payload { left, pad, path } => {
                    // The caller did not read all of it: skip the rest (the
                    // reader moves on to the padding at the payload's end).
                    self.state = State::Payload { left, pad, path };
                    let mut reader = PayloadReader { splitter: self };
                    if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
                        return Err(self.io_error(e));
                    }
                }
                State::Data { left, inside } => {
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(FLUSH);
                    let got = self.read_verbatim(want)?;
                    if got < want {
                        return Err(self.tar_error(TarErrorKind::UnexpectedEof {
                            inside: inside.to_owned(),
                        }));
                    }
                    let left = left - got as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Data { left, inside }
                    };
                }
                State::Header => self.header()?,
                State::Trailing => {
                    if self.read_verbatim(FLUSH)? == 0 {
                        self.state = State::Done;
                    } else {
                        self.state = State::Trailing;
                    }
                }
                State::Done => {
                    return Ok(self.take_verbatim().map(Event::Verbatim));
                }
            }
            // A payload's header group goes out before the payload; other
            // verbatim bytes once enough of them are pending.
            let ready = match self.state {
                State::PayloadNext { .. } => !self.verbatim.is_empty(),
                _ => self.verbatim.len() >= FLUSH,
            };
            if ready && let Some(bytes) = self.take_verbatim() {
                return Ok(Some(Event::Verbatim(bytes)));
            }
        }
    }

    /// Reads the header block at the current offset and decides what
    /// follows it.
    fn header(&mut self) -> Result<(), SplitError> {
        let start = self.offset;
        let mut block = [0u8; BLOCK];
        let got = self.read_full(&mut block)?;
        if got == 0 {
            // GNU tar accepts an archive without its end-of-archive blocks
            // (a `tar c` cut at a member boundary still lists); a member
            // still waiting for its header is an error.
            if self.pending.any {
                return Err(self.tar_error(TarErrorKind::UnexpectedEof {
                    inside: "an extended header's member".to_owned(),
                }));
            }
            self.state = State::Done;
            return Ok(());
        }
        if got < BLOCK {
            self.verbatim.extend_from_slice(&block[..got]);
            return Err(TarError {
                offset: start,
                kind: TarErrorKind::TruncatedHeader { got },
            }
            .into());
        }
        self.verbatim.extend_from_slice(&block);
        let header = Header(&block);
        if header.is_zero() {
            // The end of the archive, as GNU tar reads it: whatever follows
            // the first zero block (the second one, the record's padding,
            // another archive) is kept as it is.
            self.state = State::Trailing;
            return Ok(());
        }
        let at = |kind| TarError {
            offset: start,
            kind,
        };
        header.check_checksum().map_err(at)?;
        let header_size = header.size().map_err(at)?;
        match header.typeflag() {
            // Extended headers: read whole (bounded), parsed, kept verbatim.
            flag @ (b'x' | b'g' | b'X' | b'L' | b'K') => {
                let what = match flag {
                    b'L' => "a GNU long name",
                    b'K' => "a GNU long link name",
                    _ => "a pax extended header",
                };
                let data = self.read_extended(header_size, what, start)?;
                match flag {
                    b'x' | b'X' => self.pending.pax.apply(&data).map_err(at)?,
                    b'g' => self.global.apply(&data).map_err(at)?,
                    b'L' => self.pending.long_name = Some(until_nul(&data).to_vec()),
                    _ => {}
                }
                // A global header is complete in itself; the others wait
                // for their member.
                self.pending.any |= flag != b'g';
                self.state = State::Header;
            }
            flag => {
                let pending = std::mem::take(&mut self.pending);
                let pax = self.global.overlay(&pending.pax);
                let size = pax.size.unwrap_or(header_size);
                let name = header.name();
                let regular = match flag {
                    // Old archives mark a directory by a trailing slash.
                    b'\0' => !name.ends_with(b"/"),
                    b'0' | b'7' | b'S' => true,
                    _ => false,
                };
                if flag == b'S' && header.magic() == Magic::Gnu && header.gnu_sparse_extended() {
                    self.sparse_extensions()?;
                }
                if regular {
                    let path = pax
                        .sparse_name
                        .clone()
                        .or_else(|| pax.path.clone())
                        .or(pending.long_name)
                        .unwrap_or(name);
                    let pad = padding(size);
                    let mut size = size;
                    if pax.is_sparse_1_0() {
                        let map = self.sparse_map(size)?;
                        size -= map;
                    }
                    self.state = State::PayloadNext { path, size, pad };
                } else if flag == b'5' || size == 0 {
                    // GNU tar reads no data after a directory header,
                    // whatever its size field says.
                    self.state = State::Header;
                } else {
                    // Links, devices, dumpdirs, volume labels, unknown
                    // types: GNU tar skips `size` bytes of data, and so
                    // does this, keeping them verbatim.
                    self.state = State::Data {
                        left: size.saturating_add(padding(size)),
                        inside: "a non-regular member's data",
                    };
                }
            }
        }
        Ok(())
    }

    /// An extended header's data and padding, kept verbatim and returned.
    fn read_extended(
        &mut self,
        size: u64,
        what: &'static str,
        start: u64,
    ) -> Result<Vec<u8>, SplitError> {
        let len = usize::try_from(size)
            .ok()
            .filter(|&l| l <= MAX_EXTENDED)
            .ok_or(TarError {
                offset: start,
                kind: TarErrorKind::TooLarge { what, size },
            })?;
        let total = len + usize::try_from(padding(size)).unwrap_or(0);
        let before = self.verbatim.len();
        if self.read_verbatim(total)? < total {
            return Err(self.tar_error(TarErrorKind::UnexpectedEof {
                inside: what.to_owned(),
            }));
        }
        Ok(self.verbatim[before..before + len].to_vec())
    }

    /// Old GNU sparse headers' extension blocks, kept verbatim.
    fn sparse_extensions(&mut self) -> Result<(), SplitError> {
        let mut blocks = 0usize;
        loop {
            let mut block = [0u8; BLOCK];
            if self.read_full(&mut block)? < BLOCK {
                return Err(self.tar_error(TarErrorKind::UnexpectedEof {
                    inside: "a GNU sparse extension header".to_owned(),
                }));
            }
            self.verbatim.extend_from_slice(&block);
            blocks += 1;
            if !sparse_extension_continues(&block) {
                return Ok(());
            }
            if blocks * BLOCK > MAX_EXTENDED {
                return Err(self.tar_error(TarErrorKind::TooLarge {
                    what: "a GNU sparse map",
                    size: (blocks * BLOCK) as u64,
                }));
            }
        }
    }

    /// A GNU 1.0 sparse map at the start of a member's data section of
    /// `size` bytes: kept verbatim; returns its length (whole blocks).
    fn sparse_map(&mut self, size: u64) -> Result<u64, SplitError> {
        let start = self.offset;
        let bad = |what: String| TarError {
            offset: start,
            kind: TarErrorKind::BadSparseMap { what },
        };
        let first = self.verbatim.len();
        // Decimal numbers, each ending in a newline: the count of entries,
        // then an offset and a length for each.
        let mut numbers_wanted: Option<u64> = None;
        let mut numbers_seen: u64 = 0;
        let mut pos = first;
        loop {
            let read = (self.verbatim.len() - first) as u64;
            if read + BLOCK as u64 > size {
                return Err(
                    bad(format!("it does not end within the member's {size} bytes")).into(),
                );
            }
            if read as usize + BLOCK > MAX_EXTENDED {
                return Err(self.tar_error(TarErrorKind::TooLarge {
                    what: "a GNU sparse map",
                    size: read,
                }));
            }
            let mut block = [0u8; BLOCK];
            if self.read_full(&mut block)? < BLOCK {
                return Err(self.tar_error(TarErrorKind::UnexpectedEof {
                    inside: "a GNU sparse map".to_owned(),
                }));
            }
            self.verbatim.extend_from_slice(&block);
            while let Some(nl) = self.verbatim[pos..].iter().position(|&b| b == b'\n') {
                let number = &self.verbatim[pos..pos + nl];
                if parse_decimal(number).is_none() {
                    return Err(
                        bad(format!("\"{}\" is not a number", number.escape_ascii())).into(),
                    );
                }
                pos += nl + 1;
                numbers_seen += 1;
                if numbers_wanted.is_none() {
                    let count = parse_decimal(number).unwrap_or(0);
                    numbers_wanted = Some(
                        count
                            .checked_mul(2)
                            .and_then(|n| n.checked_add(1))
                            .ok_or_else(|| bad(format!("{count} entries")))?,
                    );
                }
                if Some(numbers_seen) == numbers_wanted {
                    return Ok((self.verbatim.len() - first) as u64);
                }
            }
            if self.verbatim[pos..].len() > 20 {
                return Err(bad("a number longer than 20 digits".to_owned()).into());
            }
        }
    }

    /// Reads up to `len` bytes onto the pending verbatim bytes; returns how
    /// many (fewer only at the end of the stream).
    fn read_verbatim(&mut self, len: usize) -> Result<usize, SplitError> {
        let before = self.verbatim.len();
        self.verbatim.resize(before + len, 0);
        let got = fill(
            &mut self.input,
            &mut self.offset,
            &mut self.verbatim[before..],
        );
        self.verbatim
            .truncate(before + got.as_ref().map_or(0, |&n| n));
        got
    }

    /// Fills `buf` from the input as far as it goes.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, SplitError> {
        fill(&mut self.input, &mut self.offset, buf)
    }

    fn take_verbatim(&mut self) -> Option<Vec<u8>> {
        (!self.verbatim.is_empty()).then(|| std::mem::take(&mut self.verbatim))
    }

    fn tar_error(&self, kind: TarErrorKind) -> SplitError {
        TarError {
            offset: self.offset,
            kind,
        }
        .into()
    }

    /// A payload reader's error back as a split error.
    fn io_error(&self, e: io::Error) -> SplitError {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<TarError>())
        {
            Some(tar) => tar.clone().into(),
            None => SplitError::Read {
                offset: self.offset,
                source: e,
            },
        }
    }
}

/// Fills `buf` from `input` as far as it goes, counting the bytes read in
/// `offset`; returns how many (fewer only at the end of the stream).
fn fill(input: &mut impl Read, offset: &mut u64, buf: &mut [u8]) -> Result<usize, SplitError> {
    let mut done = 0;
    while done < buf.len() {
        match input.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                *offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(SplitError::Read {
                    offset: *offset,
                    source,
                });
            }
        }
    }
    Ok(done)
}

/// The padding after `size` bytes of member data, to the next block.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// What follows a payload: its padding (verbatim), then a header.
fn after_payload(pad: u64) -> State {
    if pad == 0 {
        State::Header
    } else {
        State::Data {
            left: pad,
            inside: "the padding after a payload",
        }
    }
}

/// The bytes of the current payload (see [`Event::Payload`]).
pub struct PayloadReader<'a, R> {
    splitter: &'a mut Splitter<R>,
}

impl<R: Read> Read for PayloadReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let sp = &mut *self.splitter;
        let State::Payload { left, pad, path } = &mut sp.state else {
            return Ok(0);
        };
        if *left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
        let n = loop {
            match sp.input.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n == 0 {
            let err = TarError {
                offset: sp.offset,
                kind: TarErrorKind::UnexpectedEof {
                    inside: format!("the payload of \"{}\"", path.escape_ascii()),
                },
            };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, err));
        }
        sp.offset += n as u64;
        *left -= n as u64;
        if *left == 0 {
            sp.state = after_payload(*pad);
        }
        Ok(n)
    }
}
