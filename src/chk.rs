//! CHK: Tahoe-LAFS's immutable file format, encoded and decoded here without
//! the gateway (issue 17, item 1: pure and offline).
//!
//! Everything is byte-compatible with tahoe-lafs 1.20.0 (`docs/chk.md` is the
//! format as built, with the Tahoe sources each piece follows):
//!
//! * [`hash`]: Tahoe's tagged SHA-256d hashes and the convergence key;
//! * [`zfec`]: the zfec Reed–Solomon code over GF(2^8) (its own systematic
//!   Vandermonde matrix, which other RS crates do not share);
//! * [`hashtree`]: the Merkle trees (block, crypttext and share hash trees);
//! * [`uri_ext`]: the URI extension block (UEB);
//! * [`layout`]: share layout v1 and v2 (header and offsets table);
//! * [`encode`]: plaintext → N shares and a `URI:CHK:` cap, a segment at a time;
//! * [`decode`]: any k shares → plaintext, every hash checked;
//! * [`cap`]: `URI:CHK:`, `URI:DIR2-CHK:` and `URI:LIT:` caps;
//! * [`dirnode`]: the `DIR2-CHK` packing of an immutable directory, as
//!   `POST /uri?t=mkdir-immutable` packs it.
//!
//! Nothing outside this module uses it yet: the storage client (item 2) and
//! the `destination.storage: native` wiring (item 3) will. Until then the
//! module is exercised by its tests only, hence the `dead_code` allowance on
//! its declaration in `src/lib.rs`.

pub(crate) mod cap;
pub(crate) mod decode;
pub(crate) mod dirnode;
pub(crate) mod encode;
pub(crate) mod hash;
pub(crate) mod hashtree;
pub(crate) mod layout;
pub(crate) mod spki;
pub(crate) mod uri_ext;
pub(crate) mod zfec;

#[cfg(test)]
mod oracle_tests;

/// Files of at most this many bytes become `URI:LIT:` caps: the data is in
/// the cap and nothing is stored (`Uploader.URI_LIT_SIZE_THRESHOLD`).
pub(crate) const LIT_THRESHOLD: u64 = 55;

/// Tahoe 1.20's default maximum segment size for immutable files
/// (`allmydata.interfaces.DEFAULT_IMMUTABLE_MAX_SEGMENT_SIZE`, 1 MiB); the
/// gateway uses it for every `PUT /uri` and `mkdir-immutable`.
pub(crate) const DEFAULT_MAX_SEGMENT_SIZE: u64 = 1024 * 1024;

/// The most segments an object may have here: 16 TiB at 1 MiB segments.
/// It bounds what a decoder reads and keeps for the hash trees (32 bytes a
/// segment a tree) whatever a share claims, and keeps every size and offset
/// computation far from overflow.
pub(crate) const MAX_SEGMENTS: u64 = 1 << 24;

/// The largest maximum segment size accepted (Tahoe's default is 1 MiB).
pub(crate) const MAX_SEGMENT_SIZE_LIMIT: u64 = 1 << 30;

/// The encoding parameters of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    /// Shares needed to read the file (`shares.needed`, k).
    pub(crate) k: u16,
    /// Shares made (`shares.total`, N).
    pub(crate) n: u16,
    /// The largest segment (before rounding up to a multiple of k).
    pub(crate) max_segment_size: u64,
}

impl Params {
    /// k-of-n with Tahoe 1.20's default segment size.
    pub(crate) fn new(k: u16, n: u16) -> Result<Params, ChkError> {
        Params::with_segment_size(k, n, DEFAULT_MAX_SEGMENT_SIZE)
    }

    /// k-of-n with a given maximum segment size; zfec's limits are
    /// 1 ≤ k ≤ n ≤ 256.
    pub(crate) fn with_segment_size(
        k: u16,
        n: u16,
        max_segment_size: u64,
    ) -> Result<Params, ChkError> {
        if k == 0 || n == 0 || k > n || n > 256 {
            return Err(ChkError::Params(format!(
                "shares {k}-of-{n}: need 1 <= k <= n <= 256"
            )));
        }
        if max_segment_size == 0 || max_segment_size > MAX_SEGMENT_SIZE_LIMIT {
            return Err(ChkError::Params(format!(
                "a maximum segment size of {max_segment_size} (need 1 to {MAX_SEGMENT_SIZE_LIMIT})"
            )));
        }
        Ok(Params {
            k,
            n,
            max_segment_size,
        })
    }

    /// The effective segment size of a file of `size` bytes: the maximum,
    /// or the size for a smaller file, rounded up to a multiple of k
    /// (`BaseUploadable.get_all_encoding_parameters`).
    pub(crate) fn segment_size(&self, size: u64) -> u64 {
        size.min(self.max_segment_size)
            .next_multiple_of(u64::from(self.k))
    }
}

/// Why an object could not be encoded or decoded. Messages name what
/// failed and never carry a cap or key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChkError {
    /// Bad encoding parameters.
    #[error("invalid encoding parameters: {0}")]
    Params(String),
    /// Reading the plaintext or a share, or writing the output, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file changed while it was encoded (its two reads differ).
    #[error("the file changed while it was being encoded ({0})")]
    Changed(String),
    /// A cap that is not a well-formed CHK, DIR2-CHK or LIT cap.
    #[error("malformed cap: {0}")]
    BadCap(String),
    /// Fewer than k usable shares.
    #[error("not enough good shares: {good} usable of {needed} needed ({detail})")]
    NotEnoughShares {
        /// Shares that passed every check so far.
        good: usize,
        /// k.
        needed: usize,
        /// What happened to the others.
        detail: String,
    },
    /// Decoded data that does not match the hashes of the UEB.
    #[error("corrupt object: {0}")]
    Corrupt(String),
    /// A directory that cannot be packed.
    #[error("directory: {0}")]
    Dir(String),
}

impl ChkError {
    /// An I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> ChkError {
        ChkError::Io {
            what: what.into(),
            source,
        }
    }
}
