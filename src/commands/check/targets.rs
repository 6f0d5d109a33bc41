//! The targets of `check`: the trees the arguments name.

use crate::cache::{BackupRow, Cache};
use crate::cli::CheckArgs;
use crate::commands::show::name as show_name;
use crate::exit::UsageError;
use crate::selector::{Given, Selector};
use crate::tahoe::Cap;

/// One tree to check: a root cap, with every recorded backup that has it.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) cap: Cap,
    /// How reports name it: the backup's name (escaped), or `#` and the
    /// cap's short id when the cache does not know it.
    pub(super) label: String,
    /// The `backups` rows with this root cap; empty for an unknown cap.
    pub(super) ids: Vec<i64>,
    /// The oldest check time of those rows (`None`: one was never checked).
    pub(super) ts_check: Option<i64>,
}

/// The trees the arguments name, each once, in the order given (`--all`:
/// oldest backup first); a name is its latest backup ([`crate::selector`]).
pub(super) fn resolve(
    cache: &Cache,
    args: &CheckArgs,
    given: &[Given],
) -> anyhow::Result<Vec<Target>> {
    let rows = cache.backups()?;
    // (cap, label if named) in order.
    let mut wanted: Vec<(Cap, Option<String>)> = Vec::new();
    // `--all`, or `-a` among all backups.
    if args.all || (args.least_recently_checked && args.targets.is_empty()) {
        wanted.extend(rows.iter().map(|r| (r.root_cap.clone(), None)));
    }
    for t in given {
        let selector =
            Selector::parse(&t.text, &t.what, None)?.with_label(args.label.as_deref())?;
        if let Some(cap) = selector.cap() {
            wanted.push((cap.clone(), None));
            continue;
        }
        let selected = selector
            .select(&rows, cache.path())
            .map_err(UsageError::from)?;
        wanted.push((selected.cap().clone(), Some(selected.label())));
    }
    let mut targets: Vec<Target> = Vec::new();
    for (cap, label) in wanted {
        if targets.iter().any(|t| t.cap == cap) {
            continue;
        }
        let same: Vec<&BackupRow> = rows.iter().filter(|r| r.root_cap == cap).collect();
        let label = label
            .or_else(|| same.last().map(|r| show_name(&r.name)))
            .unwrap_or_else(|| format!("#{}", cap.short_id()));
        let ts_check = if same.iter().any(|r| r.ts_check.is_none()) {
            None
        } else {
            same.iter().filter_map(|r| r.ts_check).min()
        };
        targets.push(Target {
            ids: same.iter().map(|r| r.id).collect(),
            cap,
            label,
            ts_check,
        });
    }
    Ok(targets)
}

/// The target checked longest ago: never checked first, then the oldest
/// check; ties go to the one given (or recorded) first. `None` for no target.
pub(super) fn least_recently_checked(targets: Vec<Target>) -> Option<Target> {
    let mut best: Option<Target> = None;
    for t in targets {
        let better = match &best {
            None => true,
            Some(b) => match (t.ts_check, b.ts_check) {
                (None, Some(_)) => true,
                (Some(x), Some(y)) => x < y,
                _ => false,
            },
        };
        if better {
            best = Some(t);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(label: &str, ts: Option<i64>) -> Target {
        Target {
            cap: Cap::parse(&format!("URI:DIR2-CHK:{label}:x:1:1:10")).unwrap(),
            label: label.into(),
            ids: vec![1],
            ts_check: ts,
        }
    }

    #[test]
    fn least_recently_checked_prefers_never_then_oldest_then_first() {
        let pick = |ts: &[Option<i64>]| {
            let targets = ts
                .iter()
                .enumerate()
                .map(|(i, t)| target(&format!("t{i}"), *t))
                .collect();
            least_recently_checked(targets).map(|t| t.label)
        };
        assert_eq!(pick(&[Some(5), None, Some(1), None]).as_deref(), Some("t1"));
        assert_eq!(pick(&[Some(5), Some(1), Some(1)]).as_deref(), Some("t1"));
        assert_eq!(pick(&[Some(5)]).as_deref(), Some("t0"));
        assert_eq!(pick(&[]), None);
    }
}
