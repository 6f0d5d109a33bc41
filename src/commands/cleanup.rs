//! `cleanup`: forget backups — in the entry cache, the result file and the
//! result directory. Shares are never deleted. See `docs/lifecycle.md`.
//!
//! Order of the steps, so that an interruption at any point leaves a state
//! that running the same cleanup again completes: nothing at all is changed
//! unless every target is known; then the storage indexes are written
//! (`-e`), the result directory's links are removed, the result file is
//! rewritten, and last the cache forgets, in one transaction. Until that
//! commit the backups are still recorded, so they can still be named.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context as _;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::list::{iso_time, open_existing, show_name};
use crate::cache::{BackupRow, Cache};
use crate::cli::{CleanupArgs, Cli};
use crate::config::Config;
use crate::exit::{Outcome, UsageError};
use crate::names;
use crate::selector::{BackupArg, quoted};
use crate::tahoe::{Cap, Client};

pub(crate) fn run(cli: &Cli, args: &CleanupArgs, config: &Config) -> anyhow::Result<Outcome> {
    let targets = read_targets(&args.targets)?;
    if targets.is_empty() && args.generations.is_empty() {
        return Err(UsageError(
            "give the backups to forget: root caps or backup names (or `-` to read them from \
             stdin), or -g GENERATION"
                .into(),
        )
        .into());
    }
    let mut cache = open_existing(config, args.lock_wait)?;
    let selection = select(&cache, &targets, &args.generations, args.up_to)?;
    let plan = cache.plan_forget(&selection.ids, &selection.generations, selection.up_to)?;
    let dry = args.dry_run;
    let would = if dry { "would forget" } else { "forgetting" };

    for b in &plan.backups {
        if cli.json {
            println!(
                "{}",
                json!({
                    "type": "forget",
                    "name": show_name(&b.name),
                    "generation": b.generation,
                    "finished": iso_time(b.ts_end),
                })
            );
        } else {
            eprintln!(
                "lafs-backup: {would} backup {} (generation {}, finished {}, root #{}){}",
                show_name(&b.name),
                b.generation,
                iso_time(b.ts_end),
                b.root_cap.short_id(),
                if plan.is_kept_root(b.root_cap.as_str()) {
                    "; a kept backup has the same root cap, so its objects, result line \
                     and link stay"
                } else {
                    ""
                }
            );
        }
    }
    if !cli.json {
        let finished: BTreeSet<u64> = cache.backups()?.iter().map(|b| b.generation).collect();
        for g in selection
            .generations
            .iter()
            .filter(|g| !finished.contains(g))
        {
            eprintln!(
                "lafs-backup: {would} the cache entries of generation {g} (no finished backup)"
            );
        }
        if let Some(g) = selection.up_to {
            eprintln!(
                "lafs-backup: {would} the cache entries of every generation up to {g} that no \
                 kept backup uses"
            );
        }
    }

    // Root caps that no kept backup has: their result lines and links go.
    let roots: BTreeSet<&str> = plan
        .backups
        .iter()
        .map(|b| b.root_cap.as_str())
        .filter(|c| !plan.is_kept_root(c))
        .collect();
    let mut client = None;

    let unreferenced = plan.unreferenced().count();
    if let Some(dst) = &args.enumerate_shares {
        let sis = storage_indexes(plan.unreferenced(), config, &mut client)?;
        write_storage_indexes(cli.json, dst.as_deref(), &sis)?;
    }

    let links = result_links(&plan.backups, &roots, config, &mut client, dry)?;
    let result_lines = match &config.destination.result.append_to_file {
        Some(path) if !roots.is_empty() => {
            let n = forget_result_lines(path, &roots, dry).with_context(|| {
                format!(
                    "removing the forgotten backups' lines from the result file {} \
                     (destination.result.append_to_file); nothing was forgotten yet",
                    path.display()
                )
            })?;
            if n > 0 || !cli.json {
                eprintln!(
                    "lafs-backup: result file {}: {} {n} line{}",
                    path.display(),
                    if dry { "would remove" } else { "removed" },
                    plural(n)
                );
            }
            n
        }
        _ => 0,
    };

    if !dry {
        cache.apply_forget(&plan)?;
        cache.close()?;
    }

    if cli.json {
        println!(
            "{}",
            json!({
                "type": "cleanup",
                "backups": plan.backups.len(),
                "objects": plan.objects(),
                "entries": plan.rows(),
                "unreferenced": unreferenced,
                "result_lines": result_lines,
                "links": links,
                "dry_run": dry,
            })
        );
    } else {
        let n = plan.backups.len();
        let m = plan.objects();
        eprintln!(
            "lafs-backup: cleanup: {} {n} backup{} and {m} object{} from the entry cache \
             ({unreferenced} no longer referenced), {} {result_lines} result line{} and \
             {links} link{}.{} No share is deleted: the storage servers free them when their \
             leases lapse.",
            if dry { "would forget" } else { "forgot" },
            plural(n),
            plural(m),
            if dry { "would remove" } else { "removed" },
            plural(result_lines),
            plural(links),
            if dry {
                " Nothing was changed (--dry-run)."
            } else {
                ""
            },
        );
    }
    Ok(Outcome::Success)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The positional targets, with `-` replaced by the non-empty lines of
/// stdin (read once, and only then).
fn read_targets(given: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stdin_read = false;
    for t in given {
        if t == "-" {
            if stdin_read {
                continue;
            }
            stdin_read = true;
            for line in io::stdin().lock().lines() {
                let line = line.context("reading targets from stdin")?;
                let line = line.trim();
                if !line.is_empty() {
                    out.push(line.to_owned());
                }
            }
        } else {
            out.push(t.clone());
        }
    }
    Ok(out)
}

/// What the command line selects.
struct Selection {
    /// The backups (row ids) to forget.
    ids: BTreeSet<i64>,
    /// Generations whose rows are swept: those given with -g and those of
    /// the forgotten backups.
    generations: BTreeSet<u64>,
    /// With --up-to: the newest generation selected; every generation up
    /// to it is swept.
    up_to: Option<u64>,
}

/// Resolves the targets to backup row ids and the generations to sweep.
/// Every problem (an invalid or unknown cap, an unknown or ambiguous name,
/// an unknown generation) is collected; any of them is a usage error and
/// nothing is changed.
fn select(
    cache: &Cache,
    targets: &[String],
    generations: &[u64],
    up_to: bool,
) -> anyhow::Result<Selection> {
    let backups = cache.backups()?;
    let mut ids: BTreeSet<i64> = BTreeSet::new();
    let mut problems: Vec<String> = Vec::new();
    for t in targets {
        let parsed = match BackupArg::parse(t, "a target") {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.push(e.0);
                continue;
            }
        };
        if let BackupArg::Cap(cap) = parsed {
            let found: Vec<&BackupRow> = backups.iter().filter(|b| b.root_cap == cap).collect();
            if found.is_empty() {
                problems.push(format!(
                    "no recorded backup has the root cap #{} (`lafs-backup list` shows the \
                     recorded backups)",
                    cap.short_id()
                ));
            }
            ids.extend(found.iter().map(|b| b.id));
        } else {
            let found: Vec<&BackupRow> = backups
                .iter()
                .filter(|b| b.name == t.as_bytes() || show_name(&b.name) == *t)
                .collect();
            match found.as_slice() {
                [] => problems.push(format!(
                    "no recorded backup is named {} (`lafs-backup list` shows the names)",
                    quoted(t)
                )),
                [one] => {
                    ids.insert(one.id);
                }
                several => {
                    let mut text = format!(
                        "the name {} matches {} backups; give the root cap (or -g \
                         GENERATION) of the one to forget:",
                        quoted(t),
                        several.len()
                    );
                    for b in several {
                        text.push_str(&format!(
                            "\n  generation {}, finished {}, root #{}",
                            b.generation,
                            iso_time(b.ts_end),
                            b.root_cap.short_id()
                        ));
                    }
                    problems.push(text);
                }
            }
        }
    }
    let mut selection = Selection {
        ids: BTreeSet::new(),
        generations: BTreeSet::new(),
        up_to: None,
    };
    for &g in generations {
        let finished: Vec<&BackupRow> = backups.iter().filter(|b| b.generation == g).collect();
        if finished.is_empty() && cache.rows_of_generation(g)? == 0 {
            problems.push(format!(
                "generation {g} has neither a backup nor cache entries \
                 (`lafs-backup list -g` shows the generations)"
            ));
        }
        ids.extend(finished.iter().map(|b| b.id));
        selection.generations.insert(g);
    }
    match problems.as_slice() {
        [] => {}
        [one] => return Err(UsageError(format!("nothing was forgotten: {one}")).into()),
        several => {
            return Err(UsageError(format!(
                "nothing was forgotten:\n* {}",
                several.join("\n* ")
            ))
            .into());
        }
    }
    if up_to {
        let newest = backups
            .iter()
            .filter(|b| ids.contains(&b.id))
            .map(|b| b.generation)
            .chain(generations.iter().copied())
            .max();
        if let Some(g) = newest {
            ids.extend(backups.iter().filter(|b| b.generation <= g).map(|b| b.id));
            selection.up_to = Some(g);
        }
    }
    selection.generations.extend(
        backups
            .iter()
            .filter(|b| ids.contains(&b.id))
            .map(|b| b.generation),
    );
    selection.ids = ids;
    Ok(selection)
}

