//! The `retention` key: which policy `forget` (and `forget_after_backup`)
//! applies, validated when the config is loaded (`docs/retention.md`).
//!
//! One leaf in the schema: a layer's `retention` replaces the previous one
//! whole, because a policy is exactly one kind and mixing the settings of
//! two layers' kinds would make a policy nobody wrote.

use super::emit::Out;
use super::node::{Entry, Kind, Node};
use super::schema::{Invalid, InvalidKind, Value, check_duplicates, join, parse_list};
use crate::retention::{
    CycleRules, HanoiRules, KeepDuration, KeepRules, Policy, TierLevel, TierRules, hanoi_max_discs,
};

/// `retention`: the policy, and whether a backup applies it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Retention {
    /// The one policy given (`keep`, `cycle`, `hanoi` or `tiers`); `None`
    /// when only `forget_after_backup` is set.
    pub(crate) policy: Option<Policy>,
    /// Apply the policy to a name right after its successful backup.
    pub(crate) forget_after_backup: bool,
}

const KINDS: &str = "keep, cycle, hanoi or tiers";

pub(crate) fn zero() -> Option<Retention> {
    None
}

pub(crate) fn parse(node: &Node, key: &str) -> Result<Option<Retention>, Invalid> {
    let entries = match &node.kind {
        Kind::Null => return Ok(None),
        Kind::Map(entries) => entries,
        _ => {
            return Err(Invalid::ty(
                node,
                key,
                "a mapping (one of keep, cycle, hanoi or tiers, and forget_after_backup)",
            ));
        }
    };
    check_duplicates(entries, key)?;
    let mut retention = Retention::default();
    let mut kind: Option<&str> = None;
    for entry in entries {
        let child = join(key, &entry.key);
        let value = &entry.value;
        let policy = match entry.key.as_str() {
            "forget_after_backup" => {
                retention.forget_after_backup = bool::parse(value, &child)?;
                continue;
            }
            "keep" => Policy::Keep(keep(value, &child)?),
            "cycle" => Policy::Cycle(cycle(value, &child)?),
            "hanoi" => Policy::Hanoi(hanoi(value, &child)?),
            "tiers" => Policy::Tiers(tiers(value, &child)?),
            _ => return Err(unknown(entry, &child)),
        };
        if let Some(first) = kind {
            return Err(Invalid {
                line: entry.key_line,
                key: child,
                kind: InvalidKind::Value(format!(
                    "{key} already has the policy {first}: give exactly one of {KINDS}"
                )),
            });
        }
        kind = Some(match policy {
            Policy::Keep(_) => "keep",
            Policy::Cycle(_) => "cycle",
            Policy::Hanoi(_) => "hanoi",
            Policy::Tiers(_) => "tiers",
        });
        retention.policy = Some(policy);
    }
    Ok(Some(retention))
}

pub(crate) fn to_out(retention: &Option<Retention>) -> Out {
    let Some(r) = retention else {
        return Out::Null;
    };
    let mut map = Vec::new();
    match &r.policy {
        None => {}
        Some(Policy::Keep(k)) => {
            let count = |n: i64| Out::Int(n.into());
            let within =
                |d: &Option<KeepDuration>| d.map_or(Out::Null, |d| Out::Str(d.to_string()));
            map.push((
                "keep",
                Out::Map(vec![
                    ("last", count(k.last)),
                    ("hourly", count(k.hourly)),
                    ("daily", count(k.daily)),
                    ("weekly", count(k.weekly)),
                    ("monthly", count(k.monthly)),
                    ("yearly", count(k.yearly)),
                    ("within", within(&k.within)),
                    ("within_hourly", within(&k.within_hourly)),
                    ("within_daily", within(&k.within_daily)),
                    ("within_weekly", within(&k.within_weekly)),
                    ("within_monthly", within(&k.within_monthly)),
                    ("within_yearly", within(&k.within_yearly)),
                ]),
            ));
        }
        Some(Policy::Cycle(c)) => map.push((
            "cycle",
            Out::Map(vec![
                ("frequency", Out::Int(c.frequency.into())),
                ("phase", Out::Int(c.phase.into())),
                ("diffs", Out::Int(c.diffs.into())),
                ("fulls", Out::Int(c.fulls.into())),
            ]),
        )),
        Some(Policy::Hanoi(h)) => map.push((
            "hanoi",
            Out::Map(vec![
                ("discs", Out::Int(h.discs.into())),
                ("frequency", Out::Int(h.frequency.into())),
                ("archive_oldest", Out::Bool(h.archive_oldest)),
            ]),
        )),
        Some(Policy::Tiers(t)) => {
            let levels = t
                .levels
                .iter()
                .map(|l| {
                    Out::Map(vec![
                        ("format", Out::Str(l.format.clone())),
                        ("priority", Out::Int(l.priority.into())),
                        ("keep_days", Out::Int(l.keep_days.into())),
                    ])
                })
                .collect();
            map.push(("tiers", Out::Map(vec![("levels", Out::Seq(levels))])));
        }
    }
    map.push(("forget_after_backup", Out::Bool(r.forget_after_backup)));
    Out::Map(map)
}

