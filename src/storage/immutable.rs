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
use std::path::Path;

use super::StorageError;
use super::client::{LeaseSecrets, StorageClient};
use super::nurl::{Server, permuted};
use crate::chk::cap::{ChkCap, lit_uri};
use crate::chk::decode::{ShareSource, decode};
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
    pub(crate) placement: BTreeMap<u16, BTreeSet<String>>,
    /// The happiness achieved.
    pub(crate) happiness: usize,
}

/// One share being written: its server and the bytes not yet sent.
struct Pending {
    server: usize,
    next_offset: u64,
    buffer: Vec<u8>,
    done: bool,
}

/// The sink that sends shares to their servers.
struct PlacingSink<'a> {
    clients: &'a [StorageClient],
    si: [u8; 16],
    upload_secret: [u8; 32],
    /// Shares to write (those a server already had are dropped).
    pending: BTreeMap<u16, Pending>,
    error: Option<StorageError>,
}

impl PlacingSink<'_> {
    fn flush(&mut self, shnum: u16) -> Result<(), StorageError> {
        let Some(p) = self.pending.get_mut(&shnum) else {
            return Ok(());
        };
        if p.buffer.is_empty() {
            return Ok(());
        }
        let complete = self.clients[p.server].write_chunk(
            &self.si,
            shnum,
            &self.upload_secret,
            p.next_offset,
            &p.buffer,
        )?;
        p.next_offset += p.buffer.len() as u64;
        p.buffer.clear();
        p.done = complete;
        Ok(())
    }
}

impl ShareSink for PlacingSink<'_> {
    fn write(&mut self, shnum: u16, offset: u64, data: &[u8]) -> Result<(), ChkError> {
        let Some(p) = self.pending.get_mut(&shnum) else {
            return Ok(()); // already on a server
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
            return Err(ChkError::io("upload", std::io::Error::other(message)));
        }
        Ok(())
    }
}

impl Uploader {
    /// Uploads `size` bytes read from `reader` (read twice: the convergence
    /// key, then the encoding; a change between them fails the upload).
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
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| UploadError::Chk(ChkError::io("rewind", e)))?;
        let plan = Plan::new(self.params, size)?;
        let share_size = plan.share_size;
        let si = storage_index(&key);
        let (order, clients) = permuted_clients(&self.servers, &si)?;
        // Writable servers: those that answer and have room for a share.
        let mut writable = Vec::new();
        let mut skipped = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            match client.version() {
                Ok(v)
                    if v.maximum_immutable_share_size >= share_size
                        && v.available_space >= share_size =>
                {
                    writable.push(i);
                }
                Ok(_) => skipped.push(format!("{}: full", client.label())),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        if writable.is_empty() {
            return Err(UploadError::Unhappy {
                happiness: 0,
                needed: self.happy,
                detail: skipped.join("; "),
            });
        }
        // Share i to the i-th writable server, round robin in permuted order.
        let n = self.params.n;
        let mut wanted: BTreeMap<usize, BTreeSet<u16>> = BTreeMap::new();
        for shnum in 0..n {
            wanted
                .entry(writable[usize::from(shnum) % writable.len()])
                .or_default()
                .insert(shnum);
        }
        let upload_secret = random_secret()?;
        let mut placement: BTreeMap<u16, BTreeSet<usize>> = BTreeMap::new();
        let mut pending = BTreeMap::new();
        let mut allocated: Vec<(usize, u16)> = Vec::new();
        for (&server, shares) in &wanted {
            let lease = self.lease.for_bucket(&si, &order[server].lease_seed);
            match clients[server].allocate(&si, &lease, &upload_secret, shares, share_size) {
                Ok(a) => {
                    for &s in &a.already_have {
                        placement.entry(s).or_default().insert(server);
                    }
                    for &s in &a.allocated {
                        placement.entry(s).or_default().insert(server);
                        allocated.push((server, s));
                        pending.insert(
                            s,
                            Pending {
                                server,
                                next_offset: 0,
                                buffer: Vec::new(),
                                done: false,
                            },
                        );
                    }
                }
                Err(e) => skipped.push(e.to_string()),
            }
        }
        let abort = |clients: &[StorageClient]| {
            for &(server, s) in &allocated {
                // Best effort: a server that is gone keeps nothing it did
                // not complete.
                let _ = clients[server].abort(&si, s, &upload_secret);
            }
        };
        let got = happiness(&placement);
        if got < self.happy {
            abort(&clients);
            return Err(UploadError::Unhappy {
                happiness: got,
                needed: self.happy,
                detail: skipped.join("; "),
            });
        }
        let mut sink = PlacingSink {
            clients: &clients,
            si,
            upload_secret,
            pending,
            error: None,
        };
        let encoded = Encoder::new(plan, key)?.encode(reader, Some(&self.convergence), &mut sink);
        let result = match encoded {
            Ok(encoded) => {
                let shnums: Vec<u16> = sink.pending.keys().copied().collect();
                let mut failure = None;
                for shnum in shnums {
                    if let Err(e) = sink.flush(shnum) {
                        failure = Some(e);
                        break;
                    }
                }
                match failure {
                    Some(e) => Err(UploadError::Storage(e)),
                    None if sink.pending.values().any(|p| !p.done) => {
                        Err(UploadError::Storage(StorageError::BadReply {
                            server: "a storage server".into(),
                            what: "upload".into(),
                            problem: "a share was not complete after its last byte".into(),
                        }))
                    }
                    None => Ok(encoded),
                }
            }
            Err(e) => Err(match sink.error.take() {
                Some(storage) => UploadError::Storage(storage),
                None => UploadError::Chk(e),
            }),
        };
        match result {
            Ok(encoded) => Ok(Uploaded {
                cap: encoded.cap.to_uri(),
                placement: placement
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
            }),
            Err(e) => {
                abort(&clients);
                Err(e)
            }
        }
    }
}

/// The servers in Tahoe's order for `si`, and a client for each.
fn permuted_clients<'a>(
    servers: &'a [Server],
    si: &[u8; 16],
) -> Result<(Vec<&'a Server>, Vec<StorageClient>), StorageError> {
    let order = permuted(servers, si);
    let clients = order
        .iter()
        .map(|s| StorageClient::new(s))
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
/// `servers` into `out`, every hash checked.
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
/// number of servers that did.
pub(crate) fn renew_leases(
    servers: &[Server],
    lease: &LeaseSecret,
    si: &[u8; 16],
) -> Result<usize, StorageError> {
    let mut renewed = 0;
    for server in permuted(servers, si) {
        let client = StorageClient::new(server)?;
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
