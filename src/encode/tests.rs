use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::*;
use crate::config::{XzOptions, XzRule};

fn config(codec: Codec, min_size: Option<u64>, rules: &[(XzAction, &str)]) -> config::Encoding {
    let mut encoding = crate::config::Config::default().destination.encoding;
    encoding.codec = codec;
    encoding.xz.enabled = true;
    encoding.xz.min_size = min_size;
    encoding.xz.path_filter = rules
        .iter()
        .map(|(action, re)| XzRule {
            action: *action,
            regex: (*re).to_owned(),
        })
        .collect();
    encoding
}

fn encoder(codec: Codec) -> Encoder {
    Encoder::new(&config(codec, Some(0), &[])).unwrap()
}

/// Deterministic incompressible bytes.
fn random(len: usize, seed: &[u8]) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Deterministic text of pseudo-random words: compressible, not trivially.
fn text(len: usize) -> Vec<u8> {
    const WORDS: &str = "backup grid share lease tahoe file directory capability immutable \
        upload the of and a to storage server node compress xz zstd hash cache queue metadata edge";
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(len + 16);
    let mut column = 0;
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let word = words[(state >> 33) as usize % words.len()];
        out.extend_from_slice(word.as_bytes());
        column += word.len() + 1;
        if column > 72 {
            out.push(b'\n');
            column = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, data).unwrap();
    path
}

fn body(prepared: &Prepared) -> Vec<u8> {
    let mut out = Vec::new();
    prepared.open().unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, prepared.body_size);
    out
}

