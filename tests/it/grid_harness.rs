//! Proves the test harness: the grids that `scripts/test` starts accept an
//! immutable upload through the gateway web API and give the same bytes back.
//! Caps are secrets: assertions look at prefixes and booleans only, never
//! print a cap.

use crate::common;

fn put_immutable(agent: &ureq::Agent, gateway: &str, data: &[u8]) -> String {
    let mut resp = agent
        .put(format!("{gateway}/uri"))
        .header("Accept", "text/plain")
        .send(data)
        .expect("PUT /uri to the gateway");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .expect("read the PUT /uri response");
    assert_eq!(
        status,
        200,
        "PUT /uri failed; last line of the gateway's answer: {}",
        body.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    );
    body.trim().to_string()
}

fn get_immutable(agent: &ureq::Agent, gateway: &str, cap: &str) -> Vec<u8> {
    let mut resp = agent
        .get(format!("{gateway}/uri/{cap}"))
        .header("Accept", "text/plain")
        .call()
        .expect("GET /uri/CAP from the gateway");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .expect("read the GET /uri/CAP response");
    assert_eq!(status, 200, "GET /uri/CAP failed with status {status}");
    body
}

fn round_trip(gateway: &str, seed: u64) {
    let agent = common::http_agent();

    // 100 KiB of incompressible bytes: stored as shares (CHK), not in the cap.
    let data = common::pseudo_random_bytes(100 * 1024, seed);
    let cap = put_immutable(&agent, gateway, &data);
    assert!(
        cap.starts_with("URI:CHK:"),
        "a 100 KiB upload should give a URI:CHK: cap (got a cap starting {:?})",
        cap.split(':').take(2).collect::<Vec<_>>().join(":")
    );
    let back = get_immutable(&agent, gateway, &cap);
    assert_eq!(back.len(), data.len(), "downloaded length differs");
    assert!(
        back == data,
        "downloaded bytes differ from the uploaded ones"
    );

    // 55 bytes or fewer are a literal cap: the data lives in the cap itself.
    let small = common::pseudo_random_bytes(55, seed + 1);
    let lit = put_immutable(&agent, gateway, &small);
    assert!(
        lit.starts_with("URI:LIT:"),
        "a 55-byte upload should give a URI:LIT: cap"
    );
    assert!(
        get_immutable(&agent, gateway, &lit) == small,
        "LIT round trip gave different bytes"
    );
}

#[test]
fn fast_grid_round_trips_chk_and_lit() {
    round_trip(&common::gateway_url(), 1);
}

#[test]
fn three_node_grid_round_trips_chk_and_lit() {
    round_trip(&common::gateway_url_3n(), 2);
}
