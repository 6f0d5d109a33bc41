//! The check of a CHK object answered by the storage servers themselves
//! (issue 17 item 3): health, verification of every share, repair by
//! re-upload of the missing shares, and lease renewal, as Tahoe 1.20's
//! gateway does them (`immutable/checker.py`, `immutable/filenode.py`
//! `check_and_repair`, `immutable/repairer.py`), giving the same
//! [`CheckReport`] as `POST /uri/CAP?t=check&output=JSON`.
//!
//! * health: every server is asked which shares it holds; the object is
//!   healthy when all N share numbers are found, recoverable with k of them
//!   (Tahoe's `_format_results`: happiness is not part of "healthy");
//! * `verify`: every listed share is read whole and every hash checked
//!   (`chk::decode::verify_share`); only good shares count;
//! * `repair`: an unhealthy but recoverable object is decoded with its
//!   cap's key and re-encoded (the same key and segment size give the same
//!   shares, byte for byte); only the missing share numbers are uploaded,
//!   each to the writable server (permuted order) holding the fewest shares,
//!   which spreads them as the first upload did;
//! * `add_lease`: `add-lease` on every server, with the lease secrets
//!   Tahoe derives (errors ignored, as the gateway's checker does), so
//!   native and gateway renewals renew the same lease.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use super::StorageError;
use super::client::StorageClient;
use super::immutable::{LeaseSecret, RemoteShare, happiness};
use super::nurl::{Server, permuted};
use crate::chk::cap::ChkCap;
use crate::chk::decode::{ShareSource, decode, verify_share};
use crate::chk::encode::{Encoder, Plan, ShareSink};
use crate::chk::uri_ext::Ueb;
use crate::chk::{ChkError, Params};
use crate::tahoe::{CheckOptions, CheckReport};

/// How much of one share is sent per `PATCH` during a repair.
const CHUNK: usize = 1024 * 1024;

/// Why a native check could not give a report (the object's state is not
/// such a reason: an unhealthy object is a report).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    /// No storage server answered the question which shares it holds.
    #[error("no storage server answered ({0})")]
    NoServers(String),
    /// A storage request failed (setting up a client, a repair's upload).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A malformed cap, or decoding or re-encoding for a repair failed.
    #[error(transparent)]
    Chk(#[from] ChkError),
}

/// Share number → the servers (indexes in permuted order) holding it.
type ShareMap = BTreeMap<u16, BTreeSet<usize>>;

/// The servers of `si` in Tahoe's permuted order, with a client for each.
struct Grid<'a> {
    servers: Vec<&'a Server>,
    clients: Vec<Arc<StorageClient>>,
    si: [u8; 16],
}

/// Checks (and with `opts`, verifies, repairs, renews the lease of) the
/// object of `cap` on `servers`.
pub(crate) fn check(
    servers: &[Server],
    lease: &LeaseSecret,
    cap: &ChkCap,
    opts: CheckOptions,
) -> Result<CheckReport, CheckError> {
    let si = cap.storage_index();
    let order = permuted(servers, &si);
    let clients = order
        .iter()
        .map(|s| StorageClient::shared(s))
        .collect::<Result<Vec<_>, _>>()?;
    let grid = Grid {
        servers: order,
        clients,
        si,
    };
    if opts.add_lease {
        grid.add_leases(lease);
    }
    let listed = grid.list_shares(cap.n)?;
    let (good, ueb) = if opts.verify {
        grid.verify(cap, &listed)
    } else {
        (listed, None)
    };
    let before = report(cap, &good, summary(cap, &good));
    if !opts.repair || before.healthy {
        return Ok(before);
    }
    if !before.recoverable {
        // The gateway answers 410 (its repairer cannot download); the
        // report says the same: unrecoverable, repair attempted, failed.
        return Ok(CheckReport {
            repair_attempted: true,
            ..before
        });
    }
    let after = grid.repair(cap, lease, &good, ueb)?;
    // Tahoe's post-repair results carry an empty summary.
    let after = report(cap, &after, String::new());
    Ok(CheckReport {
        repair_attempted: true,
        repair_successful: after.healthy,
        ..after
    })
}

/// Tahoe's summary of a check (`checker.py` `_format_results`).
fn summary(cap: &ChkCap, good: &ShareMap) -> String {
    if good.len() == usize::from(cap.n) {
        "Healthy".into()
    } else {
        format!(
            "Not Healthy: {} shares (enc {}-of-{})",
            good.len(),
            cap.k,
            cap.n
        )
    }
}

/// The report of the shares in `good`.
fn report(cap: &ChkCap, good: &ShareMap, summary: String) -> CheckReport {
    let count = u32::try_from(good.len()).unwrap_or(u32::MAX);
    CheckReport {
        healthy: good.len() >= usize::from(cap.n),
        recoverable: good.len() >= usize::from(cap.k),
        summary,
        shares_good: Some(count),
        shares_needed: Some(u32::from(cap.k)),
        shares_expected: Some(u32::from(cap.n)),
        repair_attempted: false,
        repair_successful: false,
    }
}

