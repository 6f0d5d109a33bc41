//! The command line, as clap parses it. The doc comments are the `--help`
//! text: keep them in step with `docs/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The parsed command line. (Its `--help` text is the `about` and
/// `long_about` below: clap does not use this comment.)
#[derive(Debug, Parser)]
#[command(
    name = "lafs-backup",
    version,
    about = "Incremental, deduplicated, compressed backups of file trees into a Tahoe-LAFS grid",
    long_about = "Incremental, deduplicated, compressed backups of file trees into a Tahoe-LAFS grid.\n\n\
A backup runs in two phases: a scan walks the source tree (source.path), applies the \
ordered +/- filter rules and records each entry's owner, mode, ACLs and file capabilities \
in a queue file (source.queue.path); the upload then stores the queue's entries on the grid. `list`, `check` and \
`cleanup` look after the recorded backups; `restore` and `verify` get them back.\n\n\
Configuration is YAML: a built-in base config, then each -c FILE in order \
(later scalars win, lists replace lists). `lafs-backup dump-config` prints the result.\n\n\
Exit codes: 0 success, 1 fatal error, 2 usage or configuration error, \
3 finished but some entries were skipped (each is named in a warning), \
4 finished and found problems (check: unhealthy objects; verify: differences). \
See docs/exit-codes.md."
)]
pub struct Cli {
    /// Configuration file, layered over the built-in base config. Repeatable:
    /// later files override earlier ones (scalars replace, lists replace,
    /// mappings merge key by key).
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Vec<PathBuf>,

    /// Log at debug level (overrides logging.level).
    #[arg(long, global = true, conflicts_with = "noise")]
    pub debug: bool,

    /// Log every entry processed (the most verbose level, "noise"; overrides
    /// logging.level). Paths and file metadata appear in the log; Tahoe
    /// capabilities never do.
    #[arg(long, global = true)]
    pub noise: bool,

    /// Write machine-readable JSON lines to stdout instead of human text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The subcommand and its arguments.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up source.path: scan it into the queue file, then upload.
    ///
    /// Without options, an existing queue whose upload never completed is
    /// resumed (when source.queue.check_mtime is true, the default); any
    /// other queue is rebuilt by a fresh scan.
    Backup(BackupArgs),

    /// List the recorded backups, oldest first: name, generation, finish
    /// time, root cap, entries and bytes.
    List(ListArgs),

    /// Check backups on the grid (deep check), renewing their leases.
    ///
    /// Exit status: 0 when everything checked is healthy, 4 when anything is
    /// unhealthy (each problem is reported by its path in the backup), 1 when
    /// the check itself could not run.
    Check(CheckArgs),

    /// Forget backups: remove them from the entry cache, the result file and
    /// the result directory. Never deletes shares: servers with lease expiry
    /// enabled free them when their leases lapse, which leaves a window in
    /// which a forgotten backup can still be read.
    Cleanup(CleanupArgs),

    /// Apply a retention policy: keep the backups the policy keeps, forget
    /// the others (as `cleanup` does), printing every decision and why.
    ///
    /// The policy is the config's `retention` (docs/retention.md), or the
    /// --keep-* flags. The newest backup of a name and pinned backups are
    /// always kept; objects a kept backup reaches are never forgotten.
    /// Space comes back only when leases lapse on servers with lease expiry
    /// enabled.
    Forget(ForgetArgs),

    /// Restore a backup (or part of it) into TARGET: bytes and metadata.
    ///
    /// With --gateway and a root cap, no config or cache is needed: the
    /// machine that made the backup may be gone. Exit status: 0 restored,
    /// 3 some entries could not be restored (each named), 1 fatal, 2 usage.
    Restore(RestoreArgs),

    /// Compare a backup with a live tree and print every difference.
    ///
    /// Exit status: 0 identical, 4 different, 1 could not run.
    Verify(VerifyArgs),

    /// Mount the recorded backups read-only (FUSE): MOUNTPOINT/NAME/<start
    /// time>[_<label>]/… and NAME/latest, with the recorded names,
    /// metadata and contents (docs/mount.md).
    ///
    /// Runs in the foreground until unmounted (`umount MOUNTPOINT`,
    /// `fusermount3 -u MOUNTPOINT`) or interrupted (Ctrl-C, SIGTERM): then
    /// it unmounts and exits 0. Exit status: 2 when MOUNTPOINT is not an
    /// empty directory or a NAME has no backup, 1 when mounting fails.
    Mount(MountArgs),

    /// Pin a backup: no retention policy forgets it, and `cleanup` forgets
    /// it only when it is named by its cap or generation. Without
    /// --generation or --label, the latest backup of NAME.
    Pin(PinArgs),

    /// Unpin a backup pinned with `pin`.
    Unpin(PinArgs),

