//! What the upload threads do: the slow work (reading and hashing files,
//! compressing them, talking to the gateway), never the bookkeeping. Each
//! job comes back to the coordinator as a [`Done`], which alone touches the
//! cache and the directories being assembled.

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::encode::{Encoder, Encoding, Prepared};
use crate::progress::Progress;
use crate::ratelimit::Limits;
use crate::storage::native::Pass;
use crate::tahoe::{Cap, CheckOptions, CheckReport, Client, TahoeError};

pub(super) type JobId = u64;

pub(super) enum Job {
    /// Read (and hash, and maybe compress) a file.
    Prepare {
        id: JobId,
        /// Opened by the coordinator relative to the source root, without
        /// following links.
        file: File,
        decision: Option<Encoding>,
    },
    /// Upload a prepared file.
    Upload { id: JobId, prepared: Arc<Prepared> },
    /// Upload bytes held in memory (a symlink's target).
    UploadBytes { id: JobId, data: Arc<Vec<u8>> },
    /// Create an immutable directory.
    Mkdir { id: JobId, body: Arc<String> },
    /// Check an object (renewing its lease) before it is reused.
    Check { id: JobId, cap: Cap },
}

/// Why an upload did not produce a cap.
pub(super) enum Failure {
    /// This object alone cannot go up (its file changed or vanished while
    /// it was read, or the grid refuses its content while it accepts a
    /// fresh probe); the run goes on without it.
    Skip(String),
    /// The grid or the gateway cannot take anything: the run stops.
    GridDown(String),
    /// Another error from the gateway, after retries.
    Tahoe(TahoeError),
}

pub(super) enum Done {
    Prepared {
        id: JobId,
        result: io::Result<Prepared>,
    },
    Uploaded {
        id: JobId,
        result: Result<Cap, Failure>,
    },
    Checked {
        id: JobId,
        result: Result<CheckReport, TahoeError>,
    },
    /// The job panicked (a bug): the coordinator stops the run, rather than
    /// wait forever for an answer that will not come.
    Panicked,
}

/// What every worker shares.
pub(super) struct Shared<'a> {
    pub client: &'a Client,
    pub encoder: &'a Encoder,
    pub limits: Limits,
    pub progress: Arc<Progress>,
}

/// Tells the progress display about bytes as they go to the gateway.
struct Counted<R> {
    inner: R,
    progress: Arc<Progress>,
    /// This upload's bytes counted by `Progress::sending`, so they can be
    /// taken back when the attempt starts over or the upload ends.
    in_flight: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes_sent(n as u64);
        self.progress.sending(n as u64);
        self.in_flight.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Runs jobs until the job channel closes.
pub(super) fn work(shared: &Shared<'_>, jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>) {
    loop {
        // Hold the lock only to take a job, not while doing it.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::test_panic("upload-worker");
            run(shared, job)
        }))
        .unwrap_or(Done::Panicked);
        if done.send(result).is_err() {
            return;
        }
    }
}

fn run(shared: &Shared<'_>, job: Job) -> Done {
    match job {
        Job::Prepare { id, file, decision } => Done::Prepared {
            id,
            result: shared.encoder.prepare_file(file, decision),
        },
        Job::Upload { id, prepared } => {
            shared.limits.before_object();
            let limits = shared.limits.clone();
            let in_flight = Arc::new(AtomicU64::new(0));
            // The client routes the object (`destination.storage`): in
            // native mode it reads the body twice, and only the read that
            // sends it (each gateway try, the native second pass) goes
            // through the rate limit and the progress count.
            let result = upload_or_wait(shared, || {
                shared
                    .client
                    .upload_sized(prepared.body_size, |pass| match pass {
                        Pass::Key => prepared.open(),
                        Pass::Send => {
                            // A new attempt sends from the first byte again.
                            shared.progress.unsend(in_flight.swap(0, Ordering::Relaxed));
                            Ok(Box::new(Counted {
                                inner: limits.limit_reader(prepared.open()?),
                                progress: Arc::clone(&shared.progress),
                                in_flight: Arc::clone(&in_flight),
                            }))
                        }
                    })
            });
            // The coordinator counts the finished object.
            shared.progress.unsend(in_flight.swap(0, Ordering::Relaxed));
            Done::Uploaded { id, result }
        }
        Job::UploadBytes { id, data } => {
            shared.limits.before_object();
            let limits = shared.limits.clone();
            let result = upload_or_wait(shared, || {
                shared.client.upload_sized(
                    data.len() as u64,
                    |pass| -> io::Result<Box<dyn Read + Send>> {
                        let body = io::Cursor::new(data.as_ref().clone());
                        Ok(match pass {
                            Pass::Key => Box::new(body),
                            Pass::Send => Box::new(limits.limit_reader(body)),
                        })
                    },
                )
            });
            Done::Uploaded { id, result }
        }
        Job::Mkdir { id, body } => {
            shared.limits.before_object();
            let result = upload_or_wait(shared, || shared.client.mkdir_immutable(&body));
            Done::Uploaded { id, result }
        }
        Job::Check { id, cap } => Done::Checked {
            id,
            result: shared.client.check(
                &cap,
                CheckOptions {
                    add_lease: true,
                    ..CheckOptions::default()
                },
            ),
        },
    }
}

