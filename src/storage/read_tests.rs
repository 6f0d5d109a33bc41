//! Native reads against the real 3-node HTTPS test grid
//! (`LAFS_TEST_GRID_3N_DIR`, `scripts/test --lib storage::read`): the
//! gateway `Client`'s read methods in native mode give what they give
//! through the gateway. Without the grid the tests say so and pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{NativeStorage, Retry, RetryDelay, Timeouts};
use crate::edge::{Child, EdgeMeta, children_json, every_key_meta as full_meta};
use crate::storage::grid_tests::{data, free_port, nonce};
use crate::storage::native::{NativePath, Setup, setup};
use crate::tahoe::{Cap, Client};

/// The 3-node grid's gateway node directory and URL.
fn grid() -> Option<(PathBuf, String)> {
    let Some(dir) = std::env::var_os("LAFS_TEST_GRID_3N_DIR") else {
        eprintln!("LAFS_TEST_GRID_3N_DIR not set (no test grid): skipped; run scripts/test");
        return None;
    };
    let dir = PathBuf::from(dir);
    let url = std::fs::read_to_string(dir.join("gateway.url")).ok()?;
    Some((dir.join("gateway"), url.trim().to_owned()))
}

/// The gateway client, and a client in native mode whose gateway is not
/// there (a port nothing listens on): whatever it reads, it read natively.
fn clients(node: &std::path::Path, url: &str) -> (Client, Client) {
    let make = |url: &str| {
        Client::new(
            &format!("{url}/uri"),
            &Retry {
                attempts: 1,
                delay: RetryDelay::Fixed(0.2),
            },
            &Timeouts::PerAttempt(vec![120.0, 120.0]),
        )
        .unwrap()
    };
    let cfg = NativeStorage {
        node_dir: Some(node.to_path_buf()),
        convergence_file: None,
        lease_secret_file: None,
        servers: Vec::new(),
        required: true,
    };
    let Setup::Ready(native) = setup(&cfg).unwrap() else {
        panic!("the 3-node grid's node dir gives the native path");
    };
    let nothing = free_port();
    (
        make(url),
        make(&format!("http://127.0.0.1:{nothing}"))
            .with_native(Arc::new(NativePath::new(native, true))),
    )
}

/// A listing as `(name, child)` in the order `list_dir` hands them out.
fn listing(client: &Client, dir: &Cap) -> Vec<(String, Value)> {
    client
        .list_dir(
            dir,
            Vec::new,
            |acc: &mut Vec<(String, Value)>, name, child| acc.push((name, child)),
        )
        .unwrap()
}

#[test]
fn native_reads_equal_the_gateways() {
    let Some((node, url)) = grid() else {
        return;
    };
    let (gateway, native) = clients(&node, &url);
    let seed = nonce();
    // Files: literal, one segment, several segments with a short tail.
    let sizes = [0usize, 40, 56, 1000, 2 * 1024 * 1024 + 12_345];
    let files: Vec<(Vec<u8>, Cap)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let content = data(len, seed ^ (i as u64 + 1));
            let cap = gateway.upload_bytes(&content).unwrap();
            (content, cap)
        })
        .collect();
    for (content, cap) in &files {
        assert!(native.download(cap).unwrap() == *content);
        assert!(native.download_at_most(cap, 1 << 30, "the file").unwrap() == *content);
        let streamed = native
            .download_with(cap, |body| {
                let mut out = Vec::new();
                std::io::Read::read_to_end(body, &mut out)?;
                Ok(out)
            })
            .unwrap();
        assert!(streamed == *content);
        let size = content.len() as u64;
        for (offset, len) in [
            (0, 1),
            (0, size),
            (size / 3, 4096),
            (1024 * 1024 - 5, 10),
            (size.saturating_sub(1), 5),
        ] {
            let want = native.download_range(cap, size, offset, len).unwrap();
            let end = offset.saturating_add(len).min(size);
            let expected = content
                .get(offset.min(end) as usize..end as usize)
                .unwrap_or_default();
            assert!(want == expected, "range {offset}+{len} of {size}");
        }
    }
    // A body longer than the caller allows is refused before any read.
    let big = &files[4].1;
    let err = native.download_at_most(big, 100, "the file").unwrap_err();
    assert!(
        matches!(err, crate::tahoe::TahoeError::TooLarge { .. }),
        "{err}"
    );
    // A sink that stops early is an incomplete read, as on the gateway.
    let err = native
        .download_with(big, |body| {
            let mut first = [0u8; 10];
            std::io::Read::read_exact(body, &mut first)
        })
        .unwrap_err();
    assert!(
        matches!(err, crate::tahoe::TahoeError::Incomplete { .. }),
        "{err}"
    );

    // Directories: awkward names and every metadata key, files and
    // directories of every kind as children, nested, empty.
    let ctl = crate::names::edge_name(b"ctl\x01\x7f\xff name", false);
    let names = [
        "a\u{301} nfd".to_string(),
        "\u{1F600} non-bmp".into(),
        "quote \" \\ back".into(),
        ctl.name.clone(),
        "plain".into(),
    ];
    let mut kids: Vec<Child> = names
        .iter()
        .zip(&files)
        .map(|(name, (_, cap))| Child {
            name: name.clone(),
            cap: cap.clone(),
            is_dir: false,
            meta: EdgeMeta {
                name_raw: ctl.raw.clone().filter(|_| *name == ctl.name),
                ..full_meta()
            },
        })
        .collect();
    let empty = gateway.mkdir_immutable("{}").unwrap();
    kids.push(Child {
        name: "empty dir".into(),
        cap: empty.clone(),
        is_dir: true,
        meta: EdgeMeta {
            mode: Some(0o40755),
            ..Default::default()
        },
    });
    let tiny = gateway
        .mkdir_immutable(&children_json(&[Child {
            name: "t".into(),
            cap: Cap::empty_literal(),
            is_dir: false,
            meta: EdgeMeta::default(),
        }]))
        .unwrap();
    kids.push(Child {
        name: "tiny dir".into(),
        cap: tiny.clone(),
        is_dir: true,
        meta: full_meta(),
    });
    let dir = gateway.mkdir_immutable(&children_json(&kids)).unwrap();
    let top = gateway
        .mkdir_immutable(&children_json(&[Child {
            name: "sub".into(),
            cap: dir.clone(),
            is_dir: true,
            meta: full_meta(),
        }]))
        .unwrap();
    let mut dirs = vec![top.clone(), dir.clone(), empty, tiny];
    // Every kind of directory cap is in the test.
    let prefixes: BTreeMap<&str, usize> = dirs.iter().fold(BTreeMap::new(), |mut m, d| {
        let p = if d.as_str().starts_with("URI:DIR2-CHK:") {
            "chk"
        } else {
            "lit"
        };
        *m.entry(p).or_default() += 1;
        m
    });
    assert!(prefixes.len() == 2, "{prefixes:?}");
    // And a directory a native backup would make: ours is the gateway's.
    dirs.push(
        Cap::parse(
            &native
                .native()
                .unwrap()
                .native()
                .upload_dir_json(&children_json(&kids))
                .unwrap(),
        )
        .unwrap(),
    );
    for d in &dirs {
        let ours = listing(&native, d);
        let theirs = listing(&gateway, d);
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(a == b, "child {:?} differs from the gateway's listing", a.0);
        }
    }
}