    /// List a directory of a backup (or show one entry): names, and with
    /// -l type, mode, owner, size, mtime and symlink target.
    ///
    /// Odd names are shown escaped (`\xNN`); with --json each entry is one
    /// line with its raw path in base64 too. With --gateway and a root cap,
    /// no config or cache is needed.
    Ls(LsArgs),

    /// Write one file of a backup to stdout: its exact, decoded bytes (a
    /// symlink's target with --readlink); without PATH, a stream backup's
    /// exact bytes.
    ///
    /// With --gateway and a root cap, no config or cache is needed.
    Cat(CatArgs),

    /// The distinct versions of each PATH across the backups of NAME,
    /// oldest first: which backups hold each version, its size and mtime,
    /// and where the path was deleted.
    Versions(VersionsArgs),

    /// The backups that hold paths matching a glob (or --regex), with each
    /// match's path, size and mtime.
    Find(FindArgs),

    /// Show each job's last success, last run, kept backups and last check,
    /// the lease horizon and the verification coverage, from the cache alone.
    ///
    /// Exit status: 0 when no `monitor` threshold (max_backup_age,
    /// min_lease_days, max_unverified_days) is crossed, 4 when one is (each
    /// named on stderr), 1 when the cache cannot be read. See
    /// docs/monitoring.md.
    Status(StatusArgs),

    /// Compare two backups, or a backup with a live directory: entries
    /// added, removed and changed, with a unified diff of changed text files.
    ///
    /// A and B are one token each: a root cap, NAME, NAME@N, NAME@LABEL or
    /// NAME@WHEN; B may be a live directory (an argument that contains `/`
    /// or starts with `.`). Subtrees whose directories are the same objects
    /// are never opened. Exit status: 0 no differences, 4 differences, 3
    /// entries refused (none differing), 1 could not run, 2 usage.
    Diff(DiffArgs),

    /// What changed in a backup: `diff` of the latest backup of NAME (or the
    /// one picked) against the previous backup of the name.
    ///
    /// Exit status as for `diff`.
    Files(FilesArgs),

    /// btrsend's contract (docs/btrfs.md): print the plan line for DATE
    /// (nothing, `c`, or `i YYYY-MM-DD`) on stdout, then store the `btrfs
    /// send` stream read on stdin as the backup NAME.
    ///
    /// stdout carries only the plan line; the root cap goes only to the
    /// result file and the recovery catalog. When nothing is due, stdin is
    /// not read. The oldest chain is forgotten once its newest member is
    /// chain_lifetime_days old. NAME need not be a configured job (then
    /// btrsend's default schedule applies). Exit status: 0 stored or
    /// nothing due, 1 the stream failed or ended early (nothing recorded),
    /// 2 usage.
    Send(SendArgs),

    /// Restore a btrfs backup: pipe the chain of the member picked (the
    /// newest, or --as-of WHEN) into `btrfs receive DEST`, complete stream
    /// first (docs/btrfs.md).
    Receive(ReceiveArgs),

    /// Print the merged configuration as YAML that can be fed back with -c.
    #[command(name = "dump-config", alias = "dump_config")]
    DumpConfig,

    /// Print a shell completion script on stdout, generated from this
    /// command line (needs no config).
    ///
    /// bash: `source <(lafs-backup completions bash)`, or save it in
    /// /usr/share/bash-completion/completions/lafs-backup. zsh: save it as
    /// `_lafs-backup` in a directory of $fpath. fish: save it in
    /// ~/.config/fish/completions/lafs-backup.fish.
    Completions(CompletionsArgs),

    /// Print the manual page (roff) on stdout, generated from this command
    /// line (needs no config): `lafs-backup man | man -l -`.
    ///
    /// `man SUBCOMMAND` prints that subcommand's page (all its options);
    /// `man --dir DIR` writes every page (lafs-backup.1,
    /// lafs-backup-backup.1, …) into DIR, for packaging.
    Man(ManArgs),

    /// Maintain the entry cache (source.entry_cache.path).
    #[command(subcommand)]
    Cache(CacheCommand),
}

/// The subcommands of `cache`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Rebuild a lost or damaged entry cache from the grid: backups,
    /// directory objects, references and the content index.
    ///
    /// The backups' root caps are the arguments, or the recovery catalog's
    /// index (--catalog CAP, or the configured catalog: names, generations,
    /// labels and times kept), or else the lines of
    /// destination.result.append_to_file (names by the basename rule, times
    /// from the lines; labels are lost). Every distinct file is downloaded
    /// and hashed once. The next backup of an unchanged tree then uploads no
    /// file and gives the same root cap. Exit status: 0 rebuilt, 1 failed
    /// (the old cache is untouched), 2 usage error.
    Rebuild(CacheRebuildArgs),
}