/// How long to wait before trying again an upload whose content the grid
/// refuses while it accepts other objects. Another upload of the same bytes
/// may be under way (a backup of the same files running at the same time,
/// through this or another gateway): its shares are "in progress" on the
/// servers until it finishes, seconds later, and then this upload finds
/// them in place.
const BLOCKED_WAITS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// Runs `upload` (with the client's own retries), and when the grid refuses
/// just this content, waits and tries again ([`BLOCKED_WAITS`]) before
/// giving up on the object.
fn upload_or_wait(
    shared: &Shared<'_>,
    mut upload: impl FnMut() -> Result<Cap, TahoeError>,
) -> Result<Cap, Failure> {
    let mut waits = BLOCKED_WAITS.iter();
    loop {
        let err = match upload() {
            Ok(cap) => return Ok(cap),
            Err(err) => err,
        };
        match classify(shared, err) {
            Classified::Blocked(why) => match waits.next() {
                Some(wait) => {
                    tracing::debug!(
                        "the grid refused an object while it accepts others; trying again in {} s",
                        wait.as_secs()
                    );
                    std::thread::sleep(*wait);
                }
                None => return Err(Failure::Skip(why)),
            },
            Classified::Final(failure) => return Err(failure),
        }
    }
}

enum Classified {
    /// The grid refuses this content but accepts a fresh probe.
    Blocked(String),
    Final(Failure),
}

/// Decides what a failed upload means.
fn classify(shared: &Shared<'_>, err: TahoeError) -> Classified {
    if let TahoeError::Native(why) = err {
        // `destination.native.required` and the native path failed: the
        // run stops, as when the grid cannot store objects.
        return Classified::Final(Failure::GridDown(why));
    }
    if let TahoeError::Body(e) = &err {
        return Classified::Final(Failure::Skip(format!(
            "could not be read while it was uploaded ({e})"
        )));
    }
    if err.is_unhappy() {
        // Either the grid cannot place shares at all, or this content is
        // blocked: another upload of the same bytes is in progress, or an
        // interrupted one left partial shares (servers drop those within
        // 30 minutes). A fresh random probe tells the two apart.
        return match shared.client.upload_bytes(&random_probe()) {
            Ok(_) => Classified::Blocked(
                "the grid refused this object's shares although it accepts others \
                 (another upload of the same content was in progress, or an interrupted \
                 one left partial shares, which servers drop within 30 minutes)"
                    .into(),
            ),
            Err(probe) => Classified::Final(Failure::GridDown(format!(
                "the grid cannot store new objects ({probe}); the first refusal was: {err}"
            ))),
        };
    }
    Classified::Final(Failure::Tahoe(err))
}

/// 1 KiB of random bytes: above the literal-cap threshold, so uploading it
/// really places shares, and unique, so it never collides with anything.
pub(crate) fn random_probe() -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        // Unique enough without /dev/urandom: the time and the pid, hashed.
        let seed = format!("{:?} {}", SystemTime::now(), std::process::id());
        let mut hasher = blake3::Hasher::new();
        hasher.update(seed.as_bytes());
        hasher.finalize_xof().fill(&mut buf);
    }
    buf
}
