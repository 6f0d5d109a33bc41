//! Upload progress: a one-line bar on a terminal, JSON lines on stdout when
//! asked, or nothing.
//!
//! Before the upload starts, the queue and the entry cache bound the work
//! from above: how many objects and raw bytes may still need to go up. The
//! bound shrinks as content dedup finds copies ([`Progress::shrink_total`]),
//! so the totals only ever get more accurate, and the ETA is computed from
//! what remains of them at the recent rates.
//!
//! Upload threads share one [`Progress`] (through an `Arc`) and only touch
//! atomics; a background thread, in the `Bar` and `Json` modes only, draws
//! the bar four times a second or writes at most one JSON line a second.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How often the background thread samples the counters (and redraws the
/// bar).
const TICK: Duration = Duration::from_millis(250);
/// The least time between two JSON progress lines (the final line excepted).
const JSON_EVERY: Duration = Duration::from_secs(1);
/// Rates are measured over (about) this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(30);
/// A rate measured over less than this is not shown.
const MIN_RATE_SPAN_SECS: f64 = 1.0;
/// No ETA is given before the upload has run this long.
pub(crate) const MIN_OBSERVED_SECS: f64 = 3.0;
/// ETAs beyond this (about 30 years) are no estimate at all.
const MAX_ETA_SECS: f64 = 1e9;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nothing is shown.
    Off,
    /// A one-line bar on stderr, which is a terminal.
    Bar,
    /// JSON lines `{"type":"progress",...}` on stdout.
    Json,
}

impl Mode {
    /// `Json` when `json_progress` (`--progress-json`); otherwise `Bar` when
    /// stderr is a terminal and the output is not `--json`; otherwise `Off`.
    pub(crate) fn choose(json: bool, json_progress: bool) -> Mode {
        Mode::choose_for(json, json_progress, io::stderr().is_terminal())
    }

    fn choose_for(json: bool, json_progress: bool, stderr_is_terminal: bool) -> Mode {
        if json_progress {
            Mode::Json
        } else if stderr_is_terminal && !json {
            Mode::Bar
        } else {
            Mode::Off
        }
    }
}

/// The progress of one upload. Thread-safe (`Send + Sync`): upload threads
/// share it through an `Arc`. Call [`Progress::finish`] when the upload
/// ends; dropping it finishes it too.
pub(crate) struct Progress {
    mode: Mode,
    counters: Arc<Counters>,
    /// Only in `Bar` mode.
    bar: Option<ProgressBar>,
    /// The id under which `bar` is registered for [`LogWriter`].
    bar_id: u64,
    /// The background thread and its stop signal; `None` in `Off` mode,
    /// once finished, or if the thread could not be started.
    ticker: Mutex<Option<Ticker>>,
}

impl Progress {
    pub(crate) fn new(mode: Mode) -> Progress {
        Progress::with_sink(mode, Sink::Stdout)
    }

    fn with_sink(mode: Mode, sink: Sink) -> Progress {
        let counters = Arc::new(Counters::default());
        let bar = (mode == Mode::Bar).then(new_bar);
        let bar_id = bar.as_ref().map_or(0, register_bar);
        let ticker = match mode {
            Mode::Off => None,
            Mode::Bar | Mode::Json => Ticker::start(mode, Arc::clone(&counters), bar.clone(), sink),
        };
        Progress {
            mode,
            counters,
            bar,
            bar_id,
            ticker: Mutex::new(ticker),
        }
    }

    /// The mode this was made with.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The upper bound of the work: the objects and raw bytes that may need
    /// uploading. Nothing is shown before this is first called, and rates
    /// and elapsed time count from then.
    pub(crate) fn set_total(&self, objects: u64, bytes: u64) {
        let c = &self.counters;
        c.objects_total.store(objects, Ordering::Relaxed);
        c.bytes_total.store(bytes, Ordering::Relaxed);
        if !c.started.swap(true, Ordering::Relaxed)
            && let Some(bar) = &self.bar
        {
            // The bar appears now, with the counts from the first frame.
            update_bar(bar, &c.snapshot(), None, None);
            bar.reset_elapsed();
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.force_draw();
        }
    }

    /// Starts the display without a total (what is left is not known):
    /// counts and the rate, no ETA.
    pub(crate) fn start_without_total(&self) {
        self.counters.no_total.store(true, Ordering::Relaxed);
        self.set_total(0, 0);
    }

