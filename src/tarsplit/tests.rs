//! Unit tests of the splitter, the index and the joiner on tars built here
//! byte by byte (the real GNU tar's archives are in tests/it/tarsplit.rs).

use std::io::{self, Cursor, Read};

use proptest::prelude::*;

use super::*;

/// A header block: `name` in the name field, `flag`, `size` in octal, the
/// given magic, a correct checksum.
fn header(name: &[u8], flag: u8, size: u64, magic: &[u8; 8]) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = flag;
    h[257..265].copy_from_slice(magic);
    checksum(&mut h);
    h
}

const USTAR: &[u8; 8] = b"ustar\x0000";
const GNU: &[u8; 8] = b"ustar  \0";

fn checksum(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// `data` and its padding to a block.
fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

/// A member: header and padded data.
fn member(name: &[u8], flag: u8, data: &[u8], magic: &[u8; 8]) -> Vec<u8> {
    let mut v = header(name, flag, data.len() as u64, magic);
    v.extend(padded(data));
    v
}

/// A pax record `LEN key=value\n`.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3;
    let mut len = body_len + 1;
    while format!("{len}").len() + body_len != len {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn end_blocks() -> Vec<u8> {
    vec![0u8; 1024]
}

/// What the splitter makes of `tar`: the records (payloads read whole)
/// and the payloads' bytes.
fn split(tar: &[u8]) -> Result<(Vec<Record>, Vec<Vec<u8>>), SplitError> {
    let mut sp = Splitter::new(tar);
    let mut records = Vec::new();
    let mut payloads = Vec::new();
    while let Some(event) = sp.next_event()? {
        match event {
            Event::Verbatim(bytes) => {
                assert!(!bytes.is_empty());
                records.push(Record::Verbatim(bytes));
            }
            Event::Payload {
                path,
                size,
                mut reader,
            } => {
                let mut body = Vec::new();
                reader.read_to_end(&mut body).map_err(|e| {
                    match e.into_inner().map(|inner| inner.downcast::<TarError>()) {
                        Some(Ok(tar)) => SplitError::Tar(*tar),
                        _ => panic!("a payload read error that is not a tar error"),
                    }
                })?;
                assert_eq!(body.len() as u64, size);
                records.push(Record::Payload { path, size });
                payloads.push(body);
            }
        }
    }
    Ok((records, payloads))
}

/// Split, write the index, join from it: the tar back.
fn round_trip(tar: &[u8]) -> Result<Vec<u8>, SplitError> {
    let (records, payloads) = split(tar)?;
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    for r in &records {
        w.record(r).unwrap();
    }
    let index = w.finish().unwrap();
    let mut out = Vec::new();
    let n = join(
        &index[..],
        |i, _, _| Ok(Cursor::new(payloads[usize::try_from(i).unwrap()].clone())),
        &mut out,
    )
    .unwrap();
    assert_eq!(n, out.len() as u64);
    Ok(out)
}

fn payload_list(records: &[Record]) -> Vec<(String, u64)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Payload { path, size } => Some((path.escape_ascii().to_string(), *size)),
            Record::Verbatim(_) => None,
        })
        .collect()
}

#[test]
fn a_ustar_member_is_header_payload_then_padding_and_end_blocks() {
    let mut tar = member(b"dir/file", b'0', b"hello", USTAR);
    tar.extend(end_blocks());
    let (records, payloads) = split(&tar).unwrap();
    assert_eq!(
        records,
        vec![
            Record::Verbatim(tar[..512].to_vec()),
            Record::Payload {
                path: b"dir/file".to_vec(),
                size: 5
            },
            Record::Verbatim(tar[517..].to_vec()),
        ]
    );
    assert_eq!(payloads, vec![b"hello".to_vec()]);
    assert_eq!(round_trip(&tar).unwrap(), tar);
}