fn client<'a>(config: &Config, slot: &'a mut Option<Client>) -> anyhow::Result<&'a Client> {
    if slot.is_none() {
        *slot = Some(super::gateway_client(config, None)?.0);
    }
    Ok(slot.as_ref().expect("just set"))
}

/// The storage indexes of the objects that become unreferenced, computed
/// from their caps (CHK and DIR2-CHK, the only kinds backups store), or
/// asked from the gateway (`t=json`, `verify_uri`) for any other kind.
fn storage_indexes<'a>(
    caps: impl Iterator<Item = &'a str>,
    config: &Config,
    slot: &mut Option<Client>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for text in caps {
        if let Some(si) = storage_index(text) {
            out.insert(si);
            continue;
        }
        let cap = Cap::parse(text)
            .map_err(|_| anyhow::anyhow!("the cache holds a cap that does not parse"))?;
        let info = client(config, slot)?.info(&cap).with_context(|| {
            format!(
                "asking the gateway for the storage index of #{}",
                cap.short_id()
            )
        })?;
        let si = info
            .get(1)
            .and_then(|d| d.get("verify_uri"))
            .and_then(serde_json::Value::as_str)
            .and_then(|v| v.split(':').nth(2))
            .filter(|si| !si.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the gateway gave no verify cap for #{}, so its storage index is unknown",
                    cap.short_id()
                )
            })?;
        out.insert(si.to_owned());
    }
    Ok(out)
}

