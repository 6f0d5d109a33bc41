//! `mount MOUNTPOINT [NAME...]`: the recorded backups as a read-only FUSE
//! file system, in the foreground until unmounted (`docs/mount.md`; the
//! file system itself is [`crate::mount`]).

use std::path::Path;

use anyhow::Context as _;
use fuser::{Config, MountOption, Session};
use nix::sys::signal::{SigSet, Signal};
use tracing::{info, warn};

use super::Context;
use super::show::name as show_name;
use crate::cli::MountArgs;
use crate::exit::{Outcome, UsageError};
use crate::mount::{Backup, BackupFs, backup_dir_name};
use crate::names::check_file_name;

/// Threads serving the kernel's requests: a slow download in one leaves
/// the others to answer listings and reads of cached data.
const THREADS: usize = 4;

pub(crate) fn run(ctx: &Context<'_>, args: &MountArgs) -> anyhow::Result<Outcome> {
    check_mountpoint(&args.mountpoint)?;
    let backups = chosen_backups(ctx, &args.names)?;
    let gateway = ctx.interactive_gateway(None, None)?;
    gateway.storage_servers()?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(std::env::temp_dir);
    if !cache_dir.is_dir() {
        return Err(UsageError(format!(
            "--cache-dir {}: not a directory",
            cache_dir.display()
        ))
        .into());
    }
    let fs = BackupFs::new(gateway.client, &backups, cache_dir, args.cache_size);

    // SIGINT and SIGTERM go to one thread that unmounts: blocked here,
    // before any thread is started, so every thread inherits the mask.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .context("cannot block the signals that end the mount")?;

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("lafs-backup".into()),
        MountOption::Subtype("lafs-backup".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    config.n_threads = Some(THREADS);
    let mut session = Session::new(fs, &args.mountpoint, &config)
        .with_context(|| format!("cannot mount at {}", args.mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    let mountpoint = args.mountpoint.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = signals.wait() else { return };
            info!("{signal}: unmounting {}", mountpoint.display());
            if let Err(e) = unmounter.unmount() {
                // Busy (a shell inside it): detach it now; the kernel
                // finishes when the last user leaves.
                warn!(
                    "cannot unmount {} ({e}); detaching it (lazy unmount)",
                    mountpoint.display()
                );
                if let Err(e) = nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH) {
                    warn!("cannot detach {}: {e}", mountpoint.display());
                }
            }
        })
        .context("cannot start the signal thread")?;
    info!(
        "mounted {} backup{} at {}; unmount with `umount {}` or Ctrl-C",
        backups.len(),
        super::show::plural(backups.len()),
        args.mountpoint.display(),
        args.mountpoint.display()
    );
    session
        .run()
        .with_context(|| format!("serving the mount at {}", args.mountpoint.display()))?;
    info!("unmounted {}", args.mountpoint.display());
    Ok(Outcome::Success)
}

/// MOUNTPOINT must be an empty directory (not a symlink to one): mounting
/// over files would hide them.
fn check_mountpoint(path: &Path) -> anyhow::Result<()> {
    let bad = |why: &str| UsageError(format!("mount point {}: {why}", path.display()));
    let md = std::fs::symlink_metadata(path).map_err(|e| bad(&e.to_string()))?;
    if !md.is_dir() {
        return Err(bad("not a directory (it must be an empty directory)").into());
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| bad(&e.to_string()))?;
    if entries.next().is_some() {
        return Err(bad("not empty (it must be an empty directory)").into());
    }
    Ok(())
}

/// The backups to show: all recorded ones, or those of the NAMEs (as
/// `list` shows names, or raw); a NAME without a backup is a usage error.
/// A backup whose start time and label repeat within its name gets
/// `.GENERATION` after its directory name.
fn chosen_backups(ctx: &Context<'_>, names: &[String]) -> anyhow::Result<Vec<Backup>> {
    let cache = ctx.read_cache()?;
    let rows = cache.backups()?;
    for wanted in names {
        if !rows
            .iter()
            .any(|b| show_name(&b.name) == *wanted || b.name == wanted.as_bytes())
        {
            return Err(UsageError(format!("no backup named {wanted:?} is recorded")).into());
        }
    }
    let mut out: Vec<Backup> = Vec::new();
    for b in rows {
        let shown = show_name(&b.name);
        if !names.is_empty()
            && !names
                .iter()
                .any(|w| *w == shown || w.as_bytes() == b.name.as_slice())
        {
            continue;
        }
        if let Err(e) = check_file_name(&b.name) {
            warn!("backup name {shown:?} cannot be a directory name ({e}); not shown");
            continue;
        }
        let mut dir_name = backup_dir_name(b.ts_start, b.label.as_deref());
        if out
            .iter()
            .any(|o| o.name == b.name && o.dir_name == dir_name)
        {
            dir_name.extend_from_slice(format!(".{}", b.generation).as_bytes());
        }
        out.push(Backup {
            name: b.name,
            dir_name,
            root: b.root_cap,
            ts_start: b.ts_start,
        });
    }
    if out.is_empty() {
        return Err(UsageError("no backup is recorded: nothing to mount".into()).into());
    }
    Ok(out)
}
