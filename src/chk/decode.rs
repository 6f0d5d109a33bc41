//! CHK decoding (`allmydata/immutable/downloader/`): any k good shares of
//! the object give the plaintext, and every hash is checked on the way.
//!
//! For each share offered: its header is parsed, its UEB must hash to the
//! cap's UEB hash and agree with the cap, its block hash tree (rebuilt from
//! its leaves) must lead, through the share's hash chain, to the UEB's share
//! root hash. The crypttext hash tree of one share must have the UEB's
//! crypttext root. Then, segment by segment: each block must hash to its
//! leaf (a share whose block does not is dropped and another one used), the
//! decoded crypttext segment must hash to its crypttext tree leaf, and at
//! the end the whole crypttext to the UEB's crypttext hash. A failure is an
//! error naming what failed, never a panic, and no byte of an unchecked
//! segment is written.

use std::io::Write;

use aes::cipher::{StreamCipher as _, StreamCipherSeek as _};

use super::ChkError;
use super::cap::ChkCap;
use super::encode::cipher;
use super::hash::{self, CIPHERTEXT_SEGMENT_TAG, CIPHERTEXT_TAG, Hash, TaggedHasher};
use super::hashtree::{HashTree, roundup_pow2, verify_chain};
use super::layout::{Layout, tree_bytes};
use super::uri_ext::Ueb;
use super::zfec::Fec;

/// The largest UEB accepted (Tahoe's are ~450 bytes); a larger length field
/// is a corrupt share, not a reason to allocate.
const MAX_UEB: u64 = 64 * 1024;

/// One share to read from: a local file, bytes in memory, a storage server.
pub(crate) trait ShareSource: Send {
    /// The share number.
    fn shnum(&self) -> u16;
    /// Up to `len` bytes at `offset` (fewer only at the end of the share).
    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ChkError>;
}

/// A share in memory (tests).
#[cfg(test)]
pub(crate) struct MemShare<'a> {
    /// The share number.
    pub(crate) shnum: u16,
    /// The share's bytes.
    pub(crate) data: &'a [u8],
}

#[cfg(test)]
impl ShareSource for MemShare<'_> {
    fn shnum(&self) -> u16 {
        self.shnum
    }

    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ChkError> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let end = usize::try_from(offset.saturating_add(len))
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        Ok(self.data[start..end].to_vec())
    }
}

/// Reads exactly `len` bytes or says the share is truncated.
fn read_exact(
    src: &mut dyn ShareSource,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>, String> {
    let data = src
        .read(offset, len)
        .map_err(|e| format!("reading {what}: {e}"))?;
    if data.len() as u64 != len {
        return Err(format!("truncated in {what}"));
    }
    Ok(data)
}

/// The first `count` leaves of a stored complete tree (`nodes`, root
/// first, of the size [`tree_bytes`] gives for `count` leaves). The stored
/// inner nodes are not trusted: callers rebuild the tree from the leaves.
fn tree_leaves(nodes: &[u8], count: u64) -> Vec<Hash> {
    let first_leaf = (roundup_pow2(count as usize) - 1) * 32;
    nodes
        .get(first_leaf..)
        .unwrap_or_default()
        .chunks_exact(32)
        .take(count as usize)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect()
}

/// A share whose UEB and hash chain are good.
struct Checked<'a> {
    src: Box<dyn ShareSource + 'a>,
    layout: Layout,
    /// The leaves of its block hash tree.
    block_leaves: Vec<Hash>,
}

