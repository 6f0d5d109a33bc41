//! Checks against tahoe-lafs 1.20.0 itself: its CHK test vectors, and its
//! Python code (zfec, hashutil, hashtree, uri, dirnode) as an oracle. Both
//! need the test grid's tahoe-lafs venv (`scripts/dev-grid venv`,
//! `${LAFS_TAHOE_VENV:-~/.cache/lafs-backup/tahoe-venv-1.20.0}`); without it
//! (or, for the vectors, without PyPI) the tests say why and pass.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::dirnode::{Child, pack};
use super::encode::encode_bytes;
use super::hash::{ConvergenceHasher, Hash, tagged_hash};
use super::hashtree::HashTree;
use super::uri_ext::Ueb;
use super::zfec::Fec;
use super::{Params, cap};

/// The tahoe-lafs venv, if it is there.
fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("LAFS_TAHOE_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/lafs-backup/tahoe-venv-1.20.0"))
        })?;
    dir.join("bin/python").exists().then_some(dir)
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The oracle: reads JSON requests on stdin, answers JSON on stdout.
const ORACLE: &str = r#"
import json, sys, zfec
from allmydata.util import hashutil
from allmydata import hashtree, uri, dirnode
from allmydata.interfaces import IFilesystemNode
from zope.interface import implementer

@implementer(IFilesystemNode)
class Node:
    def __init__(self, cap): self.cap = cap
    def raise_error(self): pass
    def is_allowed_in_immutable_directory(self): return True
    def get_write_uri(self): return None
    def get_readonly_uri(self): return self.cap

req = json.load(sys.stdin)
out = {}
out["zfec"] = [[s.hex() for s in zfec.Encoder(c["k"], c["n"]).encode(
    [bytes.fromhex(b) for b in c["blocks"]])] for c in req["zfec"]]
out["key"] = [hashutil.convergence_hash(c["k"], c["n"], c["segsize"],
    bytes.fromhex(c["data"]), bytes.fromhex(c["secret"])).hex() for c in req["key"]]
out["tree"] = []
for n in req["tree"]:
    t = hashtree.HashTree([hashutil.tagged_hash(b"t", bytes([i])) for i in range(n)])
    out["tree"].append([t[0].hex(), [list(t.needed_hashes(i, include_leaf=True)) for i in range(n)]])
out["ueb"] = [uri.pack_extension({k: (bytes.fromhex(v) if k.endswith("hash") else
    (v.encode() if isinstance(v, str) else v)) for k, v in u.items()}).hex() for u in req["ueb"]]
out["cap"] = [uri.CHKFileURI(bytes.fromhex(c["key"]), bytes.fromhex(c["ueb"]), c["k"], c["n"],
    c["size"]).to_string().decode() for c in req["cap"]]
out["dir"] = [dirnode.pack_children({name: (Node(cap.encode()), json.loads(meta))
    for name, cap, meta in d}, None, deep_immutable=True).hex() for d in req["dir"]]
json.dump(out, sys.stdout)
"#;