fn decode(encoding: Option<Encoding>, body: &[u8]) -> Vec<u8> {
    match encoding {
        None => body.to_vec(),
        Some(Encoding::Xz) => {
            let mut out = Vec::new();
            liblzma::read::XzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Some(Encoding::Zstd) => zstd::stream::decode_all(body).unwrap(),
    }
}

fn hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

// ------------------------------------------------------------------ rules

#[test]
fn min_size_decides_without_rules() {
    let e = Encoder::new(&config(Codec::Xz, Some(5120), &[])).unwrap();
    assert_eq!(e.choose(b"a", 5119), None);
    assert_eq!(e.choose(b"a", 5120), Some(Encoding::Xz));
    let never = Encoder::new(&config(Codec::Xz, None, &[])).unwrap();
    assert_eq!(never.choose(b"a", 1 << 30), None);
}

#[test]
fn rules_in_order_first_match_wins() {
    let e = Encoder::new(&config(
        Codec::Xz,
        Some(5120),
        &[
            (XzAction::Never, r"\.(gz|xz|jpg)$"),
            (XzAction::AtLeast(0), r"\.txt$"),
            (XzAction::UseMinSize, r"^/logs/"),
        ],
    ))
    .unwrap();
    assert_eq!(e.choose(b"big.jpg", 1 << 20), None);
    assert_eq!(e.choose(b"tiny.txt", 3), Some(Encoding::Xz));
    assert_eq!(e.choose(b"logs/a.txt", 3), Some(Encoding::Xz));
    assert_eq!(e.choose(b"logs/a", 3), None);
    assert_eq!(e.choose(b"logs/a", 6000), Some(Encoding::Xz));
}

#[test]
fn disabled_never_compresses() {
    let mut c = config(Codec::Zstd, Some(0), &[(XzAction::AtLeast(0), ".")]);
    c.xz.enabled = false;
    assert_eq!(Encoder::new(&c).unwrap().choose(b"x", 1 << 20), None);
}

#[test]
fn codec_selects_the_encoding_of_the_rules() {
    let rules = [(XzAction::AtLeast(1024), r"\.txt$"), (XzAction::Never, ".")];
    let xz = Encoder::new(&config(Codec::Xz, Some(0), &rules)).unwrap();
    let zstd = Encoder::new(&config(Codec::Zstd, Some(0), &rules)).unwrap();
    assert_eq!(xz.codec(), Encoding::Xz);
    assert_eq!(zstd.codec(), Encoding::Zstd);
    assert_eq!(xz.choose(b"a.txt", 1024), Some(Encoding::Xz));
    assert_eq!(zstd.choose(b"a.txt", 1024), Some(Encoding::Zstd));
    assert_eq!(zstd.choose(b"a.txt", 1023), None);
    assert_eq!(zstd.choose(b"a.bin", 1 << 20), None);
}

#[test]
fn decision_tags_name_codec_and_settings() {
    let e = encoder(Codec::Xz);
    assert_eq!(e.decision_tag(None), "enc:none");
    assert_eq!(e.decision_tag(Some(Encoding::Xz)), "enc:xz:6");
    assert_eq!(e.decision_tag(Some(Encoding::Zstd)), "enc:zstd:3");

    let mut c = config(Codec::Xz, Some(0), &[]);
    c.xz.options = Some(XzOptions {
        level: 9,
        extreme: true,
    });
    c.zstd.level = 19;
    let e = Encoder::new(&c).unwrap();
    assert_eq!(e.decision_tag(Some(Encoding::Xz)), "enc:xz:9e");
    assert_eq!(e.decision_tag(Some(Encoding::Zstd)), "enc:zstd:19");
    assert_eq!(e.decision_tag(None), "enc:none");

    c.xz.options = Some(XzOptions {
        level: 9,
        extreme: false,
    });
    let e = Encoder::new(&c).unwrap();
    assert_eq!(e.decision_tag(Some(Encoding::Xz)), "enc:xz:9");
}

#[test]
fn level_changes_change_the_tag_of_that_codec_only() {
    let mut c = config(Codec::Zstd, Some(0), &[]);
    let before = Encoder::new(&c).unwrap();
    c.zstd.level = 4;
    let after = Encoder::new(&c).unwrap();
    let zstd = Some(Encoding::Zstd);
    assert_ne!(before.decision_tag(zstd), after.decision_tag(zstd));
    assert_eq!(
        before.decision_tag(Some(Encoding::Xz)),
        after.decision_tag(Some(Encoding::Xz))
    );
    assert_eq!(before.decision_tag(None), after.decision_tag(None));
    // Switching the codec changes the decision, hence the tag.
    let xz = Encoder::new(&config(Codec::Xz, Some(0), &[])).unwrap();
    assert_ne!(
        xz.decision_tag(xz.choose(b"a", 10)),
        after.decision_tag(after.choose(b"a", 10))
    );
}

#[test]
fn bad_settings_name_the_key() {
    for level in [0, 20, 1 << 40] {
        let mut c = config(Codec::Zstd, Some(0), &[]);
        c.zstd.level = level;
        let err = Encoder::new(&c).unwrap_err();
        assert!(
            err.starts_with("destination.encoding.zstd.level: "),
            "{err}"
        );
        assert!(err.contains(&format!("not {level}")), "{err}");
    }
    for level in [1, 19] {
        let mut c = config(Codec::Zstd, Some(0), &[]);
        c.zstd.level = level;
        Encoder::new(&c).unwrap();
    }
    let mut c = config(Codec::Xz, Some(0), &[]);
    c.xz.options = Some(XzOptions {
        level: 10,
        extreme: false,
    });
    let err = Encoder::new(&c).unwrap_err();
    assert!(
        err.starts_with("destination.encoding.xz.options.level: "),
        "{err}"
    );

    let c = config(
        Codec::Xz,
        Some(0),
        &[(XzAction::Never, "ok"), (XzAction::Never, "(")],
    );
    let err = Encoder::new(&c).unwrap_err();
    assert!(
        err.starts_with("destination.encoding.xz.path_filter rule #2 \"(\": "),
        "{err}"
    );
}

#[test]
fn xz_max_parallel_must_be_at_least_one() {
    let mut c = config(Codec::Xz, Some(0), &[]);
    c.xz.max_parallel = 0;
    let err = Encoder::new(&c).unwrap_err();
    assert!(
        err.starts_with("destination.encoding.xz.max_parallel: must be at least 1, not 0"),
        "{err}"
    );
    c.xz.max_parallel = 3;
    assert_eq!(Encoder::new(&c).unwrap().xz_max_parallel, 3);
}

#[test]
fn the_base_config_compresses_with_zstd() {
    let e = Encoder::new(&crate::config::Config::default().destination.encoding).unwrap();
    assert_eq!(e.codec(), Encoding::Zstd);
    assert_eq!(e.xz_max_parallel, 1);
    let decision = e.choose(b"notes.txt", 10_000);
    assert_eq!(decision, Some(Encoding::Zstd));
    assert_eq!(e.decision_tag(decision), "enc:zstd:3");
}

#[test]
fn a_second_xz_encoder_waits_for_the_slot_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(200_000);
    let path = write(dir.path(), "t.txt", &data);
    let mut c = config(Codec::Xz, Some(0), &[]);
    c.xz.max_parallel = 1;
    let e = Encoder::new(&c).unwrap();
    // Hold the only slot, as a first upload worker compressing would.
    let held = gate::XzSlot::acquire(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let prepared = e.prepare(&path, Some(Encoding::Xz));
        tx.send(()).unwrap();
        prepared
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "a second xz encoder ran while the only slot was held"
    );
    drop(held);
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the waiting encoder runs once the slot is free");
    let prepared = worker.join().unwrap().unwrap();
    assert_eq!(prepared.encoding, Some(Encoding::Xz));
    assert!(decode(prepared.encoding, &body(&prepared)) == data);
}