#[derive(Debug, Args)]
pub struct CacheRebuildArgs {
    /// Root caps of backups to rebuild from (never echoed).
    #[arg(value_name = "CAP")]
    pub caps: Vec<String>,

    /// The backup name of the CAP arguments (default: the basename of
    /// source.path).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Replace an existing cache (it is kept until the rebuilt one is
    /// complete).
    #[arg(long)]
    pub force: bool,

    /// Rebuild from the recovery catalog with this cap (every backup in
    /// its index, with names, generations, labels and times). Without CAPs
    /// or --catalog: the configured catalog (destination.catalog, or the
    /// result file's `#recovery-catalog` line), else the result file.
    #[arg(long, value_name = "CAP", conflicts_with_all = ["caps", "name"])]
    pub catalog: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: CompletionShell,
}

/// The shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// Which backup of a NAME a history command means (docs/selecting-backups.md).
#[derive(Debug, Args)]
pub struct PickArgs {
    /// With a NAME: this generation instead of the latest.
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,

    /// With a NAME: the newest backup of the name with this retention label.
    #[arg(long, value_name = "LABEL", conflicts_with = "generation")]
    pub label: Option<String>,

    /// With a NAME: the newest backup of the name that started at or before
    /// WHEN: an ISO date (its end) or datetime, `today`, `yesterday`, or a
    /// span such as `3 days ago` or `2w ago`.
    #[arg(long, value_name = "WHEN", conflicts_with_all = ["generation", "label"])]
    pub as_of: Option<String>,
}

/// How a read-only command reaches the gateway.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The gateway's web API URL (e.g. http://127.0.0.1:3456), instead of
    /// destination.url from the config.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,

    /// The most time each request to the gateway may take, retries
    /// included: seconds, or a number with s, m or h (e.g. 30, 90s, 5m).
    #[arg(long, value_name = "DURATION|SECONDS", value_parser = parse_duration_arg)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The backup: a root cap, a backup name (its latest backup unless
    /// --generation, --label or --as-of), or NAME@N|LABEL|WHEN.
    #[arg(value_name = "CAP|NAME")]
    pub backup: String,

    /// The directory (or entry) in the backup, relative to its root;
    /// default: the root.
    #[arg(value_name = "PATH")]
    pub path: Option<std::ffi::OsString>,

    /// Long format: type and mode as `ls -l` shows them, uid, gid, size,
    /// mtime, and a symlink's target.
    #[arg(short = 'l', long = "long")]
    pub long: bool,

    /// Every entry below PATH, by its path relative to PATH, depth first.
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,

    #[command(flatten)]
    pub pick: PickArgs,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// The backup: a root cap, a backup name, or NAME@N|LABEL|WHEN.
    #[arg(value_name = "CAP|NAME")]
    pub backup: String,

    /// The file in the backup, relative to its root. Without it, the
    /// backup must be a stream backup (`backup --stdin`, a `kind: command`
    /// job), whose exact bytes are written.
    #[arg(value_name = "PATH")]
    pub path: Option<std::ffi::OsString>,

    /// For a symlink: write its target instead of refusing.
    #[arg(long)]
    pub readlink: bool,

    #[command(flatten)]
    pub pick: PickArgs,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// The arguments of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The date the stream is for, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: String,

    /// The backup name (a `kind: btrfs` job's name, or any name).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Wait up to DURATION for another run to release the entry cache's
    /// lock instead of failing at once (as for backup).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_wait_arg)]
    pub lock_wait: std::time::Duration,
}

/// The arguments of `receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The btrfs backup's name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The member to restore: the newest that started at or before WHEN
    /// (as for `restore --as-of`); default: the newest.
    #[arg(long, value_name = "WHEN")]
    pub as_of: Option<String>,

    /// Where `btrfs receive` makes the snapshots: a directory on a btrfs.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

/// What `diff` and `files` print, and where they look.
#[derive(Debug, Args)]
pub struct DiffShowArgs {
    /// Only these subtrees (paths relative to the roots).
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::ffi::OsString>,

    /// Only the paths that differ, one per line (escaped), no prefix.
    #[arg(long, conflicts_with = "stat")]
    pub list: bool,

    /// Only the counts of entries added, removed and changed.
    #[arg(long)]
    pub stat: bool,

    /// Lines of context in the unified diff of a changed text file.
    #[arg(short = 'U', long = "unified", value_name = "N", default_value_t = 3)]
    pub unified: usize,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older side: a root cap, NAME, NAME@N, NAME@LABEL or NAME@WHEN.
    #[arg(value_name = "A")]
    pub a: String,

    /// The newer side: a backup as A, or a live directory (contains `/` or
    /// starts with `.`).
    #[arg(value_name = "B")]
    pub b: String,

