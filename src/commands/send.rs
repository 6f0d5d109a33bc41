//! `send --date YYYY-MM-DD NAME`: btrsend's command-line contract
//! (`docs/btrfs.md`); the work is the btrfs part of `backup`.

use super::Context;
use crate::cli::SendArgs;
use crate::exit::Outcome;

pub(crate) fn run(ctx: Context<'_>, args: &SendArgs) -> anyhow::Result<Outcome> {
    super::backup::send_date(ctx, args)
}