#[test]
fn the_ustar_prefix_pax_path_and_gnu_long_name_make_the_path() {
    let mut prefixed = header(b"name", b'0', 1, USTAR);
    prefixed[345..351].copy_from_slice(b"prefix");
    checksum(&mut prefixed);
    let mut tar = prefixed;
    tar.extend(padded(b"p"));
    // A pax path and size override the header's.
    let mut pax = pax_record("path", b"pax/\xff long");
    pax.extend(pax_record("size", b"3"));
    tar.extend(member(b"PaxHeaders/x", b'x', &pax, USTAR));
    tar.extend(header(b"short", b'0', 999, USTAR));
    tar.extend(padded(b"abc"));
    // A GNU long name, NUL-terminated.
    let long = vec![b'n'; 300];
    let mut l = long.clone();
    l.push(0);
    tar.extend(member(b"././@LongLink", b'L', &l, GNU));
    tar.extend(member(&long[..100], b'0', b"xy", GNU));
    // An old GNU name field has no prefix even where the bytes are set.
    let mut gnu = header(b"gnu", b'0', 0, GNU);
    gnu[345..350].copy_from_slice(b"times");
    checksum(&mut gnu);
    tar.extend(gnu);
    tar.extend(end_blocks());
    let (records, _) = split(&tar).unwrap();
    assert_eq!(
        payload_list(&records),
        vec![
            ("prefix/name".to_owned(), 1),
            ("pax/\\xff long".to_owned(), 3),
            (String::from_utf8(long).unwrap(), 2),
            ("gnu".to_owned(), 0),
        ]
    );
    assert_eq!(round_trip(&tar).unwrap(), tar);
}

#[test]
fn global_pax_records_apply_to_every_later_member_and_local_ones_win() {
    let mut tar = member(b"g", b'g', &pax_record("path", b"global/name"), USTAR);
    tar.extend(member(b"a", b'0', b"1", USTAR));
    tar.extend(member(b"x", b'x', &pax_record("path", b"local"), USTAR));
    tar.extend(member(b"b", b'0', b"2", USTAR));
    tar.extend(end_blocks());
    let (records, _) = split(&tar).unwrap();
    assert_eq!(
        payload_list(&records),
        vec![("global/name".to_owned(), 1), ("local".to_owned(), 1)]
    );
}

#[test]
fn non_regular_members_are_verbatim_with_their_data_as_gnu_tar_reads_it() {
    let mut tar = header(b"dir/", b'5', 0, USTAR);
    tar.extend(header(b"link", b'2', 0, USTAR));
    // A GNU dumpdir carries data; GNU tar skips it, so it is verbatim.
    tar.extend(member(b"dd", b'D', b"Yfile\0\0", GNU));
    // A directory's size field is ignored by GNU tar: no data follows.
    tar.extend(header(b"odd/", b'5', 700, USTAR));
    // An old-style directory: a regular type with a trailing slash.
    tar.extend(header(b"old/", b'\0', 0, b"\0\0\0\0\0\0\0\0"));
    tar.extend(member(b"v7", b'\0', b"v7 data", b"\0\0\0\0\0\0\0\0"));
    tar.extend(end_blocks());
    let (records, payloads) = split(&tar).unwrap();
    assert_eq!(payload_list(&records), vec![("v7".to_owned(), 7)]);
    assert_eq!(payloads, vec![b"v7 data".to_vec()]);
    assert_eq!(round_trip(&tar).unwrap(), tar);
}

