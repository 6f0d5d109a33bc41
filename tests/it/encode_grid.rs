//! `lafs_backup::Encoder` bodies uploaded to the REAL local grid that
//! `scripts/test` starts (`LAFS_TEST_GATEWAY`), then downloaded through the
//! gateway with the test's own HTTP code and decoded with the codecs' own
//! decoders.
//!
//! Every test uploads content of its own (identical content uploaded
//! concurrently to one grid can fail with UploadUnhappinessError).

use crate::common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use lafs_backup::{
    Cap, Client, Codec, Config, Encoder, Encoding, Prepared, Retry, RetryDelay, TahoeError,
    Timeouts, XzAction, XzRule, is_file_changed,
};

fn client() -> Client {
    Client::new(
        &format!("{}/uri", common::gateway_url()),
        &Retry {
            attempts: 3,
            delay: RetryDelay::Fixed(0.2),
        },
        &Timeouts::PerAttempt(vec![120.0, 120.0]),
    )
    .expect("client for LAFS_TEST_GATEWAY")
}

/// An encoder with `codec` and the given `path_filter` rules (no min_size).
fn encoder(codec: Codec, rules: &[(XzAction, &str)]) -> Encoder {
    let mut encoding = Config::default().destination.encoding;
    encoding.codec = codec;
    encoding.xz.enabled = true;
    encoding.xz.min_size = None;
    encoding.xz.path_filter = rules
        .iter()
        .map(|(action, regex)| XzRule {
            action: *action,
            regex: (*regex).to_owned(),
        })
        .collect();
    Encoder::new(&encoding).expect("encoder")
}

