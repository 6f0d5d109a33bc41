//! The storage client against the real 3-node HTTPS test grid
//! (`LAFS_TEST_GRID_3N_DIR`, set by `scripts/test`): its gateway's
//! announcement cache gives the servers' NURLs. Run with
//! `scripts/test --lib storage::`; without the grid the tests say so and
//! pass (as `chk`'s oracle tests do without the venv).

use std::path::PathBuf;

use super::client::StorageClient;
use super::nurl::{Server, servers_of_node};
use super::tls::PIN_MISMATCH;

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
