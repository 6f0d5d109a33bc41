//! Upload rate limits: `operation.rate_limit.bytes` and `.objects`, and the
//! `--limit-upload RATE` override of the bytes limit.
//!
//! Each limit is a token bucket of [`RateSpec`]: it refills at `1/interval`
//! units a second up to `burst` units, and starts full. Unlike the original
//! tool, which uploaded first and slept afterwards, the wait happens
//! **before** the work: an object waits before its upload starts, and every
//! chunk of a body waits before it is handed to the HTTP client. The bytes
//! counted are the bytes actually sent (after compression), read through
//! [`Limits::limit_reader`].
//!
//! Waiting threads take their turns in arrival order: a caller reserves its
//! units at once (the bucket may go negative) and then sleeps until they are
//! paid for, so threads sharing a bucket neither starve nor exceed the rate
//! together.

use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use crate::config::{RateSpec, seconds};

/// The most bytes charged to the bytes bucket at once: bodies are read in
/// chunks of at most this size, so a limit smooths the upload out instead
/// of letting it go in bursts of whole files.
pub(crate) const CHUNK: usize = 64 * 1024;

/// A token bucket shared by upload threads (`Send + Sync`; the state is
/// behind a mutex). It starts full (`burst` tokens) and refills at
/// `1/interval` tokens a second, up to `burst`.
pub(crate) struct TokenBucket {
    /// Tokens a second.
    rate: f64,
    /// The most tokens the bucket holds.
    capacity: f64,
    state: Mutex<State>,
}

struct State {
    /// May be negative: the debt of callers that are still sleeping or that
    /// took more than the bucket held.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `spec.burst` tokens refilling at `spec.rate()`
    /// tokens a second.
    pub(crate) fn new(spec: &RateSpec) -> TokenBucket {
        TokenBucket {
            rate: spec.rate(),
            capacity: spec.burst,
            state: Mutex::new(State {
                tokens: spec.burst,
                updated: Instant::now(),
            }),
        }
    }

    /// Blocks until `n` units may go, then returns having taken them: call
    /// it **before** the work it pays for.
    ///
    /// An `n` larger than the burst is allowed: it waits until the bucket is
    /// full and then takes all `n`, leaving the bucket in debt that later
    /// callers wait off (as the original tool did), rather than waiting for
    /// a level the bucket can never reach.
    pub(crate) fn acquire(&self, n: u64) {
        if n == 0 {
            return;
        }
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
            state.tokens = (state.tokens + elapsed * self.rate).min(self.capacity);
            state.updated = now;
            let wait = self.wait_secs(state.tokens, n);
            // Reserve now, pay by sleeping: whoever comes next sees this
            // debt and queues behind it.
            state.tokens -= n as f64;
            wait
        };
        if wait > 0.0 {
            thread::sleep(seconds(wait));
        }
    }

    /// Seconds until a bucket holding `tokens` can let `n` units go: until
    /// it holds `n`, or is full when `n` is more than it can ever hold.
    fn wait_secs(&self, tokens: f64, n: u64) -> f64 {
        let needed = (n as f64).min(self.capacity);
        if tokens >= needed {
            0.0
        } else {
            (needed - tokens) / self.rate
        }
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("rate", &self.rate)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Both limits of a run; either may be absent (no limit).
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    /// Bytes sent, charged as bodies are read.
    pub bytes: Option<Arc<TokenBucket>>,
    /// Objects uploaded (files, symlinks and directories), charged one each.
    pub objects: Option<Arc<TokenBucket>>,
}

impl Limits {
    /// Limits from `operation.rate_limit.bytes` (or `--limit-upload`, which
    /// overrides it) and `operation.rate_limit.objects`.
    pub(crate) fn new(bytes: Option<&RateSpec>, objects: Option<&RateSpec>) -> Limits {
        Limits {
            bytes: bytes.map(|spec| Arc::new(TokenBucket::new(spec))),
            objects: objects.map(|spec| Arc::new(TokenBucket::new(spec))),
        }
    }