/// Reads and checks the share's header, UEB and hash chain; the UEB too.
fn check_share(
    cap: &ChkCap,
    src: &mut dyn ShareSource,
) -> Result<(Layout, Vec<Hash>, Ueb), String> {
    let header = src
        .read(0, 0x44)
        .map_err(|e| format!("reading the header: {e}"))?;
    let layout = Layout::parse(&header)?;
    let width = layout.field_size();
    let len_field = read_exact(src, layout.uri_extension, width, "the UEB length")?;
    let ueb_len = len_field.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
    if ueb_len > MAX_UEB {
        return Err(format!("a UEB length of {ueb_len} bytes"));
    }
    let packed = read_exact(src, layout.uri_extension + width, ueb_len, "the UEB")?;
    if hash::uri_extension_hash(&packed) != cap.ueb_hash {
        return Err("its UEB does not match the cap's UEB hash".into());
    }
    let ueb = Ueb::unpack(&packed).map_err(|e| format!("bad UEB: {e}"))?;
    if ueb.size != cap.size || ueb.needed_shares != cap.k || ueb.total_shares != cap.n {
        return Err("its UEB disagrees with the cap".into());
    }
    let shnum = src.shnum();
    if shnum >= cap.n {
        return Err(format!("share number {shnum} of a {}-share object", cap.n));
    }
    let tree = tree_bytes(ueb.num_segments);
    let k = u64::from(ueb.needed_shares);
    if layout.data_size != ueb.size.div_ceil(k)
        || layout.plaintext_hash_tree - layout.data != layout.data_size
        || layout.crypttext_hash_tree - layout.plaintext_hash_tree != tree
        || layout.block_hashes - layout.crypttext_hash_tree != tree
        || layout.share_hashes - layout.block_hashes != tree
        || !(layout.uri_extension - layout.share_hashes).is_multiple_of(34)
    {
        return Err("its offsets do not fit the UEB's sizes".into());
    }
    let nodes = read_exact(src, layout.block_hashes, tree, "the block hash tree")?;
    let block_leaves = tree_leaves(&nodes, ueb.num_segments);
    let block_root = HashTree::new(&block_leaves).root();
    let chain_len = layout.uri_extension - layout.share_hashes;
    if chain_len > 34 * 512 {
        return Err("an oversized share hash chain".into());
    }
    let chain = read_exact(src, layout.share_hashes, chain_len, "the share hash chain")?;
    let pairs: Vec<(usize, Hash)> = chain
        .chunks_exact(34)
        .map(|c| {
            let i = usize::from(u16::from_be_bytes([c[0], c[1]]));
            (i, c[2..].try_into().unwrap_or([0; 32]))
        })
        .collect();
    verify_chain(
        &ueb.share_root_hash,
        usize::from(ueb.total_shares),
        usize::from(shnum),
        &block_root,
        &pairs,
    )
    .map_err(|e| format!("bad share hash chain: {e}"))?;
    Ok((layout, block_leaves, ueb))
}

/// A source of more shares for a [`Decoder`] (e.g. the servers not asked
/// yet): the shares, and what went wrong finding them.
pub(crate) type More<'a> = Box<dyn FnOnce() -> (Vec<Box<dyn ShareSource + 'a>>, Vec<String>) + 'a>;

/// Blocks at least this long are read from the k shares at once (one
/// thread each): a remote share costs a round trip per read.
const PARALLEL_BLOCK: u64 = 32 * 1024;

/// A CHK object being decoded a segment at a time, in any order (a ranged
/// read needs only the segments it covers). Shares are checked lazily: the
/// first k that pass [`check_share`], the others only when one of those
/// fails. Every segment is checked against its crypttext hash tree leaf,
/// whose tree is checked against the UEB's root; the flat crypttext hash
/// of the whole object is checked by [`PlainReader`], which reads it all.
pub(crate) struct Decoder<'a> {
    cap: ChkCap,
    ueb: Ueb,
    /// Shares that passed the checks; `active` picks the k in use.
    good: Vec<Checked<'a>>,
    /// Shares not checked yet, tried in order when a good one fails.
    unchecked: std::collections::VecDeque<Box<dyn ShareSource + 'a>>,
    /// Where more shares come from once `unchecked` is used up (called
    /// once): the servers not asked yet.
    more: Option<More<'a>>,
    active: Vec<usize>,
    /// Good shares that later failed a block: never used again.
    dropped: Vec<usize>,
    crypttext_leaves: Vec<Hash>,
    fec: Fec,
    problems: Vec<String>,
}