    #[command(flatten)]
    pub show: DiffShowArgs,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// The backup NAME (its latest backup unless --generation, --label or
    /// --as-of), or NAME@N|LABEL|WHEN.
    #[arg(value_name = "NAME")]
    pub backup: String,

    #[command(flatten)]
    pub show: DiffShowArgs,

    #[command(flatten)]
    pub pick: PickArgs,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// The backup name (as given, or in the escaped form `list` prints).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Paths in the backups, relative to their roots.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<std::ffi::OsString>,

    /// One line per backup (present or absent) instead of one per version.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// A glob (`*`, `?`, `[...]`) matched against each entry's name, or
    /// against its whole path when it contains `/`; with --regex a regular
    /// expression searched in the whole path. Odd bytes are matched in the
    /// escaped form `ls` prints.
    #[arg(value_name = "PATTERN")]
    pub pattern: String,

    /// The backup names to search; default: every recorded name.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// PATTERN is a regular expression.
    #[arg(long)]
    pub regex: bool,

    /// Of each name, only the newest backup started at or before WHEN.
    #[arg(long, value_name = "WHEN", conflicts_with_all = ["since", "until"])]
    pub as_of: Option<String>,

    /// Only backups started at or after WHEN (a date means its start).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Only backups started at or before WHEN (a date means its end).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (default: the main page).
    #[arg(value_name = "SUBCOMMAND", conflicts_with = "dir")]
    pub subcommand: Option<String>,

    /// Write every page into this directory instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup: a root cap, or a backup name from the entry cache (its
    /// latest generation unless --generation).
    #[arg(value_name = "CAP|NAME")]
    pub backup: String,

    /// Where to restore: a directory (created if missing). It gets the
    /// backup root's own metadata. Not with --stdout.
    #[arg(value_name = "TARGET", required_unless_present = "stdout")]
    pub target: Option<std::path::PathBuf>,

    /// Write the one file PATH of the backup to stdout (its exact, decoded
    /// bytes) instead of restoring into TARGET: the same as `cat`.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["target", "paths"])]
    pub stdout: Option<std::ffi::OsString>,

    /// Restore only these paths of the backup (relative, e.g. etc/passwd or
    /// home/alice), or select with ordered '+REGEX'/'-REGEX' rules as in the
    /// config's filter.
    ///
    /// Options may come anywhere, so '-REGEX' rules go after '--':
    /// restore NAME TARGET -- '-\.tmp$' '-^/cache/'.
    #[arg(value_name = "PATH|RULE")]
    pub paths: Vec<String>,

    /// With a NAME: restore this generation instead of the latest.
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,

    /// With a NAME: the newest backup of the name with this retention label
    /// (`list` shows them) instead of the latest.
    #[arg(long, value_name = "LABEL", conflicts_with = "generation")]
    pub label: Option<String>,

    /// With a NAME: the newest backup of the name that started at or before
    /// WHEN: an ISO date (its end) or datetime, `today`, `yesterday`, or a
    /// span such as `3 days ago` or `2w ago` (docs/selecting-backups.md).
    #[arg(long, value_name = "WHEN", conflicts_with_all = ["generation", "label"])]
    pub as_of: Option<String>,

    /// Find NAME in the recovery catalog CAP instead of the entry cache: no
    /// local state is needed (docs/recovery.md). The cap is never echoed.
    #[arg(long, value_name = "CAP")]
    pub catalog: Option<String>,

    /// The gateway's web API URL (e.g. http://127.0.0.1:3456), instead of
    /// destination.url from the config.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,

    /// Replace entries that already exist in TARGET.
    #[arg(long, conflicts_with = "skip_existing")]
    pub overwrite: bool,

    /// Keep entries that already exist in TARGET with the backup's size and
    /// mtime (continues an interrupted restore).
    #[arg(long)]
    pub skip_existing: bool,

    /// Do not restore ownership: entries belong to the user running the
    /// restore (as root, by default they get the backup's owners).
    #[arg(long)]
    pub no_owner: bool,

    /// Make no character or block device nodes; each is reported as
    /// withheld (not a problem: exit 0).
    #[arg(long)]
    pub no_devices: bool,

    /// Clear the setuid and setgid bits of files (each file reported as
    /// withheld); directories keep setgid.
    #[arg(long)]
    pub no_setuid: bool,

    /// Set no file capabilities (security.capability); each file reported
    /// as withheld.
    #[arg(long)]
    pub no_caps: bool,

    /// Set no extended attributes (POSIX ACLs, part of the permissions, and
    /// file capabilities, see --no-caps, are still restored).
    #[arg(long)]
    pub no_xattrs: bool,