    /// Lowers the bound when dedup finds a copy (the object needs no upload)
    /// or a file turns out smaller than expected.
    pub(crate) fn shrink_total(&self, objects: u64, bytes: u64) {
        let c = &self.counters;
        let shrink = |total: &AtomicU64, by: u64| {
            let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(by))
            });
        };
        shrink(&c.objects_total, objects);
        shrink(&c.bytes_total, bytes);
    }

    /// An object finished uploading; `bytes` is its raw (uncompressed) size,
    /// as counted in the total.
    pub(crate) fn object_done(&self, bytes: u64) {
        self.counters.objects_done.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `n` more body bytes of an upload under way were sent: counted as done
    /// until [`Progress::unsend`] takes them back (when the upload ends, and
    /// [`Progress::object_done`] counts the object, or an attempt starts
    /// over).
    pub(crate) fn sending(&self, n: u64) {
        self.counters
            .bytes_in_flight
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Takes back `n` bytes counted by [`Progress::sending`].
    pub(crate) fn unsend(&self, n: u64) {
        let _ =
            self.counters
                .bytes_in_flight
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    Some(t.saturating_sub(n))
                });
    }

    /// `n` more bytes went over the network (after compression, bodies of
    /// any kind): this is the rate shown.
    pub(crate) fn bytes_sent(&self, n: u64) {
        self.counters.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Ends the display: clears the bar, or writes the final JSON line.
    /// Later calls do nothing.
    pub(crate) fn finish(&self) {
        let ticker = self
            .ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(ticker) = ticker {
            ticker.stop();
        }
        if let Some(bar) = &self.bar {
            unregister_bar(self.bar_id);
            bar.finish_and_clear();
        }
    }

    /// Whether this draws on the terminal at all.
    #[cfg(test)]
    fn has_bar(&self) -> bool {
        self.bar.is_some()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

// ---------------------------------------------------------------- counters

#[derive(Default)]
struct Counters {
    objects_total: AtomicU64,
    bytes_total: AtomicU64,
    objects_done: AtomicU64,
    bytes_done: AtomicU64,
    bytes_sent: AtomicU64,
    /// Body bytes of uploads still under way: shown as done while they go,
    /// so a large file moves the bar while it uploads (see
    /// [`Progress::sending`]).
    bytes_in_flight: AtomicU64,
    /// `set_total` was called.
    started: AtomicBool,
    /// [`Progress::start_without_total`] was called.
    no_total: AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        let objects_done = self.objects_done.load(Ordering::Relaxed);
        let bytes_done = self
            .bytes_done
            .load(Ordering::Relaxed)
            .saturating_add(self.bytes_in_flight.load(Ordering::Relaxed));
        Snapshot {
            objects_done,
            // A bound that turned out too low is at least what was done.
            objects_total: self.objects_total.load(Ordering::Relaxed).max(objects_done),
            bytes_done,
            bytes_total: self.bytes_total.load(Ordering::Relaxed).max(bytes_done),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one moment; totals are never below what is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Snapshot {
    pub objects_done: u64,
    pub objects_total: u64,
    /// Raw bytes of the objects done.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes sent over the network.
    pub bytes_sent: u64,
}

impl Snapshot {
    fn remaining_objects(&self) -> u64 {
        self.objects_total.saturating_sub(self.objects_done)
    }

    fn remaining_bytes(&self) -> u64 {
        self.bytes_total.saturating_sub(self.bytes_done)
    }
}

// ---------------------------------------------------------------- rates and ETA

/// Recent rates, per second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Rates {
    pub objects_per_sec: f64,
    /// Bytes sent over the network (after compression): the rate shown.
    pub sent_bytes_per_sec: f64,
    /// Raw bytes of finished objects: faster than `sent_bytes_per_sec` when
    /// compression pays, but moves only when whole objects finish.
    pub raw_bytes_per_sec: f64,
}

/// Samples of the counters over the last [`RATE_WINDOW`].
#[derive(Debug, Default)]
struct RateWindow {
    first: Option<Instant>,
    samples: VecDeque<(Instant, Snapshot)>,
}

impl RateWindow {
    fn push(&mut self, now: Instant, snapshot: Snapshot) {
        self.first.get_or_insert(now);
        self.samples.push_back((now, snapshot));
        // Keep one sample at or before the window's start.
        while self.samples.len() > 2 && self.samples[1].0 + RATE_WINDOW <= now {
            self.samples.pop_front();
        }
    }

    /// Seconds since the first sample.
    fn observed_secs(&self, now: Instant) -> f64 {
        self.first.map_or(0.0, |first| {
            now.saturating_duration_since(first).as_secs_f64()
        })
    }

    /// The rates between the oldest and the newest sample; `None` until they
    /// span [`MIN_RATE_SPAN_SECS`].
    fn rates(&self) -> Option<Rates> {
        let (t0, old) = self.samples.front()?;
        let (t1, new) = self.samples.back()?;
        let span = t1.saturating_duration_since(*t0).as_secs_f64();
        if span < MIN_RATE_SPAN_SECS {
            return None;
        }
        let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / span;
        Some(Rates {
            objects_per_sec: per_sec(old.objects_done, new.objects_done),
            sent_bytes_per_sec: per_sec(old.bytes_sent, new.bytes_sent),
            raw_bytes_per_sec: per_sec(old.bytes_done, new.bytes_done),
        })
    }
}

/// Seconds left, or `None` when there is no honest estimate yet: before
/// [`MIN_OBSERVED_SECS`] of upload, or while the bytes left are not moving.
///
/// The bytes left go at the faster of the network rate and the raw rate
/// (compression makes raw bytes go faster than sent ones; the raw rate lags
/// while a big file is in flight). The objects left go at the object rate
/// (which an objects limit or many small files can make the bottleneck).
/// The slower of the two estimates wins; a stalled object rate alone (one
/// big file in flight) does not hide the bytes estimate. Never negative.
pub(crate) fn eta_secs(
    remaining_objects: u64,
    remaining_bytes: u64,
    rates: Option<&Rates>,
    observed_secs: f64,
) -> Option<u64> {
    if remaining_objects == 0 && remaining_bytes == 0 {
        return Some(0);
    }
    if observed_secs.is_nan() || observed_secs < MIN_OBSERVED_SECS {
        return None;
    }
    let rates = rates?;
    let left = |remaining: u64, rate: f64| {
        if remaining == 0 {
            Some(0.0)
        } else if rate > 0.0 && rate.is_finite() {
            Some(remaining as f64 / rate)
        } else {
            None
        }
    };
    let byte_rate = rates.sent_bytes_per_sec.max(rates.raw_bytes_per_sec);
    let by_bytes = left(remaining_bytes, byte_rate)?;
    let secs = match left(remaining_objects, rates.objects_per_sec) {
        Some(by_objects) => by_bytes.max(by_objects),
        // No object finished lately, but bytes are moving: a big file.
        None if remaining_bytes > 0 => by_bytes,
        None => return None,
    };
    (secs.is_finite() && secs <= MAX_ETA_SECS).then(|| secs.ceil() as u64)
}

// ---------------------------------------------------------------- output

/// One JSON progress line (without the newline).
#[derive(Serialize)]
struct JsonLine {
    #[serde(rename = "type")]
    kind: &'static str,
    objects_done: u64,
    objects_total: u64,
    bytes_done: u64,
    bytes_total: u64,
    bytes_per_sec: u64,
    eta_secs: Option<u64>,
}

/// `{"type":"progress","objects_done":..,"objects_total":..,"bytes_done":..,
/// "bytes_total":..,"bytes_per_sec":..,"eta_secs":..|null}`, where
/// `bytes_per_sec` is the network rate (0 while unknown) and the bytes are
/// raw bytes.
pub(crate) fn json_line(snapshot: &Snapshot, rates: Option<&Rates>, eta: Option<u64>) -> String {
    let line = JsonLine {
        kind: "progress",
        objects_done: snapshot.objects_done,
        objects_total: snapshot.objects_total,
        bytes_done: snapshot.bytes_done,
        bytes_total: snapshot.bytes_total,
        bytes_per_sec: rates.map_or(0, |r| r.sent_bytes_per_sec.round() as u64),
        eta_secs: eta,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// The bar's text after the bar itself:
/// `12/340 objects  1.5 MiB/20.0 MiB  300.0 KiB/s  ETA 1m05s`.
pub(crate) fn bar_message(snapshot: &Snapshot, rates: Option<&Rates>, eta: Option<u64>) -> String {
    let rate = rates.map_or_else(
        || "?".to_owned(),
        |r| human_bytes(r.sent_bytes_per_sec.round() as u64),
    );
    let eta = eta.map_or_else(|| "?".to_owned(), human_duration);
    format!(
        "{}/{} objects  {}/{}  {rate}/s  ETA {eta}",
        snapshot.objects_done,
        snapshot.objects_total,
        human_bytes(snapshot.bytes_done),
        human_bytes(snapshot.bytes_total),
    )
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Move up before rounding would print "1024.0".
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration for the ETA: `42s`, `5m07s`, `3h02m`, `2d05h`.
pub(crate) fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn new_bar() -> ProgressBar {
    let style = ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    // Hidden until `set_total` says what to show.
    ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(style)
}

/// Shows `snapshot` on the bar: filled by bytes, or by objects when there
/// are no bytes to send (only directories and symlinks).
fn update_bar(bar: &ProgressBar, snapshot: &Snapshot, rates: Option<&Rates>, eta: Option<u64>) {
    let (pos, len) = if snapshot.bytes_total > 0 {
        (snapshot.bytes_done, snapshot.bytes_total)
    } else {
        (snapshot.objects_done, snapshot.objects_total)
    };
    bar.set_length(len);
    bar.set_position(pos);
    bar.set_message(bar_message(snapshot, rates, eta));
    // indicatif may skip some of the draws above (it limits its rate); the
    // last state must be on screen until the next tick.
    bar.force_draw();
}

/// Shows `snapshot` on a bar whose total is not known: what is done and
/// the rate (`12 objects  1.5 MiB  300.0 KiB/s`), the bar itself empty.
fn update_bar_without_total(bar: &ProgressBar, snapshot: &Snapshot, rates: Option<&Rates>) {
    let rate = rates.map_or_else(
        || "?".to_owned(),
        |r| human_bytes(r.sent_bytes_per_sec.round() as u64),
    );
    bar.unset_length();
    bar.set_message(format!(
        "{} objects  {}  {rate}/s",
        snapshot.objects_done,
        human_bytes(snapshot.bytes_done)
    ));
    bar.force_draw();
}

/// Where JSON lines go.
enum Sink {
    Stdout,
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    /// Writes `line` and a newline as one write, under the stdout lock, so
    /// lines from other threads never interleave with it. Errors (a closed
    /// pipe) are ignored: progress is not worth failing the backup over.
    fn write_line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
            }
            #[cfg(test)]
            Sink::Memory(buffer) => buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&bytes),
        }
    }
}

// ---------------------------------------------------------------- ticker

struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl Ticker {
    fn start(
        mode: Mode,
        counters: Arc<Counters>,
        bar: Option<ProgressBar>,
        sink: Sink,
    ) -> Option<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || run_ticker(mode, &counters, bar.as_ref(), &sink, &signal))
            // Without the thread there is no display; the upload goes on.
            .ok()?;
        Some(Ticker { stop, handle })
    }

    /// Stops the thread after its last update, and waits for it.
    fn stop(self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        let _ = self.handle.join();
    }
}

