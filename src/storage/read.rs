//! Native reads of CHK objects (issue 17 item 3): the shares of a
//! `URI:CHK:` or `URI:DIR2-CHK:` cap are found and read straight from the
//! storage servers and decoded by [`crate::chk::decode`], every hash checked.
//!
//! Made cheap for small files, which a restore has thousands of:
//!
//! * one [`StorageClient`] per server for the whole run ([`Readers`]), so
//!   its keep-alive connections (TLS included) are reused by every read and
//!   every worker thread: no handshake per file;
//! * the shares are located by asking the servers in permuted order, the
//!   first k at once, the others only when those do not hold k distinct
//!   shares (Tahoe's downloader asks them all);
//! * the k shares are read at once (a thread each), and for an object of
//!   one segment, which is what a small file is, each share is read whole
//!   in one request: its size follows from the cap (k, N, size) and Tahoe's
//!   default segment size. For a larger object the header and the hash
//!   trees and UEB at the end of each share come in two requests, then the
//!   blocks of each segment as they are needed (k at once). A prediction
//!   that does not fit (another segment size) only costs more requests:
//!   whatever is not in the prefetched bytes is read from the server.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;

use super::StorageError;
use super::client::StorageClient;
use super::nurl::{Server, permuted};
use crate::chk::cap::ChkCap;
use crate::chk::decode::{Decoder, More, PlainReader, ShareSource};
use crate::chk::encode::Plan;
use crate::chk::{ChkError, Params};

/// A share of at most this many bytes is read whole in one request.
const WHOLE_SHARE: u64 = 1024 * 1024 + 64 * 1024;

/// The size of the biggest share header (v2).
const HEADER: u64 = 0x44;

/// A client per server, kept for the run (the process's pooled ones,
/// [`StorageClient::shared`], which uploads and checks use too).
pub(crate) struct Readers {
    servers: Vec<Server>,
    clients: Vec<Arc<StorageClient>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

/// Bytes of a share read ahead: `data` from `start`; `eof` when the server
/// gave fewer than asked (the share ends there).
struct Chunk {
    start: u64,
    data: Vec<u8>,
    eof: bool,
}

/// A share on a storage server, with the bytes read ahead of the decoder.
struct RemoteShare<'a> {
    client: &'a StorageClient,
    si: [u8; 16],
    shnum: u16,
    chunks: Vec<Chunk>,
}

impl RemoteShare<'_> {
    /// Reads `len` bytes at `start` into the read-ahead (an error is left
    /// for the decoder's own read to meet and report).
    fn prefetch(&mut self, start: u64, len: u64) {
        if let Ok(data) = self.client.read_share(&self.si, self.shnum, start, len) {
            let eof = (data.len() as u64) < len;
            self.chunks.push(Chunk { start, data, eof });
        }
    }
}

impl ShareSource for RemoteShare<'_> {
    fn shnum(&self) -> u16 {
        self.shnum
    }

    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ChkError> {
        for c in &self.chunks {
            let end = c.start + c.data.len() as u64;
            let want_end = offset.saturating_add(len);
            if offset >= c.start && (want_end <= end || (c.eof && offset <= end)) {
                let from = (offset - c.start) as usize;
                let to = (want_end.min(end) - c.start) as usize;
                return Ok(c.data[from..to].to_vec());
            }
        }
        self.client
            .read_share(&self.si, self.shnum, offset, len)
            .map_err(|e| ChkError::io("read share", io::Error::other(e.to_string())))
    }
}