    /// List what would be written; write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Downloads at the same time (default: operation.concurrency).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: Option<u64>,
    /// The most time each request to the gateway may take, retries
    /// included: seconds, or a number with s, m or h (e.g. 30, 90s, 5m).
    /// A gateway that stalls then ends the run (exit 1) after about this
    /// long. Without it the first request waits at most 15 s and later ones
    /// follow operation.timeouts.updates.
    #[arg(long, value_name = "DURATION|SECONDS", value_parser = parse_duration_arg)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup: a root cap, or a backup name from the entry cache.
    #[arg(value_name = "CAP|NAME")]
    pub backup: String,

    /// The live tree to compare it with (not with --stdin).
    #[arg(value_name = "PATH", required_unless_present = "stdin")]
    pub path: Option<std::path::PathBuf>,

    /// Compare a stream backup with standard input instead of a tree with
    /// PATH: the byte count and the first differing offset.
    #[arg(long, conflicts_with_all = ["path", "content", "unfiltered"])]
    pub stdin: bool,

    /// With a NAME: compare this generation instead of the latest.
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,

    /// With a NAME: the newest backup of the name with this retention label
    /// (`list` shows them) instead of the latest.
    #[arg(long, value_name = "LABEL", conflicts_with = "generation")]
    pub label: Option<String>,

    /// With a NAME: the newest backup of the name that started at or before
    /// WHEN: an ISO date (its end) or datetime, `today`, `yesterday`, or a
    /// span such as `3 days ago` or `2w ago` (docs/selecting-backups.md).
    #[arg(long, value_name = "WHEN", conflicts_with_all = ["generation", "label"])]
    pub as_of: Option<String>,

    /// The gateway's web API URL, instead of destination.url.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,

    /// Also compare file contents (downloads every file).
    #[arg(long)]
    pub content: bool,

    /// Report every live entry the backup lacks as `extra`, also those the
    /// config's filter, source.exclude_caches (contents of CACHEDIR.TAG
    /// directories) and source.one_file_system (contents of mount points)
    /// leave out of a backup; by default those are not differences.
    #[arg(long)]
    pub unfiltered: bool,

    /// The most time each request to the gateway may take, retries
    /// included: seconds, or a number with s, m or h (e.g. 30, 90s, 5m).
    /// A gateway that stalls then ends the run (exit 1) after about this
    /// long. Without it the first request waits at most 15 s and later ones
    /// follow operation.timeouts.updates.
    #[arg(long, value_name = "DURATION|SECONDS", value_parser = parse_duration_arg)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the Prometheus text that `monitor.prometheus_textfile` holds
    /// instead of the table (not with --json).
    #[arg(long)]
    pub prometheus: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list generations that have cache entries but no finished backup
    /// (interrupted runs), with their entry counts: all of them, or only the
    /// generations given.
    #[arg(short = 'g', long, value_name = "N", num_args = 0..)]
    pub generations: Option<Vec<u64>>,

    /// List the backups the recovery catalog CAP records instead of the
    /// entry cache's: needs only a gateway (destination.url), no local
    /// state (docs/recovery.md). The cap is never echoed.
    #[arg(long, value_name = "CAP", conflicts_with = "generations")]
    pub catalog: Option<String>,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount: an empty directory.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: std::path::PathBuf,

    /// The backup names to show (as `list` shows them); all when none.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// Where decoded (decompressed) files are cached while mounted: a new
    /// temporary directory inside this one (default: the system's temporary
    /// directory), removed at unmount.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<std::path::PathBuf>,

