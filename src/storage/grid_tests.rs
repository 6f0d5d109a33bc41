//! The storage client against the real 3-node HTTPS test grid
//! (`LAFS_TEST_GRID_3N_DIR`, set by `scripts/test`): its gateway's
//! announcement cache gives the servers' NURLs. Run with
//! `scripts/test --lib storage::`; without the grid the tests say so and
//! pass (as `chk`'s oracle tests do without the venv).

use std::path::PathBuf;

use super::client::StorageClient;
use super::immutable::{LeaseSecret, Uploader, download, renew_leases};
use super::nurl::{Server, servers_of_node};
use super::tls::PIN_MISMATCH;
use crate::chk::Params;
use crate::chk::cap::ChkCap;
use crate::tahoe::{Cap, CheckOptions};

/// The 3-node grid's gateway node dir, if the grid is up.
fn gateway_node() -> Option<PathBuf> {
    match std::env::var_os("LAFS_TEST_GRID_3N_DIR") {
        Some(dir) => Some(PathBuf::from(dir).join("gateway")),
        None => {
            eprintln!("LAFS_TEST_GRID_3N_DIR not set (no test grid): skipped; run scripts/test");
            None
        }
    }
}

fn grid_servers() -> Option<Vec<Server>> {
    let node = gateway_node()?;
    let servers = servers_of_node(&node).unwrap();
    assert_eq!(
        servers.len(),
        3,
        "the 3-node grid announces its 3 storage servers over HTTPS: {servers:?}"
    );
    Some(servers)
}

#[test]
fn grid_servers_announce_nurls_and_answer_version() {
    let Some(servers) = grid_servers() else {
        return;
    };
    for server in &servers {
        assert!(server.nickname.starts_with("storage"), "{server:?}");
        let client = StorageClient::new(server).unwrap();
        let v = client.version().unwrap();
        assert_eq!(v.application_version, "tahoe-lafs/1.20.0");
        assert!(v.maximum_immutable_share_size > 0, "{v:?}");
    }
}

#[test]
fn a_wrong_pin_is_refused() {
    let Some(servers) = grid_servers() else {
        return;
    };
    // Server 0's address and swissnum with server 1's pin: the right
    // protocol, the wrong certificate.
    let mut wrong = servers[0].clone();
    wrong.nurl.spki_hash = servers[1].nurl.spki_hash.clone();
    let err = StorageClient::new(&wrong).unwrap().version().unwrap_err();
    let text = err.to_string();
    assert!(text.contains(PIN_MISMATCH), "{text}");
    assert!(!text.contains(&wrong.nurl.swissnum), "{text}");

    // The right pin with a wrong swissnum: TLS passes, the server says 401.
    let mut unauthorized = servers[0].clone();
    unauthorized.nurl.swissnum = "wrongswissnum".into();
    let err = StorageClient::new(&unauthorized)
        .unwrap()
        .version()
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401"), "{err}");
}

/// The 3-node grid's gateway client, its encoding and secrets.
struct Grid {
    gateway: crate::tahoe::Client,
    servers: Vec<Server>,
    uploader: Uploader,
}

fn grid() -> Option<Grid> {
    let servers = grid_servers()?;
    let node = gateway_node()?;
    let dir = node.parent().unwrap().to_path_buf();
    let url = std::fs::read_to_string(dir.join("gateway.url")).unwrap();
    let env = std::fs::read_to_string(dir.join("grid.env")).unwrap();
    let var = |name: &str| -> u16 {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('\''))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let params = Params::new(
        var("LAFS_GRID_SHARES_NEEDED"),
        var("LAFS_GRID_SHARES_TOTAL"),
    )
    .unwrap();
    // The node keeps its convergence secret in base32 (`Client._convergence`).
    let conv = std::fs::read_to_string(node.join("private/convergence")).unwrap();
    let convergence = crate::tahoe::base32::decode(conv.trim()).unwrap();
    let lease = LeaseSecret::read(&node.join("private/secret")).unwrap();
    let gateway = crate::tahoe::Client::new(
        &format!("{}/uri", url.trim()),
        &crate::config::Retry {
            attempts: 3,
            delay: crate::config::RetryDelay::Fixed(0.2),
        },
        &crate::config::Timeouts::PerAttempt(vec![120.0, 120.0]),
    )
    .unwrap();
    Some(Grid {
        gateway,
        uploader: Uploader {
            servers: servers.clone(),
            params,
            happy: usize::from(var("LAFS_GRID_SHARES_HAPPY")),
            convergence,
            lease,
        },
        servers,
    })
}

