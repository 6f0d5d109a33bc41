//! Writing a file's content: decompression (`enc: xz` / `zstd`) and sparse
//! output (runs of zeros become holes).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt as _;

use crate::encode::{self, Encoding};

/// Zero blocks of this size (aligned in the file) are skipped, not written.
const BLOCK: usize = 4096;

/// Writes the stream `stored` (decoded with `enc` when set) into `file`, leaving holes
/// for aligned 4 KiB blocks of zeros, and sets the final length. Returns the
/// number of bytes of the file. `expect` is the recorded original size;
/// another size is an error.
pub(super) fn write(
    file: &File,
    stored: &mut dyn Read,
    enc: Option<Encoding>,
    expect: Option<u64>,
) -> io::Result<u64> {
    // A retried download starts over: nothing of an earlier attempt may
    // survive in the holes this one leaves.
    file.set_len(0)?;
    let mut sink = Sparse { file, offset: 0 };
    copy(encode::decoder(enc, stored)?, &mut sink)?;
    let len = sink.offset;
    if let Some(want) = expect
        && want != len
    {
        return Err(io::Error::other(format!(
            "the content is {len} bytes, the backup recorded {want}"
        )));
    }
    file.set_len(len)?;
    Ok(len)
}

fn copy(mut r: impl Read, sink: &mut Sparse<'_>) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    loop {
        let n = r.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
        if filled == buf.len() {
            sink.put(&buf)?;
            filled = 0;
        }
    }
    sink.put(&buf[..filled])
}

struct Sparse<'a> {
    file: &'a File,
    offset: u64,
}

impl Sparse<'_> {
    /// Writes `data` at the current offset; whole aligned zero blocks are
    /// skipped (the final `set_len` makes the tail hole).
    fn put(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            // Up to the next block boundary.
            let into = (self.offset % BLOCK as u64) as usize;
            let take = (BLOCK - into).min(data.len());
            let (chunk, rest) = data.split_at(take);
            if !(into == 0 && take == BLOCK && chunk.iter().all(|&b| b == 0)) {
                self.file.write_all_at(chunk, self.offset)?;
            }
            self.offset += take as u64;
            data = rest;
        }
        Ok(())
    }
}
