//! `man`: the manual pages in roff, generated from the clap definition in
//! [`crate::cli`] (options, subcommands, exit codes from the long help):
//! the main page, one subcommand's page, or all of them into a directory.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::exit::{Outcome, UsageError};

pub(crate) fn run(args: &ManArgs) -> anyhow::Result<Outcome> {
    let cli = Cli::command();
    if let Some(dir) = &args.dir {
        write_all(&cli, dir)?;
        return Ok(Outcome::Success);
    }
    let page = match &args.subcommand {
        None => render(cli)?,
        Some(name) => {
            let sub = cli
                .get_subcommands()
                .find(|s| s.get_name() == name || s.get_all_aliases().any(|a| a == name))
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<&str> = cli.get_subcommands().map(|s| s.get_name()).collect();
                    UsageError(format!(
                        "man: no subcommand {name:?} (there are: {})",
                        names.join(", ")
                    ))
                })?;
            render(sub_page(&sub))?
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&page)?;
    out.flush()?;
    Ok(Outcome::Success)
}

/// A subcommand's page is named `lafs-backup-SUB`, as git's are.
fn sub_page(sub: &clap::Command) -> clap::Command {
    // clap names are `&'static str` (without its "string" feature); one
    // page name per subcommand, once per run.
    let name: &'static str = Box::leak(format!("lafs-backup-{}", sub.get_name()).into_boxed_str());
    sub.clone().name(name).bin_name(name)
}

fn render(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    Ok(page)
}

fn write_all(cli: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pages = vec![("lafs-backup.1".to_owned(), render(cli.clone())?)];
    for sub in cli.get_subcommands() {
        let page = sub_page(sub);
        pages.push((format!("{}.1", page.get_name()), render(page)?));
    }
    for (file, page) in pages {
        let path = dir.join(&file);
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