/// The gateway's `check?verify=true` of `cap` (every share read and
/// checked by the gateway).
pub(super) fn verify(gateway: &crate::tahoe::Client, cap: &str) -> crate::tahoe::CheckReport {
    gateway
        .check(
            &Cap::parse(cap).unwrap(),
            CheckOptions {
                add_lease: false,
                verify: true,
                repair: false,
            },
        )
        .unwrap()
}

/// Deterministic test data.
/// A TCP port of 127.0.0.1 with nothing listening on it (just freed).
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A number of its own for each call (content that no earlier run
/// stored: no "already have", no concurrent identical uploads).
pub(super) fn nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub(super) fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn native_upload_reads_back_through_the_gateway_and_checks_healthy() {
    let Some(g) = grid() else {
        return;
    };
    let mib = crate::chk::DEFAULT_MAX_SEGMENT_SIZE as usize;
    // A one-segment file, a multi-segment file whose shares take several
    // PATCH chunks, and a LIT.
    for (len, seed) in [(1000, 1), (2 * mib + 12_345, 2), (40, 3)] {
        let content = data(len, seed);
        let up = g
            .uploader
            .upload(&mut std::io::Cursor::new(&content), len as u64)
            .unwrap();
        let cap = Cap::parse(&up.cap).unwrap();
        assert_eq!(
            g.gateway.download(&cap).unwrap(),
            content,
            "{len} bytes read back through the gateway"
        );
        // The gateway's cap for the same content and secret is the same.
        let theirs = g.gateway.upload_bytes(&content).unwrap();
        assert!(theirs.as_str() == up.cap, "{len} bytes: caps differ");
        if cap.is_literal() {
            continue;
        }
        assert_eq!(up.happiness, 3, "{:?}", up.placement);
        assert_eq!(up.placement.len(), 3);
        let report = g
            .gateway
            .check(
                &cap,
                CheckOptions {
                    add_lease: false,
                    verify: true,
                    repair: false,
                },
            )
            .unwrap();
        assert!(report.healthy, "{}", report.summary);
        assert_eq!(report.shares_good, Some(3));
        // Uploading again completes from "already have".
        let again = g
            .uploader
            .upload(&mut std::io::Cursor::new(&content), len as u64)
            .unwrap();
        assert_eq!(again.cap, up.cap);
        // Native download, every hash checked.
        let mut out = Vec::new();
        download(&g.servers, &ChkCap::parse(&up.cap).unwrap(), &mut out).unwrap();
        assert_eq!(out, content);
        // Our lease is the gateway's: renewing it finds the shares.
        let si = ChkCap::parse(&up.cap).unwrap().storage_index();
        assert_eq!(renew_leases(&g.servers, &g.uploader.lease, &si).unwrap(), 3);
        // ... and the one lease on each share proves it: the gateway's
        // upload of the same content and our renewal renewed the lease our
        // allocation created instead of adding their own.
        let grid_dir = gateway_node().unwrap().parent().unwrap().to_path_buf();
        let si_text = crate::tahoe::base32::encode(&si);
        let mut files = 0;
        for node in ["storage1", "storage2", "storage3"] {
            let dir = grid_dir
                .join(node)
                .join("storage/shares")
                .join(&si_text[..2])
                .join(&si_text);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                // Immutable share container: >LLL version, size, lease count.
                let leases = u32::from_be_bytes(bytes[8..12].try_into().unwrap());
                assert_eq!(leases, 1, "{len} bytes: leases on a share in {node}");
                files += 1;
            }
        }
        assert_eq!(files, 3);
    }
}