fn write_storage_indexes(
    json: bool,
    dst: Option<&Path>,
    sis: &BTreeSet<String>,
) -> anyhow::Result<()> {
    match dst {
        None => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            for si in sis {
                if json {
                    writeln!(
                        out,
                        "{}",
                        json!({"type": "storage_index", "storage_index": si})
                    )?;
                } else {
                    writeln!(out, "{si}")?;
                }
            }
            out.flush()?;
        }
        Some(p) if p.as_os_str() == "-" => return write_storage_indexes(json, None, sis),
        Some(path) => {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {} (-e)", path.display()))?;
            let mut text = String::new();
            for si in sis {
                text.push_str(si);
                text.push('\n');
            }
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {} (-e)", path.display()))?;
        }
    }
    Ok(())
}

/// Tahoe's storage index of a `URI:CHK:` or `URI:DIR2-CHK:` cap: the
/// first 16 bytes of SHA-256d over the netstring of the tag
/// `allmydata_immutable_key_to_storage_index_v1` and the cap's 16-byte key
/// (`hashutil.storage_index_hash`), in Tahoe's lower-case unpadded base32.
/// `None` for other kinds.
pub(crate) fn storage_index(cap: &str) -> Option<String> {
    const TAG: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";
    let fields: Vec<&str> = cap.split(':').collect();
    if fields.len() != 7 || fields[0] != "URI" || !matches!(fields[1], "CHK" | "DIR2-CHK") {
        return None;
    }
    let key = base32_decode(fields[2])?;
    if key.len() != 16 {
        return None;
    }
    let mut h = Sha256::new();
    h.update(format!("{}:", TAG.len()).as_bytes());
    h.update(TAG);
    h.update(b",");
    h.update(&key);
    let twice = Sha256::digest(h.finalize());
    Some(base32_encode(&twice[..16]))
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(B32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes lower-case unpadded base32; `None` on any other character or
/// non-zero leftover bits.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = B32.iter().position(|&x| x == c)? as u32;
        acc = ((acc << 5) | v) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    (bits < 5 && acc & ((1 << bits) - 1) == 0).then_some(out)
}

/// Removes (or, dry, counts) the links in `destination.result.append_to_lafs_dir`
/// of the forgotten backups: the link `edge_name(name)` is removed only when
/// it holds the forgotten root cap; a link to anything else is left alone.
fn result_links(
    forgotten: &[BackupRow],
    roots: &BTreeSet<&str>,
    config: &Config,
    slot: &mut Option<Client>,
    dry: bool,
) -> anyhow::Result<usize> {
    let Some(dir) = &config.destination.result.append_to_lafs_dir else {
        return Ok(0);
    };
    let dir = dir.trim_matches('/');
    // Link name -> the forgotten root caps it may hold.
    let mut wanted: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for b in forgotten {
        let cap = b.root_cap.as_str();
        if roots.contains(cap) {
            wanted
                .entry(names::edge_name(&b.name, false).name)
                .or_default()
                .insert(cap);
        }
    }
    if wanted.is_empty() {
        return Ok(0);
    }
    let client = client(config, slot)?;
    let context = |name: &str| {
        format!(
            "looking up \"{name}\" in destination.result.append_to_lafs_dir{}",
            if dry {
                ""
            } else {
                "; nothing was forgotten yet, run the same cleanup again when the gateway works"
            }
        )
    };
    let mut removed = 0;
    for (name, caps) in &wanted {
        let current = client.child_cap(dir, name).with_context(|| context(name))?;
        match current {
            None => {
                eprintln!("lafs-backup: result directory: no link named \"{name}\"");
            }
            Some(cap) if !caps.contains(cap.as_str()) => {
                eprintln!(
                    "lafs-backup: result directory: \"{name}\" links another backup \
                     (#{}), left alone",
                    cap.short_id()
                );
            }
            Some(cap) if dry => {
                eprintln!(
                    "lafs-backup: result directory: would unlink \"{name}\" (#{})",
                    cap.short_id()
                );
                removed += 1;
            }
            Some(cap) => {
                // Between the lookup and the unlink a backup may have linked
                // a new root under the name: put that back.
                match client.unlink(dir, name).with_context(|| context(name))? {
                    Some(gone) if gone == cap => {
                        eprintln!(
                            "lafs-backup: result directory: unlinked \"{name}\" (#{})",
                            cap.short_id()
                        );
                        removed += 1;
                    }
                    Some(other) => {
                        client.link(dir, name, &other).with_context(|| {
                            format!(
                                "putting back the link \"{name}\" that a backup made while \
                                 cleanup removed it"
                            )
                        })?;
                        eprintln!(
                            "lafs-backup: result directory: \"{name}\" changed meanwhile to \
                             another backup (#{}); left alone",
                            other.short_id()
                        );
                    }
                    None => {
                        eprintln!("lafs-backup: result directory: no link named \"{name}\"");
                    }
                }
            }
        }
    }
    Ok(removed)
}

/// Removes (or, dry, counts) the lines of the result file whose last field
/// is one of `caps`. The file is rewritten atomically under the writer's
/// lock (`flock` on the file, as `result::append_to_file` takes): a temp
/// file in the same directory, 0600, fsynced, renamed over it, then the
/// directory fsynced. Every other line stays byte for byte; a missing file
/// removes nothing.
fn forget_result_lines(path: &Path, caps: &BTreeSet<&str>, dry: bool) -> anyhow::Result<usize> {
    let file = match OpenOptions::new().read(true).write(!dry).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let lock = if dry {
        nix::fcntl::FlockArg::LockShared
    } else {
        nix::fcntl::FlockArg::LockExclusive
    };
    let mut locked =
        nix::fcntl::Flock::lock(file, lock).map_err(|(_, errno)| io::Error::from(errno))?;
    let mut text = Vec::new();
    locked.rewind()?;
    locked.read_to_end(&mut text)?;
    let (kept, removed) = drop_lines(&text, caps);
    if dry || removed == 0 {
        return Ok(removed);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lafs-backup-result.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(&kept)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()?;
    drop(locked);
    Ok(removed)
}

/// `text` without the lines whose last whitespace-separated field is one of
/// `caps`, and how many lines went. Lines without such a field (blank,
/// malformed) stay as they are.
fn drop_lines(text: &[u8], caps: &BTreeSet<&str>) -> (Vec<u8>, usize) {
    let mut kept = Vec::with_capacity(text.len());
    let mut removed = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let field = line
            .trim_ascii_end()
            .rsplit(u8::is_ascii_whitespace)
            .next()
            .unwrap_or_default();
        let hit = !field.is_empty() && std::str::from_utf8(field).is_ok_and(|f| caps.contains(f));
        if hit {
            removed += 1;
        } else {
            kept.extend_from_slice(line);
        }
    }
    (kept, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_index_matches_tahoe() {
        // From tahoe-lafs 1.20.0: CHKFileURI(bytes(range(16)), bytes(range(32)),
        // 2, 3, 1000) and its verify cap.
        let chk = "URI:CHK:aaaqeayeaudaocajbifqydiob4:\
                   aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq:2:3:1000";
        assert_eq!(
            storage_index(chk).as_deref(),
            Some("hdis5iaveku6lnlaiccydyid7q")
        );
        let dir = chk.replace("URI:CHK:", "URI:DIR2-CHK:");
        assert_eq!(
            storage_index(&dir).as_deref(),
            Some("hdis5iaveku6lnlaiccydyid7q")
        );
        assert_eq!(storage_index("URI:LIT:nbswy3dp"), None);
        assert_eq!(storage_index("URI:CHK:bad!:x:1:1:1"), None);
        assert_eq!(
            base32_decode("aaaqeayeaudaocajbifqydiob4"),
            Some((0u8..16).collect())
        );
        assert_eq!(
            base32_encode(&(0u8..16).collect::<Vec<_>>()),
            "aaaqeayeaudaocajbifqydiob4"
        );
        // Leftover bits must be zero.
        assert_eq!(base32_decode("aaaqeayeaudaocajbifqydiob5"), None);
    }

    #[test]
    fn result_lines_go_by_their_last_field_and_the_rest_stays_byte_for_byte() {
        let a = "URI:DIR2-CHK:aaa:bbb:1:1:10";
        let b = "URI:DIR2-CHK:ccc:ddd:1:1:10";
        let text = format!(
            "2026-01-01T00:00:00+01:00 /srv/x {a}\n\
             \n\
             garbage\n\
             2026-01-02T00:00:00+01:00 /srv/odd name {b}\n\
             \u{fffd} odd {a}  \r\n\
             2026-01-03T00:00:00+01:00 /srv/x {a}x\n\
             no newline at the end {b}"
        );
        let mut raw = text.into_bytes();
        raw.extend_from_slice(b"\n\xff\xfe odd bytes\n");
        let (kept, n) = drop_lines(&raw, &BTreeSet::from([a]));
        assert_eq!(n, 2);
        let want = format!(
            "\n\
             garbage\n\
             2026-01-02T00:00:00+01:00 /srv/odd name {b}\n\
             2026-01-03T00:00:00+01:00 /srv/x {a}x\n\
             no newline at the end {b}"
        );
        let mut want = want.into_bytes();
        want.extend_from_slice(b"\n\xff\xfe odd bytes\n");
        assert_eq!(kept, want);
        let (kept, n) = drop_lines(&raw, &BTreeSet::from([b]));
        assert_eq!(n, 2);
        assert!(kept.ends_with(b"\xff\xfe odd bytes\n"));
        assert_eq!(drop_lines(b"", &BTreeSet::from([a])), (Vec::new(), 0));
    }

    #[test]
    fn the_result_file_is_rewritten_privately_and_only_when_needed() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results");
        let a = Cap::parse("URI:DIR2-CHK:aaa:bbb:1:1:10").unwrap();
        let b = Cap::parse("URI:DIR2-CHK:ccc:ddd:1:1:10").unwrap();
        crate::result::append_to_file(&path, b"/srv/x", &a).unwrap();
        crate::result::append_to_file(&path, b"/srv/y", &b).unwrap();
        let before = std::fs::read(&path).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        assert_eq!(
            forget_result_lines(&path, &BTreeSet::from([a.as_str()]), true).unwrap(),
            1
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "dry run");
        let none = BTreeSet::from(["URI:DIR2-CHK:zzz:zzz:1:1:1"]);
        assert_eq!(forget_result_lines(&path, &none, false).unwrap(), 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "not rewritten"
        );
        assert_eq!(
            forget_result_lines(&path, &BTreeSet::from([a.as_str()]), false).unwrap(),
            1
        );
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.ends_with(&format!(" /srv/y {}\n", b.as_str())));
        assert_eq!(after.lines().count(), 1);
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert_eq!(
            forget_result_lines(&dir.path().join("absent"), &none, false).unwrap(),
            0
        );
    }
}
