//! CHK encoding (`allmydata/immutable/upload.py` and `encode.py`), a segment
//! at a time.
//!
//! Pass 1 ([`convergence_key`]) hashes the plaintext into the AES key. Pass 2
//! ([`Encoder::encode`]) reads it again: each segment is AES-128-CTR
//! encrypted (IV 0, the counter continuing across segments), hashed into the
//! flat crypttext hash and its crypttext segment hash, zero-padded to a
//! multiple of k if it is the tail, cut into k pieces and zfec-encoded into
//! N blocks; each block is hashed into its share's block hash tree and
//! handed to the [`ShareSink`] at its final offset in the share. At the end
//! come the hash trees and the UEB. Pass 2 recomputes the convergence key:
//! if the plaintext changed between the passes, encoding fails (the shares
//! written must then be discarded) rather than return a cap whose key does
//! not match the content.
//!
//! Memory: one segment and its N blocks, plus 32 bytes a segment a share
//! for the block hashes (Tahoe keeps the same).

use std::io::Read;

use aes::Aes128;
use aes::cipher::{KeyIvInit as _, StreamCipher as _};

use super::cap::ChkCap;
use super::hash::{
    self, CIPHERTEXT_SEGMENT_TAG, CIPHERTEXT_TAG, ConvergenceHasher, Hash, TaggedHasher,
};
use super::hashtree::{HashTree, share_hash_count};
use super::layout::Layout;
use super::uri_ext::Ueb;
use super::zfec::Fec;
use super::{ChkError, Params};

/// AES-128 in CTR mode with a 128-bit big-endian counter, as
/// `allmydata/crypto/aes.py` (the `cryptography` package's CTR) does it.
pub(crate) type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// A new cipher for `key`, IV 0.
pub(crate) fn cipher(key: &[u8; 16]) -> Aes128Ctr {
    Aes128Ctr::new(key.into(), &[0u8; 16].into())
}

/// Where the encoder puts the share bytes. Each share is written in order,
/// from offset 0 to its end, without holes (as Tahoe's `WriteBucketProxy`
/// writes it), the shares interleaved.
pub(crate) trait ShareSink {
    /// Writes `data` at `offset` of share `shnum`.
    fn write(&mut self, shnum: u16, offset: u64, data: &[u8]) -> Result<(), ChkError>;
}

/// Shares kept in memory: for tests, small objects and directories.
impl ShareSink for Vec<Vec<u8>> {
    fn write(&mut self, shnum: u16, offset: u64, data: &[u8]) -> Result<(), ChkError> {
        let share = &mut self[usize::from(shnum)];
        if share.len() as u64 != offset {
            return Err(ChkError::Params("share written out of order".into()));
        }
        share.extend_from_slice(data);
        Ok(())
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Pass 1: the convergence key of `size` bytes of plaintext read from
/// `reader` (which must give exactly `size` bytes).
pub(crate) fn convergence_key(
    reader: &mut impl Read,
    size: u64,
    params: &Params,
    secret: &[u8],
) -> Result<[u8; 16], ChkError> {
    let mut hasher = ConvergenceHasher::new(params.k, params.n, params.segment_size(size), secret);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let got = read_full(reader, &mut buf).map_err(|e| ChkError::io("reading the file", e))?;
        if got == 0 {
            break;
        }
        total += got as u64;
        hasher.update(&buf[..got]);
    }
    if total != size {
        return Err(ChkError::Changed(format!(
            "{total} bytes read, {size} expected"
        )));
    }
    Ok(hasher.finish())
}

/// The sizes of an encoding, known before it starts: what a storage client
/// needs to allocate the shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The parameters.
    pub(crate) params: Params,
    /// The plaintext size (> 0).
    pub(crate) size: u64,
    /// The effective segment size.
    pub(crate) segment_size: u64,
    /// The number of segments.
    pub(crate) num_segments: u64,
    /// The tail segment's size before padding.
    pub(crate) tail_size: u64,
    /// The tail segment's size padded to a multiple of k.
    pub(crate) tail_padded_size: u64,
    /// The share layout.
    pub(crate) layout: Layout,
    /// The UEB's size (fixed by the parameters: its hashes have fixed sizes).
    pub(crate) ueb_size: u64,
    /// The size of each share.
    pub(crate) share_size: u64,
}