#[test]
fn python_oracle_agrees() {
    let Some(venv) = venv() else {
        eprintln!(
            "SKIP python_oracle_agrees: no tahoe-lafs venv (scripts/dev-grid venv makes one)"
        );
        return;
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let zfec_params = [
        (1, 1),
        (1, 3),
        (2, 3),
        (3, 10),
        (5, 7),
        (13, 20),
        (71, 255),
        (101, 256),
        (255, 256),
    ];
    let zfec_cases: Vec<(usize, usize, Vec<Vec<u8>>)> = zfec_params
        .iter()
        .map(|&(k, n)| {
            let len = 1 + rng.below(40) as usize;
            (k, n, (0..k).map(|_| rng.bytes(len)).collect())
        })
        .collect();
    // (k, n, segment size, data, secret)
    type KeyCase = (u16, u16, u64, Vec<u8>, Vec<u8>);
    let key_cases: Vec<KeyCase> = (0..12)
        .map(|i| {
            let k = 1 + rng.below(10) as u16;
            let n = k + rng.below(5) as u16;
            let len = rng.below(3000) as usize;
            let data = rng.bytes(len);
            (
                k,
                n,
                1 + rng.below(1 << 20),
                data,
                rng.bytes(if i % 2 == 0 { 16 } else { 5 }),
            )
        })
        .collect();
    let tree_sizes: Vec<usize> = (1..=40)
        .chain([63, 64, 65, 100, 127, 128, 129, 200, 255, 256])
        .collect();
    let uebs: Vec<Ueb> = (0..5)
        .map(|_| {
            let k = 1 + rng.below(10) as u16;
            let size = 1 + rng.below(1 << 30);
            let segment_size = (1 + rng.below(1 << 20)).next_multiple_of(u64::from(k));
            let tail = match size % segment_size {
                0 => segment_size,
                t => t,
            };
            Ueb {
                size,
                segment_size,
                num_segments: size.div_ceil(segment_size),
                needed_shares: k,
                total_shares: k + rng.below(5) as u16,
                tail_padded_size: tail.next_multiple_of(u64::from(k)),
                crypttext_hash: rng.bytes(32).try_into().unwrap(),
                crypttext_root_hash: rng.bytes(32).try_into().unwrap(),
                share_root_hash: rng.bytes(32).try_into().unwrap(),
            }
        })
        .collect();
    let caps: Vec<cap::ChkCap> = (0..5)
        .map(|i| cap::ChkCap {
            key: rng.bytes(16).try_into().unwrap(),
            ueb_hash: rng.bytes(32).try_into().unwrap(),
            k: 1 + i,
            n: 10 + i,
            size: rng.next() >> (i * 10),
            dir: false,
        })
        .collect();
    // Awkward names (NFD, non-BMP, controls as lafs-backup escapes them,
    // quotes) and every shape of metadata value.
    let dirs: Vec<Vec<(&str, &str, &str)>> = vec![
        vec![
            (
                "a\u{301}b",
                "URI:LIT:nbswy3dp",
                r#"{"v":"1","mtime_ns":"1700000000123456789","size":"5"}"#,
            ),
            (
                "z 😀 \\x01 \"q\"",
                "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000",
                r#"{"a":[1,2.5,-0,1e16,1.5e-7,true,null],"é":{"x":"\u0001\u007f\ud83d\ude00/"}}"#,
            ),
            ("Ω", "URI:DIR2-LIT:", "{}"),
            ("\u{1F600}", "imm.URI:LIT:", r#"{"b":2,"a":1}"#),
        ],
        vec![],
    ];
    let request = serde_json::json!({
        "zfec": zfec_cases.iter().map(|(k, n, b)| serde_json::json!({
            "k": k, "n": n, "blocks": b.iter().map(|x| hex(x)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "key": key_cases.iter().map(|(k, n, seg, data, secret)| serde_json::json!({
            "k": k, "n": n, "segsize": seg, "data": hex(data), "secret": hex(secret)})).collect::<Vec<_>>(),
        "tree": tree_sizes,
        "ueb": uebs.iter().map(|u| serde_json::json!({
            "codec_name": "crs",
            "codec_params": format!("{}-{}-{}", u.segment_size, u.needed_shares, u.total_shares),
            "tail_codec_params": format!("{}-{}-{}", u.tail_padded_size, u.needed_shares, u.total_shares),
            "size": u.size, "segment_size": u.segment_size, "num_segments": u.num_segments,
            "needed_shares": u.needed_shares, "total_shares": u.total_shares,
            "crypttext_hash": hex(&u.crypttext_hash), "crypttext_root_hash": hex(&u.crypttext_root_hash),
            "share_root_hash": hex(&u.share_root_hash)})).collect::<Vec<_>>(),
        "cap": caps.iter().map(|c| serde_json::json!({
            "key": hex(&c.key), "ueb": hex(&c.ueb_hash), "k": c.k, "n": c.n, "size": c.size})).collect::<Vec<_>>(),
        "dir": dirs,
    });
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", ORACLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &request).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the Python oracle failed");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };

    for ((k, n, blocks), want) in zfec_cases.iter().zip(answer["zfec"].as_array().unwrap()) {
        let inputs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let ours: Vec<String> = Fec::new(*k, *n)
            .unwrap()
            .encode(&inputs)
            .iter()
            .map(|s| hex(s))
            .collect();
        assert_eq!(ours, strs(want), "zfec {k}-of-{n}");
    }
    for ((k, n, seg, data, secret), want) in key_cases.iter().zip(strs(&answer["key"])) {
        let mut h = ConvergenceHasher::new(*k, *n, *seg, secret);
        h.update(data);
        assert_eq!(hex(&h.finish()), want, "convergence key {k} {n} {seg}");
    }
    for (n, want) in tree_sizes.iter().zip(answer["tree"].as_array().unwrap()) {
        let leaves: Vec<Hash> = (0..*n).map(|i| tagged_hash(b"t", &[i as u8])).collect();
        let t = HashTree::new(&leaves);
        assert_eq!(hex(&t.root()), want[0].as_str().unwrap(), "tree of {n}");
        let needed: Vec<Vec<usize>> = (0..*n).map(|i| t.needed_hashes(i, true)).collect();
        assert_eq!(
            serde_json::json!(needed),
            want[1],
            "needed hashes, tree of {n}"
        );
    }
    for (u, want) in uebs.iter().zip(strs(&answer["ueb"])) {
        assert_eq!(hex(&u.pack()), want, "UEB");
    }
    for (c, want) in caps.iter().zip(strs(&answer["cap"])) {
        assert_eq!(c.to_uri(), want, "cap");
        assert_eq!(&cap::ChkCap::parse(&want).unwrap(), c);
    }
    for (d, want) in dirs.iter().zip(strs(&answer["dir"])) {
        let kids: Vec<Child<'_>> = d
            .iter()
            .map(|&(name, cap, metadata)| Child {
                name,
                cap,
                metadata,
            })
            .collect();
        assert_eq!(hex(&pack(&kids).unwrap()), want, "directory packing");
    }
}

#[derive(Deserialize)]
struct Vectors {
    vector: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    convergence: String,
    expected: String,
    format: Format,
    sample: Sample,
    zfec: Zfec,
}

#[derive(Deserialize)]
struct Format {
    kind: String,
}

#[derive(Deserialize)]
struct Sample {
    length: usize,
    seed: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Zfec {
    required: u16,
    total: u16,
    segment_size: u64,
}

/// A file of the tahoe-lafs 1.20.0 sdist (`member`, a path inside it),
/// fetched once with the venv's pip into the venv's directory.
fn sdist_file(venv: &std::path::Path, member: &str) -> Result<String, String> {
    let dir = venv.join("vectors-1.20.0");
    let name = member.rsplit('/').next().unwrap_or(member);
    let yaml = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&yaml) {
        return Ok(text);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let sdist = dir.join("tahoe_lafs-1.20.0.tar.gz");
    if !sdist.exists() {
        let status = Command::new(venv.join("bin/pip"))
            .args([
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "tahoe-lafs==1.20.0",
                "-d",
            ])
            .arg(&dir)
            .status()
            .map_err(|e| format!("pip: {e}"))?;
        if !status.success() || !sdist.exists() {
            return Err("pip download of the tahoe-lafs 1.20.0 sdist failed".into());
        }
    }
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(&sdist)
        .arg(format!("tahoe_lafs-1.20.0/{member}"))
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    if !out.status.success() {
        return Err(format!("the sdist has no {member}"));
    }
    // Written aside then renamed: a concurrent run never reads half a file.
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    std::fs::write(&tmp, &out.stdout).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &yaml).map_err(|e| e.to_string())?;
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// [`sdist_file`], or `None` after printing why `test` is skipped.
fn sdist_file_or_skip(test: &str, member: &str) -> Option<String> {
    let Some(venv) = venv() else {
        eprintln!("SKIP {test}: no tahoe-lafs venv (scripts/dev-grid venv makes one)");
        return None;
    };
    sdist_file(&venv, member)
        .map_err(|e| eprintln!("SKIP {test}: {e}"))
        .ok()
}

#[test]
fn tahoe_chk_vectors() {
    let Some(text) =
        sdist_file_or_skip("tahoe_chk_vectors", "integration/vectors/test_vectors.yaml")
    else {
        return;
    };
    let vectors: Vectors = serde_saphyr::from_str(&text).unwrap();
    let chk: Vec<&Case> = vectors
        .vector
        .iter()
        .filter(|c| c.format.kind == "chk")
        .collect();
    assert_eq!(vectors.vector.len(), 360);
    assert_eq!(chk.len(), 120);
    // Two workers: the 71-of-255 and 101-of-256 cases are most of the work.
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|w| {
                let chk = &chk;
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for case in chk.iter().skip(w).step_by(2) {
                        let seed = BASE64.decode(&case.sample.seed).unwrap();
                        let data: Vec<u8> = seed
                            .iter()
                            .copied()
                            .cycle()
                            .take(case.sample.length)
                            .collect();
                        let secret = BASE64.decode(&case.convergence).unwrap();
                        let z = &case.zfec;
                        let params =
                            Params::with_segment_size(z.required, z.total, z.segment_size).unwrap();
                        let got = match cap::lit_uri(&data) {
                            Some(lit) => lit,
                            None => encode_bytes(&data, &params, &secret)
                                .unwrap()
                                .0
                                .cap
                                .to_uri(),
                        };
                        if got != case.expected {
                            failures.push(format!(
                                "{}-of-{} {} bytes: got {got}, want {}",
                                z.required, z.total, case.sample.length, case.expected
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of 120 CHK vectors differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Encoding throughput, for docs/chk.md: `cargo test --release --lib
/// chk::oracle_tests::encode_throughput -- --ignored --nocapture`. No
/// timing assertion (the machine is shared).
#[test]
#[ignore = "a measurement, run in release mode by hand"]
fn encode_throughput() {
    let mut rng = Rng(7);
    let data = rng.bytes(64 << 20);
    for (k, n) in [(3, 10), (1, 1), (2, 3)] {
        let params = Params::new(k, n).unwrap();
        let start = std::time::Instant::now();
        let key = super::encode::convergence_key(&mut &data[..], data.len() as u64, &params, b"s")
            .unwrap();
        let hashed = start.elapsed();
        let plan = super::encode::Plan::new(params, data.len() as u64).unwrap();
        let mut sink = Discard;
        super::encode::Encoder::new(plan, key)
            .unwrap()
            .encode(&mut &data[..], Some(b"s"), &mut sink)
            .unwrap();
        let total = start.elapsed();
        let mib = data.len() as f64 / f64::from(1 << 20);
        eprintln!(
            "{k}-of-{n}: 64 MiB encoded (both passes) at {:.0} MiB/s; key pass alone {:.0} MiB/s",
            mib / total.as_secs_f64(),
            mib / hashed.as_secs_f64()
        );
    }
}

/// A sink that drops the shares.
struct Discard;

impl super::encode::ShareSink for Discard {
    fn write(&mut self, _: u16, _: u64, _: &[u8]) -> Result<(), super::ChkError> {
        Ok(())
    }
}

/// The 3-node grid of `scripts/test` (2-of-3, HTTPS): its gateway and
/// convergence secret, when the test runs with the grids up.
fn grid_3n() -> Option<(crate::tahoe::Client, Params, Vec<u8>)> {
    let url = std::env::var("LAFS_TEST_GATEWAY_3N").ok()?;
    let dir = PathBuf::from(std::env::var_os("LAFS_TEST_GRID_3N_DIR")?);
    let env = std::fs::read_to_string(dir.join("grid.env")).ok()?;
    let var = |name: &str| -> Option<u16> {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('\''))
            .and_then(|v| v.parse().ok())
    };
    let params = Params::new(
        var("LAFS_GRID_SHARES_NEEDED")?,
        var("LAFS_GRID_SHARES_TOTAL")?,
    )
    .ok()?;
    // The node keeps its secret in base32 (`Client._convergence`).
    let text = std::fs::read_to_string(dir.join("gateway/private/convergence")).ok()?;
    let secret = crate::tahoe::base32::decode(text.trim())?;
    let client = crate::tahoe::Client::new(
        &format!("{url}/uri"),
        &crate::config::Retry {
            attempts: 3,
            delay: crate::config::RetryDelay::Fixed(0.2),
        },
        &crate::config::Timeouts::PerAttempt(vec![120.0, 120.0]),
    )
    .ok()?;
    Some((client, params, secret))
}

/// The gateway as the oracle: `PUT /uri` and `mkdir-immutable` give the
/// caps computed here, for awkward sizes, names and every metadata key.
#[test]
fn gateway_gives_the_same_caps() {
    let Some((client, params, secret)) = grid_3n() else {
        eprintln!("SKIP gateway_gives_the_same_caps: no 3-node grid (run it through scripts/test)");
        return;
    };
    let k = u64::from(params.k);
    let mib = super::DEFAULT_MAX_SEGMENT_SIZE;
    let mut rng = Rng(0xdead_beef);
    let mut sizes: Vec<u64> = (0..=56).collect();
    sizes.extend([
        mib - 1,
        mib,
        mib + 1,
        1000 * k - 1,
        1000 * k,
        1000 * k + 1,
        3 * mib + 5,
        2 * mib,
    ]);
    sizes.extend((0..4).map(|_| 57 + rng.below(3 * mib)));
    let mut caps = Vec::new();
    for size in sizes {
        let data = rng.bytes(size as usize);
        let (ours, shares) = match cap::lit_uri(&data) {
            Some(lit) => (lit, Vec::new()),
            None => {
                let (enc, shares) = encode_bytes(&data, &params, &secret).unwrap();
                (enc.cap.to_uri(), shares)
            }
        };
        let theirs = client.upload_bytes(&data).unwrap();
        assert!(
            ours == theirs.as_str(),
            "a {size}-byte file: our cap differs from the gateway's"
        );
        if size == 3 * mib + 5 {
            stored_shares_agree(&ours, &shares, &data);
        }
        caps.push(theirs);
    }
    // Every metadata key lafs-backup writes, and awkward names.
    let full = crate::edge::every_key_meta();
    let ctl = crate::names::edge_name(b"ctl\x01\x7f\xff name", false);
    let names = [
        "a\u{301} nfd".to_string(),
        "\u{1F600} non-bmp".into(),
        "quote \" \\ back".into(),
        ctl.name.clone(),
    ];
    let mut kids: Vec<crate::edge::Child> = names
        .iter()
        .zip(&caps[50..])
        .map(|(name, cap)| crate::edge::Child {
            name: name.clone(),
            cap: cap.clone(),
            is_dir: false,
            meta: crate::edge::EdgeMeta {
                name_raw: ctl.raw.clone().filter(|_| *name == ctl.name),
                ..full.clone()
            },
        })
        .collect();
    kids.push(crate::edge::Child {
        name: "plain".into(),
        cap: caps[60].clone(),
        is_dir: false,
        meta: crate::edge::EdgeMeta {
            uid: 0,
            gid: 0,
            mode: None,
            ..Default::default()
        },
    });
    let dircap = client
        .mkdir_immutable(&crate::edge::children_json(&kids))
        .unwrap();
    let metas: Vec<String> = kids.iter().map(|c| c.meta.to_json()).collect();
    let ours: Vec<Child<'_>> = kids
        .iter()
        .zip(&metas)
        .map(|(c, m)| Child {
            name: &c.name,
            cap: c.cap.as_str(),
            metadata: m,
        })
        .collect();
    let ours = super::dirnode::encode_dir(&ours, &params, &secret).unwrap();
    assert!(
        ours.cap == dircap.as_str(),
        "our DIR2-CHK cap differs from mkdir-immutable's"
    );
    // A directory holding a directory.
    let parent = [crate::edge::Child {
        name: "sub".into(),
        cap: dircap.clone(),
        is_dir: true,
        meta: full.clone(),
    }];
    let theirs = client
        .mkdir_immutable(&crate::edge::children_json(&parent))
        .unwrap();
    let meta = full.to_json();
    let ours = super::dirnode::encode_dir(
        &[Child {
            name: "sub",
            cap: dircap.as_str(),
            metadata: &meta,
        }],
        &params,
        &secret,
    )
    .unwrap();
    assert!(ours.cap == theirs.as_str(), "nested directory cap differs");
}

/// The shares the gateway stored for `cap` on the 3-node grid's disks are
/// byte for byte the ones encoded here, and any k of them decode to `data`.
fn stored_shares_agree(cap_text: &str, ours: &[Vec<u8>], data: &[u8]) {
    let cap = cap::ChkCap::parse(cap_text).unwrap();
    let si = crate::tahoe::base32::encode(&cap.storage_index());
    let grid = PathBuf::from(std::env::var_os("LAFS_TEST_GRID_3N_DIR").unwrap());
    let mut stored: Vec<(u16, Vec<u8>)> = Vec::new();
    for node in std::fs::read_dir(&grid).unwrap().flatten() {
        let dir = node.path().join("storage/shares").join(&si[..2]).join(&si);
        for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let shnum: u16 = f.file_name().to_string_lossy().parse().unwrap();
            let file = std::fs::read(f.path()).unwrap();
            // The server's container: a 12-byte header (version, share
            // length, lease count), the share, then the leases.
            let len = u32::from_be_bytes(file[4..8].try_into().unwrap()) as usize;
            stored.push((shnum, file[12..12 + len].to_vec()));
        }
    }
    stored.sort();
    assert_eq!(stored.len(), ours.len(), "every share stored once");
    for (shnum, share) in &stored {
        assert!(
            *share == ours[usize::from(*shnum)],
            "stored share {shnum} differs from ours"
        );
    }
    let k = usize::from(cap.k);
    for skip in 0..stored.len() {
        let pick: Vec<(u16, &[u8])> = stored
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .take(k)
            .map(|(_, (s, d))| (*s, d.as_slice()))
            .collect();
        assert!(
            super::decode::decode_bytes(&cap, &pick).unwrap() == data,
            "decode without share {skip}"
        );
    }
}

#[derive(Deserialize)]
struct SpkiVectors {
    vector: Vec<SpkiCase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SpkiCase {
    expected_hash: String,
    expected_spki: String,
    certificate: String,
}

/// Tahoe's SPKI hash vectors (`src/allmydata/test/data/
/// spki-hash-test-vectors.yaml` of the 1.20.0 sdist).
#[test]
fn tahoe_spki_vectors() {
    let Some(text) = sdist_file_or_skip(
        "tahoe_spki_vectors",
        "src/allmydata/test/data/spki-hash-test-vectors.yaml",
    ) else {
        return;
    };
    let vectors: SpkiVectors = serde_saphyr::from_str(&text).unwrap();
    assert!(!vectors.vector.is_empty());
    for case in &vectors.vector {
        let b64: String = case
            .certificate
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = BASE64.decode(b64).unwrap();
        let spki = super::spki::spki_of_certificate(&der).unwrap();
        assert_eq!(BASE64.encode(spki), case.expected_spki.trim());
        assert_eq!(
            super::spki::spki_hash(&der).unwrap(),
            case.expected_hash.trim()
        );
    }
    eprintln!("{} SPKI hash vectors pass", vectors.vector.len());
}
