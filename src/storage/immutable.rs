//! Immutable (CHK) objects stored and fetched natively: share placement
//! over the permuted servers, the happiness check, upload through a
//! [`ShareSink`] that sends each share to its server in chunks, abort on
//! failure, download from the shares the servers list, and lease renewal.
//!
//! Lease secrets are derived as Tahoe 1.20 derives them (`client.py`
//! `SecretHolder`, `immutable/upload.py`, `util/hashutil.py`), so a lease the
//! native client adds is the gateway's own lease, renewed by either:
//!
//! ```text
//! client_renew  = tagged_hash(tag=lease_secret, val="allmydata_client_renewal_secret_v1")
//! file_renew    = tagged_pair_hash("allmydata_file_renewal_secret_v1", client_renew, SI)
//! bucket_renew  = tagged_pair_hash("allmydata_bucket_renewal_secret_v1", file_renew, tubid)
//! ```
//!
//! (and the same with `cancel`). `lease_secret` is `private/secret`
//! base32-decoded; Tahoe passes it as the *tag* of the first hash (its
//! `my_renewal_secret_hash` calls `tagged_hash(my_secret, TAG)`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
#[cfg(test)]
use std::path::Path;
use std::sync::Arc;

use super::StorageError;
use super::client::{LeaseSecrets, StorageClient, current_deadline, with_deadline};
use super::nurl::{Server, permuted};
#[cfg(test)]
use crate::chk::cap::ChkCap;
use crate::chk::cap::lit_uri;
use crate::chk::decode::ShareSource;
#[cfg(test)]
use crate::chk::decode::decode;
use crate::chk::encode::{Encoder, Plan, ShareSink, convergence_key};
use crate::chk::hash::{storage_index, tagged_hash, tagged_pair_hash};
use crate::chk::{ChkError, LIT_THRESHOLD, Params};
use crate::tahoe::base32;

/// How much of one share is sent per `PATCH` (Tahoe's client sends a
/// block at a time; bigger chunks mean fewer round trips).
const CHUNK: usize = 1024 * 1024;

/// The node's lease secret (`private/secret`, base32 text).
#[derive(Clone)]
pub(crate) struct LeaseSecret([u8; 32]);

impl std::fmt::Debug for LeaseSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseSecret(<secret>)")
    }
}