fn unknown(entry: &Entry, key: &str) -> Invalid {
    Invalid {
        line: entry.key_line,
        key: key.to_owned(),
        kind: InvalidKind::Unknown,
    }
}

/// The settings of one kind: a mapping, `{}` or `null` for the defaults.
fn settings<'n>(node: &'n Node, key: &str) -> Result<&'n [Entry], Invalid> {
    match &node.kind {
        Kind::Null => Ok(&[]),
        Kind::Map(entries) => {
            check_duplicates(entries, key)?;
            Ok(entries)
        }
        _ => Err(Invalid::ty(
            node,
            key,
            "a mapping of the policy's settings ({} for its defaults)",
        )),
    }
}

/// An integer in `min..=max`.
fn int_in<T: TryFrom<i128>>(
    node: &Node,
    key: &str,
    min: i128,
    max: i128,
    what: &str,
) -> Result<T, Invalid> {
    let n = node
        .as_int()
        .ok_or_else(|| Invalid::ty(node, key, "an integer"))?;
    if n < min || n > max {
        return Err(Invalid::value(node, key, format!("{n} is not {what}")));
    }
    T::try_from(n).map_err(|_| Invalid::value(node, key, "too large"))
}

fn keep(node: &Node, key: &str) -> Result<KeepRules, Invalid> {
    let mut rules = KeepRules::default();
    for entry in settings(node, key)? {
        let child = join(key, &entry.key);
        let value = &entry.value;
        let count = |place: &mut i64| -> Result<(), Invalid> {
            *place = int_in(
                value,
                &child,
                -1,
                i128::from(i64::MAX),
                "a count (-1 keeps all, 0 is unused)",
            )?;
            Ok(())
        };
        let within = |place: &mut Option<KeepDuration>| -> Result<(), Invalid> {
            *place = match &value.kind {
                Kind::Null => None,
                Kind::Str(s) => Some(
                    s.parse()
                        .map_err(|e: String| Invalid::value(value, &child, e))?,
                ),
                _ => {
                    return Err(Invalid::ty(
                        value,
                        &child,
                        "a duration such as '14d', '6m' or '1y2m3d4h'",
                    ));
                }
            };
            Ok(())
        };
        match entry.key.as_str() {
            "last" => count(&mut rules.last)?,
            "hourly" => count(&mut rules.hourly)?,
            "daily" => count(&mut rules.daily)?,
            "weekly" => count(&mut rules.weekly)?,
            "monthly" => count(&mut rules.monthly)?,
            "yearly" => count(&mut rules.yearly)?,
            "within" => within(&mut rules.within)?,
            "within_hourly" => within(&mut rules.within_hourly)?,
            "within_daily" => within(&mut rules.within_daily)?,
            "within_weekly" => within(&mut rules.within_weekly)?,
            "within_monthly" => within(&mut rules.within_monthly)?,
            "within_yearly" => within(&mut rules.within_yearly)?,
            _ => return Err(unknown(entry, &child)),
        }
    }
    Ok(rules)
}