#[test]
fn an_old_gnu_sparse_member_with_extension_blocks_keeps_them_verbatim() {
    let mut h = header(b"sparse", b'S', 1024, GNU);
    h[482] = 1; // isextended
    checksum(&mut h);
    let mut tar = h;
    let mut ext1 = vec![0u8; 512];
    ext1[504] = 1; // another follows
    ext1[0..12].copy_from_slice(b"00000001000\0");
    tar.extend(&ext1);
    tar.extend(vec![0x11u8; 512]); // the last extension block (504 = 0x11?)
    let last = tar.len() - 512;
    tar[last + 504] = 0;
    let data: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    tar.extend(&data);
    tar.extend(end_blocks());
    let (records, payloads) = split(&tar).unwrap();
    assert_eq!(payload_list(&records), vec![("sparse".to_owned(), 1024)]);
    assert_eq!(payloads, vec![data]);
    assert_eq!(records[0], Record::Verbatim(tar[..1536].to_vec()));
    assert_eq!(round_trip(&tar).unwrap(), tar);
}

#[test]
fn a_gnu_1_0_sparse_map_is_verbatim_and_the_payload_is_the_data_after_it() {
    let mut pax = pax_record("GNU.sparse.major", b"1");
    pax.extend(pax_record("GNU.sparse.minor", b"0"));
    pax.extend(pax_record("GNU.sparse.name", b"real/name"));
    pax.extend(pax_record("GNU.sparse.realsize", b"1000000"));
    let mut tar = member(b"PaxHeaders/s", b'x', &pax, USTAR);
    let map = padded(b"2\n0\n3\n999997\n3\n");
    let data = b"abcdef";
    tar.extend(header(b"GNUSparseFile.1/name", b'0', 512 + 6, USTAR));
    tar.extend(&map);
    tar.extend(padded(data));
    tar.extend(end_blocks());
    let (records, payloads) = split(&tar).unwrap();
    assert_eq!(payload_list(&records), vec![("real/name".to_owned(), 6)]);
    assert_eq!(payloads, vec![data.to_vec()]);
    assert_eq!(round_trip(&tar).unwrap(), tar);

    // A map that runs past its member's data, or holds a non-number, is an error.
    let mut bad = member(b"PaxHeaders/s", b'x', &pax, USTAR);
    bad.extend(header(b"s", b'0', 512, USTAR));
    bad.extend(padded(b"2\n0\n3\n"));
    bad.extend(end_blocks());
    let err = split(&bad).err().unwrap().to_string();
    assert!(err.contains("bad GNU sparse map"), "{err}");
    let mut bad = member(b"PaxHeaders/s", b'x', &pax, USTAR);
    bad.extend(header(b"s", b'0', 1024, USTAR));
    bad.extend(padded(b"1\nx\n3\n"));
    bad.extend(padded(b"abc"));
    let err = split(&bad).err().unwrap().to_string();
    assert!(
        err.contains("\\\"x\\\" is not a number") || err.contains("\"x\" is not"),
        "{err}"
    );
}

#[test]
fn everything_after_the_first_zero_block_is_verbatim() {
    let mut tar = member(b"a", b'0', b"aaa", USTAR);
    let second_archive = {
        let mut t = member(b"b", b'0', b"bbb", USTAR);
        t.extend(end_blocks());
        t
    };
    tar.extend(end_blocks());
    tar.extend(&second_archive);
    tar.extend(b"trailing garbage, not a block");
    let (records, _) = split(&tar).unwrap();
    assert_eq!(payload_list(&records), vec![("a".to_owned(), 3)]);
    assert_eq!(round_trip(&tar).unwrap(), tar);
}

#[test]
fn an_empty_stream_and_one_without_end_blocks_are_accepted() {
    assert_eq!(split(b"").unwrap().0, vec![]);
    let tar = member(b"a", b'0', b"aaa", USTAR);
    assert_eq!(round_trip(&tar).unwrap(), tar);
}