/// Compressible text, different for every `seed`.
fn text(len: usize, seed: &str) -> Vec<u8> {
    let words: Vec<&str> = "backup grid share lease tahoe file directory capability immutable \
        upload the of and a to storage server node compress hash cache queue metadata edge"
        .split_whitespace()
        .collect();
    let mut out = format!("{seed}\n").into_bytes();
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(words[(state >> 33) as usize % words.len()].as_bytes());
        out.push(if state & 0xf == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// The stored bytes of `cap`, through the gateway.
fn download(cap: &Cap) -> Vec<u8> {
    let mut out = Vec::new();
    common::http_agent()
        .get(format!("{}/uri/{}", common::gateway_url(), cap.as_str()))
        .call()
        .expect("download")
        .into_body()
        .into_reader()
        .read_to_end(&mut out)
        .expect("download body");
    out
}

fn decode(encoding: Option<Encoding>, stored: &[u8]) -> Vec<u8> {
    match encoding {
        None => stored.to_vec(),
        Some(Encoding::Xz) => {
            let mut out = Vec::new();
            liblzma::read::XzDecoder::new(stored)
                .read_to_end(&mut out)
                .expect("xz stream");
            out
        }
        Some(Encoding::Zstd) => zstd::stream::decode_all(stored).expect("zstd frame"),
    }
}

/// Prepares the file `name` under `dir` as the uploader does (rule
/// decision, then prepare), uploads it and checks what the grid stores.
fn upload(client: &Client, e: &Encoder, dir: &Path, name: &str) -> (Prepared, Cap) {
    let path = dir.join(name);
    let source = fs::read(&path).unwrap();
    let decision = e.choose(name.as_bytes(), source.len() as u64);
    let prepared = e.prepare(&path, decision).expect("prepare");
    assert_eq!(prepared.raw_size, source.len() as u64, "{name}");
    assert_eq!(
        prepared.raw_hash,
        *blake3::hash(&source).as_bytes(),
        "{name}"
    );
    let cap = client.upload(|| prepared.open()).expect("upload");
    let stored = download(&cap);
    assert_eq!(stored.len() as u64, prepared.body_size, "{name}");
    assert!(
        decode(prepared.encoding, &stored) == source,
        "{name}: the stored bytes do not decode to the source"
    );
    (prepared, cap)
}

/// The issue's check: with zstd chosen and a `[0, '\.txt$']` rule, text
/// files of at least 1 KiB are stored as zstd frames that decompress to the
/// source; a random-content file matching the rule is stored as it is.
#[test]
fn zstd_compresses_text_and_stores_random_content_raw() {
    let dir = tempfile::tempdir().unwrap();
    let seed = "encode_grid zstd_compresses_text";
    fs::write(
        dir.path().join("small.txt"),
        text(1024, &format!("{seed} small")),
    )
    .unwrap();
    fs::write(
        dir.path().join("big.txt"),
        text(300_000, &format!("{seed} big")),
    )
    .unwrap();
    fs::write(
        dir.path().join("other.log"),
        text(50_000, &format!("{seed} log")),
    )
    .unwrap();
    let random = common::pseudo_random_bytes(200_000, 0x0e4c_0de5);
    fs::write(dir.path().join("random.txt"), &random).unwrap();

    let e = encoder(Codec::Zstd, &[(XzAction::AtLeast(0), r"\.txt$")]);
    let client = client();
    for name in ["small.txt", "big.txt"] {
        let (p, _) = upload(&client, &e, dir.path(), name);
        assert_eq!(p.encoding, Some(Encoding::Zstd), "{name}");
        assert_eq!(p.encoding.map(Encoding::as_str), Some("zstd"));
        assert!(p.body_size < p.raw_size, "{name}");
    }
    let (p, _) = upload(&client, &e, dir.path(), "other.log");
    assert_eq!(p.encoding, None, "no rule selects it");

    let (p, random_cap) = upload(&client, &e, dir.path(), "random.txt");
    assert_eq!(
        e.choose(b"random.txt", random.len() as u64),
        Some(Encoding::Zstd)
    );
    assert_eq!(p.encoding, None, "random content must be stored raw");
    assert_eq!(p.body_size, p.raw_size);
    // Stored raw, it is the same object as an upload the rules skip.
    let raw = e.prepare(&dir.path().join("random.txt"), None).unwrap();
    assert_eq!(raw.raw_hash, p.raw_hash);
    let cap = client.upload(|| raw.open()).expect("upload");
    // (Caps are never printed in assertion messages.)
    assert!(cap == random_cap, "the same raw bytes give the same cap");
}

#[test]
fn xz_bodies_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("a.sql"),
        text(400_000, "encode_grid xz_bodies_round_trip"),
    )
    .unwrap();
    let e = encoder(Codec::Xz, &[(XzAction::AtLeast(0), ".")]);
    let (p, cap) = upload(&client(), &e, dir.path(), "a.sql");
    assert_eq!(p.encoding, Some(Encoding::Xz));
    assert!(p.body_size < p.raw_size / 2);
    assert!(!cap.is_literal());
}

/// A file that changes between prepare and upload fails the upload with
/// the body error, which the client does not retry.
#[test]
fn changed_file_fails_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.bin");
    let data = common::pseudo_random_bytes(150_000, 0xc4a9_6ed0);
    fs::write(&path, &data).unwrap();
    let e = encoder(Codec::Zstd, &[]);
    let p = e.prepare(&path, None).unwrap();
    let mut changed = data.clone();
    changed[149_999] ^= 0x55;
    fs::write(&path, &changed).unwrap();

    let opens = AtomicUsize::new(0);
    let err = client()
        .upload(|| {
            opens.fetch_add(1, Ordering::SeqCst);
            p.open()
        })
        .expect_err("a changed file must not upload");
    let TahoeError::Body(io) = &err else {
        panic!("expected a body error, got {err}");
    };
    assert!(is_file_changed(io), "{io}");
    assert!(
        io.to_string().contains("changed while it was uploaded"),
        "{io}"
    );
    assert_eq!(opens.load(Ordering::SeqCst), 1, "not retried");
}