#[test]
fn a_gateway_upload_downloads_natively() {
    let Some(g) = grid() else {
        return;
    };
    let content = data(300_000, 9);
    let cap = g.gateway.upload_bytes(&content).unwrap();
    let chk = ChkCap::parse(cap.as_str()).unwrap();
    let mut out = Vec::new();
    download(&g.servers, &chk, &mut out).unwrap();
    assert_eq!(out, content);
}

#[test]
fn an_unhappy_placement_aborts_and_leaves_nothing() {
    let Some(mut g) = grid() else {
        return;
    };
    // 4 distinct servers required of 3: refused before any byte is sent,
    // the allocations aborted.
    g.uploader.happy = 4;
    // Fresh content each run: the grid may outlive a test run, and the
    // check below wants a storage index no server holds yet.
    let nonce = nonce();
    let content = data(5000, nonce);
    let err = g
        .uploader
        .upload(&mut std::io::Cursor::new(&content), 5000)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("upload unhappy: shares on 3 distinct server(s), 4 needed"),
        "{text}"
    );
    let (enc, _) =
        crate::chk::encode::encode_bytes(&content, &g.uploader.params, &g.uploader.convergence)
            .unwrap();
    let si = enc.cap.storage_index();
    for server in &g.servers {
        let held = StorageClient::new(server)
            .unwrap()
            .list_shares(&si)
            .unwrap();
        assert!(held.is_empty(), "{}: {held:?}", server.label());
    }
    // Servers given as a static list of NURLs place and read back too.
    g.uploader.happy = 3;
    g.uploader.servers = g
        .servers
        .iter()
        .map(|s| {
            Server::from_nurl(&format!(
                "pb://{}@{}:{}/{}#v=1",
                s.nurl.spki_hash, s.nurl.host, s.nurl.port, s.nurl.swissnum
            ))
            .unwrap()
        })
        .collect();
    let up = g
        .uploader
        .upload(&mut std::io::Cursor::new(&content), 5000)
        .unwrap();
    assert_eq!(up.cap, enc.cap.to_uri());
    assert_eq!(
        g.gateway.download(&Cap::parse(&up.cap).unwrap()).unwrap(),
        content
    );
}

#[test]
fn a_corrupt_share_is_detected_and_another_used() {
    let Some(g) = grid() else {
        return;
    };
    let nonce = nonce();
    let content = data(5000, nonce ^ 0x5a5a);
    let up = g
        .uploader
        .upload(&mut std::io::Cursor::new(&content), 5000)
        .unwrap();
    let cap = ChkCap::parse(&up.cap).unwrap();
    let si = crate::tahoe::base32::encode(&cap.storage_index());
    let grid_dir = gateway_node().unwrap().parent().unwrap().to_path_buf();
    let mut files: Vec<PathBuf> = ["storage1", "storage2", "storage3"]
        .iter()
        .filter_map(|node| {
            let dir = grid_dir
                .join(node)
                .join("storage/shares")
                .join(&si[..2])
                .join(&si);
            std::fs::read_dir(dir).ok()
        })
        .flat_map(|entries| entries.map(|e| e.unwrap().path()))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    // A byte of block data: after the 12-byte container header and the
    // share's 0x24-byte v1 header.
    let corrupt = |path: &PathBuf| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[12 + 0x24 + 10] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    };
    corrupt(&files[0]);
    let mut out = Vec::new();
    download(&g.servers, &cap, &mut out).unwrap();
    assert_eq!(out, content, "the two good shares give the file");
    corrupt(&files[1]);
    let err = download(&g.servers, &cap, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not enough good shares"), "{err}");
    assert!(!err.contains("URI:"), "{err}");
}