impl Readers {
    /// Clients for `servers` (no connection is made yet).
    pub(crate) fn new(servers: &[Server]) -> Result<Readers, StorageError> {
        Ok(Readers {
            servers: servers.to_vec(),
            clients: servers
                .iter()
                .map(StorageClient::shared)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The servers' indexes in Tahoe's permuted order for `si`.
    fn order(&self, si: &[u8; 16]) -> Vec<usize> {
        permuted(&self.servers, si)
            .into_iter()
            .filter_map(|s| self.servers.iter().position(|t| std::ptr::eq(s, t)))
            .collect()
    }

    /// Which shares of `si` the servers `asked` (indexes) hold, asked at
    /// once: (share, server) in the order of `asked`, and the servers that
    /// failed to answer.
    fn list(&self, si: &[u8; 16], asked: &[usize]) -> (Vec<(u16, usize)>, Vec<String>) {
        let answers: Vec<(usize, Result<_, StorageError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = asked
                .iter()
                .map(|&i| s.spawn(move || (i, self.clients[i].list_shares(si))))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for (i, answer) in answers {
            match answer {
                Ok(shares) => found.extend(shares.into_iter().map(|s| (s, i))),
                Err(e) => problems.push(e.to_string()),
            }
        }
        (found, problems)
    }

    /// Share `shnum` on server `server`, nothing read yet.
    fn remote(&self, si: [u8; 16], (shnum, server): (u16, usize)) -> RemoteShare<'_> {
        RemoteShare {
            client: &self.clients[server],
            si,
            shnum,
            chunks: Vec::new(),
        }
    }

    /// A decoder of the object of `cap`, its shares located and the first
    /// bytes of k of them read. The servers are asked in permuted order:
    /// the first k at once, the others only when those do not hold k
    /// distinct shares, or later when a share turns out bad and no other
    /// is known.
    pub(crate) fn open(&self, cap: &ChkCap) -> Result<Decoder<'_>, ChkError> {
        let si = cap.storage_index();
        let k = usize::from(cap.k);
        let order = self.order(&si);
        let (first, rest) = order.split_at(k.min(order.len()));
        let (mut found, mut problems) = self.list(&si, first);
        let mut rest = rest.to_vec();
        let distinct = |found: &[(u16, usize)]| {
            let mut shares: Vec<u16> = found.iter().map(|f| f.0).collect();
            shares.sort_unstable();
            shares.dedup();
            shares.len()
        };
        if distinct(&found) < k && !rest.is_empty() {
            let (more, more_problems) = self.list(&si, &rest);
            found.extend(more);
            problems.extend(more_problems);
            rest.clear();
        }
        // k shares, on as many distinct servers as possible (read at once),
        // the lowest numbers first (primary shares decode by a copy); then
        // every other copy as a spare.
        let mut servers: Vec<usize> = Vec::new();
        let mut by_server: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
        for &(shnum, server) in &found {
            if !servers.contains(&server) {
                servers.push(server);
            }
            by_server.entry(server).or_default().push(shnum);
        }
        for shares in by_server.values_mut() {
            shares.sort_unstable();
        }
        let mut picked: Vec<(u16, usize)> = Vec::new();
        while picked.len() < k {
            let before = picked.len();
            for &server in &servers {
                if picked.len() == k {
                    break;
                }
                let next = by_server.get(&server).and_then(|shares| {
                    shares
                        .iter()
                        .find(|s| !picked.iter().any(|p| p.0 == **s))
                        .copied()
                });
                if let Some(shnum) = next {
                    picked.push((shnum, server));
                }
            }
            if picked.len() == before {
                break;
            }
        }
        let mut spares: Vec<(u16, usize)> = found
            .iter()
            .filter(|f| !picked.contains(f))
            .copied()
            .collect();
        spares.sort_by_key(|s| s.0);
        let mut first: Vec<RemoteShare<'_>> =
            picked.into_iter().map(|p| self.remote(si, p)).collect();
        prefetch(cap, &mut first);
        let sources: Vec<Box<dyn ShareSource + '_>> = first
            .into_iter()
            .chain(spares.into_iter().map(|p| self.remote(si, p)))
            .map(|r| Box::new(r) as Box<dyn ShareSource + '_>)
            .collect();
        let more = (!rest.is_empty()).then(|| {
            Box::new(move || {
                let (found, problems) = self.list(&si, &rest);
                let sources = found
                    .into_iter()
                    .map(|p| Box::new(self.remote(si, p)) as Box<dyn ShareSource + '_>)
                    .collect();
                (sources, problems)
            }) as More<'_>
        });
        Decoder::with_more(cap, sources, more).map_err(|e| match e {
            ChkError::NotEnoughShares {
                good,
                needed,
                detail,
            } if !problems.is_empty() => ChkError::NotEnoughShares {
                good,
                needed,
                detail: format!("{detail}; {}", problems.join("; ")),
            },
            e => e,
        })
    }

    /// The whole object of `cap` as a reader (see [`with_reader`]).
    pub(crate) fn reader(&self, cap: &ChkCap) -> Result<PlainReader<'_>, ChkError> {
        Ok(PlainReader::new(self.open(cap)?))
    }
}

/// Reads ahead, at once for the shares, what the decoder will read first:
/// the whole share when the object is one small segment, else the header
/// and everything from the crypttext hash tree to the end (hash trees,
/// share hash chain, UEB), as Tahoe's encoder lays a share out for the
/// cap's k, N and size with the default segment size.
fn prefetch(cap: &ChkCap, shares: &mut [RemoteShare<'_>]) {
    let Ok(plan) = Params::new(cap.k, cap.n).and_then(|p| Plan::new(p, cap.size)) else {
        return;
    };
    let ranges: Vec<(u64, u64)> = if plan.share_size <= WHOLE_SHARE {
        vec![(0, plan.share_size)]
    } else {
        let tail = plan.layout.crypttext_hash_tree;
        vec![(0, HEADER), (tail, plan.share_size.saturating_sub(tail))]
    };
    std::thread::scope(|s| {
        for share in shares.iter_mut() {
            let ranges = &ranges;
            s.spawn(move || {
                for &(start, len) in ranges {
                    share.prefetch(start, len);
                }
            });
        }
    });
}

/// Why a native read did not give the object to the sink.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The native path failed (shares not found, corrupt, a server error).
    Native(ChkError),
    /// The sink's own error (writing where the content goes).
    Sink(io::Error),
    /// The sink stopped before the end of the object.
    Incomplete {
        /// The object's size.
        expected: u64,
        /// What the sink read, plus the byte that shows there is more.
        got: u64,
    },
}

/// A reader that counts what it yields.
struct Counted<'r, 'a> {
    inner: &'r mut PlainReader<'a>,
    got: u64,
}

impl Read for Counted<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.got += n as u64;
        Ok(n)
    }
}

/// Hands the whole object of `cap` to `sink` as a reader, decoded from the
/// storage servers a segment at a time. As the gateway path: the sink may
/// stop early only at the end (more bytes left is
/// [`ReadFailure::Incomplete`]).
pub(crate) fn with_reader<T>(
    readers: &Readers,
    cap: &ChkCap,
    sink: &mut dyn FnMut(&mut dyn Read) -> io::Result<T>,
) -> Result<T, ReadFailure> {
    let mut plain = readers.reader(cap).map_err(ReadFailure::Native)?;
    let mut counted = Counted {
        inner: &mut plain,
        got: 0,
    };
    let result = sink(&mut counted);
    let got = counted.got;
    if let Some(e) = plain.take_error() {
        return Err(ReadFailure::Native(e));
    }
    let value = result.map_err(ReadFailure::Sink)?;
    let mut rest = [0u8; 1];
    match plain.read(&mut rest) {
        Ok(0) => {
            routed_around(plain.decoder().problems());
            Ok(value)
        }
        Ok(n) => Err(ReadFailure::Incomplete {
            expected: cap.size,
            got: got + n as u64,
        }),
        Err(e) => Err(ReadFailure::Native(
            plain
                .take_error()
                .unwrap_or_else(|| ChkError::io("decoding", e)),
        )),
    }
}

/// The whole object of `cap` in memory (its size is the cap's: callers
/// check it against their limit first).
pub(crate) fn read_all(readers: &Readers, cap: &ChkCap) -> Result<Vec<u8>, ReadFailure> {
    let capacity = usize::try_from(cap.size).unwrap_or(0);
    with_reader(readers, cap, &mut |body: &mut dyn Read| {
        let mut data = Vec::with_capacity(capacity);
        body.read_to_end(&mut data)?;
        Ok(data)
    })
}

/// Bytes `offset .. end` of the object of `cap` (clipped to its size),
/// decoding only the segments the range covers.
pub(crate) fn range(
    readers: &Readers,
    cap: &ChkCap,
    offset: u64,
    end: u64,
) -> Result<Vec<u8>, ChkError> {
    let end = end.min(cap.size);
    if offset >= end {
        return Ok(Vec::new());
    }
    let mut decoder = readers.open(cap)?;
    let seg = decoder.segment_size();
    let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
    for segnum in offset / seg..=(end - 1) / seg {
        let data = decoder.segment(segnum)?;
        let base = segnum * seg;
        let from = offset.saturating_sub(base).min(data.len() as u64) as usize;
        let to = (end - base).min(data.len() as u64) as usize;
        out.extend_from_slice(&data[from..to]);
    }
    routed_around(decoder.problems());
    Ok(out)
}

/// Logs the shares a successful read did without (bad, missing, a server
/// that did not answer): the object is fine, its shares may need a
/// `check --repair`.
fn routed_around(problems: &[String]) {
    if !problems.is_empty() {
        tracing::debug!(
            "native read: other shares were used in place of bad or unreadable ones ({})",
            problems.join("; ")
        );
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod grid_tests;