impl<'a> Decoder<'a> {
    /// Checks shares of `sources` (in their order, duplicates of a share
    /// number skipped) until k pass, and finds a good crypttext hash tree.
    pub(crate) fn new(
        cap: &ChkCap,
        sources: Vec<Box<dyn ShareSource + 'a>>,
    ) -> Result<Decoder<'a>, ChkError> {
        Decoder::with_more(cap, sources, None)
    }

    /// [`Decoder::new`], with `more` shares to try once `sources` are used
    /// up.
    pub(crate) fn with_more(
        cap: &ChkCap,
        sources: Vec<Box<dyn ShareSource + 'a>>,
        mut more: Option<More<'a>>,
    ) -> Result<Decoder<'a>, ChkError> {
        let k = usize::from(cap.k);
        let mut unchecked: std::collections::VecDeque<_> = sources.into();
        let mut good: Vec<Checked<'a>> = Vec::new();
        let mut problems = Vec::new();
        let mut ueb = None;
        while good.len() < k {
            let Some(next) = next_good(cap, &mut unchecked, &mut more, &good, &mut problems) else {
                break;
            };
            ueb = Some(next.1);
            good.push(next.0);
        }
        let Some(ueb) = ueb else {
            return Err(not_enough(k, 0, &problems));
        };
        if good.len() < k {
            return Err(not_enough(k, good.len(), &problems));
        }
        // Primary shares first: decoding them is a copy.
        good.sort_by_key(|c| c.src.shnum());
        let fec = Fec::new(k, usize::from(ueb.total_shares))?;
        let mut decoder = Decoder {
            cap: cap.clone(),
            ueb,
            good,
            unchecked,
            more,
            active: (0..k).collect(),
            dropped: Vec::new(),
            crypttext_leaves: Vec::new(),
            fec,
            problems,
        };
        decoder.crypttext_leaves = decoder.crypttext_tree()?;
        Ok(decoder)
    }

    /// The leaves of the first crypttext hash tree (of a good share, then
    /// of spares) whose root is the UEB's.
    fn crypttext_tree(&mut self) -> Result<Vec<Hash>, ChkError> {
        let tree = tree_bytes(self.ueb.num_segments);
        let mut i = 0;
        loop {
            if i == self.good.len() {
                match next_good(
                    &self.cap,
                    &mut self.unchecked,
                    &mut self.more,
                    &self.good,
                    &mut self.problems,
                ) {
                    Some((c, _)) => self.good.push(c),
                    None => {
                        return Err(ChkError::Corrupt(format!(
                            "no share has a good crypttext hash tree ({})",
                            self.problems.join("; ")
                        )));
                    }
                }
            }
            let c = &mut self.good[i];
            i += 1;
            let shnum = c.src.shnum();
            match read_exact(
                &mut *c.src,
                c.layout.crypttext_hash_tree,
                tree,
                "the crypttext hash tree",
            ) {
                Ok(nodes) => {
                    let leaves = tree_leaves(&nodes, self.ueb.num_segments);
                    if HashTree::new(&leaves).root() == self.ueb.crypttext_root_hash {
                        return Ok(leaves);
                    }
                    self.problems
                        .push(format!("share {shnum}: bad crypttext hash tree"));
                }
                Err(e) => self.problems.push(format!("share {shnum}: {e}")),
            }
        }
    }

    /// The number of segments.
    pub(crate) fn num_segments(&self) -> u64 {
        self.ueb.num_segments
    }

    /// The size of a full segment.
    pub(crate) fn segment_size(&self) -> u64 {
        self.ueb.segment_size
    }

    /// The plaintext size.
    #[cfg(test)]
    pub(crate) fn size(&self) -> u64 {
        self.ueb.size
    }

    /// What went wrong with shares that were routed around so far (none
    /// names a cap).
    pub(crate) fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Reads and checks block `segnum` of good share `idx`.
    fn block(
        c: &mut Checked<'_>,
        segnum: u64,
        block_size: u64,
        this_block: u64,
    ) -> Result<Vec<u8>, String> {
        let offset = c.layout.data + segnum * block_size;
        let b = read_exact(&mut *c.src, offset, this_block, &format!("block {segnum}"))?;
        if c.block_leaves.get(segnum as usize) == Some(&hash::block_hash(&b)) {
            Ok(b)
        } else {
            Err(format!("block {segnum} does not match its block hash"))
        }
    }

    /// The ciphertext of segment `segnum`, checked against its leaf of the
    /// crypttext hash tree.
    pub(crate) fn crypttext_segment(&mut self, segnum: u64) -> Result<Vec<u8>, ChkError> {
        let ueb = &self.ueb;
        if segnum >= ueb.num_segments {
            return Err(ChkError::Params(format!(
                "segment {segnum} of {}",
                ueb.num_segments
            )));
        }
        let k = u64::from(self.cap.k);
        let is_tail = segnum + 1 == ueb.num_segments;
        let block_size = ueb.segment_size / k;
        let (len, this_block) = if is_tail {
            (
                ueb.size - segnum * ueb.segment_size,
                ueb.tail_padded_size / k,
            )
        } else {
            (ueb.segment_size, block_size)
        };
        // First the k active shares (at once when the blocks are large),
        // then a spare for each one that fails.
        let mut results: Vec<Result<Vec<u8>, String>> = if this_block >= PARALLEL_BLOCK {
            let active = &self.active;
            let mut picked: Vec<(usize, &mut Checked<'a>)> = self
                .good
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| active.contains(i))
                .collect();
            picked.sort_by_key(|(i, _)| active.iter().position(|a| a == i));
            std::thread::scope(|s| {
                let handles: Vec<_> = picked
                    .into_iter()
                    .map(|(_, c)| s.spawn(move || Self::block(c, segnum, block_size, this_block)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("a reader thread failed".into()))
                    })
                    .collect()
            })
        } else {
            self.active
                .iter()
                .map(|&i| Self::block(&mut self.good[i], segnum, block_size, this_block))
                .collect()
        };
        let mut blocks: Vec<(usize, Vec<u8>)> = Vec::with_capacity(self.active.len());
        for (slot, first) in results.iter_mut().enumerate() {
            let mut result = std::mem::replace(first, Err(String::new()));
            loop {
                let idx = self.active[slot];
                let shnum = self.good[idx].src.shnum();
                match result {
                    Ok(b) => {
                        blocks.push((usize::from(shnum), b));
                        break;
                    }
                    Err(e) => {
                        self.problems.push(format!("share {shnum}: {e}"));
                        self.dropped.push(idx);
                        let Some(next) = self.spare() else {
                            return Err(not_enough(
                                usize::from(self.cap.k),
                                usize::from(self.cap.k) - 1,
                                &self.problems,
                            ));
                        };
                        self.active[slot] = next;
                        result = Self::block(&mut self.good[next], segnum, block_size, this_block);
                    }
                }
            }
        }
        let pick: Vec<(usize, &[u8])> = blocks.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        let mut segment: Vec<u8> = self.fec.decode(&pick)?.concat();
        segment.truncate(len as usize);
        let leaf = hash::tagged_hash(CIPHERTEXT_SEGMENT_TAG, &segment);
        if self.crypttext_leaves.get(segnum as usize) != Some(&leaf) {
            return Err(ChkError::Corrupt(format!(
                "segment {segnum} does not match its crypttext hash"
            )));
        }
        Ok(segment)
    }

    /// The plaintext of segment `segnum` (checked as
    /// [`Decoder::crypttext_segment`]).
    pub(crate) fn segment(&mut self, segnum: u64) -> Result<Vec<u8>, ChkError> {
        let mut segment = self.crypttext_segment(segnum)?;
        let mut aes = cipher(&self.cap.key);
        aes.seek(segnum * self.ueb.segment_size);
        aes.apply_keystream(&mut segment);
        Ok(segment)
    }

    /// A good share not in use: one already checked, else the next
    /// unchecked one that passes.
    fn spare(&mut self) -> Option<usize> {
        if let Some(i) =
            (0..self.good.len()).find(|i| !self.active.contains(i) && !self.dropped.contains(i))
        {
            return Some(i);
        }
        let (c, _) = next_good(
            &self.cap,
            &mut self.unchecked,
            &mut self.more,
            &self.good,
            &mut self.problems,
        )?;
        self.good.push(c);
        Some(self.good.len() - 1)
    }
}