    /// Call before each object upload (file, symlink or directory) that is
    /// actually sent; dedup hits are free. Blocks while the objects limit
    /// says wait.
    pub(crate) fn before_object(&self) {
        if let Some(bucket) = &self.objects {
            bucket.acquire(1);
        }
    }

    /// Wraps a body so that every chunk read from it is charged to the bytes
    /// bucket before it is returned, so the bytes counted are those actually
    /// sent (after compression). Chunks are at most [`CHUNK`] bytes. Without
    /// a bytes limit, `inner` is returned as it is.
    pub(crate) fn limit_reader<R: Read + Send + 'static>(&self, inner: R) -> Box<dyn Read + Send> {
        match &self.bytes {
            Some(bucket) => Box::new(LimitedReader {
                inner,
                bucket: Arc::clone(bucket),
            }),
            None => Box::new(inner),
        }
    }
}

struct LimitedReader<R> {
    inner: R,
    bucket: Arc<TokenBucket>,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(CHUNK);
        let n = self.inner.read(&mut buf[..len])?;
        self.bucket.acquire(n as u64);
        Ok(n)
    }
}

/// Parses the value of `--limit-upload RATE`: bytes per second, a positive
/// number with an optional binary suffix, `K` (KiB, 1024), `M` (MiB, 1024²)
/// or `G` (GiB, 1024³), case-insensitive, also written `KiB`, `MiB`, `GiB`:
/// `500`, `300K`, `1.5M`, `2G`. The suffixes are 1024-based, as in rsync's
/// `--bwlimit`.
///
/// Returns the equivalent [`RateSpec`]: one byte per `1/rate` seconds, with a
/// burst of one second's worth, but at least [`CHUNK`] bytes so that a
/// whole chunk always fits. Usable as a clap `value_parser`; the errors name
/// the option and the accepted forms.
pub(crate) fn parse_rate(text: &str) -> Result<RateSpec, String> {
    const FORMS: &str = "expected bytes per second as a positive number with an optional \
                         K, M or G suffix (powers of 1024), e.g. 500, 300K, 1.5M or 2G";
    let invalid = || format!("--limit-upload: {text:?} is not a rate; {FORMS}");
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let (number, multiplier) = [("k", 1u64 << 10), ("m", 1 << 20), ("g", 1 << 30)]
        .into_iter()
        .find_map(|(letter, multiplier)| {
            let number = lower
                .strip_suffix(&format!("{letter}ib"))
                .or_else(|| lower.strip_suffix(letter))?;
            Some((number, multiplier))
        })
        .unwrap_or((&lower, 1));
    // Plain decimal numbers only: no sign, exponent, `inf` or `nan`.
    let plain = !number.is_empty()
        && number.bytes().any(|b| b.is_ascii_digit())
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let value: f64 = match number.parse() {
        Ok(value) if plain => value,
        _ => return Err(invalid()),
    };
    let rate = value * multiplier as f64;
    if rate <= 0.0 {
        return Err(format!(
            "--limit-upload: the rate must be more than 0 bytes per second, not {trimmed:?} \
             (to lift operation.rate_limit.bytes, set it to null in a config file); {FORMS}"
        ));
    }
    if !rate.is_finite() {
        return Err(invalid());
    }
    RateSpec::new(1.0 / rate, rate.max(CHUNK as f64))
        .map_err(|why| format!("--limit-upload: {text:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(per_sec: f64, burst: f64) -> RateSpec {
        RateSpec::new(1.0 / per_sec, burst).expect("valid spec")
    }

    fn secs(start: Instant) -> f64 {
        start.elapsed().as_secs_f64()
    }

    /// The shape of "an objects limit of 1 per second makes 5 new files
    /// take at least 4 seconds", 20 times faster.
    #[test]
    fn objects_limit_spaces_acquires() {
        let limits = Limits::new(None, Some(&spec(20.0, 1.0)));
        let start = Instant::now();
        for _ in 0..5 {
            limits.before_object();
        }
        let took = secs(start);
        assert!(took >= 4.0 / 20.0 * 0.95, "5 objects at 20/s took {took}s");
        assert!(took < 10.0, "took {took}s");
    }

    #[test]
    fn full_bucket_lets_a_burst_through_at_once() {
        // One token every 10 s: any wait at all would take seconds.
        let bucket = TokenBucket::new(&spec(0.1, 5.0));
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire(1);
        }
        assert!(secs(start) < 5.0, "a full bucket made callers wait");
    }

    #[test]
    fn waits_happen_before_the_work() {
        let bucket = TokenBucket::new(&spec(10.0, 1.0));
        bucket.acquire(1); // empties the bucket
        let start = Instant::now();
        bucket.acquire(1);
        // The second acquire itself blocks (~0.1 s) instead of returning
        // at once and sleeping after the work.
        assert!(secs(start) >= 0.09, "acquire did not block");
    }

    fn tokens(bucket: &TokenBucket) -> f64 {
        bucket.state.lock().expect("lock").tokens
    }

    #[test]
    fn more_than_the_burst_goes_into_debt() {
        // 100 units a second, burst 10.
        let bucket = TokenBucket::new(&spec(100.0, 10.0));
        assert_eq!(bucket.wait_secs(10.0, 50), 0.0, "a full bucket lets 50 go");
        // A full bucket lets 50 go at once (no deadlock), leaving a debt of
        // about 40 (less what refilled meanwhile)...
        bucket.acquire(50);
        let debt = -tokens(&bucket);
        assert!(debt > 30.0 && debt <= 40.0, "debt {debt}");
        // ...which the next caller waits off before its own unit.
        let start = Instant::now();
        bucket.acquire(1);
        let took = secs(start);
        assert!(took >= 0.3 * 0.95, "debt not paid: {took}s");
        assert!(took < 10.0, "took {took}s");
    }

    #[test]
    fn wait_math() {
        let bucket = TokenBucket::new(&spec(10.0, 5.0));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(bucket.wait_secs(5.0, 1), 0.0));
        assert!(close(bucket.wait_secs(0.5, 1), 0.05));
        // In debt: wait it off, then for the unit itself.
        assert!(close(bucket.wait_secs(-20.0, 1), 2.1));
        // More than the burst: wait until full.
        assert!(close(bucket.wait_secs(0.0, 1000), 0.5));
        assert!(close(bucket.wait_secs(5.0, 1000), 0.0));
    }

    #[test]
    fn more_than_the_burst_waits_for_a_full_bucket() {
        let bucket = TokenBucket::new(&spec(100.0, 10.0));
        bucket.acquire(10); // empty
        let start = Instant::now();
        bucket.acquire(1000);
        let took = secs(start);
        // Waits until full (10 tokens, 0.1 s), not for 1000 tokens (10 s).
        assert!(
            took >= 0.1 * 0.95,
            "did not wait for a full bucket: {took}s"
        );
        assert!(took < 5.0, "waited for the whole amount: {took}s");
    }

    #[test]
    fn limited_reader_respects_bytes_rate() {
        // 200 KiB at 1 MiB/s with a 64 KiB burst: the first 64 KiB is free,
        // the other 136 KiB take ~0.13 s.
        let limits = Limits::new(Some(&spec(1024.0 * 1024.0, 64.0 * 1024.0)), None);
        let data = vec![7u8; 200 * 1024];
        let mut reader = limits.limit_reader(io::Cursor::new(data.clone()));
        let start = Instant::now();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("read");
        let took = secs(start);
        assert_eq!(out, data);
        assert!(
            took >= 136.0 / 1024.0 * 0.95,
            "200 KiB at 1 MiB/s took {took}s"
        );
        assert!(took < 10.0, "took {took}s");
    }

    #[test]
    fn limited_reader_reads_at_most_a_chunk() {
        let limits = Limits::new(Some(&spec(1e12, 1e12)), None);
        let mut reader = limits.limit_reader(io::Cursor::new(vec![1u8; 3 * CHUNK]));
        let mut buf = vec![0u8; 3 * CHUNK];
        assert_eq!(reader.read(&mut buf).expect("read"), CHUNK);
    }

    #[test]
    fn no_limits_cost_nothing() {
        let limits = Limits::default();
        let start = Instant::now();
        for _ in 0..1000 {
            limits.before_object();
        }
        let mut reader = limits.limit_reader(io::Cursor::new(vec![0u8; 1 << 20]));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("read");
        assert_eq!(out.len(), 1 << 20);
        assert!(secs(start) < 5.0);
    }

    #[test]
    fn threads_share_one_bucket() {
        // 4 threads x 10 units from one bucket of 100/s, burst 1: 40 units
        // need at least 0.39 s together, however they interleave.
        let bucket = Arc::new(TokenBucket::new(&spec(100.0, 1.0)));
        let ready = Arc::new(std::sync::Barrier::new(4));
        let start = Instant::now();
        let finished: Vec<f64> = (0..4)
            .map(|_| {
                let bucket = Arc::clone(&bucket);
                let ready = Arc::clone(&ready);
                thread::spawn(move || {
                    ready.wait();
                    for _ in 0..10 {
                        bucket.acquire(1);
                    }
                    secs(start)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|handle| handle.join().expect("thread"))
            .collect();
        let total = secs(start);
        assert!(total >= 0.39 * 0.95, "40 units at 100/s took {total}s");
        assert!(total < 20.0, "took {total}s");
        // Fair enough: turns are taken in arrival order, so no thread gets
        // all its units through before the others have had a fair share.
        let first = finished.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            first >= 0.2,
            "one thread finished early, at {first}s: {finished:?}"
        );
    }

    #[test]
    fn bucket_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TokenBucket>();
        check::<Limits>();
    }

    #[test]
    fn parse_rate_forms() {
        let rate = |text: &str| parse_rate(text).expect(text).rate();
        let close = |a: f64, b: f64| (a - b).abs() <= b * 1e-9;
        assert!(close(rate("500"), 500.0));
        assert!(close(rate("300K"), 300.0 * 1024.0));
        assert!(close(rate("300k"), 300.0 * 1024.0));
        assert!(close(rate("300KiB"), 300.0 * 1024.0));
        assert!(close(rate("1.5M"), 1.5 * 1024.0 * 1024.0));
        assert!(close(rate("1.5mib"), 1.5 * 1024.0 * 1024.0));
        assert!(close(rate("2G"), 2.0 * 1024.0 * 1024.0 * 1024.0));
        assert!(close(rate(" 0.5 "), 0.5));
        assert!(close(rate(".5K"), 512.0));
    }

    #[test]
    fn parse_rate_burst_fits_a_chunk() {
        // A slow rate still gets a burst of one whole chunk...
        assert_eq!(parse_rate("500").expect("valid").burst, CHUNK as f64);
        // ...and a fast one a second's worth.
        assert_eq!(
            parse_rate("2M").expect("valid").burst,
            2.0 * 1024.0 * 1024.0
        );
    }

    #[test]
    fn parse_rate_errors() {
        for bad in [
            "", " ", "K", "abc", "300KB", "300 K", "-5", "+5", "1e3", "inf", "nan", "1..5", "5/s",
            "300KK", "1.5T",
        ] {
            let err = parse_rate(bad).expect_err(bad);
            assert!(err.starts_with("--limit-upload: "), "{bad:?}: {err}");
            assert!(err.contains("300K"), "{bad:?}: {err}");
        }
        for zero in ["0", "0K", "0.0"] {
            let err = parse_rate(zero).expect_err(zero);
            assert!(err.contains("more than 0"), "{zero:?}: {err}");
        }
    }

    #[test]
    fn acquire_zero_never_waits() {
        let bucket = TokenBucket::new(&spec(1e-3, 1.0));
        bucket.acquire(1);
        let start = Instant::now();
        bucket.acquire(0);
        assert!(secs(start) < Duration::from_secs(5).as_secs_f64());
    }
}