#[test]
fn a_payload_left_unread_is_skipped() {
    let mut tar = member(b"a", b'0', &[7u8; 2000], USTAR);
    tar.extend(member(b"b", b'0', b"b", USTAR));
    tar.extend(end_blocks());
    let mut sp = Splitter::new(&tar[..]);
    let mut paths = Vec::new();
    let mut verbatim = 0;
    while let Some(e) = sp.next_event().unwrap() {
        match e {
            Event::Payload { path, .. } => paths.push(path),
            Event::Verbatim(v) => verbatim += v.len(),
        }
    }
    assert_eq!(paths, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(verbatim, tar.len() - 2001);
    assert_eq!(sp.offset(), tar.len() as u64);
}

/// The error of splitting `tar`, as a [`TarError`].
fn tar_error(tar: &[u8]) -> TarError {
    match split(tar) {
        Err(SplitError::Tar(e)) => e,
        other => panic!("expected a tar error, got {:?}", other.map(|r| r.0)),
    }
}

#[test]
fn invalid_streams_are_tar_errors_naming_the_offset_and_the_fault() {
    let good = member(b"a", b'0', b"aaa", USTAR);

    let mut bad_sum = good.clone();
    bad_sum.extend(header(b"b", b'0', 0, USTAR));
    bad_sum[1024 + 10] ^= 1;
    let e = tar_error(&bad_sum);
    assert_eq!(e.offset, 1024);
    assert!(e.to_string().contains("bad header checksum"), "{e}");

    let e = tar_error(&good[..300]);
    assert_eq!(
        (e.offset, e.kind.clone()),
        (0, TarErrorKind::TruncatedHeader { got: 300 })
    );
    assert_eq!(
        e.to_string(),
        "not a valid tar stream at byte 0: the stream ends inside a header (300 of 512 bytes)"
    );

    let mut bad_size = header(b"a", b'0', 0, USTAR);
    bad_size[124..136].copy_from_slice(b"00000000x12\0");
    checksum(&mut bad_size);
    let e = tar_error(&bad_size);
    assert_eq!(
        e.to_string(),
        "not a valid tar stream at byte 0: the size field \"00000000x12\" is not a number"
    );

    let e = tar_error(&good[..514]);
    assert_eq!(e.offset, 514);
    assert!(e.to_string().contains("inside the payload of \"a\""), "{e}");

    let e = tar_error(&good[..600]);
    assert!(
        e.to_string().contains("inside the padding after a payload"),
        "{e}"
    );

    let e = tar_error(&member(b"x", b'x', b"12 path=a\n", USTAR));
    assert!(e.to_string().contains("bad pax extended header"), "{e}");

    let mut huge = header(b"x", b'x', 0, USTAR);
    huge[124..136].copy_from_slice(b"77777777777\0");
    checksum(&mut huge);
    let e = tar_error(&huge);
    assert!(e.to_string().contains("larger than the limit"), "{e}");

    let e = tar_error(&member(b"x", b'x', &pax_record("path", b"p"), USTAR));
    assert!(e.to_string().contains("an extended header's member"), "{e}");

    // Random text is not a tar.
    let e = tar_error(&[b'z'; 4096]);
    assert_eq!(e.offset, 0);
}

#[test]
fn is_tar_error_sees_tar_errors_through_io_and_anyhow_but_not_read_errors() {
    let good = member(b"a", b'0', b"aaa", USTAR);
    let mut sp = Splitter::new(&good[..514]);
    let _ = sp.next_event().unwrap();
    let Some(Event::Payload { mut reader, .. }) = sp.next_event().unwrap() else {
        panic!("no payload");
    };
    let io_err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(is_tar_error(&io_err));
    let wrapped = anyhow::Error::new(io_err).context("backing up the stream");
    assert!(is_tar_error(wrapped.as_ref()));

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let err = Splitter::new(&b"z"[..]).next_event().err().unwrap();
    assert!(is_tar_error(&err));
    let err = Splitter::new(Failing).next_event().err().unwrap();
    assert!(!is_tar_error(&err));
    assert!(matches!(err, SplitError::Read { offset: 0, .. }));
}

#[test]
fn verbatim_events_stay_bounded_on_long_non_payload_runs() {
    // 8 MiB of trailing zeros and a 3 MiB device-like member's data.
    let mut tar = header(b"blob", b'V', 3 << 20, GNU);
    tar.extend(vec![1u8; 3 << 20]);
    tar.extend(vec![0u8; 8 << 20]);
    let mut sp = Splitter::new(&tar[..]);
    let mut total = 0;
    while let Some(e) = sp.next_event().unwrap() {
        let Event::Verbatim(v) = e else {
            panic!("a payload")
        };
        assert!(v.len() <= FLUSH + 512, "{}", v.len());
        total += v.len();
    }
    assert_eq!(total, tar.len());
}

#[test]
fn the_index_form_is_pinned() {
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.verbatim(b"hdr").unwrap();
    w.payload(b"a/\xffb", 300).unwrap();
    w.verbatim(b"").unwrap();
    w.verbatim(&[0u8; 2]).unwrap();
    let index = w.finish().unwrap();
    let golden: &[u8] = b"LBTARIDX\x01\
        V\x03hdr\
        P\x04a/\xffb\xac\x02\
        V\x02\x00\x00\
        E\x03\xb1\x02";
    assert_eq!(index, golden, "{}", index.escape_ascii());

    let mut r = IndexReader::new(golden).unwrap();
    let mut records = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        records.push(rec);
    }
    assert_eq!(
        records,
        vec![
            Record::Verbatim(b"hdr".to_vec()),
            Record::Payload {
                path: b"a/\xffb".to_vec(),
                size: 300
            },
            Record::Verbatim(vec![0, 0]),
        ]
    );
}