fn run_ticker(
    mode: Mode,
    counters: &Counters,
    bar: Option<&ProgressBar>,
    sink: &Sink,
    signal: &(Mutex<bool>, Condvar),
) {
    let (stopped, wake) = signal;
    let mut window = RateWindow::default();
    let mut last_line: Option<(Instant, Snapshot)> = None;
    loop {
        let stop = {
            let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
            let (guard, _) = wake
                .wait_timeout_while(guard, TICK, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            *guard
        };
        if !counters.started.load(Ordering::Relaxed) && !stop {
            continue;
        }
        let now = Instant::now();
        let snapshot = counters.snapshot();
        window.push(now, snapshot);
        let rates = window.rates();
        let no_total = counters.no_total.load(Ordering::Relaxed);
        let eta = (!no_total)
            .then(|| {
                eta_secs(
                    snapshot.remaining_objects(),
                    snapshot.remaining_bytes(),
                    rates.as_ref(),
                    window.observed_secs(now),
                )
            })
            .flatten();
        match (mode, bar) {
            (Mode::Bar, Some(bar)) if !stop && no_total => {
                update_bar_without_total(bar, &snapshot, rates.as_ref());
            }
            (Mode::Bar, Some(bar)) if !stop => update_bar(bar, &snapshot, rates.as_ref(), eta),
            (Mode::Json, _) => {
                let due = match last_line {
                    None => true,
                    Some((at, last)) => last != snapshot && now.duration_since(at) >= JSON_EVERY,
                };
                if due || stop {
                    sink.write_line(&json_line(&snapshot, rates.as_ref(), eta));
                    last_line = Some((now, snapshot));
                }
            }
            _ => {}
        }
        if stop {
            return;
        }
    }
}

// ---------------------------------------------------------------- log writer

/// The bar currently on screen, for [`LogWriter`], with its id.
static ACTIVE_BAR: Mutex<Option<(u64, ProgressBar)>> = Mutex::new(None);
static NEXT_BAR_ID: AtomicU64 = AtomicU64::new(1);

fn register_bar(bar: &ProgressBar) -> u64 {
    let id = NEXT_BAR_ID.fetch_add(1, Ordering::Relaxed);
    *ACTIVE_BAR.lock().unwrap_or_else(PoisonError::into_inner) = Some((id, bar.clone()));
    id
}

fn unregister_bar(id: u64) {
    let mut active = ACTIVE_BAR.lock().unwrap_or_else(PoisonError::into_inner);
    if active
        .as_ref()
        .is_some_and(|(active_id, _)| *active_id == id)
    {
        *active = None;
    }
}

/// A `tracing_subscriber` writer to stderr that takes the progress bar (if
/// one is on screen) off while each event is written, so log lines and the
/// bar do not tear each other: `.with_writer(progress::LogWriter)` instead
/// of `.with_writer(std::io::stderr)`. Without a bar it is plain stderr.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine { buffer: Vec::new() }
    }
}

