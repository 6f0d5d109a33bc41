//! `lafs_backup::lit_cap` and `empty_dir_cap` give, byte for byte,
//! the caps a real tahoe-lafs 1.20.0 gateway returns: for every file size
//! from 0 to 55 bytes (`PUT /uri` answers `URI:LIT:…`), for 56 bytes (no
//! literal cap: the gateway stores shares), and for an immutable directory
//! without children (`POST /uri?t=mkdir-immutable`); and `lit_data`
//! decodes a literal cap to the bytes the gateway serves for it.
//!
//! Caps are secrets, so assertion messages never print one; they name the
//! size, the seed and the cap kind only.

use crate::common;

use lafs_backup::{Cap, LIT_THRESHOLD, empty_dir_cap, lit_cap, lit_data};

/// The gateway's answer to `method {gateway}{path}` with `body`: the status
/// must be 200, the (trimmed) body is returned.
fn gateway_cap(agent: &ureq::Agent, method: &str, url: &str, body: &[u8]) -> String {
    let req = match method {
        "PUT" => agent.put(url),
        "POST" => agent.post(url),
        _ => unreachable!(),
    };
    let mut resp = req
        .header("Accept", "text/plain")
        .send(body)
        .unwrap_or_else(|e| panic!("{method} to the gateway: {e}"));
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .expect("read the gateway's answer");
    assert_eq!(
        status,
        200,
        "{method} failed; last line of the gateway's answer: {}",
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    );
    text.trim().to_string()
}

/// The first two `:`-separated fields of a cap (`URI:LIT`), safe to print.
fn kind(cap: &str) -> String {
    cap.split(':').take(2).collect::<Vec<_>>().join(":")
}

fn check_sizes(gateway: &str, seed_base: u64, sizes: impl Iterator<Item = usize>) {
    let agent = common::http_agent();
    for len in sizes {
        let seed = seed_base + len as u64;
        let data = common::pseudo_random_bytes(len, seed);
        let from_gateway = gateway_cap(&agent, "PUT", &format!("{gateway}/uri"), &data);
        let local = lit_cap(&data).unwrap_or_else(|| panic!("lit_cap gave None for {len} bytes"));
        assert!(
            local.as_str() == from_gateway,
            "size {len} (seed {seed}): lit_cap differs from the gateway's cap \
             (gateway kind {}, {} chars; local {} chars)",
            kind(&from_gateway),
            from_gateway.len(),
            local.as_str().len()
        );
        assert_eq!(Cap::parse(&from_gateway).unwrap(), local);
        // And back: the gateway's GET of that cap is what lit_data decodes.
        let mut resp = agent
            .get(&format!("{gateway}/uri/{from_gateway}"))
            .call()
            .unwrap_or_else(|e| panic!("GET of the {len}-byte literal cap: {e}"));
        let served = resp.body_mut().read_to_vec().expect("read the content");
        assert_eq!(served, data, "size {len}: the gateway served other bytes");
        assert_eq!(
            lit_data(&local).as_deref(),
            Some(&data[..]),
            "size {len} (seed {seed}): lit_data differs from the gateway's content"
        );
    }
}

#[test]
fn lit_cap_matches_the_gateway_for_every_size_up_to_55() {
    let gateway = common::gateway_url();
    check_sizes(&gateway, 0x4c17_0000, 0..=LIT_THRESHOLD as usize);

    // Fixed patterns too: all-zero and all-ones bytes exercise the padding
    // bits of the last base32 character.
    let agent = common::http_agent();
    for len in [1usize, 2, 3, 4, 5, 54, 55] {
        for byte in [0x00u8, 0xff] {
            let data = vec![byte; len];
            let from_gateway = gateway_cap(&agent, "PUT", &format!("{gateway}/uri"), &data);
            assert!(
                lit_cap(&data).unwrap().as_str() == from_gateway,
                "{len} bytes of {byte:#04x}: lit_cap differs from the gateway's cap"
            );
        }
    }
}

#[test]
fn lit_cap_matches_the_3n_gateway() {
    // Literal caps do not depend on the grid's encoding (k, N) or on the
    // convergence secret: the default-shape grid gives the same answers.
    let gateway = common::gateway_url_3n();
    check_sizes(&gateway, 0x4c17_3000, [0usize, 1, 7, 31, 55].into_iter());
}

#[test]
fn fifty_six_bytes_are_not_literal() {
    let gateway = common::gateway_url();
    let data = common::pseudo_random_bytes(LIT_THRESHOLD as usize + 1, 0x4c17_0056);
    assert!(lit_cap(&data).is_none());
    let agent = common::http_agent();
    let cap = gateway_cap(&agent, "PUT", &format!("{gateway}/uri"), &data);
    assert!(
        cap.starts_with("URI:CHK:") && cap.ends_with(":56"),
        "56 bytes should give a URI:CHK:…:56 cap (got kind {})",
        kind(&cap)
    );
}

#[test]
fn empty_dir_cap_matches_the_gateway() {
    let agent = common::http_agent();
    for gateway in [common::gateway_url(), common::gateway_url_3n()] {
        let url = format!("{gateway}/uri?t=mkdir-immutable");
        for body in [&b"{}"[..], b""] {
            let cap = gateway_cap(&agent, "POST", &url, body);
            assert_eq!(
                cap,
                empty_dir_cap().as_str(),
                "mkdir-immutable with body {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