/// The next source of `unchecked` that passes [`check_share`] and whose
/// share number no good share has.
fn next_good<'a>(
    cap: &ChkCap,
    unchecked: &mut std::collections::VecDeque<Box<dyn ShareSource + 'a>>,
    more: &mut Option<More<'a>>,
    good: &[Checked<'a>],
    problems: &mut Vec<String>,
) -> Option<(Checked<'a>, Ueb)> {
    loop {
        if unchecked.is_empty()
            && let Some(more) = more.take()
        {
            let (sources, found_problems) = more();
            unchecked.extend(sources);
            problems.extend(found_problems);
        }
        let mut src = unchecked.pop_front()?;
        let shnum = src.shnum();
        if good.iter().any(|g| g.src.shnum() == shnum) {
            continue;
        }
        match check_share(cap, &mut *src) {
            Ok((layout, block_leaves, ueb)) => {
                return Some((
                    Checked {
                        src,
                        layout,
                        block_leaves,
                    },
                    ueb,
                ));
            }
            Err(e) => problems.push(format!("share {shnum}: {e}")),
        }
    }
}

fn not_enough(k: usize, good: usize, problems: &[String]) -> ChkError {
    ChkError::NotEnoughShares {
        good,
        needed: k,
        detail: if problems.is_empty() {
            "no other shares".into()
        } else {
            problems.join("; ")
        },
    }
}