#[test]
fn encoding_names_round_trip() {
    for e in [Encoding::Xz, Encoding::Zstd] {
        assert_eq!(Encoding::from_name(e.as_str()), Some(e));
    }
    assert_eq!(Encoding::from_name("gzip"), None);
    assert_eq!(Encoding::from_name("XZ"), None);
}

// ---------------------------------------------------------------- prepare

#[test]
fn text_is_compressed_with_either_codec() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(1 << 20);
    let path = write(dir.path(), "a.txt", &data);
    for codec in [Codec::Xz, Codec::Zstd] {
        let e = encoder(codec);
        let decision = e.choose(b"a.txt", data.len() as u64);
        assert_eq!(decision, Some(codec.into()));
        let p = e.prepare(&path, decision).unwrap();
        assert_eq!(p.encoding, decision, "{codec:?}");
        assert_eq!(p.raw_size, data.len() as u64);
        assert_eq!(p.raw_hash, hash(&data));
        assert!(p.body_size < p.raw_size / 2, "{codec:?}: {}", p.body_size);
        let packed = body(&p);
        match codec {
            // Stream flags: CRC64 is check id 4.
            Codec::Xz => assert!(packed.starts_with(b"\xfd7zXZ\0\0\x04"), "{codec:?}"),
            // Frame magic; the descriptor's content checksum flag.
            Codec::Zstd => {
                assert!(packed.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
                assert_ne!(packed[4] & 0x04, 0, "no zstd checksum");
            }
        }
        assert_eq!(decode(p.encoding, &packed), data, "{codec:?}");
    }
}

#[test]
fn random_content_is_sent_raw_even_when_a_rule_selects_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = random(1 << 20, b"one mebibyte");
    let path = write(dir.path(), "r.txt", &data);
    for codec in [Codec::Xz, Codec::Zstd] {
        let e = Encoder::new(&config(codec, None, &[(XzAction::AtLeast(0), r"\.txt$")])).unwrap();
        let decision = e.choose(b"r.txt", data.len() as u64);
        assert_eq!(decision, Some(codec.into()));
        let p = e.prepare(&path, decision).unwrap();
        assert_eq!(p.encoding, None, "{codec:?}");
        assert_eq!(p.raw_size, data.len() as u64);
        assert_eq!(p.body_size, p.raw_size);
        assert_eq!(p.raw_hash, hash(&data));
        assert_eq!(body(&p), data);
    }
}

#[test]
fn small_random_file_is_sent_raw() {
    let dir = tempfile::tempdir().unwrap();
    for len in [56, 300, 4096] {
        let data = random(len, b"small");
        let path = write(dir.path(), "s", &data);
        for codec in [Codec::Xz, Codec::Zstd] {
            let p = encoder(codec).prepare(&path, Some(codec.into())).unwrap();
            assert_eq!(p.encoding, None, "{codec:?} {len}");
            assert_eq!(p.body_size, len as u64);
            assert_eq!(p.raw_hash, hash(&data));
            assert_eq!(body(&p), data);
        }
    }
}

/// Without the probe, compressing runs and its result is thrown away for
/// not being smaller: the hash still covers the
/// whole file.
#[test]
fn result_not_smaller_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    for len in [100, 4096, 1 << 20] {
        let data = random(len, b"no probe");
        let path = write(dir.path(), "n", &data);
        for codec in [Codec::Xz, Codec::Zstd] {
            let mut e = encoder(codec);
            e.probe_size = 0;
            let p = e.prepare(&path, Some(codec.into())).unwrap();
            assert_eq!(p.encoding, None, "{codec:?} {len}");
            assert_eq!(p.raw_size, len as u64);
            assert_eq!(p.body_size, len as u64);
            assert_eq!(p.raw_hash, hash(&data), "{codec:?} {len}");
            assert_eq!(body(&p), data);
        }
    }
}