#[test]
fn long_verbatim_runs_are_cut_into_records_of_at_most_a_mebibyte() {
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.verbatim(&vec![9u8; (1 << 20) * 2 + 1]).unwrap();
    let index = w.finish().unwrap();
    let mut r = IndexReader::new(&index[..]).unwrap();
    let mut lens = Vec::new();
    while let Some(Record::Verbatim(v)) = r.next_record().unwrap() {
        lens.push(v.len());
    }
    assert_eq!(lens, vec![1 << 20, 1 << 20, 1]);
}

#[test]
fn damaged_indexes_and_wrong_payloads_are_errors() {
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.verbatim(b"hdr").unwrap();
    w.payload(b"p", 3).unwrap();
    let index = w.finish().unwrap();
    let payload = |body: &'static [u8]| move |_, _: &[u8], _| Ok(body);
    let mut out = Vec::new();
    assert_eq!(join(&index[..], payload(b"abc"), &mut out).unwrap(), 6);
    assert_eq!(out, b"hdrabc");

    let err = |index: &[u8], body: &'static [u8]| {
        join(index, payload(body), &mut Vec::new())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&index, b"ab"),
        "payload 0 (\"p\") is 2 bytes long, the index says 3"
    );
    assert_eq!(
        err(&index, b"abcd"),
        "payload 0 (\"p\") is 4 bytes long, the index says 3"
    );
    assert!(err(&index[..index.len() - 1], b"abc").contains("ends inside"));
    let mut extra = index.clone();
    extra.push(0);
    assert!(err(&extra, b"abc").contains("bytes after the end record"));
    let mut wrong_count = index.clone();
    let n = wrong_count.len();
    wrong_count[n - 2] = 3;
    assert!(err(&wrong_count, b"abc").contains("the end record says 3 records"));
    assert!(err(b"LBTARIDX\x02E\x00\x00", b"").contains("version 2"));
    assert!(err(b"not an index", b"").contains("no magic"));
    assert!(err(b"LBTARIDX\x01Q", b"").contains("unknown record type"));
    assert!(
        err(
            b"LBTARIDX\x01V\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
            b""
        )
        .contains("past 2^64")
    );
    assert!(err(b"LBTARIDX\x01V\x81\x80\x80\x01", b"").contains("verbatim record of"));
}

