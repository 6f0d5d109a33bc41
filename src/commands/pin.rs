//! `pin` and `unpin`: mark a recorded backup so that no retention policy
//! forgets it (and `cleanup` forgets it only when it is named by its cap or
//! generation). A writer: takes the cache lock like every other one. See
//! `docs/lifecycle.md`.

use serde_json::json;

use super::Context;
use super::show::name as show_name;
use crate::cache::BackupRow;
use crate::cli::PinArgs;
use crate::exit::{Outcome, UsageError};
use crate::selector::{Selected, Selector};

/// Pins (`pin` true) or unpins the backup(s) `args` select, and says what
/// it did, one line per backup.
pub(crate) fn run(ctx: &Context<'_>, args: &PinArgs, pin: bool) -> anyhow::Result<Outcome> {
    let selector = Selector::of_args(
        &args.backup,
        args.generation,
        args.label.as_deref(),
        args.as_of.as_deref(),
    )?;
    let mut cache = ctx.recorded_cache(args.lock_wait)?;
    let rows = cache.backups()?;
    let selected = selector
        .select(&rows, cache.path())
        .map_err(UsageError::from)?;
    let chosen: Vec<&BackupRow> = match &selected {
        Selected::Cap { recorded, cap } => {
            if recorded.is_empty() {
                return Err(UsageError(format!(
                    "no recorded backup has the root cap #{} (`lafs-backup list` shows the \
                     recorded backups)",
                    cap.short_id()
                ))
                .into());
            }
            recorded.clone()
        }
        // The latest (or the one --generation/--label picked).
        Selected::Named { latest, .. } => vec![*latest],
    };
    for b in &chosen {
        if b.pinned != pin {
            cache.set_pinned(b.id, pin)?;
        }
    }
    cache.commit()?;
    cache.close()?;
    let verb = if pin { "pinned" } else { "unpinned" };
    for b in &chosen {
        let already = b.pinned == pin;
        if ctx.json() {
            println!(
                "{}",
                json!({
                    "type": if pin { "pin" } else { "unpin" },
                    "name": show_name(&b.name),
                    "generation": b.generation,
                    "label": b.label,
                    "changed": !already,
                })
            );
        } else {
            eprintln!(
                "lafs-backup: {} backup {} generation {}{} (root #{})",
                if already {
                    format!("already {verb}:")
                } else {
                    verb.to_owned()
                },
                show_name(&b.name),
                b.generation,
                b.label
                    .as_deref()
                    .map(|l| format!(", label {}", show_name(l.as_bytes())))
                    .unwrap_or_default(),
                b.root_cap.short_id()
            );
        }
    }
    Ok(Outcome::Success)
}