    /// The most bytes of decoded files kept in that cache (least recently
    /// used first out); e.g. `1GiB`, `500M`, or a byte count.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size_arg)]
    pub cache_size: u64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Backups to check: root caps, backup names (the latest backup of that
    /// name), or `-` to read caps from stdin, one per line.
    #[arg(value_name = "CAP|NAME")]
    pub targets: Vec<String>,

    /// With NAMEs: check the newest backup of each name with this retention
    /// label instead of its latest.
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,

    /// Check every recorded backup.
    #[arg(long, conflicts_with = "least_recently_checked")]
    pub all: bool,

    /// Check the one backup (of those given, or of all) checked longest ago.
    #[arg(short = 'a', long)]
    pub least_recently_checked: bool,

    /// Repair what is unhealthy; only problems left after the repair are
    /// reported.
    #[arg(short = 'r', long)]
    pub repair: bool,

    /// Download and verify every share (slow: reads the whole backup).
    #[arg(long)]
    pub verify: bool,

    /// Do not renew leases (they are renewed by default).
    #[arg(short = 'n', long)]
    pub no_lease: bool,

    /// Renew the leases of every object reachable from the recorded backups,
    /// each object once, from the cache's references (no tree walk);
    /// resumable. Names objects whose leases are about to lapse.
    #[arg(long, conflicts_with_all = ["repair", "verify", "no_lease", "all", "least_recently_checked"])]
    pub leases: bool,

    /// Verify a sample of the objects reachable from the recorded backups,
    /// least recently verified first, within a budget: a percentage of the
    /// objects (`25%`, rounded up; every object is then verified at least
    /// once per ceil(100 / PCT) runs) or a wall time (`10m`, `1h`). Reports
    /// the verification coverage. Takes no backups to check.
    #[arg(long, value_name = "PCT%|DURATION", conflicts_with_all = ["leases", "repair", "verify", "no_lease", "all", "least_recently_checked"])]
    pub verify_sample: Option<String>,

    /// Template for each unhealthy object, with {backup}, {path}, {type},
    /// {summary}, {good}, {needed}, {expected}.
    #[arg(
        short = 'f',
        long,
        value_name = "TEMPLATE",
        default_value = "{backup} {path} ({type}): {summary}"
    )]
    pub format: String,

    /// Template for each healthy object (default: healthy objects are not
    /// printed).
    #[arg(long, value_name = "TEMPLATE")]
    pub healthy_format: Option<String>,

    /// Print reports on stderr instead of stdout.
    #[arg(short = 'e', long)]
    pub error_output: bool,

    /// Wait up to DURATION for another run to release the entry cache's
    /// lock instead of failing at once: seconds (90, 2.5) or a number with
    /// s, m or h (30s, 10m, 1h). Default 0: fail at once (exit 1).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_wait_arg)]
    pub lock_wait: std::time::Duration,

    /// Stop after about this long (seconds, or a number with s, m or h,
    /// e.g. 600, 30m, 2h): what was checked so far is kept (leases, check
    /// times, the --leases cursor), a "not finished" note is printed and
    /// the exit status is 4. A later run continues: --leases where it
    /// stopped; otherwise the backups checked longest ago come first.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub max_duration: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Backups to forget: root caps, or backup names (a name that matches
    /// several backups is an error listing them), or `-` to read caps from
    /// stdin. Unknown caps are reported, and then nothing is done (exit 2).
    #[arg(value_name = "CAP|NAME")]
    pub targets: Vec<String>,

    /// Also forget every older backup and generation than those given: of
    /// the NAMEs given only; without a NAME, --all-names is required.
    #[arg(long)]
    pub up_to: bool,

    /// With --up-to and no NAME: forget the older backups of every name in
    /// the cache (without it that is refused, exit 2).
    #[arg(long, requires = "up_to")]
    pub all_names: bool,

    /// Also forget these generations (finished or dangling). With NAMEs:
    /// the backups of those names with these generations.
    #[arg(short = 'g', long = "generation", value_name = "N")]
    pub generations: Vec<u64>,

    /// With NAMEs: the newest backup of each name with this retention
    /// label.
    #[arg(long, value_name = "LABEL", conflicts_with = "generations")]
    pub label: Option<String>,

    /// Print the storage index of every object that becomes unreferenced,
    /// one per line, to DST (a file; stdout when absent or `-`).
    #[arg(short = 'e', long, value_name = "DST", num_args = 0..=1)]
    pub enumerate_shares: Option<Option<std::path::PathBuf>>,

    /// Change nothing; say what would be forgotten.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Wait up to DURATION for another run to release the entry cache's
    /// lock instead of failing at once: seconds (90, 2.5) or a number with
    /// s, m or h (30s, 10m, 1h). Default 0: fail at once (exit 1).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_wait_arg)]
    pub lock_wait: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// The backup: a backup name from the entry cache (its latest backup
    /// unless --generation or --label), or a root cap (every recorded
    /// backup with it).
    #[arg(value_name = "NAME|CAP")]
    pub backup: String,

    /// This generation of NAME.
    #[arg(short = 'g', long, value_name = "N")]
    pub generation: Option<u64>,

    /// The newest backup of NAME with this retention label.
    #[arg(long, value_name = "LABEL", conflicts_with = "generation")]
    pub label: Option<String>,

    /// With a NAME: the newest backup of the name that started at or before
    /// WHEN: an ISO date (its end) or datetime, `today`, `yesterday`, or a
    /// span such as `3 days ago` or `2w ago` (docs/selecting-backups.md).
    #[arg(long, value_name = "WHEN", conflicts_with_all = ["generation", "label"])]
    pub as_of: Option<String>,

    /// Wait up to DURATION for another run to release the entry cache's
    /// lock instead of failing at once: seconds (90, 2.5) or a number with
    /// s, m or h (30s, 10m, 1h). Default 0: fail at once (exit 1).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_wait_arg)]
    pub lock_wait: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Only build the queue file, always by a fresh scan; do not upload.
    /// PATH, if given, overrides source.queue.path.
    #[arg(long, value_name = "PATH", num_args = 0..=1, conflicts_with = "reuse_queue")]
    pub queue_only: Option<Option<PathBuf>>,

    /// Do not scan: upload the existing queue file as it is (it may have been
    /// trimmed or edited by hand). PATH, if given, overrides
    /// source.queue.path.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub reuse_queue: Option<Option<PathBuf>>,

    /// Always rebuild the queue by a fresh scan, even when an unfinished
    /// queue could be resumed (sets source.queue.check_mtime to false).
    #[arg(short = 'f', long, conflicts_with = "reuse_queue")]
    pub force_queue_rebuild: bool,

    /// Upload everything, ignoring what the entry cache says was uploaded
    /// before; what is uploaded is still recorded in the cache (sets
    /// operation.disable_deduplication).
    #[arg(long)]
    pub disable_deduplication: bool,

    /// Continue the generation of an unfinished previous backup instead of
    /// starting a new one (sets operation.try_resume).
    #[arg(short = 'r', long)]
    pub try_resume: bool,

    /// Deduplicate through the entry cache even though its grid probe is not
    /// found on this grid. Without it, a cache made against another grid is
    /// refused (exit 2): its caps would point at shares this grid lacks.
    #[arg(long)]
    pub allow_foreign_cache: bool,

    /// Upload this many objects at the same time (overrides
    /// operation.concurrency; at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: Option<u64>,

    /// Limit the upload rate, in bytes per second with an optional K, M or
    /// G suffix (powers of 1024), e.g. 300K or 1.5M. Counts the bytes
    /// actually sent (after compression). Overrides
    /// operation.rate_limit.bytes.
    #[arg(long, value_name = "RATE")]
    pub limit_upload: Option<String>,

    /// Wait up to DURATION for another run to release the entry cache's
    /// lock instead of failing at once: seconds (90, 2.5) or a number with
    /// s, m or h (30s, 10m, 1h). Default 0: fail at once (exit 1).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_wait_arg)]
    pub lock_wait: std::time::Duration,

    /// With --json: also write progress lines ({"type":"progress",...}) to
    /// stdout, about one a second. (On a terminal without --json, a
    /// progress bar is drawn on stderr anyway.)
    #[arg(long)]
    pub json_progress: bool,

    /// Back up even when the retention schedule (`cycle`, `hanoi`) says
    /// the day is not due or its slot is already done.
    #[arg(long, alias = "force")]
    pub ignore_schedule: bool,

    /// Print whether a backup is due, the label it would get and what the
    /// retention policy would forget after it; change nothing, contact no
    /// gateway.
    #[arg(long)]
    pub plan: bool,

    /// Run only the job NAME of the config's `jobs` (or the top-level
    /// source's backup name; a dump job's `NAME.DATABASE`: only that
    /// database); repeatable. Default: every job.
    #[arg(long, value_name = "NAME")]
    pub job: Vec<String>,

    /// Back up standard input as the stream backup NAME instead of a tree
    /// (docs/streams.md): cut into chunks by content, each stored once.
    /// Recorded only when stdin ends without a read error.
    /// NAME may also come last, after the other options
    /// (`backup --stdin --tar NAME`).
    #[arg(long, value_name = "NAME", num_args = 0..=1, conflicts_with_all = ["queue_only", "reuse_queue", "job", "force_queue_rebuild", "plan"])]
    pub stdin: Option<Option<String>>,

    /// The NAME of --stdin, when it is not given right after it.
    #[arg(value_name = "NAME", requires = "stdin")]
    pub stdin_name: Option<String>,

    /// With --stdin: the stream is a tar archive; store each regular
    /// member's payload as an object of its own, deduplicated by content,
    /// and every other byte in the stream's index (docs/streams.md, "Tar
    /// streams"). A stream that is not a valid tar fails the backup.
    #[arg(long, requires = "stdin")]
    pub tar: bool,

    /// --tar, but a stream that is not a valid tar is stored as a plain
    /// stream, with a warning.
    #[arg(long, requires = "stdin")]
    pub tar_lenient: bool,
}

