//! `files NAME`: what changed in a backup, as `diff` of it against the
//! previous backup of the name by generation (Tardis `sonic files`;
//! docs/history.md).

use super::diff::{self, SideB};
use super::{Context, show};
use crate::cli::FilesArgs;
use crate::exit::{Outcome, UsageError};
use crate::selector::Selector;

pub(crate) fn run(ctx: &Context<'_>, args: &FilesArgs) -> anyhow::Result<Outcome> {
    let selector = Selector::of_pick(&args.backup, &args.pick)?;
    if selector.cap().is_some() {
        return Err(UsageError(
            "files takes a backup NAME: a cap has no previous backup to compare it with \
             (`diff A B` compares two caps)"
                .into(),
        )
        .into());
    }
    let gateway = ctx.interactive_gateway(args.gateway.gateway.as_deref(), args.gateway.timeout)?;
    let cache = ctx.read_cache()?;
    let rows = cache.backups()?;
    let selected = selector
        .select(&rows, cache.path())
        .map_err(UsageError::from)?;
    let Some(latest) = selected.latest() else {
        anyhow::bail!("the selector picked no recorded backup");
    };
    let previous = rows
        .iter()
        .filter(|r| r.name == latest.name && r.generation < latest.generation)
        .max_by_key(|r| r.generation)
        .ok_or_else(|| {
            UsageError(format!(
                "{} generation {} is the first backup of the name: there is no previous \
                 backup to compare it with",
                show::name(&latest.name),
                latest.generation
            ))
        })?;
    tracing::info!(
        "{}: generation {} against generation {}",
        show::name(&latest.name),
        latest.generation,
        previous.generation
    );
    gateway.storage_servers()?;
    diff::compare(
        ctx,
        &gateway.client,
        &previous.root_cap,
        &SideB::Backup(latest.root_cap.clone()),
        &args.show,
    )
}