impl Grid<'_> {
    /// `add-lease` on every server; a failure is logged and ignored (the
    /// gateway's checker does the same: a server without the shares
    /// answers 404, one that is down cannot hold a lease).
    fn add_leases(&self, lease: &LeaseSecret) {
        for (server, client) in self.servers.iter().zip(&self.clients) {
            let secrets = lease.for_bucket(&self.si, &server.lease_seed);
            if let Err(e) = client.add_lease(&self.si, &secrets) {
                tracing::debug!("add-lease: {e}");
            }
        }
    }

    /// Which shares (numbers below `n`) each server holds. A server that
    /// does not answer holds none, as for the gateway; none answering is an
    /// error.
    fn list_shares(&self, n: u16) -> Result<ShareMap, CheckError> {
        let mut map = ShareMap::new();
        let mut problems = Vec::new();
        for (i, client) in self.clients.iter().enumerate() {
            match client.list_shares(&self.si) {
                Ok(shares) => {
                    for shnum in shares.into_iter().filter(|&s| s < n) {
                        map.entry(shnum).or_default().insert(i);
                    }
                }
                Err(e) => {
                    tracing::debug!("list shares: {e}");
                    problems.push(e.to_string());
                }
            }
        }
        if problems.len() == self.clients.len() {
            return Err(CheckError::NoServers(problems.join("; ")));
        }
        Ok(map)
    }

    /// The listed shares whose every hash is good, and the UEB of one.
    fn verify(&self, cap: &ChkCap, listed: &ShareMap) -> (ShareMap, Option<Ueb>) {
        let mut good = ShareMap::new();
        let mut ueb = None;
        for (&shnum, holders) in listed {
            for &i in holders {
                let mut share = self.share(i, shnum);
                match verify_share(cap, &mut share) {
                    Ok(u) => {
                        ueb = Some(u);
                        good.entry(shnum).or_default().insert(i);
                    }
                    Err(e) => tracing::info!(
                        "share {shnum} on storage server {} is bad: {e}",
                        self.clients[i].label()
                    ),
                }
            }
        }
        (good, ueb)
    }

    fn share(&self, server: usize, shnum: u16) -> RemoteShare<'_> {
        RemoteShare {
            client: &self.clients[server],
            si: self.si,
            shnum,
        }
    }

    /// Re-creates the shares missing from `good` and uploads them; the
    /// share map after the repair.
    fn repair(
        &self,
        cap: &ChkCap,
        lease: &LeaseSecret,
        good: &ShareMap,
        ueb: Option<Ueb>,
    ) -> Result<ShareMap, CheckError> {
        let ueb = match ueb {
            Some(ueb) => ueb,
            None => self.ueb_of(cap, good)?,
        };
        // The plaintext, in a temporary file: objects may be large.
        let mut plain = tempfile::tempfile().map_err(|e| ChkError::io("a temporary file", e))?;
        let mut shares: Vec<RemoteShare<'_>> = good
            .iter()
            .filter_map(|(&shnum, holders)| holders.first().map(|&i| self.share(i, shnum)))
            .collect();
        let mut sources: Vec<&mut dyn ShareSource> = shares
            .iter_mut()
            .map(|s| s as &mut dyn ShareSource)
            .collect();
        decode(cap, &mut sources, &mut plain)?;
        plain
            .seek(SeekFrom::Start(0))
            .map_err(|e| ChkError::io("rewind", e))?;
        // The segment size of the original encoding gives the same shares.
        let params = Params::with_segment_size(cap.k, cap.n, ueb.segment_size)?;
        let plan = Plan::new(params, cap.size)?;
        let missing: Vec<u16> = (0..cap.n).filter(|s| !good.contains_key(s)).collect();
        let mut after = good.clone();
        let placed = self.allocate(lease, &missing, plan.share_size, &mut after)?;
        if placed.shares.is_empty() {
            tracing::debug!("repair: no server took a missing share");
            return Ok(after);
        }
        let upload_secret = placed.upload_secret;
        let mut sink = RepairSink {
            grid: self,
            upload_secret,
            pending: placed.shares,
            error: None,
        };
        let result = Encoder::new(plan, cap.key)?
            .encode(&mut plain, None, &mut sink)
            .map_err(|e| match sink.error.take() {
                Some(storage) => CheckError::Storage(storage),
                None => CheckError::Chk(e),
            })
            .and_then(|encoded| {
                // The last chunks complete the shares: only if the object
                // re-encoded to the very cap.
                if encoded.cap != *cap {
                    return Err(CheckError::Chk(ChkError::Corrupt(
                        "the object does not re-encode to its cap".into(),
                    )));
                }
                sink.finish()
            });
        if let Err(e) = result {
            for (&shnum, p) in &sink.pending {
                let _ = self.clients[p.server].abort(&self.si, shnum, &upload_secret);
            }
            return Err(e);
        }
        tracing::debug!(
            "repair: {} share(s) uploaded, happiness {}",
            sink.pending.len(),
            happiness(&after)
        );
        Ok(after)
    }

    /// The UEB of the first share that passes its checks (a repair without
    /// `verify`: the segment size is needed to re-encode).
    fn ueb_of(&self, cap: &ChkCap, good: &ShareMap) -> Result<Ueb, CheckError> {
        let mut problems = Vec::new();
        for (&shnum, holders) in good {
            for &i in holders {
                match verify_share(cap, &mut self.share(i, shnum)) {
                    Ok(ueb) => return Ok(ueb),
                    Err(e) => problems.push(format!("share {shnum}: {e}")),
                }
            }
        }
        Err(CheckError::Chk(ChkError::NotEnoughShares {
            good: 0,
            needed: usize::from(cap.k),
            detail: problems.join("; "),
        }))
    }

    /// Allocates each missing share on the writable server holding the
    /// fewest shares (in permuted order among equals), trying the next one
    /// when a server refuses or says it has the share already (a corrupt
    /// copy). Records the placements in `after`.
    fn allocate(
        &self,
        lease: &LeaseSecret,
        missing: &[u16],
        share_size: u64,
        after: &mut ShareMap,
    ) -> Result<Placed, CheckError> {
        let writable: Vec<usize> = (0..self.clients.len())
            .filter(|&i| match self.clients[i].version_cached() {
                Ok(v) => {
                    v.maximum_immutable_share_size >= share_size && v.available_space >= share_size
                }
                Err(e) => {
                    tracing::debug!("repair: {e}");
                    false
                }
            })
            .collect();
        let mut load: BTreeMap<usize, usize> = writable.iter().map(|&i| (i, 0)).collect();
        for holders in after.values() {
            for i in holders {
                if let Some(n) = load.get_mut(i) {
                    *n += 1;
                }
            }
        }
        let upload_secret = super::immutable::random_secret()?;
        let mut shares = BTreeMap::new();
        for &shnum in missing {
            let mut candidates = writable.clone();
            candidates.sort_by_key(|i| load.get(i).copied().unwrap_or(0));
            for server in candidates {
                let secrets = lease.for_bucket(&self.si, &self.servers[server].lease_seed);
                let wanted = BTreeSet::from([shnum]);
                match self.clients[server].allocate(
                    &self.si,
                    &secrets,
                    &upload_secret,
                    &wanted,
                    share_size,
                ) {
                    Ok(a) if a.allocated.contains(&shnum) => {
                        *load.entry(server).or_default() += 1;
                        after.entry(shnum).or_default().insert(server);
                        shares.insert(
                            shnum,
                            Pending {
                                server,
                                next_offset: 0,
                                buffer: Vec::new(),
                                done: false,
                            },
                        );
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("repair: {e}"),
                }
            }
        }
        Ok(Placed {
            upload_secret,
            shares,
        })
    }
}