#[test]
fn full_and_unreachable_servers_are_skipped() {
    let Some(mut g) = grid() else {
        return;
    };
    use super::client::hostile_tests::{reply, serve};
    use super::client::tests::version_reply;
    // A server that says it has no room, and one that is not there (a
    // port just freed).
    let full = Server::from_nurl(&serve(reply(
        "200 OK",
        "application/cbor",
        &version_reply(0),
    )))
    .unwrap();
    let port = free_port();
    let mut gone = g.servers[0].clone();
    gone.id = "gone".into();
    gone.nickname = "gone".into();
    gone.nurl.port = port;
    g.uploader.servers.push(full);
    g.uploader.servers.push(gone);
    let content = data(7000, 4242);
    let up = g
        .uploader
        .upload(&mut std::io::Cursor::new(&content), 7000)
        .unwrap();
    assert_eq!(up.happiness, 3);
    let holders: std::collections::BTreeSet<String> =
        up.placement.values().flatten().cloned().collect();
    assert!(
        holders.iter().all(|h| h.starts_with("storage")),
        "{holders:?}"
    );
    assert_eq!(
        g.gateway.download(&Cap::parse(&up.cap).unwrap()).unwrap(),
        content
    );
}

#[test]
fn a_server_failing_mid_upload_aborts_cleanly_and_the_next_run_completes() {
    let Some(mut g) = grid() else {
        return;
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::client::hostile_tests::{reply, serve_with};
    use super::client::tests::version_reply;
    // A server that allocates what it is asked, then fails every chunk
    // (as a node dying mid-upload does), and counts the aborts it gets.
    let aborts = Arc::new(AtomicUsize::new(0));
    let seen = aborts.clone();
    let nurl = serve_with(move |_, head, body| {
        let cbor = "application/cbor";
        Some(if head.starts_with("GET /storage/v1/version") {
            reply("200 OK", cbor, &version_reply(1 << 40))
        } else if head.starts_with("POST /storage/v1/immutable/") {
            let req = super::client::decode_cbor(body).unwrap();
            let shares = match &req {
                ciborium::Value::Map(m) => m[0].1.clone(),
                _ => panic!("allocate body {req:?}"),
            };
            let mut out = Vec::new();
            ciborium::into_writer(
                &ciborium::Value::Map(vec![
                    (
                        ciborium::Value::Text("already-have".into()),
                        ciborium::Value::Array(vec![]),
                    ),
                    (ciborium::Value::Text("allocated".into()), shares),
                ]),
                &mut out,
            )
            .unwrap();
            reply("201 Created", cbor, &out)
        } else if head.starts_with("PUT ") && head.contains("/abort ") {
            seen.fetch_add(1, Ordering::SeqCst);
            reply("200 OK", "text/plain", b"")
        } else {
            reply("500 Internal Server Error", "text/plain", b"dying")
        })
    });
    let mut hostile = Server::from_nurl(&nurl).unwrap();
    hostile.nickname = "dying".into();
    // Two grid servers and the dying one: each gets one of the 3 shares.
    let grid_servers = g.uploader.servers.clone();
    g.uploader.servers = vec![grid_servers[0].clone(), grid_servers[1].clone(), hostile];
    let nonce = nonce();
    let content = data(3 * 1024 * 1024 + 7, nonce ^ 0x77);
    let err = g
        .uploader
        .upload(&mut std::io::Cursor::new(&content), content.len() as u64)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dying") && err.contains("upload share chunk: HTTP 500"),
        "{err}"
    );
    assert!(
        aborts.load(Ordering::SeqCst) >= 1,
        "the dying server's bucket was aborted"
    );
    // The next run, on the healthy servers, completes (from what the
    // servers hold plus the rest), and the file is whole.
    g.uploader.servers = grid_servers;
    let up = g
        .uploader
        .upload(&mut std::io::Cursor::new(&content), content.len() as u64)
        .unwrap();
    assert_eq!(up.happiness, 3);
    let report = verify(&g.gateway, &up.cap);
    assert!(report.healthy, "{}", report.summary);
}

