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
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use super::Context;
use super::show::{name as show_name, plural, time as iso_time};
use crate::cache::ForgetPlan;
use crate::cache::{BackupRow, Cache};
use crate::cli::CleanupArgs;
use crate::exit::{Outcome, UsageError};
use crate::names;
use crate::selector::{self, Given, Selected, Selector};
use crate::tahoe::{Cap, Client};

pub(crate) fn run(ctx: &Context<'_>, args: &CleanupArgs) -> anyhow::Result<Outcome> {
    let json = ctx.json();
    let targets = selector::targets(&args.targets, io::stdin().lock())
        .context("reading targets from stdin")?;
    if targets.is_empty() && args.generations.is_empty() {
        return Err(UsageError(
            "give the backups to forget: root caps or backup names (or `-` to read them from \
             stdin), or -g GENERATION"
                .into(),
        )
        .into());
    }
    let cache = ctx.recorded_cache(args.lock_wait)?;
    let ask = Ask {
        generations: &args.generations,
        up_to: args.up_to,
        all_names: args.all_names,
        label: args.label.as_deref(),
    };
    let selection = select(&cache, &targets, &ask)?;
    let plan = cache.plan_forget(&selection.ids, &selection.generations, selection.up_to)?;
    let dry = args.dry_run;
    let would = if dry { "would forget" } else { "forgetting" };

    for b in &plan.backups {
        if json {
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
    if !json {
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

    let unreferenced = plan.unreferenced().count();
    if let Some(dst) = &args.enumerate_shares {
        let mut client = None;
        let sis = storage_indexes(plan.unreferenced(), ctx, &mut client)?;
        write_storage_indexes(json, dst.as_deref(), &sis)?;
    }
    let Carried {
        result_lines,
        links,
    } = carry_out(ctx, cache, &plan, dry)?;

    if json {
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

/// What [`carry_out`] removed (or, dry, would remove).
pub(super) struct Carried {
    pub(super) result_lines: usize,
    pub(super) links: usize,
}

/// Carries out a forget plan, in the order that lets an interrupted run be
/// completed by running it again: the result directory's links, the
/// result file's lines (of root caps no kept backup has), then the cache in
/// one transaction. `dry` changes nothing and counts. Shared by `cleanup`
/// and `forget`.
pub(super) fn carry_out(
    ctx: &Context<'_>,
    mut cache: Cache,
    plan: &ForgetPlan,
    dry: bool,
) -> anyhow::Result<Carried> {
    let json = ctx.json();
    // Root caps that no kept backup has: their result lines and links go.
    let roots: BTreeSet<&str> = plan
        .backups
        .iter()
        .map(|b| b.root_cap.as_str())
        .filter(|c| !plan.is_kept_root(c))
        .collect();
    let mut client = None;
    let links = result_links(&plan.backups, &roots, ctx, &mut client, dry)?;
    let result_lines = match &ctx.config().destination.result.append_to_file {
        Some(path) if !roots.is_empty() => {
            let n = crate::result::remove_lines(path, &roots, dry).with_context(|| {
                format!(
                    "removing the forgotten backups' lines from the result file {} \
                     (destination.result.append_to_file); nothing was forgotten yet",
                    path.display()
                )
            })?;
            if n > 0 || !json {
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
        cache.apply_forget(plan)?;
        cache.close()?;
    }
    Ok(Carried {
        result_lines,
        links,
    })
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

/// What the command line asks for, besides the targets.
struct Ask<'a> {
    generations: &'a [u64],
    up_to: bool,
    all_names: bool,
    label: Option<&'a str>,
}

/// Resolves the targets to backup row ids and the generations to sweep.
/// Every problem (an invalid or unknown cap, an unknown or ambiguous name,
/// an unknown generation or label, a pinned backup not named explicitly)
/// is collected; any of them is a usage error and nothing is changed.
///
/// With a NAME, `-g` and `--up-to` are scoped to that name: `-g N` picks
/// the name's backup of generation N, `--up-to` adds the name's older
/// backups only. Without a NAME, `-g` picks the backups and rows of those
/// generations, and `--up-to` (which then reaches every name in the cache)
/// needs `--all-names`.
fn select(cache: &Cache, targets: &[Given], ask: &Ask<'_>) -> anyhow::Result<Selection> {
    let named = targets.iter().any(|t| {
        matches!(
            selector::BackupArg::parse(&t.text, &t.what),
            Ok(selector::BackupArg::Name(_))
        )
    });
    if ask.up_to && !named && !ask.all_names {
        return Err(UsageError(
            "nothing was forgotten: --up-to without a NAME would forget the older backups of \
             every name in the cache; give the NAME whose backups to forget, or add \
             --all-names if every name is meant"
                .into(),
        )
        .into());
    }
    if ask.label.is_some() && !named {
        return Err(UsageError(
            "nothing was forgotten: --label selects a backup of a NAME; give the NAME".into(),
        )
        .into());
    }
    let backups = cache.backups()?;
    let mut ids: BTreeSet<i64> = BTreeSet::new();
    // Backups named by their cap or generation: forgotten even if pinned.
    let mut explicit: BTreeSet<i64> = BTreeSet::new();
    // Per name given: the newest generation picked, for a scoped --up-to.
    let mut newest_of: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    // With a NAME, each -g is a generation of the name (None: no -g).
    let scoped: Vec<Option<u64>> = if named && !ask.generations.is_empty() {
        ask.generations.iter().copied().map(Some).collect()
    } else {
        vec![None]
    };
    for t in targets {
        let mut picked: Vec<&BackupRow> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for &generation in &scoped {
            let selected = match Selector::parse(&t.text, &t.what, None).and_then(|s| {
                let s = match s.backup {
                    selector::BackupArg::Name(_) => Selector { generation, ..s },
                    selector::BackupArg::Cap(_) => s,
                };
                s.with_label(ask.label)
            }) {
                Ok(s) => s.select(&backups, cache.path()),
                Err(e) => {
                    errors.push(e.0);
                    break;
                }
            };
            match selected {
                Err(e) => errors.push(e.to_string()),
                Ok(Selected::Cap { cap, recorded }) => {
                    // Unlike the other commands, cleanup acts on recorded
                    // backups only.
                    if recorded.is_empty() {
                        errors.push(format!(
                            "no recorded backup has the root cap #{} (`lafs-backup list` \
                             shows the recorded backups)",
                            cap.short_id()
                        ));
                    }
                    explicit.extend(recorded.iter().map(|b| b.id));
                    picked.extend(recorded);
                }
                Ok(Selected::Named { rows, .. }) => match rows.as_slice() {
                    [one] => {
                        if generation.is_some() {
                            explicit.insert(one.id);
                        }
                        newest_of
                            .entry(one.name.clone())
                            .and_modify(|g| *g = (*g).max(one.generation))
                            .or_insert(one.generation);
                        picked.push(one);
                    }
                    // A destructive command does not take "the latest".
                    several => {
                        let mut text = format!(
                            "the name {} matches {} backups; give the root cap (or -g \
                             GENERATION) of the one to forget:",
                            selector::quoted(&t.text),
                            several.len()
                        );
                        for b in several {
                            text.push_str("\n  ");
                            text.push_str(&selector::describe(b));
                        }
                        errors.push(text);
                    }
                },
            }
        }
        // With several -g, a name needs only one of them.
        if picked.is_empty() || scoped.len() == 1 {
            problems.extend(errors.into_iter().take(1));
        }
        ids.extend(picked.iter().map(|b| b.id));
    }
    let mut selection = Selection {
        ids: BTreeSet::new(),
        generations: BTreeSet::new(),
        up_to: None,
    };
    if !named {
        for &g in ask.generations {
            let finished: Vec<&BackupRow> = backups.iter().filter(|b| b.generation == g).collect();
            if finished.is_empty() && cache.rows_of_generation(g)? == 0 {
                problems.push(format!(
                    "generation {g} has neither a backup nor cache entries \
                     (`lafs-backup list -g` shows the generations)"
                ));
            }
            ids.extend(finished.iter().map(|b| b.id));
            explicit.extend(finished.iter().map(|b| b.id));
            selection.generations.insert(g);
        }
    }
    if ask.up_to && problems.is_empty() {
        if named {
            for (name, g) in &newest_of {
                ids.extend(
                    backups
                        .iter()
                        .filter(|b| b.name == *name && b.generation <= *g)
                        .map(|b| b.id),
                );
            }
        } else {
            let newest = backups
                .iter()
                .filter(|b| ids.contains(&b.id))
                .map(|b| b.generation)
                .chain(ask.generations.iter().copied())
                .max();
            if let Some(g) = newest {
                ids.extend(backups.iter().filter(|b| b.generation <= g).map(|b| b.id));
                selection.up_to = Some(g);
            }
        }
    }
    // Pinned backups go only when named by cap or generation.
    for b in backups
        .iter()
        .filter(|b| b.pinned && ids.contains(&b.id) && !explicit.contains(&b.id))
    {
        problems.push(format!(
            "the backup {} generation {} is pinned; name it by its root cap or -g {} to \
             forget it anyway, or `lafs-backup unpin` it first",
            show_name(&b.name),
            b.generation,
            b.generation
        ));
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
    selection.generations.extend(
        backups
            .iter()
            .filter(|b| ids.contains(&b.id))
            .map(|b| b.generation),
    );
    selection.ids = ids;
    Ok(selection)
}

/// The gateway client, made at its first use: a cleanup that needs no
/// gateway works without one.
fn client<'s>(ctx: &Context<'_>, slot: &'s mut Option<Client>) -> anyhow::Result<&'s Client> {
    match slot {
        Some(client) => Ok(client),
        None => Ok(slot.insert(ctx.gateway(None)?.client)),
    }
}

/// The storage indexes of the objects that become unreferenced, computed
/// from their caps (CHK and DIR2-CHK, the only kinds backups store), or
/// asked from the gateway (`t=json`, `verify_uri`) for any other kind.
fn storage_indexes<'a>(
    caps: impl Iterator<Item = &'a str>,
    ctx: &Context<'_>,
    slot: &mut Option<Client>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for text in caps {
        let cap = Cap::parse(text)
            .map_err(|_| anyhow::anyhow!("the cache holds a cap that does not parse"))?;
        if let Some(si) = cap.storage_index() {
            out.insert(si);
            continue;
        }
        let info = client(ctx, slot)?.info(&cap).with_context(|| {
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

/// Removes (or, dry, counts) the links in `destination.result.append_to_lafs_dir`
/// of the forgotten backups: the link `edge_name(name)` is removed only when
/// it holds the forgotten root cap; a link to anything else is left alone.
fn result_links(
    forgotten: &[BackupRow],
    roots: &BTreeSet<&str>,
    ctx: &Context<'_>,
    slot: &mut Option<Client>,
    dry: bool,
) -> anyhow::Result<usize> {
    let Some(dir) = &ctx.config().destination.result.append_to_lafs_dir else {
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
    let client = client(ctx, slot)?;
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
