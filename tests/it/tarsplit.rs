//! The tar splitter (issue 15 item 4, TARzan) on archives made by the REAL
//! GNU tar (Debian's `tar`) of the hostile trees of the earlier issues, in
//! every format it writes: split → index → join gives the byte-identical
//! archive (checked with `cmp`), the payloads are the regular members `tar
//! tvf` lists, in order, with their sizes, and each payload is the file's
//! bytes (a sparse file's: its data sections). No grid is needed.

use std::ffi::OsStr;
use std::io::{Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use lafs_backup::{SplitError, TarEvent, TarIndexWriter, TarSplitter, is_tar_error, tar_join};

use crate::common;

/// A split archive: its index and its payloads, as `(path, bytes)`.
struct Split {
    index: Vec<u8>,
    payloads: Vec<(Vec<u8>, Vec<u8>)>,
}

fn split(tar: &[u8]) -> Result<Split, SplitError> {
    let mut sp = TarSplitter::new(tar);
    let mut index = TarIndexWriter::new(Vec::new()).unwrap();
    let mut payloads = Vec::new();
    while let Some(event) = sp.next_event()? {
        match event {
            TarEvent::Verbatim(bytes) => index.verbatim(&bytes).unwrap(),
            TarEvent::Payload {
                path,
                size,
                mut reader,
            } => {
                let mut body = Vec::new();
                if let Err(e) = reader.read_to_end(&mut body) {
                    assert!(is_tar_error(&e), "{e}");
                    return Err(SplitError::Read {
                        offset: 0,
                        source: e,
                    });
                }
                assert_eq!(body.len() as u64, size);
                index.payload(&path, size).unwrap();
                payloads.push((path, body));
            }
        }
    }
    Ok(Split {
        index: index.finish().unwrap(),
        payloads,
    })
}

/// Joins `split` back into a file in `dir` and checks it with `cmp`
/// against the archive, which is in `dir` as `name`.
fn join_and_cmp(split: &Split, dir: &Path, name: &str) {
    let mut out = Vec::new();
    let n = tar_join(
        &split.index[..],
        |i, path, size| {
            let (p, body) = &split.payloads[usize::try_from(i).unwrap()];
            assert_eq!((p.as_slice(), size), (path, body.len() as u64));
            Ok(Cursor::new(body.clone()))
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(n, out.len() as u64);
    let joined = dir.join(format!("{name}.joined"));
    std::fs::write(&joined, &out).unwrap();
    let cmp = Command::new("cmp")
        .arg(dir.join(name))
        .arg(&joined)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{name}: the joined stream differs: {}",
        String::from_utf8_lossy(&cmp.stdout)
    );
}

/// `tar c` of `root`'s contents with `args` (e.g. `--format=pax`), as
/// Debian's GNU tar writes it, saved as `dir/name`.
fn tar_c(root: &Path, dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let tar = common::tar_c(root, args);
    std::fs::write(dir.join(name), &tar).unwrap();
    tar
}

/// The regular members `tar tvf` lists: (name as tar's `escape` quoting
/// style writes it, size), in archive order.
fn tar_tvf_regular(archive: &Path) -> Vec<(String, u64)> {
    let out = Command::new("tar")
        .env("LC_ALL", "C")
        .args(["--quoting-style=escape", "-tvf"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let re = regex::Regex::new(r"^-\S+ \S+ +(\d+) \S+ \S+ (.*)$").unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let c = re.captures(line)?;
            Some((c[2].to_owned(), c[1].parse().unwrap()))
        })
        .collect()
}

/// A raw name as `tar --quoting-style=escape` prints it under `LC_ALL=C`.
fn tar_escape(name: &[u8]) -> String {
    let mut s = String::new();
    for &b in name {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s
}

/// The sparse files' data: (name, offset of the data, the data).
const SPARSE_DATA_OFFSET: u64 = 5 << 20;

/// The hostile tree of the earlier issues, plus what tars find hard: long
/// names (over 100 and over 255 bytes), a deep path, hard links, empty
/// files, random content, and sparse files made with `truncate` and `dd`.
fn tar_tree(root: &Path) -> Vec<u8> {
    common::hostile_tree(root);
    let long_dir = root.join("d".repeat(120)).join("e".repeat(200));
    std::fs::create_dir_all(&long_dir).unwrap();
    std::fs::write(long_dir.join("f".repeat(180)), b"long path").unwrap();
    std::fs::write(root.join("n".repeat(150)), b"long name").unwrap();
    let deep = (0..40).fold(root.to_owned(), |p, i| p.join(format!("deep{i}")));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("leaf"), b"deep").unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    std::fs::write(
        root.join("random-1"),
        common::pseudo_random_bytes(300_001, 1),
    )
    .unwrap();
    std::fs::write(
        root.join("random-2"),
        common::pseudo_random_bytes(1 << 20, 2),
    )
    .unwrap();
    std::fs::hard_link(root.join("random-1"), root.join("hard-link")).unwrap();
    sparse_files(root)
}

/// `sparse-hole`: 10 MiB of hole; `sparse-data`: 10 MiB with 8 KiB of
/// random data at 5 MiB. Returns that data.
fn sparse_files(root: &Path) -> Vec<u8> {
    let data = common::pseudo_random_bytes(8192, 3);
    let data_file = root.join("sparse-src");
    std::fs::write(&data_file, &data).unwrap();
    for name in ["sparse-hole", "sparse-data"] {
        common::run_tool(
            "truncate",
            &["-s".as_ref(), "10M".as_ref(), root.join(name).as_os_str()],
        );
    }
    let of = format!("of={}", root.join("sparse-data").display());
    let iff = format!("if={}", data_file.display());
    let seek = format!("seek={}", SPARSE_DATA_OFFSET / 4096);
    let args = [
        iff.as_str(),
        of.as_str(),
        "bs=4096",
        seek.as_str(),
        "conv=notrunc",
        "status=none",
    ];
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    common::run_tool("dd", &args);
    std::fs::remove_file(data_file).unwrap();
    data
}

/// Splits the archive `dir/name` of `root`, joins it back byte-identical,
/// and checks its payloads against `tar tvf` and the files.
fn check_archive(tar: &[u8], root: &Path, dir: &Path, name: &str, sparse: Option<&[u8]>) {
    let split = split(tar).unwrap_or_else(|e| panic!("{name}: {e}"));
    join_and_cmp(&split, dir, name);
    let listed = tar_tvf_regular(&dir.join(name));
    let ours: Vec<(String, u64)> = split
        .payloads
        .iter()
        .map(|(p, body)| (tar_escape(p), body.len() as u64))
        .collect();
    assert_eq!(
        ours.iter().map(|p| &p.0).collect::<Vec<_>>(),
        listed.iter().map(|p| &p.0).collect::<Vec<_>>(),
        "{name}: the payloads are not the regular members tar lists"
    );
    assert!(split.payloads.len() >= 15, "{name}: {ours:?}");
    for ((path, body), (_, listed_size)) in split.payloads.iter().zip(&listed) {
        let file = root.join(OsStr::from_bytes(path));
        let shown = path.escape_ascii();
        let is_sparse = path.ends_with(b"sparse-hole") || path.ends_with(b"sparse-data");
        match (is_sparse, sparse) {
            (true, Some(data)) => {
                // With --sparse, the payload is the data sections only.
                let want: &[u8] = if path.ends_with(b"sparse-data") {
                    data
                } else {
                    b""
                };
                assert_eq!(body.as_slice(), want, "{name}: {shown}");
            }
            _ => {
                assert_eq!(body.len() as u64, *listed_size, "{name}: {shown}");
                assert!(
                    *body == std::fs::read(&file).unwrap(),
                    "{name}: payload {shown} is not the file's bytes"
                );
            }
        }
    }
}

#[test]
fn gnu_pax_and_sparse_archives_of_the_hostile_tree_split_and_join_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let data = tar_tree(&root);
    let dir = tmp.path();
    let cases: &[(&str, &[&str], bool)] = &[
        ("gnu.tar", &["--format=gnu"], false),
        ("gnu-sparse.tar", &["--format=gnu", "--sparse"], true),
        ("oldgnu-sparse.tar", &["--format=oldgnu", "--sparse"], true),
        ("pax.tar", &["--format=pax"], false),
        (
            "pax-xattrs.tar",
            &["--format=pax", "--xattrs", "--acls", "--xattrs-include=*"],
            false,
        ),
        ("pax-sparse-1.0.tar", &["--format=pax", "--sparse"], true),
        (
            "pax-sparse-0.0.tar",
            &["--format=pax", "--sparse", "--sparse-version=0.0"],
            true,
        ),
        (
            "pax-sparse-0.1.tar",
            &["--format=pax", "--sparse", "--sparse-version=0.1"],
            true,
        ),
        (
            "posix-global.tar",
            &["--format=posix", "--pax-option=comment=a global record"],
            false,
        ),
    ];
    for (name, args, sparse) in cases {
        let tar = tar_c(&root, dir, name, args);
        check_archive(&tar, &root, dir, name, sparse.then_some(data.as_slice()));
    }
}

#[test]
fn ustar_and_v7_archives_where_the_names_fit_split_and_join_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    // The hostile names, but no path over ustar's limits (v7: 99 bytes),
    // and no special files v7 cannot store.
    for (i, name) in [&b"new\nline"[..], b"back\\slash", b"bad\xffutf8", b" lead"]
        .iter()
        .enumerate()
    {
        std::fs::write(root.join(OsStr::from_bytes(name)), format!("content {i}")).unwrap();
    }
    let mid = root.join("p".repeat(90)).join("q".repeat(50));
    std::fs::create_dir_all(&mid).unwrap();
    std::fs::write(mid.join("r".repeat(90)), b"prefix and name").unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    for i in 0..10 {
        std::fs::write(
            root.join(format!("random-{i}")),
            common::pseudo_random_bytes(i * 1000 + 7, i as u64),
        )
        .unwrap();
    }
    std::fs::hard_link(root.join("random-3"), root.join("hard-link")).unwrap();
    std::os::unix::fs::symlink("random-1", root.join("symlink")).unwrap();
    sparse_files(&root);
    let dir = tmp.path();
    let tar = tar_c(&root, dir, "ustar.tar", &["--format=ustar"]);
    check_archive(&tar, &root, dir, "ustar.tar", None);
    // v7: the name field only, so the long path stays out.
    std::fs::remove_dir_all(root.join("p".repeat(90))).unwrap();
    let tar = tar_c(&root, dir, "v7.tar", &["--format=v7"]);
    check_archive(&tar, &root, dir, "v7.tar", None);
}

