//! The `chunking` section: the content-defined chunking of streams
//! (`docs/streams.md`). Each size is checked against FastCDC's own limits
//! here, where its key and line are known; that `min_size < avg_size <
//! max_size` holds is checked by [`Chunking::check`] when a stream backup
//! starts (a later layer may still change one of them).

use super::emit::Out;
use super::node::Node;
use super::schema::{Invalid, section};

section! {
    /// `chunking`: how streams are cut into chunks (FastCDC 2020).
    pub struct Chunking {
        /// No chunk is smaller (except the last of a stream), in bytes.
        pub min_size: u64 => chunk_size,
        /// The average chunk size FastCDC aims at, in bytes.
        pub avg_size: u64 => chunk_size,
        /// No chunk is larger, in bytes; at most 4 MiB.
        pub max_size: u64 => chunk_size,
    }
}

/// The largest `chunking.max_size`: one Tahoe object per chunk stays small
/// enough to be held in memory a few times over, and to retry cheaply.
pub(crate) const MAX_CHUNK: u64 = 4 << 20;

/// The limits of each key: FastCDC's (`fastcdc::v2020::*_MIN`/`*_MAX`),
/// with `max_size` capped at [`MAX_CHUNK`].
pub(crate) fn limits(key: &str) -> (u64, u64) {
    use fastcdc::v2020 as f;
    if key.ends_with("min_size") {
        (f::MINIMUM_MIN.into(), f::MINIMUM_MAX.into())
    } else if key.ends_with("avg_size") {
        (f::AVERAGE_MIN.into(), f::AVERAGE_MAX.into())
    } else {
        (f::MAXIMUM_MIN.into(), MAX_CHUNK)
    }
}

impl Chunking {
    /// Whether the three sizes fit together (`min_size < avg_size <
    /// max_size`); the message names the keys.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.min_size < self.avg_size && self.avg_size < self.max_size {
            return Ok(());
        }
        Err(format!(
            "chunking: min_size ({}) < avg_size ({}) < max_size ({}) must hold",
            self.min_size, self.avg_size, self.max_size
        ))
    }
}

/// One size of the `chunking` section: an integer number of bytes within
/// the key's [`limits`].
pub(crate) mod chunk_size {
    use super::{Invalid, Node, Out, limits};

    pub(crate) fn zero() -> u64 {
        0
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<u64, Invalid> {
        let (lo, hi) = limits(key);
        match node.as_int().map(u64::try_from) {
            Some(Ok(n)) if (lo..=hi).contains(&n) => Ok(n),
            Some(Ok(_)) | Some(Err(_)) => Err(Invalid::value(
                node,
                key,
                format!("must be a number of bytes from {lo} to {hi}"),
            )),
            None => Err(Invalid::ty(node, key, "an integer number of bytes")),
        }
    }

    pub(crate) fn to_out(n: &u64) -> Out {
        Out::Int((*n).into())
    }
}
