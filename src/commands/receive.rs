//! `receive NAME [--as-of WHEN] DEST`: a btrfs backup back into a btrfs
//! (`docs/btrfs.md`). The member picked (the shared selector's as-of rule)
//! and its chain, from its complete stream up to it, are fed in order into
//! one `btrfs receive DEST`.

use std::io::{self, Read};
use std::sync::mpsc;

use anyhow::Context as _;

use super::Context;
use crate::btrfs::Btrfs;
use crate::btrfs::plan::Kind;
use crate::cache::RecordedMember;
use crate::cli::ReceiveArgs;
use crate::exit::{Outcome, UsageError};
use crate::selector::Selector;
use crate::stream;

pub(crate) fn run(ctx: &Context<'_>, args: &ReceiveArgs) -> anyhow::Result<Outcome> {
    let selector = Selector::of_args(&args.name, None, None, args.as_of.as_deref())?;
    if selector.cap().is_some() {
        return Err(UsageError(
            "receive takes the NAME of a btrfs backup (its chain comes from the entry cache), \
             not a cap"
                .into(),
        )
        .into());
    }
    let cache = ctx.read_cache()?;
    let rows = cache.backups()?;
    let selected = selector
        .select(&rows, cache.path())
        .map_err(UsageError::from)?;
    let Some(row) = selected.latest() else {
        return Err(UsageError(format!("{}: no such backup", args.name)).into());
    };
    let shown = format!(
        "{} generation {}",
        super::show::name(&row.name),
        row.generation
    );
    let members = cache.btrfs_members(&row.name)?;
    let chain = chain_of(&members, row.id).ok_or_else(|| {
        UsageError(format!(
            "{shown} is not a btrfs send stream: `receive` restores the backups of a \
             `kind: btrfs` job or of `send --date` (use `cat` or `restore` for others)"
        ))
    })??;
    drop(cache);

    let gateway = ctx.interactive_gateway(None, None)?;
    gateway.storage_servers()?;
    let client = &gateway.client;
    // Every stream's layout first: a member that is not there stops the
    // receive before it starts.
    let mut streams = Vec::new();
    for m in &chain {
        let root = rows
            .iter()
            .find(|r| r.id == m.id)
            .map(|r| &r.root_cap)
            .ok_or_else(|| anyhow::anyhow!("{shown}: a chain member's record is gone"))?;
        let what = member_text(m);
        let layout = stream::read::open(client, root)
            .with_context(|| format!("{shown}: reading the stream of {what}"))?
            .ok_or_else(|| anyhow::anyhow!("{shown}: the backup of {what} is not a stream"))?;
        streams.push((what, layout));
    }
    let chain_text: Vec<&str> = streams.iter().map(|(w, _)| w.as_str()).collect();
    let chain_text = chain_text.join(", ");

    let fed = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
        let streams = &streams;
        scope.spawn(move || {
            for (what, layout) in streams {
                let sent = stream::read::for_each_chunk(client, layout, |bytes| {
                    tx.send(Ok(bytes.to_vec()))
                        .map_err(|_| io::Error::other("the receive ended"))
                });
                if let Err(e) = sent {
                    let _ = tx.send(Err(io::Error::other(format!(
                        "reading the stream of {what}: {e}"
                    ))));
                    return;
                }
            }
        });
        let mut reader = Chunks {
            rx,
            chunk: Vec::new(),
            at: 0,
        };
        Btrfs::default().receive(&args.dest, &mut reader)
        // `reader` (the receiving end) goes here, so a producer still
        // sending stops.
    })
    .with_context(|| {
        format!(
            "{shown}: receiving the chain ({chain_text}) into {}",
            args.dest.display()
        )
    })?;
    eprintln!(
        "lafs-backup: receive {shown}: {} stream(s) ({chain_text}), {}, into {}",
        streams.len(),
        crate::progress::human_bytes(fed),
        args.dest.display()
    );
    Ok(Outcome::Success)
}

/// `c 2000-01-01`, `i 2000-01-07 (on 2000-01-01)`.
fn member_text(m: &RecordedMember) -> String {
    let date = m.member.date.strftime("%Y-%m-%d");
    match m.member.kind {
        Kind::Complete => format!("c {date}"),
        Kind::Incremental { parent } => {
            format!("i {date} (on {})", parent.strftime("%Y-%m-%d"))
        }
    }
}

/// The chain of member `id`, complete stream first; `None` when `id` is
/// not a btrfs member; an error when a parent is not recorded.
fn chain_of(members: &[RecordedMember], id: i64) -> Option<anyhow::Result<Vec<RecordedMember>>> {
    let mut at = *members.iter().find(|m| m.id == id)?;
    let mut chain = vec![at];
    while let Kind::Incremental { parent } = at.member.kind {
        // The parent: the newest member of that date recorded before.
        let Some(found) = members
            .iter()
            .rfind(|m| m.id < at.id && m.member.date == parent)
        else {
            return Some(Err(anyhow::anyhow!(
                "the chain of {} is broken: its parent of {} is not recorded (forgotten?)",
                member_text(&at),
                parent.strftime("%Y-%m-%d")
            )));
        };
        at = *found;
        chain.push(at);
    }
    chain.reverse();
    Some(Ok(chain))
}

/// The chunks sent by the reading thread, as one reader.
struct Chunks {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                // The thread is done: every stream was sent.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