fn cycle(node: &Node, key: &str) -> Result<CycleRules, Invalid> {
    let mut rules = CycleRules::default();
    let mut phase_node = None;
    let max = i128::from(u32::MAX);
    for entry in settings(node, key)? {
        let child = join(key, &entry.key);
        let value = &entry.value;
        match entry.key.as_str() {
            "frequency" => {
                rules.frequency = int_in(value, &child, 1, max, "a number of days, at least 1")?
            }
            "phase" => {
                rules.phase = int_in(value, &child, 0, max, "a phase from 0 to frequency - 1")?;
                phase_node = Some((value, child));
            }
            "diffs" => {
                rules.diffs = int_in(value, &child, 0, max, "a number of DIFF slots, at least 0")?
            }
            "fulls" => {
                rules.fulls = int_in(value, &child, 1, max, "a number of FULL slots, at least 1")?
            }
            _ => return Err(unknown(entry, &child)),
        }
    }
    if rules.phase >= rules.frequency {
        // Checked after every key: frequency may come after phase.
        let (line, key) = match phase_node {
            Some((node, child)) => (node.line, child),
            None => (node.line, join(key, "phase")),
        };
        return Err(Invalid {
            line,
            key,
            kind: InvalidKind::Value(format!(
                "{} is not from 0 to frequency - 1 ({})",
                rules.phase,
                rules.frequency - 1
            )),
        });
    }
    Ok(rules)
}

fn hanoi(node: &Node, key: &str) -> Result<HanoiRules, Invalid> {
    let mut rules = HanoiRules::default();
    for entry in settings(node, key)? {
        let child = join(key, &entry.key);
        let value = &entry.value;
        match entry.key.as_str() {
            "discs" => {
                rules.discs = int_in(
                    value,
                    &child,
                    1,
                    hanoi_max_discs().into(),
                    "a number of discs from 1 to 32",
                )?;
            }
            "frequency" => {
                rules.frequency = int_in(
                    value,
                    &child,
                    1,
                    u32::MAX.into(),
                    "a number of days, at least 1",
                )?;
            }
            "archive_oldest" => rules.archive_oldest = bool::parse(value, &child)?,
            _ => return Err(unknown(entry, &child)),
        }
    }
    Ok(rules)
}

fn tiers(node: &Node, key: &str) -> Result<TierRules, Invalid> {
    let mut rules = TierRules::default();
    for entry in settings(node, key)? {
        let child = join(key, &entry.key);
        match entry.key.as_str() {
            "levels" => {
                rules.levels = parse_list(
                    &entry.value,
                    &child,
                    "a list of {format, priority, keep_days}",
                    "level",
                    level,
                )?;
            }
            _ => return Err(unknown(entry, &child)),
        }
    }
    Ok(rules)
}

fn level(node: &Node, key: &str) -> Result<TierLevel, Invalid> {
    let Kind::Map(entries) = &node.kind else {
        return Err(Invalid::ty(
            node,
            key,
            "a mapping {format, priority, keep_days}",
        ));
    };
    check_duplicates(entries, key)?;
    let (mut format, mut priority, mut keep_days) = (None, None, 0);
    for entry in entries {
        let child = join(key, &entry.key);
        let value = &entry.value;
        match entry.key.as_str() {
            "format" => {
                let f = String::parse(value, &child)?;
                // Rendered once now so a bad format fails at load, not at backup.
                if f.is_empty() || crate::retention::render_label(&f, 0).is_none() {
                    return Err(Invalid::value(
                        value,
                        &child,
                        format!("{f:?} is not a strftime format such as 'Daily-%Y-%m-%d'"),
                    ));
                }
                format = Some(f);
            }
            "priority" => {
                priority = Some(int_in(
                    value,
                    &child,
                    i128::from(i64::MIN),
                    i128::from(i64::MAX),
                    "an integer",
                )?)
            }
            "keep_days" => {
                keep_days = int_in(
                    value,
                    &child,
                    0,
                    u32::MAX.into(),
                    "a number of days (0 keeps forever)",
                )?
            }
            _ => return Err(unknown(entry, &child)),
        }
    }
    let missing = |what: &str| Invalid::value(node, key, format!("lacks {what}"));
    Ok(TierLevel {
        format: format.ok_or_else(|| missing("format"))?,
        priority: priority.ok_or_else(|| missing("priority"))?,
        keep_days,
    })
}