#[test]
fn probe_tells_text_from_compressed_data() {
    assert!(prepare::compressible(&text(PROBE_SIZE)));
    assert!(prepare::compressible(&text(200)));
    assert!(!prepare::compressible(&random(PROBE_SIZE, b"p")));
    assert!(!prepare::compressible(&[]));
    // An already compressed file.
    let packed = zstd::bulk::compress(&text(1 << 20), 19).unwrap();
    assert!(!prepare::compressible(&packed[..PROBE_SIZE]));
    // Just under and just over the 5 % line: random bytes, some zeros.
    let mut sample = random(PROBE_SIZE, b"q");
    sample[..PROBE_SIZE / 50].fill(0);
    assert!(!prepare::compressible(&sample), "2 % zeros");
    sample[..PROBE_SIZE / 10].fill(0);
    assert!(prepare::compressible(&sample), "10 % zeros");
}

#[test]
fn a_decision_of_none_sends_raw_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(100_000);
    let path = write(dir.path(), "t", &data);
    let p = encoder(Codec::Xz).prepare(&path, None).unwrap();
    assert_eq!(p.encoding, None);
    assert_eq!((p.raw_size, p.body_size), (100_000, 100_000));
    assert_eq!(p.raw_hash, hash(&data));
    assert_eq!(body(&p), data);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "e", b"");
    for decision in [None, Some(Encoding::Xz), Some(Encoding::Zstd)] {
        for probe_size in [0, PROBE_SIZE] {
            let mut e = encoder(Codec::Xz);
            e.probe_size = probe_size;
            let p = e.prepare(&path, decision).unwrap();
            assert_eq!(p.encoding, None);
            assert_eq!((p.raw_size, p.body_size), (0, 0));
            assert_eq!(p.raw_hash, hash(b""));
            assert_eq!(body(&p), b"");
        }
    }
    // An empty file that is no longer empty.
    let p = encoder(Codec::Xz).prepare(&path, None).unwrap();
    fs::write(&path, b"x").unwrap();
    let err = p.open().unwrap().read_to_end(&mut Vec::new()).unwrap_err();
    assert!(is_file_changed(&err), "{err}");
}

#[test]
fn missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = encoder(Codec::Xz)
        .prepare(&dir.path().join("gone"), Some(Encoding::Xz))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn bodies_open_again_with_their_own_position() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(300_000);
    let path = write(dir.path(), "t", &data);
    for decision in [None, Some(Encoding::Xz), Some(Encoding::Zstd)] {
        let p = encoder(Codec::Xz).prepare(&path, decision).unwrap();
        assert_eq!(p.encoding, decision);
        let first = body(&p);
        assert_eq!(body(&p), first);
        // Interleaved readers do not disturb each other.
        let mut a = p.open().unwrap();
        let mut start = vec![0; 1000];
        a.read_exact(&mut start).unwrap();
        let mut b = p.open().unwrap();
        let mut whole = Vec::new();
        b.read_to_end(&mut whole).unwrap();
        a.read_to_end(&mut start).unwrap();
        assert_eq!(start, first);
        assert_eq!(whole, first);
        assert_eq!(decode(p.encoding, &first), data);
    }
}

#[test]
fn spool_survives_the_source_changing() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(200_000);
    let path = write(dir.path(), "t", &data);
    let p = encoder(Codec::Zstd)
        .prepare(&path, Some(Encoding::Zstd))
        .unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(decode(p.encoding, &body(&p)), data);
}

#[test]
fn raw_body_of_a_changed_file_fails_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = random(300_000, b"changing");
    let path = write(dir.path(), "c", &data);
    let e = encoder(Codec::Xz);

    // Same length, one byte different (near the end).
    let p = e.prepare(&path, Some(Encoding::Xz)).unwrap();
    assert_eq!(p.encoding, None);
    let mut changed = data.clone();
    changed[299_000] ^= 1;
    fs::write(&path, &changed).unwrap();
    let mut out = Vec::new();
    let err = p.open().unwrap().read_to_end(&mut out).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(is_file_changed(&err));
    assert!(
        err.to_string()
            .starts_with("the file changed while it was uploaded: its content differs"),
        "{err}"
    );
    // The changed bytes were never returned.
    assert!(out.len() < 299_000, "{}", out.len());

    // A reader that stops at the expected length gets the error too.
    let mut exact = vec![0; data.len()];
    let err = p.open().unwrap().read_exact(&mut exact).unwrap_err();
    assert!(is_file_changed(&err), "{err}");

    // Shorter.
    fs::write(&path, &data).unwrap();
    let p = e.prepare(&path, None).unwrap();
    fs::write(&path, &data[..1000]).unwrap();
    let err = p.open().unwrap().read_to_end(&mut Vec::new()).unwrap_err();
    assert!(is_file_changed(&err), "{err}");
    assert!(
        err.to_string().contains("shorter than the 300000 bytes"),
        "{err}"
    );

    // Longer: the expected bytes come out, then the error instead of EOF.
    fs::write(&path, &data).unwrap();
    let p = e.prepare(&path, None).unwrap();
    let mut longer = data.clone();
    longer.push(0);
    fs::write(&path, &longer).unwrap();
    let mut out = Vec::new();
    let err = p.open().unwrap().read_to_end(&mut out).unwrap_err();
    assert!(is_file_changed(&err), "{err}");
    assert!(err.to_string().contains("longer than"), "{err}");
    assert_eq!(out, data);

    // Unchanged again: reads fine.
    fs::write(&path, &data).unwrap();
    assert_eq!(body(&p), data);

    // Other errors are not "changed".
    assert!(!is_file_changed(&io::Error::new(
        io::ErrorKind::InvalidData,
        "something else"
    )));
}