/// The buckets allocated for a repair.
struct Placed {
    upload_secret: [u8; 32],
    shares: BTreeMap<u16, Pending>,
}

/// One re-created share being sent: its server and the bytes not yet sent.
struct Pending {
    server: usize,
    next_offset: u64,
    buffer: Vec<u8>,
    done: bool,
}

/// The sink of a repair: keeps the missing shares, drops the others.
struct RepairSink<'a> {
    grid: &'a Grid<'a>,
    upload_secret: [u8; 32],
    pending: BTreeMap<u16, Pending>,
    error: Option<StorageError>,
}

impl RepairSink<'_> {
    fn flush(&mut self, shnum: u16) -> Result<(), StorageError> {
        let Some(p) = self.pending.get_mut(&shnum) else {
            return Ok(());
        };
        if p.buffer.is_empty() {
            return Ok(());
        }
        p.done = self.grid.clients[p.server].write_chunk(
            &self.grid.si,
            shnum,
            &self.upload_secret,
            p.next_offset,
            &p.buffer,
        )?;
        p.next_offset += p.buffer.len() as u64;
        p.buffer.clear();
        Ok(())
    }

    /// Sends what is left of every share; each must be complete.
    fn finish(&mut self) -> Result<(), CheckError> {
        let shnums: Vec<u16> = self.pending.keys().copied().collect();
        for shnum in shnums {
            self.flush(shnum)?;
        }
        if let Some((&shnum, p)) = self.pending.iter().find(|(_, p)| !p.done) {
            return Err(CheckError::Storage(StorageError::BadReply {
                server: self.grid.clients[p.server].label().to_owned(),
                what: format!("repair of share {shnum}"),
                problem: "the share was not complete after its last byte".into(),
            }));
        }
        Ok(())
    }
}

impl ShareSink for RepairSink<'_> {
    fn write(&mut self, shnum: u16, offset: u64, data: &[u8]) -> Result<(), ChkError> {
        let Some(p) = self.pending.get_mut(&shnum) else {
            return Ok(()); // a share the servers hold
        };
        if offset != p.next_offset + p.buffer.len() as u64 {
            return Err(ChkError::Params("share written out of order".into()));
        }
        p.buffer.extend_from_slice(data);
        if p.buffer.len() >= CHUNK
            && let Err(e) = self.flush(shnum)
        {
            let message = e.to_string();
            self.error = Some(e);
            return Err(ChkError::io(
                "repair upload",
                std::io::Error::other(message),
            ));
        }
        Ok(())
    }
}