impl BackupArgs {
    /// `--stdin NAME` or `--stdin … NAME`: `Some("")` when `--stdin` came
    /// without a name (an error for the stream code to report), `None`
    /// without `--stdin`.
    pub(crate) fn stdin_name(&self) -> Option<&str> {
        let given = self.stdin.as_ref()?;
        Some(
            given
                .as_deref()
                .or(self.stdin_name.as_deref())
                .unwrap_or(""),
        )
    }
}

/// The arguments of `forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The backup names to apply the policy to (raw or escaped as `list`
    /// prints them); default: every name in the entry cache.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// Print what would be kept and forgotten, and why; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Keep the N newest backups (-1: all).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i64>,

    /// Keep the newest backup of each of the last N hours that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i64>,

    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i64>,

    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i64>,

    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i64>,

    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i64>,

    /// Keep every backup made within DURATION (e.g. 14d, 6m, 1y2m) of the
    /// newest backup of the name.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,

    /// Allow a policy that keeps nothing (only the newest backup of each
    /// name, and pinned ones, survive).
    #[arg(long)]
    pub unsafe_allow_forget_all: bool,

    /// Wait up to DURATION for another run to release the entry cache's
    /// lock instead of failing at once (as for backup).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_wait_arg)]
    pub lock_wait: std::time::Duration,
}