#[test]
fn a_listing_over_the_limit_is_too_large_natively() {
    let Some((node, url)) = grid() else {
        return;
    };
    let (gateway, native) = clients(&node, &url);
    let seed = nonce();
    let kids: Vec<Child> = (0..40)
        .map(|i| Child {
            name: format!("file {i} {seed}"),
            cap: crate::tahoe::lit_cap(format!("{i}").as_bytes()).unwrap(),
            is_dir: false,
            meta: full_meta(),
        })
        .collect();
    let dir = gateway.mkdir_immutable(&children_json(&kids)).unwrap();
    let native = native.with_max_listing_bytes(1024);
    let err = native
        .list_dir(&dir, Vec::new, |acc: &mut Vec<String>, name, _| {
            acc.push(name)
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            crate::tahoe::TahoeError::TooLarge {
                hint: Some("http.max_listing_bytes"),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_native_failure_falls_back_to_the_gateway_unless_required() {
    let Some((node, url)) = grid() else {
        return;
    };
    let (gateway, _) = clients(&node, &url);
    let content = data(1000, nonce());
    let file = gateway.upload_bytes(&content).unwrap();
    let dir = gateway
        .mkdir_immutable(&children_json(&[Child {
            name: "f".into(),
            cap: file.clone(),
            is_dir: false,
            meta: full_meta(),
        }]))
        .unwrap();
    // The only storage server known is not there.
    let port = free_port();
    let swissnum = "notthereswissnum";
    for required in [false, true] {
        let cfg = NativeStorage {
            node_dir: Some(node.clone()),
            convergence_file: None,
            lease_secret_file: None,
            servers: vec![format!(
                "pb://{}@127.0.0.1:{port}/{swissnum}#v=1",
                "A".repeat(43)
            )],
            required,
        };
        let Setup::Ready(native) = setup(&cfg).unwrap() else {
            panic!("a static server list gives the native path");
        };
        let client = Client::new(
            &format!("{url}/uri"),
            &Retry {
                attempts: 1,
                delay: RetryDelay::Fixed(0.2),
            },
            &Timeouts::PerAttempt(vec![120.0]),
        )
        .unwrap()
        .with_native(Arc::new(NativePath::new(native, required)));
        let read = client.download(&file);
        let listed = client.list_dir(&dir, Vec::new, |acc: &mut Vec<String>, n, _| acc.push(n));
        if !required {
            assert!(read.unwrap() == content, "read through the gateway");
            assert_eq!(listed.unwrap(), ["f"]);
            continue;
        }
        for err in [read.unwrap_err(), listed.unwrap_err()] {
            let text = err.to_string();
            assert!(matches!(err, crate::tahoe::TahoeError::Native(_)), "{text}");
            assert!(
                text.starts_with(
                    "the native storage path failed and destination.native.required is true: "
                ),
                "{text}"
            );
            assert!(!text.contains("URI:") && !text.contains(swissnum), "{text}");
        }
    }
}
