//! Cutting a stream into chunks by content (FastCDC, the 2020 variant, as
//! the `fastcdc` crate's `StreamCDC` implements it): a boundary depends
//! only on the bytes around it, so an insertion moves the boundaries near
//! it and leaves every other chunk as it was. Memory: one buffer of
//! `max_size` bytes, plus the chunk handed out.

use std::io::{self, Read};

use fastcdc::v2020::StreamCDC;

use crate::config::Chunking;

/// The chunks of a stream, in order.
pub(crate) struct Chunker<R: Read> {
    inner: StreamCDC<Retrying<R>>,
    /// Set by the first error: the chunker then ends (StreamCDC would
    /// report the error again and again).
    failed: bool,
}

impl<R: Read> Chunker<R> {
    /// A chunker of `source` with the (checked, [`Chunking::check`]) sizes
    /// of `chunking`.
    pub(crate) fn new(source: R, chunking: &Chunking) -> Result<Chunker<R>, String> {
        chunking.check()?;
        // The config checked each size against FastCDC's limits (which it
        // would otherwise assert); checked again, as the sizes may come
        // from elsewhere.
        let size = |key: &str, n: u64| -> Result<u32, String> {
            let (lo, hi) = crate::config::chunk_limits(key);
            if (lo..=hi).contains(&n) {
                u32::try_from(n).map_err(|_| format!("chunking.{key} is too large"))
            } else {
                Err(format!("chunking.{key} must be from {lo} to {hi}, not {n}"))
            }
        };
        Ok(Chunker {
            inner: StreamCDC::new(
                Retrying(source),
                size("min_size", chunking.min_size)?,
                size("avg_size", chunking.avg_size)?,
                size("max_size", chunking.max_size)?,
            ),
            failed: false,
        })
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.inner.next()?;
        self.failed = next.is_err();
        Some(next.map(|c| c.data).map_err(io::Error::from))
    }
}

/// A reader that retries reads interrupted by a signal (StreamCDC would
/// take `Interrupted` for a read error).
struct Retrying<R>(R);

impl<R: Read> Read for Retrying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunking() -> Chunking {
        Chunking {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        }
    }

    fn noise(len: usize, seed: u8) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[seed]);
        hasher.finalize_xof().fill(&mut out);
        out
    }

    fn cut(data: &[u8]) -> Vec<Vec<u8>> {
        Chunker::new(data, &chunking())
            .unwrap()
            .collect::<io::Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn chunks_concatenate_to_the_input_within_the_limits() {
        let data = noise(200_000, 1);
        let chunks = cut(&data);
        assert_eq!(chunks.concat(), data);
        let (last, rest) = chunks.split_last().unwrap();
        assert!(rest.iter().all(|c| (1024..=16384).contains(&c.len())));
        assert!(last.len() <= 16384);
        assert!(cut(b"").is_empty());
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let data = noise(300_000, 2);
        let mut changed = data.clone();
        changed.splice(150_000..150_000, noise(5000, 3));
        let before: std::collections::HashSet<Vec<u8>> = cut(&data).into_iter().collect();
        let new: Vec<Vec<u8>> = cut(&changed)
            .into_iter()
            .filter(|c| !before.contains(c))
            .collect();
        let new_bytes: usize = new.iter().map(Vec::len).sum();
        assert!(new_bytes <= 5000 + 3 * 16384, "{new_bytes} new bytes");
    }

    #[test]
    fn sizes_that_do_not_fit_are_refused() {
        let bad = Chunking {
            min_size: 4096,
            avg_size: 4096,
            max_size: 16384,
        };
        assert!(Chunker::new(&b""[..], &bad).is_err());
        let too_small = Chunking {
            min_size: 1,
            avg_size: 4096,
            max_size: 16384,
        };
        assert!(Chunker::new(&b""[..], &too_small).is_err());
    }

    #[test]
    fn a_read_error_ends_the_chunks_with_it() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("broken pipe"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let results: Vec<_> = Chunker::new(Failing(50_000), &chunking())
            .unwrap()
            .collect();
        assert!(
            results.last().unwrap().is_err(),
            "the error ends the chunks"
        );
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    }
}