impl LeaseSecret {
    /// Reads `private/secret` (or a copy of it).
    #[cfg(test)]
    pub(crate) fn read(path: &Path) -> Result<LeaseSecret, StorageError> {
        let err = |what: String| StorageError::Servers {
            path: path.display().to_string(),
            what,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        LeaseSecret::parse(&text).ok_or_else(|| {
            err("not a lease secret (32 bytes in base32, as Tahoe writes it)".into())
        })
    }

    /// Parses the base32 text of a lease secret.
    pub(crate) fn parse(text: &str) -> Option<LeaseSecret> {
        let bytes = base32::decode(text.trim())?;
        <[u8; 32]>::try_from(bytes).ok().map(LeaseSecret)
    }

    /// The lease secrets of `si` on the server with lease seed `seed`.
    pub(crate) fn for_bucket(&self, si: &[u8; 16], seed: &[u8; 20]) -> LeaseSecrets {
        let client_renew = tagged_hash(&self.0, b"allmydata_client_renewal_secret_v1");
        let client_cancel = tagged_hash(&self.0, b"allmydata_client_cancel_secret_v1");
        let file_renew = tagged_pair_hash(b"allmydata_file_renewal_secret_v1", &client_renew, si);
        let file_cancel = tagged_pair_hash(b"allmydata_file_cancel_secret_v1", &client_cancel, si);
        LeaseSecrets {
            renew: tagged_pair_hash(b"allmydata_bucket_renewal_secret_v1", &file_renew, seed),
            cancel: tagged_pair_hash(b"allmydata_bucket_cancel_secret_v1", &file_cancel, seed),
        }
    }
}

/// 32 random bytes (the upload secret: "just a random byte string").
pub(crate) fn random_secret() -> Result<[u8; 32], StorageError> {
    let mut out = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(|e| StorageError::Servers {
            path: "/dev/urandom".into(),
            what: e.to_string(),
        })?;
    Ok(out)
}

/// The size of the largest matching of shares to servers: Tahoe's
/// "servers of happiness" (`happinessutil.servers_of_happiness`).
pub(crate) fn happiness(placement: &BTreeMap<u16, BTreeSet<usize>>) -> usize {
    // Kuhn's augmenting paths; N ≤ 256 shares, a few servers.
    fn augment(
        share: u16,
        placement: &BTreeMap<u16, BTreeSet<usize>>,
        seen: &mut BTreeSet<usize>,
        owner: &mut BTreeMap<usize, u16>,
    ) -> bool {
        for &server in placement.get(&share).into_iter().flatten() {
            if seen.insert(server) {
                let free = match owner.get(&server) {
                    None => true,
                    Some(&other) => augment(other, placement, seen, owner),
                };
                if free {
                    owner.insert(server, share);
                    return true;
                }
            }
        }
        false
    }
    let mut owner = BTreeMap::new();
    placement
        .keys()
        .filter(|&&share| augment(share, placement, &mut BTreeSet::new(), &mut owner))
        .count()
}

/// What an upload needs: the servers, the encoding, the secrets.
pub(crate) struct Uploader {
    /// The servers to place shares on.
    pub(crate) servers: Vec<Server>,
    /// k and N (and the segment size).
    pub(crate) params: Params,
    /// The happiness required (`shares.happy`).
    pub(crate) happy: usize,
    /// The convergence secret (`private/convergence`).
    pub(crate) convergence: Vec<u8>,
    /// The lease secret (`private/secret`).
    pub(crate) lease: LeaseSecret,
}

/// Where each share went.
#[derive(Debug)]
pub(crate) struct Uploaded {
    /// The cap (`URI:CHK:` or `URI:LIT:`). Secret: never log it.
    pub(crate) cap: String,
    /// Share number → servers (labels) holding it after the upload.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) placement: BTreeMap<u16, BTreeSet<String>>,
    /// The happiness achieved.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) happiness: usize,
}

/// One share being written: its server and the bytes not yet sent.
struct Pending {
    server: usize,
    next_offset: u64,
    buffer: Vec<u8>,
    done: bool,
}

/// The sink that sends shares to their servers. A server that fails is
/// recorded in `failed` and its shares are dropped for the rest of the pass
/// (the encoder goes on for the others); the upload then re-places them.
struct PlacingSink<'a> {
    clients: &'a [Arc<StorageClient>],
    si: [u8; 16],
    upload_secret: [u8; 32],
    /// Shares to write in this pass (others are complete or already held).
    pending: BTreeMap<u16, Pending>,
    /// Servers that failed in this pass, with the first error of each.
    failed: BTreeMap<usize, StorageError>,
}

impl PlacingSink<'_> {
    /// Sends what share `shnum` has buffered; a failure marks its server.
    fn flush(&mut self, shnum: u16) {
        let Some(p) = self.pending.get_mut(&shnum) else {
            return;
        };
        if p.buffer.is_empty() || self.failed.contains_key(&p.server) {
            p.buffer.clear();
            return;
        }
        let client = &self.clients[p.server];
        match client.write_chunk(
            &self.si,
            shnum,
            &self.upload_secret,
            p.next_offset,
            &p.buffer,
        ) {
            Ok(complete) => {
                p.next_offset += p.buffer.len() as u64;
                p.buffer.clear();
                p.done = complete;
                #[cfg(test)]
                test_hook::after_chunk(client.label());
            }
            Err(e) => {
                p.buffer.clear();
                self.failed.insert(p.server, e);
            }
        }
    }
}

