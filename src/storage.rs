//! The native storage client (issue 17 item 2): talks to Tahoe-LAFS 1.20's
//! storage servers directly over their HTTPS protocol ("Great Black Swamp",
//! `docs/specifications/http-storage-node-protocol.rst` in tahoe-lafs),
//! without the gateway. `docs/native-storage.md` describes it as built.
//!
//! * [`nurl`]: NURLs (`pb://SPKI-HASH@HOST:PORT/SWISSNUM#v=1`) and the list
//!   of servers, from the gateway node's announcement cache or a static list;
//! * [`tls`]: rustls pinned to the SPKI hash of the NURL (names and dates
//!   ignored, the handshake signature still checked);
//! * [`client`]: the HTTP requests with their CBOR bodies;
//! * [`immutable`]: CHK upload (placement, happiness, abort), download and
//!   lease renewal, with Tahoe's lease secrets;
//! * [`check`]: the check, verification and repair of a CHK object.
//! * [`read`]: native reads (restore, verify, listings) with a client per
//!   server kept for the run.
//!
//! Secrets (swissnums, lease and upload secrets) never appear in errors or
//! `Debug` output: a server is named by its nickname and address only.

pub(crate) mod check;
pub(crate) mod client;
pub(crate) mod immutable;
pub(crate) mod native;
pub(crate) mod nurl;
pub(crate) mod read;
pub(crate) mod tls;

#[cfg(test)]
mod grid5_tests;
#[cfg(test)]
mod grid_tests;

/// What went wrong talking to a storage server (or finding one).
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum StorageError {
    /// A NURL that does not parse; `what` says which part is wrong. The
    /// NURL itself is not repeated: it carries the swissnum.
    #[error("invalid NURL: {what}")]
    BadNurl {
        /// Which part of the NURL is wrong.
        what: String,
    },
    /// The announcement cache (or a static server list) cannot be read.
    #[error("storage servers: {path}: {what}")]
    Servers {
        /// The file read.
        path: String,
        /// What is wrong with it.
        what: String,
    },
    /// A request failed on the network or TLS level.
    #[error("storage server {server}: {what}")]
    Network {
        /// The server (nickname and address, never the swissnum).
        server: String,
        /// What failed.
        what: String,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("storage server {server}: {what}: HTTP {status}")]
    Status {
        /// The server.
        server: String,
        /// The request.
        what: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The server's answer is not what the protocol says (invalid or
    /// oversized CBOR, a missing field, a wrong content type).
    #[error("storage server {server}: bad reply to {what}: {problem}")]
    BadReply {
        /// The server.
        server: String,
        /// The request.
        what: String,
        /// What is wrong with the reply.
        problem: String,
    },
}