/// 20 MiB through both codecs, streamed (neither the file nor its
/// compressed form is held in memory by `prepare`).
#[test]
fn large_file_streams() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(20 << 20);
    let path = write(dir.path(), "big.log", &data);
    for codec in [Codec::Zstd, Codec::Xz] {
        let mut c = config(codec, Some(0), &[]);
        // Level 1 keeps the debug-build test quick; the streaming is the same.
        c.xz.options = Some(XzOptions {
            level: 1,
            extreme: false,
        });
        let e = Encoder::new(&c).unwrap();
        let p = e.prepare(&path, Some(codec.into())).unwrap();
        assert_eq!(p.encoding, Some(codec.into()));
        assert_eq!(p.raw_size, data.len() as u64);
        assert_eq!(p.raw_hash, hash(&data));
        assert!(p.body_size < p.raw_size / 2);
        // Decode from the body reader as a stream.
        let mut decoded = Vec::with_capacity(data.len());
        match codec {
            Codec::Xz => liblzma::read::XzDecoder::new(p.open().unwrap())
                .read_to_end(&mut decoded)
                .unwrap(),
            Codec::Zstd => zstd::stream::read::Decoder::new(p.open().unwrap())
                .unwrap()
                .read_to_end(&mut decoded)
                .unwrap(),
        };
        assert!(decoded == data, "{codec:?} round trip");
    }
}

// ------------------------------------------------------- bytes in memory

/// `prepare_bytes` (a stream's chunk, no temporary file) gives the body and
/// encoding that `prepare_file` gives for the same bytes in a file: the
/// same rules, probe, codec output and "not smaller" check.
#[test]
fn bytes_in_memory_encode_as_the_file_path_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut half = text(300_000);
    half.extend(random(300_000, b"half"));
    let cases: [(&str, Vec<u8>); 6] = [
        ("empty", Vec::new()),
        ("tiny text", text(200)),
        ("text", text(PROBE_SIZE + 1)),
        ("large text", text(3 << 20)),
        ("random", random(1 << 20, b"in memory")),
        ("text then random", half),
    ];
    for (what, data) in cases {
        let path = write(dir.path(), "f", &data);
        for codec in [Codec::Xz, Codec::Zstd] {
            for probe in [true, false] {
                let mut e = encoder(codec);
                if !probe {
                    e.probe_size = 0;
                }
                for decision in [None, Some(codec.into())] {
                    let file = e.prepare(&path, decision).unwrap();
                    let mem = e.prepare_bytes(data.clone(), decision).unwrap();
                    let case = format!("{what}, {codec:?}, probe {probe}, {decision:?}");
                    assert_eq!(mem.encoding, file.encoding, "{case}");
                    assert!(mem.body == body(&file), "{case}: bodies differ");
                    assert!(decode(mem.encoding, &mem.body) == data, "{case}");
                }
            }
        }
    }
}

/// A compressed form that would not be smaller is given up for the raw
/// bytes (the in-memory sink never grows to the chunk's size).
#[test]
fn bytes_in_memory_not_smaller_are_sent_raw() {
    for codec in [Codec::Xz, Codec::Zstd] {
        let mut e = encoder(codec);
        e.probe_size = 0;
        let data = random(100_000, b"not smaller");
        let p = e.prepare_bytes(data.clone(), Some(codec.into())).unwrap();
        assert_eq!(p.encoding, None, "{codec:?}");
        assert!(p.body == data);
    }
}