impl PlacingSink<'_> {
    /// Sends what every share has buffered, the shares' requests at once:
    /// a small object is one request per share, and sending them one after
    /// the other would make every upload wait for N round trips.
    fn flush_all(&mut self) {
        let (clients, si, secret) = (self.clients, self.si, self.upload_secret);
        let failed = &self.failed;
        let mut jobs: Vec<(u16, &mut Pending)> = self
            .pending
            .iter_mut()
            .filter(|(_, p)| !p.buffer.is_empty() && !failed.contains_key(&p.server))
            .map(|(&shnum, p)| (shnum, p))
            .collect();
        let deadline = current_deadline();
        let results: Vec<Result<bool, StorageError>> = std::thread::scope(|scope| {
            let running: Vec<_> = jobs
                .iter()
                .map(|(shnum, p)| {
                    let client = &clients[p.server];
                    let (shnum, offset, buffer) = (*shnum, p.next_offset, &p.buffer[..]);
                    scope.spawn(move || {
                        with_deadline(deadline, || {
                            client.write_chunk(&si, shnum, &secret, offset, buffer)
                        })
                    })
                })
                .collect();
            running
                .into_iter()
                .zip(&jobs)
                .map(|(thread, (_, p))| {
                    thread.join().unwrap_or_else(|_| {
                        Err(StorageError::Network {
                            server: clients[p.server].label().to_owned(),
                            what: "internal error: a request thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut newly_failed = Vec::new();
        for ((_, p), result) in jobs.iter_mut().zip(results) {
            match result {
                Ok(complete) => {
                    p.next_offset += p.buffer.len() as u64;
                    p.buffer.clear();
                    p.done = complete;
                    #[cfg(test)]
                    test_hook::after_chunk(clients[p.server].label());
                }
                Err(e) => {
                    p.buffer.clear();
                    newly_failed.push((p.server, e));
                }
            }
        }
        for (server, e) in newly_failed {
            self.failed.entry(server).or_insert(e);
        }
    }
}

impl ShareSink for PlacingSink<'_> {
    fn write(&mut self, shnum: u16, offset: u64, data: &[u8]) -> Result<(), ChkError> {
        let Some(p) = self.pending.get_mut(&shnum) else {
            return Ok(()); // already on a server, or not written in this pass
        };
        if self.failed.contains_key(&p.server) {
            return Ok(()); // lost with its server: re-placed after this pass
        }
        if offset != p.next_offset + p.buffer.len() as u64 {
            return Err(ChkError::Params("share written out of order".into()));
        }
        p.buffer.extend_from_slice(data);
        if p.buffer.len() >= CHUNK {
            self.flush(shnum);
        }
        Ok(())
    }
}

/// A test hook called after every chunk a server accepted (with the
/// server's label), on the uploading thread: the fault tests kill a real
/// storage node there, mid-upload.
#[cfg(test)]
pub(crate) mod test_hook {
    use std::cell::RefCell;

    type Hook = Box<dyn FnMut(&str)>;

    thread_local! {
        static AFTER_CHUNK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Sets (or with `None` clears) this thread's hook.
    pub(crate) fn set_after_chunk(hook: Option<Hook>) {
        AFTER_CHUNK.with(|h| *h.borrow_mut() = hook);
    }

    pub(super) fn after_chunk(label: &str) {
        // Taken out while it runs, so a hook may upload again.
        let hook = AFTER_CHUNK.with(|h| h.borrow_mut().take());
        if let Some(mut hook) = hook {
            hook(label);
            AFTER_CHUNK.with(|h| {
                let mut slot = h.borrow_mut();
                if slot.is_none() {
                    *slot = Some(hook);
                }
            });
        }
    }
}

/// Where the shares of one upload are, as it goes: Tahoe's `upload.py`
/// keeps the same books (servers that took shares, servers that failed,
/// shares still homeless).
struct Books {
    /// Servers that can be asked (answered `version` with room), in
    /// permuted order.
    writable: Vec<usize>,
    /// Servers that failed (allocation or a chunk): never asked again.
    failed: BTreeSet<usize>,
    /// (share, server) pairs that refused or failed: not asked again.
    refused: BTreeSet<(u16, usize)>,
    /// Share → servers that hold it complete (`already-have`, or written).
    held: BTreeMap<u16, BTreeSet<usize>>,
    /// Buckets allocated for this upload and not yet complete.
    allocated: BTreeMap<u16, usize>,
    /// Why servers were left out, for the unhappiness message.
    why: Vec<String>,
}

impl Books {
    /// The shares placed so far (held or allocated), share → servers.
    fn placement(&self) -> BTreeMap<u16, BTreeSet<usize>> {
        let mut out = self.held.clone();
        for (&share, &server) in &self.allocated {
            out.entry(share).or_default().insert(server);
        }
        out
    }

    /// Places every share not yet held nor allocated: each to the live
    /// server with the fewest shares of this upload that has not refused
    /// it (ties in permuted order, so a first placement is Tahoe-like round
    /// robin: share i on the (i mod W)-th writable server), one `allocate`
    /// per server, again until nothing more can be placed.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        n: u16,
        clients: &[Arc<StorageClient>],
        order: &[&Server],
        si: &[u8; 16],
        lease: &LeaseSecret,
        upload_secret: &[u8; 32],
        share_size: u64,
    ) {
        loop {
            let mut load: BTreeMap<usize, usize> = self
                .writable
                .iter()
                .filter(|s| !self.failed.contains(s))
                .map(|&s| (s, 0))
                .collect();
            for servers in self.placement().values() {
                for s in servers {
                    if let Some(l) = load.get_mut(s) {
                        *l += 1;
                    }
                }
            }
            let mut wanted: BTreeMap<usize, BTreeSet<u16>> = BTreeMap::new();
            for share in 0..n {
                if self.held.contains_key(&share) || self.allocated.contains_key(&share) {
                    continue;
                }
                let best = self
                    .writable
                    .iter()
                    .filter(|&&s| load.contains_key(&s) && !self.refused.contains(&(share, s)))
                    .min_by_key(|&&s| load[&s]);
                if let Some(&server) = best {
                    *load.entry(server).or_default() += 1;
                    wanted.entry(server).or_default().insert(share);
                }
            }
            if wanted.is_empty() {
                return;
            }
            // One `allocate` per server, all at once (each is a round trip).
            let deadline = current_deadline();
            let answers: Vec<(usize, BTreeSet<u16>, Result<_, StorageError>)> =
                std::thread::scope(|scope| {
                    let running: Vec<_> = wanted
                        .into_iter()
                        .map(|(server, shares)| {
                            let lease = lease.for_bucket(si, &order[server].lease_seed);
                            let client = &clients[server];
                            let thread = scope.spawn(move || {
                                with_deadline(deadline, || {
                                    client.allocate(si, &lease, upload_secret, &shares, share_size)
                                })
                                .map(|a| (a, shares))
                            });
                            (server, thread)
                        })
                        .collect();
                    running
                        .into_iter()
                        .map(|(server, thread)| {
                            let panicked = || StorageError::Network {
                                server: clients[server].label().to_owned(),
                                what: "internal error: a request thread panicked".into(),
                            };
                            match thread.join().unwrap_or_else(|_| Err(panicked())) {
                                Ok((a, shares)) => (server, shares, Ok(a)),
                                Err(e) => (server, BTreeSet::new(), Err(e)),
                            }
                        })
                        .collect()
                });
            for (server, shares, answer) in answers {
                match answer {
                    Ok(a) => {
                        for &s in &shares {
                            if a.already_have.contains(&s) {
                                self.held.entry(s).or_default().insert(server);
                            } else if a.allocated.contains(&s) {
                                self.allocated.insert(s, server);
                            } else {
                                // Neither: the server will not take it.
                                self.refused.insert((s, server));
                            }
                        }
                    }
                    Err(e) => self.fail(server, e, clients, si, upload_secret),
                }
            }
        }
    }

    /// Server `server` failed: its shares (allocated, even complete ones:
    /// a dead server holds nothing we can count on) must be placed again.
    /// Its open buckets are aborted, best effort, if it still answered (a
    /// server that failed with an HTTP error frees the space; one that is
    /// unreachable keeps nothing incomplete, and asking it again would only
    /// wait for the retries).
    fn fail(
        &mut self,
        server: usize,
        err: StorageError,
        clients: &[Arc<StorageClient>],
        si: &[u8; 16],
        upload_secret: &[u8; 32],
    ) {
        let reachable = !matches!(err, StorageError::Network { .. });
        self.why.push(err.to_string());
        self.failed.insert(server);
        let lost: Vec<u16> = self
            .allocated
            .iter()
            .filter(|&(_, &s)| s == server)
            .map(|(&share, _)| share)
            .collect();
        for share in lost {
            self.allocated.remove(&share);
            if reachable {
                let _ = clients[server].abort(si, share, upload_secret);
            }
        }
        for servers in self.held.values_mut() {
            servers.remove(&server);
        }
        self.held.retain(|_, servers| !servers.is_empty());
    }

    /// Aborts every open bucket (the upload is given up).
    fn abort_all(&self, clients: &[Arc<StorageClient>], si: &[u8; 16], upload_secret: &[u8; 32]) {
        for (&share, &server) in &self.allocated {
            if !self.failed.contains(&server) {
                // Best effort: a server that is gone keeps nothing it did
                // not complete.
                let _ = clients[server].abort(si, share, upload_secret);
            }
        }
    }
}

impl Uploader {
    /// Uploads `size` bytes read from `reader` (read twice: the convergence
    /// key, then the encoding; a change between them fails the upload).
    ///
    /// A server that fails (at allocation or mid-upload) is dropped, its
    /// open buckets aborted, and its shares placed on the other servers;
    /// the shares re-placed after a mid-upload failure are encoded again in
    /// another pass over the file (only those are sent). When the servers
    /// left cannot reach `happy`, every bucket is aborted and the error is
    /// [`UploadError::Unhappy`], naming the failures.
    pub(crate) fn upload<R: Read + Seek>(
        &self,
        reader: &mut R,
        size: u64,
    ) -> Result<Uploaded, UploadError> {
        if size <= LIT_THRESHOLD {
            let mut data = Vec::new();
            reader
                .take(size + 1)
                .read_to_end(&mut data)
                .map_err(|e| UploadError::Chk(ChkError::io("read", e)))?;
            if data.len() as u64 != size {
                return Err(UploadError::Chk(ChkError::Changed("size".into())));
            }
            let cap = lit_uri(&data).ok_or(UploadError::Chk(ChkError::Params("LIT".into())))?;
            return Ok(Uploaded {
                cap,
                placement: BTreeMap::new(),
                happiness: 0,
            });
        }
        let key = convergence_key(reader, size, &self.params, &self.convergence)?;
        let plan = Plan::new(self.params, size)?;
        let share_size = plan.share_size;
        let si = storage_index(&key);
        let (order, clients) = permuted_clients(&self.servers, &si)?;
        // Writable servers: those that answer and have room for a share.
        let mut books = Books {
            writable: Vec::new(),
            failed: BTreeSet::new(),
            refused: BTreeSet::new(),
            held: BTreeMap::new(),
            allocated: BTreeMap::new(),
            why: Vec::new(),
        };
        for (i, client) in clients.iter().enumerate() {
            match client.version_cached() {
                Ok(v)
                    if v.maximum_immutable_share_size >= share_size
                        && v.available_space >= share_size =>
                {
                    books.writable.push(i);
                }
                Ok(_) => books.why.push(format!("{}: full", client.label())),
                Err(e) => books.why.push(e.to_string()),
            }
        }
        let upload_secret = random_secret()?;
        let unhappy = |books: &Books, got: usize| {
            if books.why.is_empty() && !books.refused.is_empty() {
                // No server failed: they refused shares they do not hold,
                // i.e. another upload of the same content has them in
                // progress (Tahoe's storage server answers neither
                // "allocated" nor "already have" for those).
                UploadError::Blocked {
                    happiness: got,
                    needed: self.happy,
                }
            } else {
                UploadError::Unhappy {
                    happiness: got,
                    needed: self.happy,
                    detail: books.why.join("; "),
                }
            }
        };
        let encoder = Encoder::new(plan, key)?;
        let mut cap = None;
        // Each pass after which the loop goes on lost at least one server:
        // at most one per server, one that completes, one that finds
        // nothing left to place.
        for _ in 0..clients.len() + 2 {
            books.place(
                self.params.n,
                &clients,
                &order,
                &si,
                &self.lease,
                &upload_secret,
                share_size,
            );
            let got = happiness(&books.placement());
            if got < self.happy {
                books.abort_all(&clients, &si, &upload_secret);
                return Err(unhappy(&books, got));
            }
            if books.allocated.is_empty() {
                break; // every share is held: nothing (more) to send
            }
            // One pass over the file writes the shares allocated since the
            // last one, each from its first byte.
            reader
                .seek(SeekFrom::Start(0))
                .map_err(|e| UploadError::Chk(ChkError::io("rewind", e)))?;
            let mut sink = PlacingSink {
                clients: &clients,
                si,
                upload_secret,
                pending: books
                    .allocated
                    .iter()
                    .map(|(&share, &server)| {
                        let p = Pending {
                            server,
                            next_offset: 0,
                            buffer: Vec::new(),
                            done: false,
                        };
                        (share, p)
                    })
                    .collect(),
                failed: BTreeMap::new(),
            };
            match encoder.encode(reader, Some(&self.convergence), &mut sink) {
                Ok(encoded) => cap = Some(encoded.cap),
                Err(e) => {
                    books.abort_all(&clients, &si, &upload_secret);
                    return Err(UploadError::Chk(e));
                }
            }
            sink.flush_all();
            let PlacingSink {
                pending, failed, ..
            } = sink;
            let mut failed = failed;
            for (&share, p) in &pending {
                if !p.done && !failed.contains_key(&p.server) {
                    failed.insert(
                        p.server,
                        StorageError::BadReply {
                            server: clients[p.server].label().to_owned(),
                            what: "upload".into(),
                            problem: format!("share {share} was not complete after its last byte"),
                        },
                    );
                }
            }
            for (share, p) in pending {
                if !failed.contains_key(&p.server) {
                    books.allocated.remove(&share);
                    books.held.entry(share).or_default().insert(p.server);
                }
            }
            for (server, err) in failed {
                books.fail(server, err, &clients, &si, &upload_secret);
            }
        }
        let got = happiness(&books.held);
        if !books.allocated.is_empty() || got < self.happy {
            books.abort_all(&clients, &si, &upload_secret);
            return Err(unhappy(&books, got));
        }
        let cap = match cap {
            Some(cap) => cap,
            // Every share was already on the servers: the cap without
            // sending anything (one more encoding pass, nothing written).
            None => {
                reader
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| UploadError::Chk(ChkError::io("rewind", e)))?;
                let mut nowhere = PlacingSink {
                    clients: &clients,
                    si,
                    upload_secret,
                    pending: BTreeMap::new(),
                    failed: BTreeMap::new(),
                };
                encoder
                    .encode(reader, Some(&self.convergence), &mut nowhere)?
                    .cap
            }
        };
        Ok(Uploaded {
            cap: cap.to_uri(),
            placement: books
                .held
                .into_iter()
                .map(|(s, servers)| {
                    (
                        s,
                        servers
                            .into_iter()
                            .map(|i| clients[i].label().to_owned())
                            .collect(),
                    )
                })
                .collect(),
            happiness: got,
        })
    }
}

/// The servers in Tahoe's order for `si`, and a client for each.
fn permuted_clients<'a>(
    servers: &'a [Server],
    si: &[u8; 16],
) -> Result<(Vec<&'a Server>, Vec<Arc<StorageClient>>), StorageError> {
    let order = permuted(servers, si);
    let clients = order
        .iter()
        .map(|s| StorageClient::shared(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((order, clients))
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    /// Encoding failed (or the file changed).
    #[error(transparent)]
    Chk(#[from] ChkError),
    /// A storage request failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Too few servers took shares.
    #[error("upload unhappy: shares on {happiness} distinct server(s), {needed} needed ({detail})")]
    Unhappy {
        /// The happiness reached.
        happiness: usize,
        /// `shares.happy`.
        needed: usize,
        /// Why servers were left out.
        detail: String,
    },
    /// Too few servers took shares only because they refused some that
    /// they do not hold either: another upload of the same content is
    /// under way (a concurrent backup of the same files). Worth trying
    /// again seconds later, when those shares are complete.
    #[error(
        "upload blocked: the servers refuse shares of this object that they do not hold yet \
         (another upload of the same content under way?): shares on {happiness} distinct \
         server(s), {needed} needed"
    )]
    Blocked {
        /// The happiness reached.
        happiness: usize,
        /// `shares.happy`.
        needed: usize,
    },
}

/// A share on a storage server, for the decoder (and the checker's
/// verification, `storage::check`).
pub(crate) struct RemoteShare<'a> {
    pub(crate) client: &'a StorageClient,
    pub(crate) si: [u8; 16],
    pub(crate) shnum: u16,
}

impl ShareSource for RemoteShare<'_> {
    fn shnum(&self) -> u16 {
        self.shnum
    }

    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, ChkError> {
        self.client
            .read_share(&self.si, self.shnum, offset, len)
            .map_err(|e| ChkError::io("read share", std::io::Error::other(e.to_string())))
    }
}

/// Downloads the object of a `URI:CHK:` (or `URI:DIR2-CHK:`) cap from
/// `servers` into `out`, every hash checked: every server asked at once (the
/// tests' simple reader; commands read through `storage::read`).
#[cfg(test)]
pub(crate) fn download(
    servers: &[Server],
    cap: &ChkCap,
    out: &mut impl std::io::Write,
) -> Result<(), UploadError> {
    let si = cap.storage_index();
    let (_, clients) = permuted_clients(servers, &si)?;
    let mut remote = Vec::new();
    let mut problems = Vec::new();
    for client in &clients {
        match client.list_shares(&si) {
            Ok(shares) => {
                remote.extend(
                    shares
                        .into_iter()
                        .map(|shnum| RemoteShare { client, si, shnum }),
                )
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    let mut sources: Vec<&mut dyn ShareSource> = remote
        .iter_mut()
        .map(|r| r as &mut dyn ShareSource)
        .collect();
    decode(cap, &mut sources, out).map_err(|e| match e {
        ChkError::NotEnoughShares {
            good,
            needed,
            detail,
        } if !problems.is_empty() => UploadError::Chk(ChkError::NotEnoughShares {
            good,
            needed,
            detail: format!("{detail}; {}", problems.join("; ")),
        }),
        e => UploadError::Chk(e),
    })
}

/// Adds or renews our lease on every server holding shares of `si`; the
/// number of servers that did (tests; commands renew through
/// `storage::check`).
#[cfg(test)]
pub(crate) fn renew_leases(
    servers: &[Server],
    lease: &LeaseSecret,
    si: &[u8; 16],
) -> Result<usize, StorageError> {
    let mut renewed = 0;
    for server in permuted(servers, si) {
        let client = StorageClient::shared(server)?;
        if client.add_lease(si, &lease.for_bucket(si, &server.lease_seed))? {
            renewed += 1;
        }
    }
    Ok(renewed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happiness_is_a_maximum_matching() {
        let p = |pairs: &[(u16, &[usize])]| -> BTreeMap<u16, BTreeSet<usize>> {
            pairs
                .iter()
                .map(|(s, v)| (*s, v.iter().copied().collect()))
                .collect()
        };
        assert_eq!(happiness(&p(&[])), 0);
        assert_eq!(happiness(&p(&[(0, &[0]), (1, &[1]), (2, &[2])])), 3);
        // Several shares on one server count once.
        assert_eq!(happiness(&p(&[(0, &[0]), (1, &[0]), (2, &[0])])), 1);
        // A greedy choice would give 1; the matching finds 2.
        assert_eq!(happiness(&p(&[(0, &[0, 1]), (1, &[0])])), 2);
        // 10 shares over 5 servers, 2 each: 5.
        let ten: Vec<(u16, Vec<usize>)> =
            (0..10u16).map(|s| (s, vec![usize::from(s % 5)])).collect();
        let ten: BTreeMap<u16, BTreeSet<usize>> = ten
            .into_iter()
            .map(|(s, v)| (s, v.into_iter().collect()))
            .collect();
        assert_eq!(happiness(&ten), 5);
    }

    #[test]
    fn lease_secrets_are_tahoes() {
        // tahoe-lafs 1.20's venv, allmydata.util.hashutil:
        //   s = bytes(range(32)); si = bytes([7]*16); seed = bytes([9]*20)
        //   bucket_renewal_secret_hash(file_renewal_secret_hash(
        //       my_renewal_secret_hash(s), si), seed).hex()   (and cancel)
        let secret = LeaseSecret((0..32).collect::<Vec<u8>>().try_into().unwrap());
        let a = secret.for_bucket(&[7; 16], &[9; 20]);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&a.renew),
            "fe7be8cc4848938ed33f97afbf490e047ef01b2f29607386624c93b229fa246e"
        );
        assert_eq!(
            hex(&a.cancel),
            "de1080ae75e65273a858402913446989df5a06f084f2ed9f4ac581ef18082d22"
        );
        let b = secret.for_bucket(&[7; 16], &[8; 20]);
        let c = secret.for_bucket(&[6; 16], &[9; 20]);
        assert_ne!(a.renew, b.renew);
        assert_ne!(a.renew, c.renew);
        assert_ne!(a.renew, a.cancel);
        assert!(LeaseSecret::parse("not base32!").is_none());
        assert!(LeaseSecret::parse("aaaa").is_none(), "wrong length");
        assert!(!format!("{secret:?}").contains('0'));
    }
}