/// The whole plaintext of a [`Decoder`] as a reader, a segment in memory
/// at a time; the flat crypttext hash is checked before the last segment
/// is handed out. Errors come out as `io::Error`s wrapping the
/// [`ChkError`] (see [`PlainReader::take_error`]).
pub(crate) struct PlainReader<'a> {
    decoder: Decoder<'a>,
    next: u64,
    buf: Vec<u8>,
    pos: usize,
    crypttext: TaggedHasher,
    error: Option<ChkError>,
}

impl<'a> PlainReader<'a> {
    /// Reads the object from its first byte.
    pub(crate) fn new(decoder: Decoder<'a>) -> PlainReader<'a> {
        PlainReader {
            decoder,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            crypttext: TaggedHasher::new(CIPHERTEXT_TAG),
            error: None,
        }
    }

    /// The decoder.
    pub(crate) fn decoder(&self) -> &Decoder<'a> {
        &self.decoder
    }

    /// The decoding error behind a failed read, if any.
    pub(crate) fn take_error(&mut self) -> Option<ChkError> {
        self.error.take()
    }

    fn fill(&mut self) -> Result<(), ChkError> {
        let segnum = self.next;
        let mut segment = self.decoder.crypttext_segment(segnum)?;
        self.crypttext.update(&segment);
        if segnum + 1 == self.decoder.num_segments()
            && self.crypttext.clone().finish() != self.decoder.ueb.crypttext_hash
        {
            return Err(ChkError::Corrupt(
                "the crypttext does not match its hash".into(),
            ));
        }
        let mut aes = cipher(&self.decoder.cap.key);
        aes.seek(segnum * self.decoder.segment_size());
        aes.apply_keystream(&mut segment);
        self.next += 1;
        self.buf = segment;
        self.pos = 0;
        Ok(())
    }
}