#[test]
fn a_server_failing_allocation_has_its_share_placed_on_the_others() {
    let Some(mut g) = grid() else {
        return;
    };
    use super::client::hostile_tests::{reply, serve_with};
    use super::client::tests::version_reply;
    // A server with room that fails every allocation (HTTP 500): Tahoe's
    // allocation phase puts its shares on the other servers.
    let nurl = serve_with(move |_, head, _| {
        Some(if head.starts_with("GET /storage/v1/version") {
            reply("200 OK", "application/cbor", &version_reply(1 << 40))
        } else {
            reply("500 Internal Server Error", "text/plain", b"no")
        })
    });
    let mut refusing = Server::from_nurl(&nurl).unwrap();
    refusing.nickname = "refusing".into();
    let grid_servers = g.uploader.servers.clone();
    g.uploader.servers = vec![grid_servers[0].clone(), grid_servers[1].clone(), refusing];
    // Two distinct servers are enough here; all three shares are stored.
    g.uploader.happy = 2;
    let nonce = nonce();
    let content = data(20_000, nonce ^ 0x3c3c);
    let up = g
        .uploader
        .upload(&mut std::io::Cursor::new(&content), content.len() as u64)
        .unwrap();
    assert_eq!(up.happiness, 2, "{:?}", up.placement);
    assert_eq!(up.placement.len(), 3, "all three shares placed");
    assert!(
        up.placement
            .values()
            .flatten()
            .all(|l| l.starts_with("storage")),
        "{:?}",
        up.placement
    );
    let report = verify(&g.gateway, &up.cap);
    assert!(report.healthy, "{}", report.summary);
    assert_eq!(report.shares_good, Some(3));
}

#[test]
fn the_same_content_in_progress_elsewhere_is_blocked_then_found() {
    let Some(g) = grid() else {
        return;
    };
    use super::immutable::{UploadError, test_hook};
    use std::cell::RefCell;
    use std::rc::Rc;
    let nonce = nonce();
    // Large enough for several chunks per share: the hook runs while the
    // first upload's buckets are open on every server.
    let content = data(3 * 1024 * 1024 + 11, nonce ^ 0xb10c);
    let second: Rc<RefCell<Option<Result<String, String>>>> = Rc::default();
    let seen = Rc::clone(&second);
    let uploader = &g.uploader;
    // Another client with the same settings (as a second backup would be).
    let other = super::immutable::Uploader {
        servers: uploader.servers.clone(),
        params: uploader.params,
        happy: uploader.happy,
        convergence: uploader.convergence.clone(),
        lease: uploader.lease.clone(),
    };
    let copy = content.clone();
    test_hook::set_after_chunk(Some(Box::new(move |_| {
        if seen.borrow().is_some() {
            return;
        }
        let r = other.upload(&mut std::io::Cursor::new(&copy), copy.len() as u64);
        *seen.borrow_mut() = Some(match r {
            Ok(u) => Ok(u.cap),
            Err(e @ UploadError::Blocked { .. }) => Err(format!("blocked: {e}")),
            Err(e) => Err(format!("other: {e}")),
        });
    })));
    let first = uploader.upload(&mut std::io::Cursor::new(&content), content.len() as u64);
    test_hook::set_after_chunk(None);
    let first = first.unwrap();
    // The second upload, while the first one's shares were in progress:
    // the servers held them for the first, so it is blocked (never a
    // failure blamed on a server, never a second copy).
    let second = second.borrow_mut().take().expect("the hook ran");
    let err = second.unwrap_err();
    assert!(err.starts_with("blocked: upload blocked"), "{err}");
    assert!(!err.contains("URI:"), "{err}");
    // Once the first is complete, the same upload completes from
    // "already have" with the same cap.
    let again = uploader
        .upload(&mut std::io::Cursor::new(&content), content.len() as u64)
        .unwrap();
    assert_eq!(again.cap, first.cap);
}