/// One event's output, written to stderr in one piece when flushed or
/// dropped.
#[derive(Debug)]
pub(crate) struct LogLine {
    buffer: Vec<u8>,
}

impl LogLine {
    fn emit(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.buffer);
        let write = || {
            let mut err = io::stderr().lock();
            err.write_all(&bytes).and_then(|()| err.flush())
        };
        let bar = ACTIVE_BAR
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, bar)| bar.clone());
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(objects: (u64, u64), bytes: (u64, u64), sent: u64) -> Snapshot {
        Snapshot {
            objects_done: objects.0,
            objects_total: objects.1,
            bytes_done: bytes.0,
            bytes_total: bytes.1,
            bytes_sent: sent,
        }
    }

    fn rates(objects: f64, sent: f64, raw: f64) -> Rates {
        Rates {
            objects_per_sec: objects,
            sent_bytes_per_sec: sent,
            raw_bytes_per_sec: raw,
        }
    }

    #[test]
    fn mode_choice() {
        assert_eq!(Mode::choose_for(false, false, true), Mode::Bar);
        assert_eq!(Mode::choose_for(false, false, false), Mode::Off);
        assert_eq!(Mode::choose_for(true, false, true), Mode::Off);
        assert_eq!(Mode::choose_for(true, false, false), Mode::Off);
        assert_eq!(Mode::choose_for(true, true, true), Mode::Json);
        assert_eq!(Mode::choose_for(true, true, false), Mode::Json);
        assert_eq!(Mode::choose_for(false, true, true), Mode::Json);
    }

    #[test]
    fn eta_waits_for_a_few_seconds_of_data() {
        let r = rates(1.0, 1000.0, 1000.0);
        assert_eq!(eta_secs(10, 10_000, Some(&r), 0.0), None);
        assert_eq!(eta_secs(10, 10_000, Some(&r), 2.9), None);
        assert_eq!(eta_secs(10, 10_000, None, 60.0), None);
        assert_eq!(eta_secs(10, 10_000, Some(&r), f64::NAN), None);
        assert_eq!(eta_secs(10, 10_000, Some(&r), 3.0), Some(10));
    }

    #[test]
    fn eta_is_zero_when_nothing_remains() {
        assert_eq!(eta_secs(0, 0, None, 0.0), Some(0));
    }

    #[test]
    fn eta_from_bytes() {
        // 1 MiB left at 100 KiB/s sent: 11 s (10.24 rounded up).
        let r = rates(100.0, 100.0 * 1024.0, 0.0);
        assert_eq!(eta_secs(1, 1 << 20, Some(&r), 10.0), Some(11));
        // Compression: raw bytes finish faster than they are sent.
        let r = rates(100.0, 100.0 * 1024.0, 400.0 * 1024.0);
        assert_eq!(eta_secs(1, 1 << 20, Some(&r), 10.0), Some(3));
    }

    #[test]
    fn eta_slower_of_objects_and_bytes() {
        // Bytes would take 1 s, but 100 objects at 1/s take 100 s.
        let r = rates(1.0, 1000.0, 1000.0);
        assert_eq!(eta_secs(100, 1000, Some(&r), 10.0), Some(100));
        // Only directories left.
        assert_eq!(eta_secs(5, 0, Some(&r), 10.0), Some(5));
    }

    #[test]
    fn eta_with_stalls() {
        // One big file in flight: no object finished lately, bytes moving.
        let r = rates(0.0, 1000.0, 0.0);
        assert_eq!(eta_secs(1, 5000, Some(&r), 10.0), Some(5));
        // Nothing moving at all: no estimate, rather than "forever".
        let r = rates(0.0, 0.0, 0.0);
        assert_eq!(eta_secs(1, 5000, Some(&r), 10.0), None);
        assert_eq!(eta_secs(3, 0, Some(&r), 10.0), None);
        // Objects moving but no bytes while bytes remain: no estimate.
        let r = rates(2.0, 0.0, 0.0);
        assert_eq!(eta_secs(3, 10, Some(&r), 10.0), None);
        // Absurdly slow: no estimate.
        let r = rates(1.0, 1e-9, 0.0);
        assert_eq!(eta_secs(1, 1 << 40, Some(&r), 10.0), None);
    }

    #[test]
    fn rate_window() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut w = RateWindow::default();
        w.push(at(0.0), snapshot((0, 10), (0, 1000), 0));
        assert_eq!(w.rates(), None);
        w.push(at(0.5), snapshot((1, 10), (100, 1000), 50));
        assert_eq!(w.rates(), None, "less than a second of samples");
        w.push(at(2.0), snapshot((4, 10), (400, 1000), 200));
        assert_eq!(w.rates(), Some(rates(2.0, 100.0, 200.0)));
        assert_eq!(w.observed_secs(at(2.0)), 2.0);
        // Old samples leave the window: the rate follows the recent past.
        for i in 3..=100 {
            w.push(
                at(i as f64),
                snapshot((4, 10), (400, 1000), 200 + (i - 2) * 10),
            );
        }
        let r = w.rates().expect("rates");
        assert!((r.sent_bytes_per_sec - 10.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.objects_per_sec, 0.0);
        assert!(w.samples.len() <= 32, "{}", w.samples.len());
        assert_eq!(w.observed_secs(at(100.0)), 100.0);
    }

    #[test]
    fn json_line_shape() {
        let s = snapshot((3, 10), (2048, 1 << 20), 1000);
        let line = json_line(&s, Some(&rates(1.0, 1234.4, 0.0)), Some(42));
        assert_eq!(
            line,
            r#"{"type":"progress","objects_done":3,"objects_total":10,"bytes_done":2048,"bytes_total":1048576,"bytes_per_sec":1234,"eta_secs":42}"#
        );
        let line = json_line(&s, None, None);
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["type"], "progress");
        assert_eq!(value["bytes_per_sec"], 0);
        assert!(value["eta_secs"].is_null());
        assert!(!line.contains('\n'));
    }

    #[test]
    fn bar_message_shape() {
        let s = snapshot((12, 340), (1536 * 1024, 20 << 20), 0);
        assert_eq!(
            bar_message(&s, Some(&rates(1.0, 300.0 * 1024.0, 0.0)), Some(65)),
            "12/340 objects  1.5 MiB/20.0 MiB  300.0 KiB/s  ETA 1m05s"
        );
        assert_eq!(
            bar_message(&s, None, None),
            "12/340 objects  1.5 MiB/20.0 MiB  ?/s  ETA ?"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes((1 << 20) - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(65), "1m05s");
        assert_eq!(human_duration(3 * 3600 + 120), "3h02m");
        assert_eq!(human_duration(2 * 86400 + 5 * 3600 + 7), "2d05h");
    }

    #[test]
    fn bytes_count_while_they_are_sent() {
        let p = Progress::new(Mode::Off);
        p.set_total(1, 1000);
        p.sending(300);
        assert_eq!(p.counters.snapshot().bytes_done, 300);
        p.sending(300);
        assert_eq!(p.counters.snapshot().bytes_done, 600);
        // The upload ends: the object counts instead.
        p.unsend(600);
        p.object_done(1000);
        assert_eq!(p.counters.snapshot().bytes_done, 1000);
        p.unsend(5);
        assert_eq!(p.counters.snapshot().bytes_done, 1000);
        p.finish();
    }

    #[test]
    fn totals_shrink_and_clamp() {
        let p = Progress::new(Mode::Off);
        p.set_total(10, 1000);
        p.shrink_total(3, 400);
        p.object_done(100);
        p.bytes_sent(50);
        assert_eq!(p.counters.snapshot(), snapshot((1, 7), (100, 600), 50));
        // Shrinking below zero, or below what is done, stays sane.
        p.shrink_total(100, 10_000);
        assert_eq!(p.counters.snapshot(), snapshot((1, 1), (100, 100), 50));
        p.finish();
    }

    #[test]
    fn off_mode_draws_nothing_and_runs_no_thread() {
        let p = Progress::new(Mode::Off);
        assert!(!p.has_bar());
        assert!(p.ticker.lock().expect("lock").is_none());
        p.set_total(1, 1);
        p.object_done(1);
        p.finish();
        p.finish();
    }

    #[test]
    fn json_mode_writes_whole_lines_to_its_sink_only() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let p = Arc::new(Progress::with_sink(
            Mode::Json,
            Sink::Memory(Arc::clone(&buffer)),
        ));
        assert!(!p.has_bar(), "json mode must not touch the terminal");
        p.set_total(100, 100 * 1000);
        let start = Instant::now();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let p = Arc::clone(&p);
                thread::spawn(move || {
                    while start.elapsed() < Duration::from_millis(1600) {
                        p.bytes_sent(10);
                        thread::sleep(Duration::from_millis(5));
                    }
                    for _ in 0..5 {
                        p.object_done(1000);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker");
        }
        p.finish();
        p.finish(); // the final line is written once
        let text = String::from_utf8(buffer.lock().expect("lock").clone()).expect("utf-8");
        assert!(text.ends_with('\n'));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect(line))
            .collect();
        // A first line once started, the final one, and at most about one a
        // second in between (the run took at least 1.6 s; on a slow machine
        // it may take longer, hence the generous bound).
        let elapsed = start.elapsed().as_secs_f64();
        assert!(lines.len() >= 2, "{text}");
        assert!(
            lines.len() as f64 <= elapsed / JSON_EVERY.as_secs_f64() + 2.0,
            "{} lines in {elapsed}s:\n{text}",
            lines.len()
        );
        let last = lines.last().expect("final line");
        assert_eq!(last["type"], "progress");
        assert_eq!(last["objects_done"], 20);
        assert_eq!(last["objects_total"], 100);
        assert_eq!(last["bytes_done"], 20_000);
        assert_eq!(last["bytes_total"], 100_000);
        for key in ["bytes_per_sec", "eta_secs"] {
            assert!(last.get(key).is_some(), "{key} missing: {last}");
        }
    }

    /// Without a total (a restore of part of a backup) what is done is
    /// shown, and never an ETA, not even "0s" at the end.
    #[test]
    fn without_a_total_there_is_no_eta() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let p = Progress::with_sink(Mode::Json, Sink::Memory(Arc::clone(&buffer)));
        p.start_without_total();
        for _ in 0..3 {
            p.object_done(7);
        }
        p.finish();
        let text = String::from_utf8(buffer.lock().expect("lock").clone()).expect("utf-8");
        let last: serde_json::Value =
            serde_json::from_str(text.lines().last().expect("a line")).expect("json");
        assert_eq!(
            (last["objects_done"].as_u64(), last["bytes_done"].as_u64()),
            (Some(3), Some(21))
        );
        assert!(last["eta_secs"].is_null(), "{last}");
    }

    #[test]
    fn json_mode_is_silent_before_the_total_is_known() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let p = Progress::with_sink(Mode::Json, Sink::Memory(Arc::clone(&buffer)));
        thread::sleep(TICK * 3);
        assert!(buffer.lock().expect("lock").is_empty());
        drop(p); // finishing writes the final line
        assert_eq!(
            buffer
                .lock()
                .expect("lock")
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            1
        );
    }

    #[test]
    fn progress_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Progress>();
    }

    #[test]
    fn log_writer_without_a_bar_writes_through() {
        use tracing_subscriber::fmt::MakeWriter;
        let mut line = LogWriter.make_writer();
        line.write_all(b"").expect("write");
        line.flush().expect("flush");
    }
}
