//! A `btrfs send` stream's framing, checked as it passes: a stream that
//! ends anywhere but right after an `END` command was cut short, and is
//! never stored as a whole one (`docs/btrfs.md`).
//!
//! The framing (btrfs-progs `send.h`, versions 1 to 3 alike): a header of
//! the 13 bytes `btrfs-stream\0` and a little-endian u32 version, then
//! commands, each a 10-byte header (u32 payload length, u16 command, u32
//! CRC) and its payload. The last command is `END` (21); several streams
//! may follow one another, each with its own header.

use std::io::{self, Read};

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
const STREAM_HEADER: usize = MAGIC.len() + 4;
const COMMAND_HEADER: usize = 10;
/// `BTRFS_SEND_C_END`.
const END: u16 = 21;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a stream header (the next stream's, after an `END`).
    Stream,
    /// Reading a command header.
    Command,
    /// Skipping a payload; then a stream header if it was `END`'s.
    Payload { end: bool },
}

/// A reader that passes a send stream through unchanged, failing at its
/// end when the stream was cut short (or is not a send stream at all).
#[derive(Debug)]
pub(crate) struct Frames<R> {
    inner: R,
    state: State,
    header: Vec<u8>,
    remaining: u64,
    /// An `END` command was the last thing read.
    ended: bool,
    total: u64,
}

impl<R: Read> Frames<R> {
    pub(crate) fn new(inner: R) -> Frames<R> {
        Frames {
            inner,
            state: State::Stream,
            header: Vec::with_capacity(STREAM_HEADER),
            remaining: 0,
            ended: false,
            total: 0,
        }
    }

    fn advance(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.state {
                State::Stream | State::Command => {
                    let full = if self.state == State::Stream {
                        STREAM_HEADER
                    } else {
                        COMMAND_HEADER
                    };
                    let take = (full - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == full {
                        self.header_done()?;
                    }
                }
                State::Payload { end } => {
                    let take = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    data = &data[take..];
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = if end { State::Stream } else { State::Command };
                    }
                }
            }
        }
        Ok(())
    }

    fn header_done(&mut self) -> io::Result<()> {
        let header = std::mem::take(&mut self.header);
        if self.state == State::Stream {
            if &header[..MAGIC.len()] != MAGIC {
                return Err(io::Error::other(
                    "this is not a btrfs send stream (it does not begin with `btrfs-stream`)",
                ));
            }
            self.ended = false;
            self.state = State::Command;
            return Ok(());
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let command = u16::from_le_bytes([header[4], header[5]]);
        let end = command == END;
        self.ended = end && len == 0;
        self.remaining = len.into();
        self.state = match (len, end) {
            (0, true) => State::Stream,
            (0, false) => State::Command,
            _ => State::Payload { end },
        };
        Ok(())
    }

    /// At the end of the input: whether the stream was whole.
    fn check_end(&self) -> io::Result<()> {
        if self.total == 0 {
            return Err(io::Error::other(
                "the btrfs send stream is empty (a stream was planned)",
            ));
        }
        if self.state == State::Stream && self.header.is_empty() && self.ended {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "the btrfs send stream ends early, after {} bytes, before its END command",
            self.total
        )))
    }
}

impl<R: Read> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if !buf.is_empty() {
                self.check_end()?;
            }
            return Ok(0);
        }
        self.total += n as u64;
        self.advance(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(cmd: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&cmd.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(payload);
        out
    }

    fn stream() -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.extend_from_slice(&1u32.to_le_bytes());
        s.extend(command(1, b"subvol"));
        s.extend(command(15, &[7u8; 300]));
        s.extend(command(END, b""));
        s
    }

    /// Reads `bytes` through the checker in reads of `step` bytes.
    fn read_all(bytes: &[u8], step: usize) -> io::Result<Vec<u8>> {
        let mut f = Frames::new(bytes);
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn whole_streams_pass_unchanged() {
        let s = stream();
        for step in [1, 3, 10, 17, 4096] {
            assert_eq!(read_all(&s, step).unwrap(), s, "step {step}");
        }
        let two = [stream(), stream()].concat();
        assert_eq!(read_all(&two, 7).unwrap(), two);
    }

    #[test]
    fn cut_empty_and_foreign_streams_fail() {
        let s = stream();
        for cut in [1, 16, 17, 20, 30, s.len() - 10, s.len() - 1] {
            let err = read_all(&s[..cut], 5).unwrap_err().to_string();
            assert!(err.contains("ends early"), "{cut}: {err}");
        }
        let err = read_all(b"", 5).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = read_all(b"not a stream at all, just text", 64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a btrfs send stream"), "{err}");
        // A second stream cut after its header.
        let two = [stream(), stream()].concat();
        assert!(read_all(&two[..s.len() + 17], 8).is_err());
    }
}