/// A small tar with a bit of everything, for the fuzz tests below.
fn sample_tar() -> Vec<u8> {
    let mut tar = member(b"x", b'x', &pax_record("path", b"p\xff"), USTAR);
    tar.extend(member(b"a", b'0', &[3u8; 700], USTAR));
    tar.extend(member(b"././@LongLink", b'L', &[b'l'; 150], GNU));
    tar.extend(member(b"l", b'0', b"", GNU));
    tar.extend(header(b"d/", b'5', 0, USTAR));
    tar.extend(member(b"v", b'0', b"v", b"\0\0\0\0\0\0\0\0"));
    tar.extend(end_blocks());
    tar
}

/// Splitting never panics or hangs: the identical bytes back, or a tar
/// error after which the events' bytes, the splitter's leftover bytes and
/// the rest of the input are the input (what `--tar-lenient` relies on).
fn split_is_total(bytes: &[u8]) {
    if let Ok(back) = round_trip(bytes) {
        assert_eq!(back, bytes);
        return;
    }
    let mut sp = Splitter::new(bytes);
    let mut seen = Vec::new();
    loop {
        match sp.next_event() {
            Ok(Some(Event::Verbatim(v))) => seen.extend(v),
            Ok(Some(Event::Payload { mut reader, .. })) => {
                if let Err(e) = reader.read_to_end(&mut seen) {
                    assert!(is_tar_error(&e));
                    break;
                }
            }
            Ok(None) => panic!("split twice, once failing"),
            Err(e) => {
                assert!(is_tar_error(&e));
                break;
            }
        }
    }
    let (rest, leftover) = sp.into_parts();
    seen.extend(leftover);
    seen.extend(rest);
    assert!(seen == bytes, "bytes lost after a tar error");
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        split_is_total(&bytes);
    }

    #[test]
    fn random_truncations_and_flips_of_a_tar_never_panic(
        cut in 0usize..5000,
        flip in proptest::option::of((0usize..5000, any::<u8>())),
    ) {
        let mut tar = sample_tar();
        if let Some((at, byte)) = flip {
            let at = at % tar.len();
            tar[at] = byte;
            // With its checksum mended too, so the header is parsed further.
            let block = at / 512 * 512;
            if tar[block..block + 512].iter().any(|&b| b != 0) {
                checksum(&mut tar[block..block + 512]);
            }
        }
        tar.truncate(cut.min(tar.len()));
        split_is_total(&tar);
    }
}

#[test]
fn the_sample_tar_splits_into_its_payloads() {
    let tar = sample_tar();
    let (records, _) = split(&tar).unwrap();
    assert_eq!(
        payload_list(&records),
        vec![
            ("p\\xff".to_owned(), 700),
            ("l".repeat(150), 0),
            ("v".to_owned(), 1)
        ]
    );
    assert_eq!(round_trip(&tar).unwrap(), tar);
}

/// A reader that gives at most a few bytes a call, and is interrupted
/// now and then, as a pipe may be.
struct Trickle<'a> {
    bytes: &'a [u8],
    calls: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(5) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.calls % 13 + 1).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn short_and_interrupted_reads_split_the_same() {
    let mut tar = sample_tar();
    tar.extend(b"trailing");
    let (want, want_payloads) = split(&tar).unwrap();
    let mut sp = Splitter::new(Trickle {
        bytes: &tar,
        calls: 0,
    });
    let mut records = Vec::new();
    let mut payloads = Vec::new();
    while let Some(e) = sp.next_event().unwrap() {
        match e {
            Event::Verbatim(v) => records.push(Record::Verbatim(v)),
            Event::Payload {
                path,
                size,
                mut reader,
            } => {
                let mut body = Vec::new();
                reader.read_to_end(&mut body).unwrap();
                records.push(Record::Payload { path, size });
                payloads.push(body);
            }
        }
    }
    assert_eq!((records, payloads), (want, want_payloads));
    assert_eq!(sp.offset(), tar.len() as u64);
}