impl Plan {
    /// The plan of a `size`-byte file (size ≥ 1) under `params`.
    pub(crate) fn new(params: Params, size: u64) -> Result<Plan, ChkError> {
        if size == 0 {
            return Err(ChkError::Params(
                "an empty file has a LIT cap, not a CHK one".into(),
            ));
        }
        let k = u64::from(params.k);
        let segment_size = params.segment_size(size);
        let num_segments = size.div_ceil(segment_size);
        if num_segments > super::MAX_SEGMENTS {
            return Err(ChkError::Params(format!(
                "a {size}-byte file makes more than {} segments",
                super::MAX_SEGMENTS
            )));
        }
        let tail_size = match size % segment_size {
            0 => segment_size,
            t => t,
        };
        let tail_padded_size = tail_size.next_multiple_of(k);
        let ueb_size = Ueb {
            size,
            segment_size,
            num_segments,
            needed_shares: params.k,
            total_shares: params.n,
            tail_padded_size,
            crypttext_hash: [0; 32],
            crypttext_root_hash: [0; 32],
            share_root_hash: [0; 32],
        }
        .pack()
        .len() as u64;
        let layout = Layout::new(
            segment_size / k,
            size.div_ceil(k),
            num_segments,
            share_hash_count(usize::from(params.n)) as u64,
        );
        let share_size = layout.share_size(ueb_size);
        Ok(Plan {
            params,
            size,
            segment_size,
            num_segments,
            tail_size,
            tail_padded_size,
            layout,
            ueb_size,
            share_size,
        })
    }
}

/// The result of an encoding.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    /// The file's cap.
    pub(crate) cap: ChkCap,
    /// The UEB as written in every share.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) ueb: Ueb,
}

/// Pass 2: encodes a file whose key is known.
pub(crate) struct Encoder {
    plan: Plan,
    key: [u8; 16],
    fec: Fec,
}

impl Encoder {
    /// An encoder for `plan` with AES key `key`.
    pub(crate) fn new(plan: Plan, key: [u8; 16]) -> Result<Encoder, ChkError> {
        let fec = Fec::new(usize::from(plan.params.k), usize::from(plan.params.n))?;
        Ok(Encoder { plan, key, fec })
    }

    /// Encodes exactly `plan.size` bytes from `reader` into `sink`. With
    /// `secret`, the convergence key is recomputed on the way and must equal
    /// the key given (else [`ChkError::Changed`]).
    pub(crate) fn encode(
        &self,
        reader: &mut impl Read,
        secret: Option<&[u8]>,
        sink: &mut impl ShareSink,
    ) -> Result<Encoded, ChkError> {
        let plan = &self.plan;
        let k = usize::from(plan.params.k);
        let n = usize::from(plan.params.n);
        let layout = &plan.layout;
        let header = layout.header();
        for shnum in 0..plan.params.n {
            sink.write(shnum, 0, &header)?;
        }
        let mut check = secret
            .map(|s| ConvergenceHasher::new(plan.params.k, plan.params.n, plan.segment_size, s));
        let mut aes = cipher(&self.key);
        let mut crypttext = TaggedHasher::new(CIPHERTEXT_TAG);
        let mut segment_hashes: Vec<Hash> = Vec::new();
        let mut block_hashes: Vec<Vec<Hash>> = vec![Vec::new(); n];
        let seg_cap = usize::try_from(plan.segment_size)
            .map_err(|_| ChkError::Params("segment size too large".into()))?;
        let mut segment = vec![0u8; seg_cap];
        let mut check_block = Vec::new();
        let mut offset = layout.data;
        for segnum in 0..plan.num_segments {
            let is_tail = segnum + 1 == plan.num_segments;
            let (len, padded) = if is_tail {
                (plan.tail_size as usize, plan.tail_padded_size as usize)
            } else {
                (seg_cap, seg_cap)
            };
            let buf = &mut segment[..padded];
            let got = read_full(reader, &mut buf[..len])
                .map_err(|e| ChkError::io("reading the file", e))?;
            if got != len {
                return Err(ChkError::Changed("it became shorter".into()));
            }
            if let Some(c) = check.as_mut() {
                c.update(&buf[..len]);
            }
            aes.apply_keystream(&mut buf[..len]);
            crypttext.update(&buf[..len]);
            segment_hashes.push(hash::tagged_hash(CIPHERTEXT_SEGMENT_TAG, &buf[..len]));
            buf[len..].fill(0);
            let block_size = padded / k;
            let pieces: Vec<&[u8]> = buf.chunks(block_size).collect();
            check_block.resize(block_size, 0);
            for shnum in 0..n {
                let block: &[u8] = if shnum < k {
                    pieces[shnum]
                } else {
                    self.fec.encode_one(&pieces, shnum, &mut check_block);
                    &check_block
                };
                block_hashes[shnum].push(hash::block_hash(block));
                sink.write(shnum as u16, offset, block)?;
            }
            offset += block_size as u64;
        }
        let mut extra = [0u8; 1];
        if read_full(reader, &mut extra).map_err(|e| ChkError::io("reading the file", e))? != 0 {
            return Err(ChkError::Changed("it became longer".into()));
        }
        if let Some(c) = check
            && c.finish() != self.key
        {
            return Err(ChkError::Changed(
                "its content differs from the first read".into(),
            ));
        }
        debug_assert_eq!(offset, layout.plaintext_hash_tree);
        let crypttext_tree = HashTree::new(&segment_hashes);
        let crypttext_nodes: Vec<u8> = crypttext_tree.nodes().concat();
        let zero_tree = vec![0u8; crypttext_nodes.len()];
        let block_trees: Vec<HashTree> = block_hashes.iter().map(|h| HashTree::new(h)).collect();
        let share_roots: Vec<Hash> = block_trees.iter().map(HashTree::root).collect();
        let share_tree = HashTree::new(&share_roots);
        let ueb = Ueb {
            size: plan.size,
            segment_size: plan.segment_size,
            num_segments: plan.num_segments,
            needed_shares: plan.params.k,
            total_shares: plan.params.n,
            tail_padded_size: plan.tail_padded_size,
            crypttext_hash: crypttext.finish(),
            crypttext_root_hash: crypttext_tree.root(),
            share_root_hash: share_tree.root(),
        };
        let packed = ueb.pack();
        let mut ueb_field = if layout.version == 1 {
            (packed.len() as u32).to_be_bytes().to_vec()
        } else {
            (packed.len() as u64).to_be_bytes().to_vec()
        };
        ueb_field.extend_from_slice(&packed);
        for (shnum, block_tree) in block_trees.iter().enumerate() {
            let s = shnum as u16;
            sink.write(s, layout.plaintext_hash_tree, &zero_tree)?;
            sink.write(s, layout.crypttext_hash_tree, &crypttext_nodes)?;
            sink.write(s, layout.block_hashes, &block_tree.nodes().concat())?;
            let mut chain = Vec::new();
            for i in share_tree.needed_hashes(shnum, true) {
                let h = share_tree.get(i).copied().unwrap_or([0; 32]);
                chain.extend_from_slice(&(i as u16).to_be_bytes());
                chain.extend_from_slice(&h);
            }
            sink.write(s, layout.share_hashes, &chain)?;
            sink.write(s, layout.uri_extension, &ueb_field)?;
        }
        Ok(Encoded {
            cap: ChkCap {
                key: self.key,
                ueb_hash: hash::uri_extension_hash(&packed),
                k: plan.params.k,
                n: plan.params.n,
                size: plan.size,
                dir: false,
            },
            ueb,
        })
    }
}