/// A duration argument (`--timeout`, `--max-duration`): seconds (`30`,
/// `2.5`), or a number with `s`, `m`, `h` or `d` (`90s`, `5m`, `1.5h`);
/// more than zero.
pub(crate) fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text, false)
}

/// A waiting time (`--lock-wait`): as [`parse_duration_arg`], but zero
/// ("do not wait") is allowed.
pub(crate) fn parse_wait_arg(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text, true)
}

/// A size (`mount --cache-size`): bytes, or a whole number with `K`, `M`,
/// `G` or `T` (also `KiB`… / `KB`…, all powers of 1024); more than zero.
pub(crate) fn parse_size_arg(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{text:?} is not a size (e.g. 1GiB, 500M, 1048576)")),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1GiB, 500M, 1048576)"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("the size must be more than zero".into());
    }
    Ok(bytes)
}

/// One reading of every duration option: seconds, or a number with s, m,
/// h or d; zero only where `allow_zero`.
fn parse_duration(text: &str, allow_zero: bool) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: use seconds, or a number with s, m, h or d \
                 (e.g. 30, 90s, 5m)"
            ));
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30, 90s, 5m)"))?;
    let secs = value * scale;
    if !secs.is_finite() || secs < 0.0 || (secs == 0.0 && !allow_zero) || secs > 1e9 {
        return Err(format!(
            "{text:?}: a duration must be more than zero (and under 30 years)"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_cache_sizes() {
        assert_eq!(parse_size_arg("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size_arg("500M"), Ok(500 << 20));
        assert_eq!(parse_size_arg("64k"), Ok(64 << 10));
        assert_eq!(parse_size_arg("1048576"), Ok(1 << 20));
        for bad in ["", "0", "1.5G", "G", "12 parsecs", "-1", "99999999999T"] {
            assert!(parse_size_arg(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["lafs-backup", "mount", "/mnt", "home"]).unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("not mount")
        };
        assert_eq!(args.cache_size, 1 << 30);
        assert_eq!(args.names, ["home"]);
    }

    fn restore_args(args: &[&str]) -> RestoreArgs {
        let cli = Cli::try_parse_from([&["lafs-backup", "restore"], args].concat())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Restore(r) => r,
            _ => panic!("not restore"),
        }
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        for (text, secs) in [
            ("5", 5.0),
            ("2.5", 2.5),
            ("90s", 90.0),
            ("5m", 300.0),
            ("1.5h", 5400.0),
            (" 1d ", 86_400.0),
        ] {
            assert_eq!(
                parse_duration_arg(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in ["", "0", "-1", "5x", "m", "nan", "inf", "1e20"] {
            assert!(parse_duration_arg(bad).is_err(), "{bad:?}");
        }
        let r = restore_args(&["CAP", "T", "--timeout", "5"]);
        assert_eq!(r.timeout, Some(Duration::from_secs(5)));
        // --lock-wait: zero ("do not wait") is allowed.
        assert_eq!(parse_wait_arg("0"), Ok(Duration::ZERO));
        assert_eq!(parse_wait_arg("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_wait_arg("10m"), Ok(Duration::from_secs(600)));
        for bad in ["", "-1", "x", "nan", "1e300"] {
            assert!(parse_wait_arg(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn minus_rules_go_after_double_dash() {
        let r = restore_args(&["NAME", "T", "--", "-^/skip/", "-n", "+x"]);
        assert_eq!(r.paths, ["-^/skip/", "-n", "+x"]);
        assert!(!r.dry_run);
        // Options may follow the positionals, as usual.
        let r = restore_args(&["NAME", "T", "etc", "--overwrite", "-n"]);
        assert!(r.dry_run && r.overwrite);
        assert_eq!(r.paths, ["etc"]);
        // A '-' rule without '--' is an error (clap suggests '--'), never
        // silently a path.
        let Err(e) = Cli::try_parse_from(["lafs-backup", "restore", "NAME", "T", "-^/skip/"])
        else {
            panic!("a '-' rule without '--' parsed");
        };
        assert!(e.to_string().contains("--"), "{e}");
    }
}