#[test]
fn concatenated_archives_and_trailing_garbage_are_verbatim_after_the_end_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (root, seed) in [(&a, 10), (&b, 20)] {
        std::fs::create_dir(root).unwrap();
        for i in 0..5 {
            std::fs::write(
                root.join(format!("r{i}")),
                common::pseudo_random_bytes(5000 * i + 1, seed + i as u64),
            )
            .unwrap();
        }
    }
    let ta = tar_c(&a, dir, "a.tar", &["--format=gnu"]);
    let tb = tar_c(&b, dir, "b.tar", &["--format=pax"]);

    // `cat a.tar b.tar`: tar reads the first archive only; so does the
    // splitter, keeping the second one verbatim.
    let mut cat = ta.clone();
    cat.extend(&tb);
    std::fs::write(dir.join("cat.tar"), &cat).unwrap();
    let s = split(&cat).unwrap();
    assert_eq!(s.payloads.len(), 5);
    join_and_cmp(&s, dir, "cat.tar");

    // `tar -A` merges them into one archive: every member is a payload.
    std::fs::copy(dir.join("a.tar"), dir.join("merged.tar")).unwrap();
    let out = Command::new("tar")
        .arg("-Af")
        .arg(dir.join("merged.tar"))
        .arg(dir.join("b.tar"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let merged = std::fs::read(dir.join("merged.tar")).unwrap();
    let s = split(&merged).unwrap();
    assert_eq!(s.payloads.len(), 10);
    join_and_cmp(&s, dir, "merged.tar");

    // Garbage after the end blocks.
    let mut garbage = ta.clone();
    garbage.extend(common::pseudo_random_bytes(70_000, 5));
    std::fs::write(dir.join("garbage.tar"), &garbage).unwrap();
    let s = split(&garbage).unwrap();
    assert_eq!(s.payloads.len(), 5);
    join_and_cmp(&s, dir, "garbage.tar");
}

#[test]
fn streams_that_are_not_tars_are_tar_errors_and_truncations_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    tar_tree(&root);
    // Small enough to split thousands of times.
    for big in ["sparse-hole", "sparse-data", "random-2"] {
        std::fs::remove_file(root.join(big)).unwrap();
    }
    let dir = tmp.path();
    let tar = tar_c(&root, dir, "t.tar", &["--format=pax"]);

    // A gzipped tar, and random bytes: not tars, said at byte 0.
    let gz = Command::new("gzip")
        .args(["-c"])
        .arg(dir.join("t.tar"))
        .output()
        .unwrap()
        .stdout;
    for bytes in [gz, common::pseudo_random_bytes(10_000, 9)] {
        let err = split(&bytes).err().unwrap();
        assert!(is_tar_error(&err), "{err}");
        assert!(
            err.to_string()
                .starts_with("not a valid tar stream at byte 0: "),
            "{err}"
        );
    }

    // Cut anywhere, or with a byte changed: an error or the identical
    // bytes back; never a panic or a hang. Deterministic pseudo-random
    // cut points, plus every cut around the first few headers.
    let picks = common::pseudo_random_bytes(8 * 300, 77);
    let mut cuts: Vec<usize> = picks
        .chunks(8)
        .map(|c| {
            usize::try_from(u64::from_le_bytes(c.try_into().unwrap()) % tar.len() as u64).unwrap()
        })
        .collect();
    cuts.extend(0..2100);
    let mut errors = 0;
    for cut in cuts {
        match split(&tar[..cut]) {
            Ok(s) => join_and_cmp_bytes(&s, &tar[..cut]),
            Err(e) => {
                assert!(is_tar_error(&e), "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors > 1000, "{errors}");
    for (i, pick) in picks.chunks(8).take(300).enumerate() {
        let at = usize::try_from(u64::from_le_bytes(pick.try_into().unwrap()) % 4096).unwrap();
        let mut flipped = tar.clone();
        flipped[at] ^= 1 << (i % 8);
        if let Ok(s) = split(&flipped) {
            join_and_cmp_bytes(&s, &flipped);
        }
    }
}

/// Joins `split` in memory and compares with `want`.
fn join_and_cmp_bytes(split: &Split, want: &[u8]) {
    let mut out = Vec::new();
    tar_join(
        &split.index[..],
        |i, _, _| {
            Ok(Cursor::new(
                split.payloads[usize::try_from(i).unwrap()].1.clone(),
            ))
        },
        &mut out,
    )
    .unwrap();
    assert!(out == want, "the joined stream differs");
}