impl std::io::Read for PlainReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("the object could not be decoded"));
        }
        while self.pos == self.buf.len() {
            if self.next == self.decoder.num_segments() || out.is_empty() {
                return Ok(0);
            }
            if let Err(e) = self.fill() {
                let message = e.to_string();
                self.error = Some(e);
                return Err(std::io::Error::other(message));
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A share source borrowed for one decode.
impl<T: ShareSource + ?Sized> ShareSource for &mut T {
    fn shnum(&self) -> u16 {
        (**self).shnum()
    }

    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ChkError> {
        (**self).read(offset, len)
    }
}

/// Decodes the object of `cap` from `shares` into `out`: its plaintext, or
/// (for a `DIR2-CHK` cap) the packed directory. The shares must be those
/// stored under the cap's storage index: the hashes check the ciphertext,
/// and nothing in a share can check the key (Tahoe's UEB has no plaintext
/// hash), which the storage index is derived from.
pub(crate) fn decode(
    cap: &ChkCap,
    shares: &mut [&mut dyn ShareSource],
    out: &mut impl Write,
) -> Result<(), ChkError> {
    let sources: Vec<Box<dyn ShareSource + '_>> = shares
        .iter_mut()
        .map(|s| Box::new(&mut **s) as Box<dyn ShareSource + '_>)
        .collect();
    let mut reader = PlainReader::new(Decoder::new(cap, sources)?);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match std::io::Read::read(&mut reader, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out
                .write_all(&buf[..n])
                .map_err(|e| ChkError::io("writing the plaintext", e))?,
            Err(e) => {
                return Err(reader
                    .take_error()
                    .unwrap_or_else(|| ChkError::io("decoding", e)));
            }
        }
    }
}

/// Checks every hash of one share, as Tahoe's verifier does
/// (`immutable/checker.py` `_download_and_verify`): its UEB against the cap,
/// its share hash chain, its crypttext hash tree against the UEB, and every
/// block against its block hash tree. The share's UEB when all is good,
/// else what is wrong (never a cap or key).
pub(crate) fn verify_share(cap: &ChkCap, src: &mut dyn ShareSource) -> Result<Ueb, String> {
    let (layout, block_leaves, ueb) = check_share(cap, src)?;
    let nodes = read_exact(
        src,
        layout.crypttext_hash_tree,
        tree_bytes(ueb.num_segments),
        "the crypttext hash tree",
    )?;
    if HashTree::new(&tree_leaves(&nodes, ueb.num_segments)).root() != ueb.crypttext_root_hash {
        return Err("bad crypttext hash tree".into());
    }
    let k = u64::from(cap.k);
    let block_size = ueb.segment_size / k;
    for segnum in 0..ueb.num_segments {
        let this_block = if segnum + 1 == ueb.num_segments {
            ueb.tail_padded_size / k
        } else {
            block_size
        };
        let offset = layout.data + segnum * block_size;
        let block = read_exact(src, offset, this_block, &format!("block {segnum}"))?;
        if block_leaves.get(segnum as usize) != Some(&hash::block_hash(&block)) {
            return Err(format!("block {segnum} does not match its block hash"));
        }
    }
    Ok(ueb)
}

/// Decodes in-memory shares (number, bytes) into a vector (tests).
#[cfg(test)]
pub(crate) fn decode_bytes(cap: &ChkCap, shares: &[(u16, &[u8])]) -> Result<Vec<u8>, ChkError> {
    let mut mem: Vec<MemShare<'_>> = shares
        .iter()
        .map(|&(shnum, data)| MemShare { shnum, data })
        .collect();
    let mut srcs: Vec<&mut dyn ShareSource> =
        mem.iter_mut().map(|m| m as &mut dyn ShareSource).collect();
    let mut out = Vec::new();
    decode(cap, &mut srcs, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Params;
    use super::super::encode::encode_bytes;
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn shares_of(shares: &[Vec<u8>], pick: &[u16]) -> Vec<(u16, Vec<u8>)> {
        pick.iter()
            .map(|&s| (s, shares[usize::from(s)].clone()))
            .collect()
    }

    fn run(cap: &ChkCap, shares: &[(u16, Vec<u8>)]) -> Result<Vec<u8>, ChkError> {
        let refs: Vec<(u16, &[u8])> = shares.iter().map(|(s, d)| (*s, d.as_slice())).collect();
        decode_bytes(cap, &refs)
    }

    #[test]
    fn any_k_shares_decode() {
        let p = Params::with_segment_size(3, 7, 999).unwrap();
        for len in [56, 998, 999, 1000, 3000, 4001] {
            let data = sample(len);
            let (enc, shares) = encode_bytes(&data, &p, b"c").unwrap();
            for pick in [[0, 1, 2], [4, 5, 6], [6, 0, 3], [1, 5, 2]] {
                assert_eq!(
                    run(&enc.cap, &shares_of(&shares, &pick)).unwrap(),
                    data,
                    "{len} {pick:?}"
                );
            }
        }
    }

    #[test]
    fn three_of_ten_from_any_three() {
        // Several segments and a padded tail; check shares only, mixed, primary.
        let p = Params::with_segment_size(3, 10, 4096).unwrap();
        let data = sample(4096 * 3 + 1001);
        let (enc, shares) = encode_bytes(&data, &p, b"c").unwrap();
        for pick in [[7, 8, 9], [0, 5, 9], [2, 1, 0], [3, 6, 4]] {
            let got = run(&enc.cap, &shares_of(&shares, &pick)).unwrap();
            assert!(got == data, "{pick:?}");
        }
        assert!(run(&enc.cap, &shares_of(&shares, &[1, 2])).is_err());
    }

    #[test]
    fn verify_share_checks_every_hash_of_one_share() {
        let p = Params::with_segment_size(2, 4, 1000).unwrap();
        let data = sample(5000);
        let (enc, shares) = encode_bytes(&data, &p, b"c").unwrap();
        let plan = super::super::encode::Plan::new(p, 5000).unwrap();
        let verify =
            |shnum: u16, data: &[u8]| verify_share(&enc.cap, &mut MemShare { shnum, data });
        for (shnum, share) in shares.iter().enumerate() {
            let ueb = verify(shnum as u16, share).unwrap();
            assert_eq!(ueb.segment_size, 1000);
        }
        // A block of the last segment, the crypttext tree, a truncated
        // share, the wrong share number.
        let mut bad = shares[3].clone();
        bad[plan.layout.data as usize + 4 * 500 + 7] ^= 1;
        let err = verify(3, &bad).unwrap_err();
        assert!(err.contains("block 4 does not match"), "{err}");
        let mut bad = shares[1].clone();
        // A leaf (the inner nodes are rebuilt from the leaves).
        bad[plan.layout.crypttext_hash_tree as usize + 7 * 32 + 1] ^= 1;
        assert_eq!(verify(1, &bad).unwrap_err(), "bad crypttext hash tree");
        let cut = &shares[2][..plan.layout.data as usize + 100];
        assert!(verify(2, cut).is_err());
        assert!(verify(1, &shares[2]).is_err());
    }

    #[test]
    fn corruption_is_detected_and_routed_around() {
        let p = Params::with_segment_size(2, 4, 1000).unwrap();
        let data = sample(5000);
        let (enc, shares) = encode_bytes(&data, &p, b"c").unwrap();
        let plan = super::super::encode::Plan::new(p, 5000).unwrap();
        // A flipped byte in a block of share 0: share 2 takes its place.
        let mut bad = shares_of(&shares, &[0, 1, 2]);
        bad[0].1[plan.layout.data as usize + 600] ^= 1;
        assert_eq!(run(&enc.cap, &bad).unwrap(), data);
        // ... but with only two shares it is an error naming the block.
        let err = run(&enc.cap, &bad[..2]).unwrap_err().to_string();
        assert!(
            err.contains("block 1 does not match its block hash"),
            "{err}"
        );
        // A wrong share hash chain.
        let mut bad = shares_of(&shares, &[0, 1]);
        let at = plan.layout.share_hashes as usize + 5;
        bad[1].1[at] ^= 1;
        let err = run(&enc.cap, &bad).unwrap_err().to_string();
        assert!(err.contains("share 1: bad share hash chain"), "{err}");
        // A wrong UEB.
        let mut bad = shares_of(&shares, &[0, 1]);
        let last = bad[0].1.len() - 3;
        bad[0].1[last] ^= 1;
        let err = run(&enc.cap, &bad).unwrap_err().to_string();
        assert!(err.contains("UEB does not match"), "{err}");
        // A wrong block hash tree leaf.
        let mut bad = shares_of(&shares, &[0, 1]);
        let at = plan.layout.block_hashes as usize + 32 * 7 + 1;
        bad[0].1[at] ^= 1;
        let err = run(&enc.cap, &bad).unwrap_err().to_string();
        assert!(err.contains("share 0: bad share hash chain"), "{err}");
        // Truncated shares and garbage: errors, never a panic.
        for cut in [0, 3, 0x24, 200, shares[0].len() - 1] {
            let t = vec![(0u16, shares[0][..cut].to_vec()), (1, shares[1].clone())];
            assert!(run(&enc.cap, &t).is_err(), "{cut}");
        }
        let junk = vec![(0u16, vec![0xff; 300]), (1, vec![0; 300])];
        assert!(run(&enc.cap, &junk).is_err());
    }

    #[test]
    fn segments_decode_in_any_order() {
        let p = Params::with_segment_size(3, 5, 999).unwrap();
        let data = sample(999 * 4 + 10);
        let (enc, shares) = encode_bytes(&data, &p, b"c").unwrap();
        let picked = shares_of(&shares, &[4, 1, 3]);
        let sources: Vec<Box<dyn ShareSource + '_>> = picked
            .iter()
            .map(|(shnum, d)| {
                Box::new(MemShare {
                    shnum: *shnum,
                    data: d,
                }) as Box<dyn ShareSource + '_>
            })
            .collect();
        let mut dec = Decoder::new(&enc.cap, sources).unwrap();
        assert_eq!(
            (dec.num_segments(), dec.segment_size(), dec.size()),
            (5, 999, 4006)
        );
        for segnum in [4u64, 0, 2, 3, 1] {
            let from = (segnum * 999) as usize;
            let to = (from + 999).min(data.len());
            assert!(dec.segment(segnum).unwrap() == data[from..to], "{segnum}");
        }
        assert!(dec.segment(5).is_err());
    }
}