/// Convergent encoding of an in-memory object (size ≥ 1): its cap and its
/// N shares (tests).
#[cfg(test)]
pub(crate) fn encode_bytes(
    data: &[u8],
    params: &Params,
    secret: &[u8],
) -> Result<(Encoded, Vec<Vec<u8>>), ChkError> {
    let size = data.len() as u64;
    let key = convergence_key(&mut &data[..], size, params, secret)?;
    let plan = Plan::new(*params, size)?;
    let mut shares = vec![Vec::new(); usize::from(params.n)];
    let encoded = Encoder::new(plan, key)?.encode(&mut &data[..], Some(secret), &mut shares)?;
    Ok((encoded, shares))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_sizes() {
        let p = Params::with_segment_size(3, 10, 131_072).unwrap();
        let plan = Plan::new(p, 1_000_000).unwrap();
        assert_eq!(plan.segment_size, 131_073);
        assert_eq!(plan.num_segments, 8);
        assert_eq!(plan.layout.data_size, 333_334);
        let small = Plan::new(p, 56).unwrap();
        assert_eq!(
            (
                small.segment_size,
                small.num_segments,
                small.tail_padded_size
            ),
            (57, 1, 57)
        );
        assert!(Plan::new(p, 0).is_err());
        assert!(Plan::new(p, u64::MAX).is_err());
        assert!(Params::with_segment_size(3, 10, u64::MAX).is_err());
    }

    #[test]
    fn shares_have_the_planned_size() {
        let p = Params::with_segment_size(3, 10, 1000).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let (enc, shares) = encode_bytes(&data, &p, b"secret").unwrap();
        let plan = Plan::new(p, 5000).unwrap();
        assert!(shares.iter().all(|s| s.len() as u64 == plan.share_size));
        assert_eq!(enc.cap.size, 5000);
        assert_eq!(enc.ueb.num_segments, 5);
    }

    #[test]
    fn a_change_between_passes_fails() {
        let p = Params::new(2, 3).unwrap();
        let data = vec![7u8; 1000];
        let key = convergence_key(&mut &data[..], 1000, &p, b"s").unwrap();
        let enc = Encoder::new(Plan::new(p, 1000).unwrap(), key).unwrap();
        let mut changed = data.clone();
        changed[500] = 8;
        let mut sink = vec![Vec::new(); 3];
        let err = enc
            .encode(&mut &changed[..], Some(b"s"), &mut sink)
            .unwrap_err();
        assert!(matches!(err, ChkError::Changed(_)), "{err}");
        let mut sink = vec![Vec::new(); 3];
        let err = enc
            .encode(&mut &data[..999], Some(b"s"), &mut sink)
            .unwrap_err();
        assert!(matches!(err, ChkError::Changed(_)), "{err}");
        let longer = vec![7u8; 1001];
        let mut sink = vec![Vec::new(); 3];
        let err = enc
            .encode(&mut &longer[..], Some(b"s"), &mut sink)
            .unwrap_err();
        assert!(matches!(err, ChkError::Changed(_)), "{err}");
        assert!(convergence_key(&mut &data[..999], 1000, &p, b"s").is_err());
    }
}
