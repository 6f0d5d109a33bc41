#!/usr/bin/env python3
"""The benchmark behind scripts/bench (Python 3 standard library only).

scripts/bench builds the release binaries and finds the tahoe-lafs
virtualenv, then runs this file with --root and --venv. Run
`scripts/bench --help` for what it measures; docs/performance.md has the
method and the results.
"""

import argparse
import filecmp
import functools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote
from urllib.request import Request, urlopen

MIB = 1024 * 1024
# Bump when the tree generators change, so old trees are not reused.
TREE_FORMAT = 1
# The layout (names, sizes) of the mixed trees comes from this seed; only
# the content differs between the trees of one run (see fresh content).
LAYOUT_SEED = 2026

DESCRIPTION = """\
Benchmark of lafs-backup against `tahoe backup`, `tahoe cp -r`, the
gateway's raw upload and download ceilings and `find`, on a local grid the
benchmark starts itself. Not a test: nothing is asserted; the numbers are
printed (and saved under WORK/results/).

Measured, in one run:
  * first backup of a mixed tree (2,000 files of 100 B..16 KiB in 20 dirs of
    100, plus 3 big random files): lafs-backup with compression off, against
    `tahoe backup` and against the raw ceiling (files of the same layout sent
    by parallel keep-alive PUT /uri requests, examples/raw_put.rs);
    lafs-backup with compression on (the default config), for information.
    --first-runs rounds (the second in reverse order), median used;
  * restore of that mixed tree: each round's compression-off backup restored
    by `lafs-backup restore --gateway URL CAP TARGET` (same concurrency as the
    backups), against `tahoe cp -r DIRCAP TARGET` and against the raw download
    ceiling (the same file caps fetched by parallel keep-alive GET requests
    and written to files, examples/raw_get.rs), each into a new directory,
    `sync` before each; every restored tree is compared with its source
    (names, sizes, bytes; lafs-backup's also mode, owner, mtime), not timed.
    Same rounds and order rule as the first backups;
  * unchanged re-runs of trees of empty and <=55-byte files (100,000 files by
    default, at most 1,000 per directory, and one of a fifth of that size):
    lafs-backup's `backup -f` against a bare `find` walk that stats every
    entry, with a breakdown (scan, upload phase, rest; `backup -f
    --queue-only` alone; one run with --noise); and against `tahoe backup`'s
    re-run on a tree of --tahoe-rescan-entries files (20,000 by default:
    tahoe's FIRST run, needed before its re-run, costs 2.6-18 ms per file
    here, so 100,000 would add 5-30 minutes);
  * on each rescan tree (with the default config: zstd): one-file-changed
    re-runs (one file rewritten with 64 new bytes before each, put back
    afterwards) against the unchanged re-runs; then restore of the last
    backup (into WORK/restore, on the same file system, removed after),
    verify against the tree and check (deep check, leases) of it;
  * the peak RSS of every run: backup, restore, verify and check, each
    against 64 MiB and against its own on the smaller tree (N/5, or with
    --scale the main tree), to see growth with the number of entries;
  * where a first backup's gateway time goes beyond the raw ceiling's (issue
    16 item 4): the grid's CPU seconds and idle time of every run (sampled
    from /proc every 0.1 s), the cost of one `mkdir-immutable` like the
    backup's (its own directories posted again, one at a time) times the
    directories it made, and the fixed per-run work (grid probe, server
    checks, root directory: a backup of an empty tree with a new cache).

--scale adds a rescan tree of --scale-entries files (1,000,000): the same
measurements as the main tree except `tahoe backup` (hours there); RSS
growth is then from the main tree to it, and `tahoe backup` runs on the main
tree (100,000) for the >= 10x target. About 30-60 minutes more; the tree is
built once (a few minutes, in this process) and reused.

Each measured first run backs up a tree with content of its own (same layout,
another content seed), so the gateway's convergent encryption cannot reuse
shares from an earlier run; the grid itself is new for every benchmark run
(a new convergence secret), so trees are safely reused between runs. Before
the first measurement the grid is warmed up with 300 files by raw_put, and
before the first restore its downloads with 100 files by raw_get.

Trees are built deterministically under WORK/trees and reused when their
marker file matches. The grid runs in WORK/grid and is stopped and removed at
the end (unless --keep). Logs, configs and JSON output of each run are in
WORK/run/. Times are wall-clock (monotonic clock); the page cache is warm.
A full run takes about 10-15 minutes on 2 cores (20+ with
--tahoe-rescan-entries 100000, 45-90 with --scale); --quick about 2 minutes.

--mount runs only the `mount` case instead (on a grid of its own): a
--mount-mb MiB (default 200) compressible text file stored with zstd and a
32 MiB random file stored as it is are backed up, mounted with
`lafs-backup mount`, and read through the mount in 1 MiB pieces at random
offsets (each piece compared with the source): the first open (decoding
into the disk cache), the random reads of both files, and the mount
process's peak RSS (VmHWM, target under 64 MiB).

--stream runs only the stream case instead (on a grid of its own): a
--stream-mb MiB (default 1024) file of random bytes is stored with `backup
--stdin` (FastCDC chunks, default chunking, or --stream-chunking
MIN,AVG,MAX in KiB; --concurrency N goes into its config) and its wall time
compared with
the raw PUT ceiling of the same bytes as one object (target: a ratio of at
least 0.8); the peak RSS of `backup --stdin` (target under 64 MiB; the issue
asks for it on 2 GB: --stream-mb 2048); an unchanged re-run; and a re-run
of the stream with 1 MiB inserted in the middle (the bytes uploaded, target
at most 1 MiB + 3 x max_size). Where the time goes: the CPU seconds of the
client (wait4) and of the grid's node processes, for the raw PUT and the
first backup, and the load average before the case (the machine may be
shared).

--chunked-file runs only the chunked-file case instead (on a grid of its
own): a tree holding one --chunked-mb MiB (default 200) file of random bytes
under a `chunking.files` rule (default chunking) is backed up, backed up
again unchanged, then again after 1 MiB of it was rewritten in the middle
(same size, new mtime): the wall times and the bytes each run uploaded (the
run's summary and the gateway's `uploader.bytes_uploaded` counter; target
for the changed run: under 8 MiB).

--native runs only the native storage case instead (issue 17 item 4; on a
3-node HTTPS grid of its own, whatever --shape says): first backups of a
tree of --files small files (100 B..16 KiB) and of a tree of 3 x --big-mb
MiB random files, each in gateway mode and in native mode
(destination.storage: native, required) on fresh content, compression off,
--first-runs rounds; then restores of each native-made backup by
lafs-backup in gateway mode, in native mode and by `tahoe cp -r` (every
restored tree compared with its source); and the CPU seconds of the client
and of every grid node process around each run, per file. Ratios against
the targets: small files >= 2.5x the gateway path's files/s, large files
>= 1.5x its MiB/s, native restore >= 2x `tahoe cp -r`.

--dump runs only the database dump case instead (on a grid of its own): a
throwaway PostgreSQL cluster (Debian's postgresql, a unix socket in
WORK/run) gets a database of --dump-rows rows (default 1,000,000: a plain
pg_dump of about 100 MiB); a `kind: postgresql` job backs it up (default
chunking), then again unchanged, then again after 10,000 rows (about 1 MiB
of dump) are appended to its table: the bytes each run uploaded against
the dump's size."""


# ----------------------------------------------------------------- helpers

T0 = time.monotonic()


def say(msg):
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def config_head(run_dir, name, url, tree=None):
    """The first lines of a bench config: the source (with `tree`, its path
    and queue), the entry cache NAME.cache in RUN_DIR, the gateway URL."""
    lines = ["source:"]
    if tree is not None:
        lines += [f"  path: {json.dumps(str(tree))}",
                  f"  queue:\n    path: {json.dumps(str(run_dir / (name + '.queue')))}"]
    lines += [f"  entry_cache:\n    path: {json.dumps(str(run_dir / (name + '.cache')))}",
              "destination:",
              f"  url: {json.dumps(url + '/uri')}"]
    return lines


class BenchError(Exception):
    pass


CURRENT = {"proc": None}


def vm_hwm_kib(pid):
    """VmHWM (peak RSS of the current program image) of pid, in KiB."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def run_measured(cmd, stdout, stderr=None, cwd=None, stdin=None):
    """Runs cmd, waits for it with wait4 and returns a dict with wall
    seconds (monotonic), exit code, peak RSS (KiB) and CPU seconds of the
    child.

    Peak RSS: wait4's ru_maxrss alone is no good for small programs, because
    Linux carries the high-water mark of the process image replaced by exec
    over into it, and that image is a fork of this Python (~20 MiB). So a
    thread polls the child's /proc/PID/status VmHWM (the peak of the new
    image only) every 10 ms; when ru_maxrss exceeds this Python's own peak,
    it is the child's true peak and is used instead (it then cannot come
    from the fork)."""
    out = open(stdout, "wb") if isinstance(stdout, (str, Path)) else stdout
    err = open(stderr, "wb") if isinstance(stderr, (str, Path)) else stderr
    floor = vm_hwm_kib("self") or 0
    polled = [0]
    done = threading.Event()
    try:
        t0 = time.monotonic()
        inp = open(stdin, "rb") if stdin is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                [str(c) for c in cmd], stdin=inp, stdout=out, stderr=err, cwd=cwd
            )
        finally:
            if stdin is not None:
                inp.close()
        CURRENT["proc"] = proc

        def poll():
            while not done.is_set():
                v = vm_hwm_kib(proc.pid)
                if v is not None:
                    polled[0] = max(polled[0], v)
                done.wait(0.01)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        done.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        CURRENT["proc"] = None
    finally:
        done.set()
        for f, given in ((out, stdout), (err, stderr)):
            if f is not given and f is not None:
                f.close()
    exact = ru.ru_maxrss > floor
    return {
        "wall": wall,
        "rc": proc.returncode,
        "maxrss_kib": ru.ru_maxrss if exact else polled[0],
        "maxrss_method": "wait4" if exact else "VmHWM poll",
        "cpu": ru.ru_utime + ru.ru_stime,
    }


CAP_RE = re.compile(r"URI(?::|%3A)[A-Za-z0-9:%_-]+", re.I)


def redact(text):
    """text with every capability replaced by URI:…: caps are secrets, even
    on a throwaway grid, and never printed."""
    return CAP_RE.sub("URI:…", text)


def check_rc(res, what, log):
    if res["rc"] != 0:
        tail = ""
        try:
            tail = "\n".join(Path(log).read_text(errors="replace").splitlines()[-15:])
        except OSError:
            pass
        raise BenchError(f"{what} failed with exit code {res['rc']} (log: {log})\n{redact(tail)}")


def run_checked(cmd, what=None, check=True):
    """subprocess.run(cmd) with its output captured; BenchError if it fails
    (unless not check)."""
    cmd = [str(c) for c in cmd]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BenchError(f"{what or ' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return r


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_s(x):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def fmt_mib(kib):
    return "—" if kib is None else f"{kib / 1024:.1f}"


def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"^([A-Z_0-9]+)='(.*)'$", line)
        if m:
            env[m.group(1)] = m.group(2).replace("'\\''", "'")
    return env


# ----------------------------------------------------------------- machine


def machine_facts(args):
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / MIB:.1f} GiB"
    except OSError:
        pass
    git = subprocess.run(
        ["git", "-C", str(args.root), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "model": model,
        "mem_total": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "git": git or "?",
    }


# ----------------------------------------------------------------- trees


def tree_ready(marker, params):
    try:
        return json.loads(Path(marker).read_text()) == params
    except (OSError, ValueError):
        return False


def build_tree(trees, name, params, fill):
    """WORK/trees/NAME, built by fill(tmpdir) unless NAME.done holds params."""
    path = trees / name
    marker = trees / f"{name}.done"
    if path.is_dir() and tree_ready(marker, params):
        return path
    say(f"building tree {name}")
    tmp = trees / f"{name}.tmp"
    for p in (tmp, path):
        if p.exists():
            shutil.rmtree(p)
    marker.unlink(missing_ok=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    tmp.rename(path)
    marker.write_text(json.dumps(params))
    return path


@functools.cache  # the same layout for every mixed tree of a run
def mixed_layout(nfiles, big_mb):
    """[(relative path, size)]: nfiles files of 100 B..16 KiB in leaf dirs
    of 100 (4 leaves per top dir), plus 3 big files at the top."""
    rng = random.Random(LAYOUT_SEED)
    out = []
    leaves = max(1, math.ceil(nfiles / 100))
    for i in range(nfiles):
        leaf = i // 100 if leaves > 1 else 0
        d = f"d{leaf // 4:02d}/s{leaf % 4}"
        out.append((f"{d}/f{i:05d}.dat", rng.randint(100, 16 * 1024)))
    for b in range(3 if big_mb > 0 else 0):
        out.append((f"big-{b}.bin", big_mb * MIB))
    return out


def mixed_tree(trees, nfiles, big_mb, content_seed):
    layout = mixed_layout(nfiles, big_mb)
    params = {"format": TREE_FORMAT, "kind": "mixed", "files": nfiles, "big_mb": big_mb,
              "layout_seed": LAYOUT_SEED, "content_seed": content_seed}

    def fill(root):
        rng = random.Random(content_seed * 7919 + 17)
        for rel, size in layout:
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as f:
                left = size
                while left:
                    n = min(left, 4 * MIB)
                    f.write(rng.randbytes(n))
                    left -= n

    path = build_tree(trees, f"mixed-{nfiles}f-{big_mb}m-c{content_seed}", params, fill)
    nbytes = sum(s for _, s in layout)
    dirs = {str(parent) for rel, _ in layout for parent in Path(rel).parents}
    ndirs = len(dirs)  # includes "." (the root)
    return {"path": path, "files": len(layout), "bytes": nbytes, "dirs": ndirs}


def rescan_tree(trees, nfiles, seed):
    """nfiles empty or 1..55-byte files, at most 1,000 per leaf dir, at most
    10 leaf dirs per top dir."""
    params = {"format": TREE_FORMAT, "kind": "rescan", "files": nfiles, "seed": seed}
    leaves = max(1, math.ceil(nfiles / 1000))
    tops = math.ceil(leaves / 10)

    def fill(root):
        # In this process, one directory descriptor per leaf and bare
        # os.open/os.write per file: a 1,000,000-file tree is bound by the
        # file system's creates, not by Python (a few minutes, once; reused).
        rng = random.Random(seed * 104729 + 3)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for leaf in range(leaves):
            d = root / f"t{leaf // 10:03d}" / f"l{leaf % 10}"
            d.mkdir(parents=True)
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for i in range(leaf * 1000, min(nfiles, (leaf + 1) * 1000)):
                    n = 0 if rng.random() < 0.25 else rng.randint(1, 55)
                    fd = os.open(f"e{i:06d}", flags, 0o644, dir_fd=dfd)
                    try:
                        if n:
                            os.write(fd, rng.randbytes(n))
                    finally:
                        os.close(fd)
            finally:
                os.close(dfd)

    path = build_tree(trees, f"rescan-{nfiles}-s{seed}", params, fill)
    # The file the one-file-changed re-runs rewrite: the middle one of the
    # middle leaf (put back as it was when the case ends).
    leaf = leaves // 2
    i = min(nfiles - 1, leaf * 1000 + 500)
    return {"path": path, "files": nfiles, "dirs": 1 + tops + leaves,
            "entries": nfiles + 1 + tops + leaves,
            "changed": f"t{(i // 1000) // 10:03d}/l{(i // 1000) % 10}/e{i:06d}"}


def tree_entries(root):
    """{relative path: os.stat_result} of everything under root (not root
    itself), symlinks not followed."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = os.lstat(full)
    return out


def compare_trees(src, dst, content=True, meta=False, extra_ok=(), src_entries=None):
    """Compares a restored tree dst with its source src: the same names and
    types, the same file sizes, the same bytes (content) and, with meta,
    the same mode, owner and mtime (ns) for every entry and for the roots.
    extra_ok: top-level names dst may have beyond src. src_entries: src's
    tree_entries, if already read. Returns a dict with files, bytes, what
    was checked, and up to 5 problems (paths only)."""
    a = tree_entries(src) if src_entries is None else src_entries
    b = tree_entries(dst)
    problems = []
    for rel in sorted(set(a) - set(b)):
        problems.append(f"missing: {rel}")
    for rel in sorted(set(b) - set(a)):
        if rel not in extra_ok:
            problems.append(f"extra: {rel}")
    files = nbytes = 0
    pairs = [(rel, a[rel], b[rel]) for rel in sorted(set(a) & set(b))]
    if meta:
        pairs.append((".", os.lstat(src), os.lstat(dst)))
    for rel, sa, sb in pairs:
        if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
            problems.append(f"type differs: {rel}")
            continue
        if stat.S_ISREG(sa.st_mode):
            files += 1
            nbytes += sb.st_size
            if sa.st_size != sb.st_size:
                problems.append(f"size differs: {rel} ({sa.st_size} against {sb.st_size})")
            elif content and not filecmp.cmp(os.path.join(src, rel), os.path.join(dst, rel),
                                             shallow=False):
                problems.append(f"content differs: {rel}")
        if meta:
            for what, x, y in (("mode", sa.st_mode, sb.st_mode), ("uid", sa.st_uid, sb.st_uid),
                               ("gid", sa.st_gid, sb.st_gid),
                               ("mtime", sa.st_mtime_ns, sb.st_mtime_ns)):
                if x != y:
                    problems.append(f"{what} differs: {rel}")
                    break
    checked = ["names", "types", "sizes"] + (["bytes"] if content else []) + \
        (["mode, owner, mtime"] if meta else [])
    return {"ok": not problems, "files": files, "bytes": nbytes, "checked": ", ".join(checked),
            "problems": problems[:5], "problem_count": len(problems)}


def remove_tree(path):
    """Removes path (a restored tree) whatever its modes say."""
    path = Path(path)
    if not path.exists():
        return
    # rm(1) first: a restored 1,000,000-file tree takes minutes in Python;
    # what it cannot remove (directories restored without write permission,
    # when not root) is made writable and removed below.
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            try:
                os.chmod(os.path.join(dirpath, d), 0o700)
            except OSError:
                pass
    shutil.rmtree(path)


# ----------------------------------------------------------------- grid


class Grid:
    def __init__(self, args):
        self.args = args
        self.dir = args.work / "grid"
        self.dev_grid = args.root / "scripts" / "dev-grid"
        self.fast = args.shape == "fast"
        self.started = False

    def _cmd(self, *words, check=True):
        return run_checked([self.dev_grid, *words], check=check)

    def start(self):
        if self.dir.exists():
            say(f"removing the grid left in {self.dir}")
            self._cmd("stop", "--rm", str(self.dir), check=False)
            if self.dir.exists():
                raise BenchError(f"{self.dir} exists and is not a dev-grid dir; remove it")
        say(f"starting a {'fast (1-of-1, foolscap)' if self.fast else '3-node (2-of-3, HTTPS)'} grid in {self.dir}")
        self.started = True
        words = ["start"] + (["--fast"] if self.fast else []) + [str(self.dir)]
        self._cmd(*words)
        env = read_env(self.dir / "grid.env")
        self.env = env
        self.url = env["LAFS_GRID_GATEWAY"].rstrip("/")
        self.gateway_dir = env["LAFS_GRID_GATEWAY_DIR"]
        say(f"grid up: {self.url}")

    def describe(self):
        e = self.env
        proto = "foolscap (force_foolscap)" if e["LAFS_GRID_SHAPE"] == "fast" else "HTTPS (1.20 default)"
        return {
            "shape": e["LAFS_GRID_SHAPE"],
            "nodes": e["LAFS_GRID_NODES"],
            "storage_nodes": e["LAFS_GRID_STORAGE_NODES"],
            "shares": f"{e['LAFS_GRID_SHARES_NEEDED']}-of-{e['LAFS_GRID_SHARES_TOTAL']}, "
                      f"happy {e['LAFS_GRID_SHARES_HAPPY']}",
            "protocol": proto,
        }

    def cpu_seconds(self):
        """utime+stime of every node process (from DIR/pids)."""
        tck = os.sysconf("SC_CLK_TCK")
        total = 0.0
        if getattr(self, "pids", None) is None:
            try:
                self.pids = [line.split()[0]
                             for line in (self.dir / "pids").read_text().splitlines() if line]
            except OSError:
                return None
        for pid in self.pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(stat[11]) + int(stat[12])) / tck
            except (OSError, IndexError, ValueError):
                pass
        return total

    def sample(self):
        """Starts sampling the grid's CPU time every 0.1 s; the returned
        function stops it and gives (CPU seconds, idle seconds). Idle is the
        time the grid's processes together used less than one core, summed
        over the samples: on the fast grid, whose gateway is one Python
        process, the time the gateway waited for work (the client's gaps,
        its ordering) or for a CPU (other load on the machine)."""
        first = self.cpu_seconds()
        if first is None:
            return lambda: (None, None)
        state = {"t": time.monotonic(), "cpu": first, "idle": 0.0}
        done = threading.Event()

        def tick():
            now, cpu = time.monotonic(), self.cpu_seconds()
            if cpu is not None:
                state["idle"] += max(0.0, (now - state["t"]) - (cpu - state["cpu"]))
                state["t"], state["cpu"] = now, cpu

        def poll():
            while not done.wait(0.1):
                tick()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

        def stop():
            done.set()
            poller.join()
            tick()
            return state["cpu"] - first, state["idle"]

        return stop

    def stop(self):
        if not self.started:
            return
        if self.args.keep:
            say(f"--keep: the grid keeps running; stop it with: scripts/dev-grid stop --rm {self.dir}")
            return
        say("stopping the grid")
        self._cmd("stop", "--rm", str(self.dir), check=False)


# ----------------------------------------------------------------- runners


class Bench:
    def __init__(self, args, grid):
        self.args = args
        self.grid = grid
        self.run_dir = args.work / "run"
        self.bin = args.root / "target" / "release" / "lafs-backup"
        self.raw = args.root / "target" / "release" / "examples" / "raw_put"
        self.raw_get_bin = args.root / "target" / "release" / "examples" / "raw_get"
        self.tahoe = Path(args.venv) / "bin" / "tahoe"
        self.n = 0
        # Root caps of the backups made, by run label. Kept here only, never
        # in the results (which are saved) and never printed.
        self.caps = {}
        self.conc_value = None  # lafs-backup's effective concurrency, set by main()
        for exe in (self.bin, self.raw, self.raw_get_bin, self.tahoe):
            if not os.access(exe, os.X_OK):
                raise BenchError(f"{exe} is missing: run scripts/bench (it builds), not bench.py alone")
        help_text = run_checked([self.bin, "backup", "--help"], check=False).stdout
        self.has_concurrency_flag = "--concurrency" in help_text

    def _paths(self, label):
        self.n += 1
        base = self.run_dir / f"{self.n:02d}-{label}"
        return base.with_suffix(".out"), base.with_suffix(".err")

    def _run(self, cmd, label, what, log=False):
        """Runs cmd measured (run_measured), with the grid's CPU time around
        it, its stdout and stderr in WORK/run/NN-LABEL.out/.err; BenchError
        naming `what` if it fails. Returns the result (with the stderr path
        as "log" if log) and the stdout path."""
        out, err = self._paths(label)
        stop = self.grid.sample()
        res = run_measured(cmd, out, err)
        res["grid_cpu"], res["grid_idle"] = stop()
        check_rc(res, what, err)
        if log:
            res["log"] = str(err)
        return res, out

    def _run_raw(self, cmd, label, what):
        """_run for raw_put and raw_get: their JSON line is res["raw"]."""
        res, out = self._run(cmd, label, what)
        res["raw"] = json.loads(Path(out).read_text().strip().splitlines()[-1])
        return res

    # --- lafs-backup

    def lafs_config(self, name, tree, compress):
        cfg = self.run_dir / f"{name}.yaml"
        lines = config_head(self.run_dir, name, self.grid.url, tree)
        if not compress:
            lines += ["  encoding:", "    xz:", "      enabled: false"]
        if self.args.concurrency and not self.has_concurrency_flag:
            lines += ["operation:", f"  concurrency: {self.args.concurrency}"]
        cfg.write_text("\n".join(lines) + "\n")
        for suffix in (".cache", ".cache-wal", ".cache-shm", ".cache.lock", ".queue"):
            (self.run_dir / (name + suffix)).unlink(missing_ok=True)
        return cfg

    def effective_concurrency(self, cfg):
        out = run_checked([self.bin, "dump-config", "-c", cfg], check=False).stdout
        m = re.search(r"^\s+concurrency:\s*(\d+)", out, re.M)
        return int(m.group(1)) if m else None

    def lafs(self, cfg, label, extra=(), noise=False):
        cmd = [self.bin, "--json"] + (["--noise"] if noise else []) + ["backup", "-c", cfg]
        if self.args.concurrency and self.has_concurrency_flag:
            cmd += ["--concurrency", str(self.args.concurrency)]
        cmd += list(extra)
        res, out = self._run(cmd, label, f"lafs-backup ({label})", log=True)
        for line in Path(out).read_text().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("type") in ("scan", "summary"):
                cap = obj.pop("root_cap", None)  # a cap is a secret, even on a throwaway grid
                if cap:
                    self.caps[label] = cap
                res[obj["type"]] = obj
        return res

    # --- tahoe backup

    def tahoe_backup(self, tree, name, label):
        cmd = [self.tahoe, "-d", self.grid.gateway_dir, "backup", tree, f"bk:{name}"]
        res, out = self._run(cmd, label, f"tahoe backup ({label})")
        text = Path(out).read_text(errors="replace")
        m = re.search(r"(\d+) files uploaded \((\d+) reused\), (\d+) files skipped, "
                      r"(\d+) directories created \((\d+) reused\)", text)
        if m:
            res["tahoe"] = dict(zip(("files_uploaded", "files_reused", "files_skipped",
                                     "dirs_created", "dirs_reused"), map(int, m.groups())))
        return res

    def tahoe_alias(self):
        run_checked([self.tahoe, "-d", self.grid.gateway_dir, "create-alias", "bk"],
                    "tahoe create-alias")

    # --- raw ceiling and find

    def raw_put(self, tree, threads, label, chunked=False):
        return self._run_raw([self.raw, "--threads", threads] + (["--chunked"] if chunked else [])
                             + [self.grid.url, tree], label, "raw_put")

    # --- restore, verify and check of a backup by name, through its config

    def lafs_cmd(self, cfg, words, label, what, ok_codes=(0,)):
        """`lafs-backup -c CFG WORDS...` measured; its exit code must be in
        ok_codes (BenchError otherwise)."""
        out, err = self._paths(label)
        stop = self.grid.sample()
        res = run_measured([self.bin, "-c", cfg] + list(words), out, err)
        res["grid_cpu"], res["grid_idle"] = stop()
        if res["rc"] not in ok_codes:
            check_rc(res, what, err)
        res["log"] = str(err)
        return res

    # --- what a backup costs the gateway besides its files (issue 16 item 4)

    def mkdir_cost(self, cap, limit=20):
        """Grid CPU seconds of one `mkdir-immutable` like lafs-backup's:
        the children (caps and metadata, as listed) of up to `limit`
        directories of the backup `cap`, each posted again with one extra
        empty literal child of a random name (so the gateway really encodes
        and stores a new directory, as a first backup does), one request at
        a time. Returns {"n", "grid_cpu", "per_dir", "children"}."""
        bodies = []

        def walk(dircap):
            with urlopen(f"{self.grid.url}/uri/{quote(dircap, safe=':')}?t=json",
                         timeout=300) as r:
                node = json.load(r)
            kids = node[1]["children"]
            bodies.append({name: [kind, {"ro_uri": info.get("ro_uri") or info.get("rw_uri"),
                                         "metadata": info.get("metadata", {})}]
                           for name, (kind, info) in kids.items()})
            for kind, info in kids.values():
                if kind == "dirnode" and len(bodies) < limit:
                    walk(info.get("ro_uri") or info.get("rw_uri"))

        walk(cap)
        before = self.grid.cpu_seconds()
        for body in bodies:
            body[f".bench-{random.getrandbits(64):016x}"] = ["filenode", {"ro_uri": "URI:LIT:",
                                                                          "metadata": {}}]
            req = Request(f"{self.grid.url}/uri?t=mkdir-immutable", method="POST",
                          data=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})
            with urlopen(req, timeout=300) as r:
                r.read()
        cpu = self.grid.cpu_seconds() - before
        return {"n": len(bodies), "grid_cpu": cpu, "per_dir": cpu / max(1, len(bodies)),
                "children": sum(len(b) - 1 for b in bodies)}

    # --- restore: lafs-backup, `tahoe cp -r`, the raw GET ceiling

    def restore_concurrency(self):
        return self.args.concurrency or self.conc_value or 4

    def lafs_restore(self, cap, target, label, dry_run=False):
        cmd = [self.bin, "restore", "--gateway", self.grid.url, "--concurrency",
               self.restore_concurrency()] + (["--dry-run"] if dry_run else []) + [cap, target]
        return self._run(cmd, label, f"lafs-backup restore ({label})", log=True)[0]

    def tahoe_cp(self, cap, target, label):
        """`tahoe cp -r DIRCAP TARGET`: a dircap without a name stands for
        its contents, so they land in TARGET itself (made beforehand)."""
        Path(target).mkdir()
        cmd = [self.tahoe, "-d", self.grid.gateway_dir, "cp", "-r", cap, target]
        return self._run(cmd, label, f"tahoe cp -r ({label})")[0]

    def list_backup(self, cap, path, last=None):
        """Walks a backup with GET /uri/DIRCAP?t=json (not timed) and writes
        its file caps to path, one `CAP<TAB>RELPATH` line each, for raw_get
        (only the last `last` ones if given). The reserved top-level
        .lafs-backup-root entry is left out. Returns the number of files and
        directories of the backup."""
        lines, dirs = [], 0

        def walk(dircap, prefix):
            nonlocal dirs
            dirs += 1
            with urlopen(f"{self.grid.url}/uri/{quote(dircap, safe=':')}?t=json",
                         timeout=300) as r:
                node = json.load(r)
            for name, (kind, info) in sorted(node[1]["children"].items()):
                if not prefix and name == ".lafs-backup-root":
                    continue
                if "/" in name or name in (".", "..") or "\t" in name or "\n" in name:
                    raise BenchError("unexpected edge name in the benchmark's own backup")
                child = info.get("ro_uri") or info.get("rw_uri")
                if kind == "dirnode":
                    walk(child, prefix + name + "/")
                elif kind == "filenode":
                    lines.append(f"{child}\t{prefix}{name}")

        walk(cap, "")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines[-last:] if last else lines) + "\n")
        return {"files": len(lines), "dirs": dirs}

    def raw_get(self, listing, target, threads, label):
        cmd = [self.raw_get_bin, "--threads", threads, "--out", target, self.grid.url, listing]
        return self._run_raw(cmd, label, "raw_get")

    def find_walk(self, tree, label):
        _, err = self._paths(label)
        cmd = ["find", tree, "-printf", "%m %n %U %G %s %T@ %C@ %p\\n"]
        with open(os.devnull, "wb") as null:
            res = run_measured(cmd, null, err)
        check_rc(res, "find", err)
        return res


# ----------------------------------------------------------------- report


def status(ok, quick, applicable=True, why=None):
    if not applicable:
        return f"not measured ({why})"
    if ok is None:
        return f"not measured ({why or 'missing'})"
    s = "met" if ok else "NOT met"
    return f"{s} (quick run: indicative only)" if quick else s


def walls(runs):
    return [r["wall"] for r in runs or []]


def cost_cols(runs):
    """The client CPU s | grid CPU s | client peak RSS MiB cells of runs."""
    gc = [r["grid_cpu"] for r in runs if r.get("grid_cpu") is not None]
    return (f"{median([r['cpu'] for r in runs]):.2f} | {fmt_s(median(gc)) if gc else '—'} | "
            f"{fmt_mib(max(r['maxrss_kib'] for r in runs))}")


RUN_TABLE_HEAD = ("| run | wall s (median) | files/s | MiB/s | client CPU s | grid CPU s | "
                  "client peak RSS MiB | notes |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def gateway_costs(L, R, first):
    """The section on what lafs-backup's first backup costs the gateway
    beyond the raw ceiling's PUTs of the same files, suspect by suspect."""
    off, raw, on = first.get("lafs_off"), first.get("raw"), first.get("lafs_on")
    if not (off and raw):
        return
    L.append("### Where the gateway's time goes (issue 16 item 4)")
    L.append("")
    L.append("| suspect | measured | share of lafs-backup's grid CPU (compression off) |")
    L.append("| --- | --- | ---: |")

    def med(runs, key):
        xs = [r[key] for r in runs if r.get(key) is not None]
        return median(xs) if xs else None

    g_off, g_raw, g_on = med(off, "grid_cpu"), med(raw, "grid_cpu"), med(on or [], "grid_cpu")
    if g_off is None or g_raw is None:
        return

    def share(x):
        return f"{100 * x / g_off:.1f} %" if g_off else "—"

    extra = g_off - g_raw
    L.append(f"| grid CPU, lafs-backup (off / on) against raw_put | {g_off:.2f} s / "
             f"{fmt_s(g_on)} s against {g_raw:.2f} s: {extra:+.2f} s | {share(extra)} |")
    dirs = (off[0].get("summary") or {}).get("dirs_created")
    mk = R.get("mkdir")
    if mk and dirs is not None:
        est = mk["per_dir"] * dirs
        L.append(f"| directory creations: {dirs} `mkdir-immutable` per backup × "
                 f"{mk['per_dir'] * 1000:.1f} ms each (the backup's own {mk['n']} directories, "
                 f"{mk['children']} children, posted again one at a time) | {est:.2f} s | "
                 f"{share(est)} |")
    fixed = R.get("fixed")
    if fixed:
        fg = med(fixed, "grid_cpu")
        L.append(f"| fixed per-run work: grid probe upload (new cache), server checks, the root "
                 f"directory (a backup of an empty tree, {median(walls(fixed)):.2f} s wall) | "
                 f"{fmt_s(fg)} s | {share(fg) if fg is not None else '—'} |")
    i_off, i_raw = med(off, "grid_idle"), med(raw, "grid_idle")
    if i_off is not None and i_raw is not None:
        L.append(f"| ordering and concurrency gaps: grid idle time, lafs-backup against raw_put "
                 f"(largest first) | {i_off:.2f} s against {i_raw:.2f} s ({i_off - i_raw:+.2f} s "
                 "of wall time) | — |")
    c_off, c_on, c_raw = med(off, "cpu"), med(on or [], "cpu"), med(raw, "cpu")
    L.append(f"| client CPU (reads, hashing, the content probe and the re-read while sending; it "
             f"competes with the gateway for the cores): lafs-backup off / on against raw_put | "
             f"{c_off:.2f} s / {fmt_s(c_on)} s against {c_raw:.2f} s | — |")
    L.append("")


def report(args, facts, grid_info, conc, R):
    L = []
    q = args.quick
    sizes = R["sizes"]
    main_n, growth_n, tahoe_n = sizes["main"], sizes["growth"], sizes["tahoe"]
    scale_n = sizes.get("scale")
    rescan = R["rescan"]
    L.append(f"# lafs-backup benchmark, {facts['date_utc']}" + ("  (--quick)" if q else ""))
    L.append("")
    L.append(f"* machine: {facts['nproc']} CPUs available ({facts['cpu_count']} online), "
             f"{facts['model']}, {facts['mem_total']} RAM, Linux {facts['kernel']}, "
             f"Python {facts['python']}")
    la = facts["loadavg_start"]
    lb = facts.get("loadavg_end", (float("nan"),) * 3)
    L.append(f"* load average at start {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, "
             f"at end {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}; whole run {R['total_seconds']:.0f} s")
    L.append(f"* grid: {grid_info['shape']} shape: nodes {grid_info['nodes']}; storage "
             f"{grid_info['storage_nodes']}; shares {grid_info['shares']}; "
             f"storage protocol {grid_info['protocol']}; tahoe-lafs 1.20.0")
    L.append(f"* lafs-backup {facts['git']} (release build), concurrency {conc['value']} "
             f"({conc['source']}); raw ceiling with {conc['raw_threads']} keep-alive connections")
    if conc.get("note"):
        L.append(f"* note: {conc['note']}")
    mx = R["mixed_info"]
    L.append(f"* mixed tree: {mx['files']} files ({mx['small']} of 100 B..16 KiB in dirs of 100, "
             f"{mx['big']} × {args.big_mb} MiB), {mx['dirs']} dirs, {mx['bytes'] / MIB:.1f} MiB; "
             f"{args.first_runs} round(s) of first runs, each run on content of its own (same "
             f"layout, another seed), the second round in reverse order; the grid was warmed up "
             f"first with {R['warmup_info']['files']} files by raw_put")
    for n in sorted(rescan, key=int, reverse=True):
        t = rescan[n]["info"]
        roles = [role for role, v in (("main", main_n), ("scale", scale_n),
                                      ("RSS growth base", growth_n),
                                      ("tahoe comparison", tahoe_n)) if str(v) == n]
        L.append(f"* rescan tree {int(n):,} ({', '.join(roles)}): {t['files']} files "
                 f"(25 % empty, others 1..55 B, at most 1,000 per dir), {t['dirs']} dirs, "
                 f"{t['entries']} entries; backed up with the default config (zstd, "
                 f"concurrency {conc['value']}); one-file-changed runs rewrite {t['changed']} "
                 "with 64 new bytes each")
    L.append(f"* short measurements: median of {args.repeat} runs (min in brackets); first runs: "
             f"median of {args.first_runs}; all runs --noise-free (log level warning) unless "
             "marked; page cache warm")
    L.append("")

    # First backups
    L.append("## First backup of the mixed tree")
    L.append("")
    L.append(RUN_TABLE_HEAD)
    first = R["first"]

    def first_row(label, runs, note=""):
        if not runs:
            L.append(f"| {label} | — | | | | | | not run |")
            return
        w = median(walls(runs))
        each = ", ".join(f"{x:.1f}" for x in walls(runs))
        idle = [r["grid_idle"] for r in runs if r.get("grid_idle") is not None]
        idle_note = f"; grid idle {median(idle):.2f} s" if idle else ""
        L.append(f"| {label} | {w:.2f} | {mx['files'] / w:.1f} | {mx['bytes'] / MIB / w:.2f} | "
                 f"{cost_cols(runs)} | runs {each} s{idle_note}{note} |")

    def lafs_note(runs):
        r = runs[0] if runs else None
        if not r or "summary" not in r or "scan" not in r:
            return ""
        sm = r["summary"]
        return (f"; {sm['files_uploaded']} files + {sm['dirs_created']} dirs uploaded; scan "
                f"{median([x['scan']['seconds'] for x in runs]):.3f} s, upload phase "
                f"{median([x['summary']['seconds'] for x in runs]):.2f} s")

    first_row("lafs-backup, compression off", first.get("lafs_off"), lafs_note(first.get("lafs_off")))
    t = (first.get("tahoe") or [None])[0]
    first_row("`tahoe backup`", first.get("tahoe"),
              f"; {t['tahoe']['files_uploaded']} files uploaded, {t['tahoe']['dirs_created']} dirs "
              "created" if t and "tahoe" in t else "")
    first_row(f"raw ceiling (raw_put, {conc['raw_threads']} conns)", first.get("raw"),
              "; files only, no directories, whole files in memory")
    first_row("lafs-backup, compression on (default config)", first.get("lafs_on"),
              lafs_note(first.get("lafs_on")))
    L.append("")
    L.append("\"grid idle\": the time the grid's processes used less than one core together "
             "(sampled every 0.1 s): the gateway waiting for requests, or for a CPU when the "
             "machine is loaded.")
    L.append("")
    gateway_costs(L, R, first)

    # Restore
    rs = R.get("restore") or {}
    L.append("## Restore of the mixed tree")
    L.append("")
    L.append(f"Each round restores that round's compression-off lafs-backup backup ({mx['files']} "
             f"files, {mx['dirs']} dirs) three ways, each into a new directory on the same file "
             "system, in the order below (the second round in reverse order): `lafs-backup restore "
             f"--gateway URL --concurrency {conc.get('restore', conc['value'])} CAP TARGET`; "
             "`tahoe cp -r DIRCAP TARGET` (one file at a time; no metadata); the raw ceiling: "
             f"raw_get fetching the same file caps with {conc['raw_threads']} keep-alive `GET`s "
             "and writing them to files (no listing, no metadata, no temporary names). `sync` "
             "before each run, not timed. Every restored tree is compared with its source "
             "afterwards (not timed).")
    L.append("")
    L.append(RUN_TABLE_HEAD)

    def check_note(runs):
        bad = [r["check"] for r in runs if not r.get("check", {}).get("ok", True)]
        checked = runs[0].get("check", {}).get("checked") if runs else None
        if bad:
            c = bad[0]
            return (f"; restored tree DIFFERS from the source in {len(bad)} of {len(runs)} runs "
                    f"({c['problem_count']} problems, e.g. {'; '.join(c['problems'][:2])})")
        return f"; every run identical to the source ({checked})" if checked else ""

    first_row("lafs-backup restore", rs.get("lafs"), check_note(rs.get("lafs") or []))
    first_row("`tahoe cp -r`", rs.get("tahoe_cp"),
              check_note(rs.get("tahoe_cp") or []) + " (plus an empty `.lafs-backup-root` file)")
    first_row(f"raw ceiling (raw_get, {conc['raw_threads']} conns)", rs.get("raw"),
              check_note(rs.get("raw") or []) + "; files only, written as they arrive")
    dry = rs.get("lafs_dry")
    if dry:
        w = walls(dry)
        L.append(f"| lafs-backup restore --dry-run (listing only, info) | {median(w):.2f} | | | "
                 f"{cost_cols(dry)} | runs {', '.join(f'{x:.2f}' for x in w)} s; lists the "
                 f"{mx['dirs']} directories and plans; writes nothing |")
    L.append("")

    # Re-runs
    L.append("## Unchanged re-runs")
    L.append("")
    L.append("lafs-backup re-runs are `backup -f` (scan, then the upload phase, which finds "
             "everything in the entry cache); \"rest\" is the wall time outside both phases "
             "(start-up, config, opening the cache, the grid probe check).")
    L.append("")
    L.append("| run | entries | wall s | µs/entry | scan s | upload phase s | rest s | "
             "peak RSS MiB |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def rerun_row(label, runs, entries, rss=True):
        if not runs:
            L.append(f"| {label} | {entries} | — | | | | | |")
            return
        w = walls(runs)
        scans = [r["scan"]["seconds"] for r in runs if "scan" in r]
        ups = [r["summary"]["seconds"] for r in runs if "summary" in r]
        rest = [r["wall"] - r.get("scan", {}).get("seconds", 0)
                - r.get("summary", {}).get("seconds", 0) for r in runs]
        sc = f"{median(scans):.3f}" if scans else "—"
        up = f"{median(ups):.3f}" if ups else "—"
        rs = fmt_mib(max(r["maxrss_kib"] for r in runs)) if rss else "—"
        L.append(f"| {label} | {entries} | {median(w):.3f} ({min(w):.3f}) | "
                 f"{median(w) / entries * 1e6:.1f} | {sc} | {up} | {median(rest):.3f} | {rs} |")

    mx_entries = mx["files"] + mx["dirs"]
    rerun_row("lafs-backup re-run, mixed tree", R["rerun_mixed"].get("lafs"), mx_entries)
    rerun_row("`tahoe backup` re-run, mixed tree", R["rerun_mixed"].get("tahoe"), mx_entries)
    for n in sorted(rescan, key=int, reverse=True):
        d = rescan[n]
        e = d["info"]["entries"]
        tag = f"{int(n):,} tree"
        rerun_row(f"lafs-backup re-run, {tag}", d.get("lafs_rerun"), e)
        if d.get("changed"):
            rerun_row(f"lafs-backup re-run, one file changed, {tag}", d["changed"], e)
        if d.get("queue_only"):
            rerun_row(f"lafs-backup `backup -f --queue-only` (scan only), {tag}", d["queue_only"], e)
        if d.get("noise"):
            rerun_row(f"lafs-backup re-run with --noise (info), {tag}", [d["noise"]], e)
        rerun_row(f"`find` stat walk, {tag}", d.get("find"), e, rss=False)
        if d.get("tahoe_rerun"):
            rerun_row(f"`tahoe backup` re-run, {tag}", d["tahoe_rerun"], e)
    L.append("")
    L.append("First runs, restore, verify and check of the rescan trees (each of the last "
             "backup, with the default config; restore into a new directory on the same file "
             "system, removed afterwards; verify against the tree itself; check = deep check "
             "renewing leases):")
    L.append("")
    L.append("| run | tree | wall s | client CPU s | grid CPU s | peak RSS MiB | notes |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for n in sorted(rescan, key=int, reverse=True):
        d = rescan[n]
        for key, who in (("lafs_first", "lafs-backup first backup"),
                         ("tahoe_first", "`tahoe backup` first run"),
                         ("restore", "lafs-backup restore"), ("verify", "lafs-backup verify"),
                         ("check", "lafs-backup check")):
            r = d.get(key)
            if not r:
                continue
            note = f"exit {r['rc']}"
            if key == "restore":
                note += f"; {r.get('restored_files', '?')} files restored"
            elif key == "verify":
                note += " (0: identical)" if r["rc"] == 0 else " (DIFFERENCES, see its log)"
            elif key == "check":
                note += " (0: healthy)" if r["rc"] == 0 else " (UNHEALTHY, see its log)"
            L.append(f"| {who} | {int(n):,} | {r['wall']:.2f} | {r['cpu']:.2f} | "
                     f"{fmt_s(r.get('grid_cpu'))} | {fmt_mib(r['maxrss_kib'])} | {note} |")
    if scale_n and args.no_tahoe_rescan is False:
        L.append("")
        L.append(f"`tahoe backup` does not run on the {scale_n:,}-file tree: its first run costs "
                 "2.6-18 ms per file here, hours for that tree.")
    L.append("")

    # Ratios and targets
    L.append("## Ratios and targets")
    L.append("")
    L.append("| measure | value | target | status |")
    L.append("| --- | ---: | --- | --- |")
    fast = args.shape == "fast"
    why_shape = "the targets are for the fast grid"
    ratios = {}

    def ratio(key, num, den):
        """Median wall time of runs num / that of runs den, saved as
        ratios[key] (if key); None if either is missing."""
        if not (num and den):
            return None
        v = median(walls(num)) / median(walls(den))
        if key:
            ratios[key] = v
        return v

    off, raw, tb, on = (first.get(k) for k in ("lafs_off", "raw", "tahoe", "lafs_on"))
    if (v := ratio("first_vs_tahoe", tb, off)) is not None:
        L.append(f"| first backup, compression off: `tahoe backup` time / lafs-backup time | {v:.2f}× | "
                 f"≥ 1.2× (stretch 1.5×) | {status(v >= 1.2, q, fast, why_shape)}"
                 f"{'; stretch met' if v >= 1.5 and fast else ''} |")
    for key, runs, how in (("first_vs_raw", off, "compression off"),
                           ("first_on_vs_raw", on, "compression on (default config)")):
        if (v := ratio(key, raw, runs)) is None:
            continue
        # Round by round (the same round's raw run against this one): the
        # target holds only if it holds in every round.
        rounds = [r["wall"] / x["wall"] for r, x in zip(raw, runs)]
        ratios[key + "_rounds"] = rounds
        each = ", ".join(f"{x:.2f}" for x in rounds)
        L.append(f"| first backup, {how}: raw ceiling time / lafs-backup time (rounds: {each}) | "
                 f"{v:.2f} | ≥ 0.9 in every round | "
                 f"{status(min(rounds) >= 0.9, q, fast, why_shape)} |")
    if (v := ratio("compress_on_vs_off", on, off)) is not None:
        L.append(f"| first backup: compression on / off time (info) | {v:.2f}× | — | info |")
        if tb:
            L.append("| first backup, compression on: `tahoe backup` time / lafs-backup time (info) | "
                     f"{ratio(None, tb, on):.2f}× | — | info |")
    rl, rt, rr = (rs.get(k) for k in RESTORE_KINDS)
    lafs_ok = bool(rl) and all(r.get("check", {}).get("ok", True) for r in rl)

    def restore_status(ok):
        if fast and not lafs_ok:
            return "NOT met (lafs-backup's restored tree differs from the source)"
        return status(ok, q, fast, why_shape)

    if (v := ratio("restore_vs_tahoe_cp", rt, rl)) is not None:
        L.append(f"| restore: `tahoe cp -r` time / lafs-backup restore time | {v:.2f}× | ≥ 2× | "
                 f"{restore_status(v >= 2)} |")
    if (v := ratio("restore_vs_raw", rr, rl)) is not None:
        L.append(f"| restore: raw ceiling (GET) time / lafs-backup restore time | {v:.2f} | ≥ 0.8 | "
                 f"{restore_status(v >= 0.8)} |")
    # The rescan targets, for the main tree and (with --scale) the scale tree.
    big_sizes = [n for n in (main_n, scale_n) if n]

    def applies(n):
        """(applicable, why not) of a rescan target measured on n files."""
        if not fast:
            return False, why_shape
        if n < 100_000 and not q:
            return False, "tree smaller than 100,000"
        return True, None

    for n in big_sizes:
        d = rescan[str(n)]
        ok, why = applies(n)
        suffix = "" if n == main_n else f"_{n}"
        if (v := ratio("rerun_vs_find" + suffix, d.get("lafs_rerun"), d.get("find"))) is not None:
            L.append(f"| unchanged re-run of the {n:,}-file tree: lafs-backup time / `find` time | "
                     f"{v:.1f}× | ≤ 3× (stretch ≤ 2×) | {status(v <= 3, q, ok, why)}"
                     f"{'; stretch met' if v <= 2 and ok else ''} |")
        if (v := ratio("changed_vs_rerun" + suffix, d.get("changed"), d.get("lafs_rerun"))) is not None:
            L.append(f"| one-file-changed re-run / unchanged re-run, {n:,}-file tree | {v:.2f}× | "
                     f"≤ 1.2× | {status(v <= 1.2, q, ok, why)} |")
        if n == tahoe_n:
            if (v := ratio("rerun_vs_tahoe", d.get("tahoe_rerun"), d.get("lafs_rerun"))) is not None:
                L.append(f"| unchanged re-run of the {n:,}-file tree: `tahoe backup` time / "
                         f"lafs-backup time | {v:.1f}× | ≥ 10× | {status(v >= 10, q, ok, why)} |")
        elif n == scale_n:
            L.append(f"| unchanged re-run of the {n:,}-file tree: `tahoe backup` time / lafs-backup "
                     "time | — | — | not measured (`tahoe backup` of this tree takes hours) |")
    if tahoe_n not in big_sizes:
        dt = rescan[str(tahoe_n)]
        if (v := ratio("rerun_vs_tahoe", dt.get("tahoe_rerun"), dt.get("lafs_rerun"))) is not None:
            L.append(f"| unchanged re-run: `tahoe backup` time / lafs-backup time (at {tahoe_n:,} "
                     f"files, not 100,000) | {v:.1f}× | ≥ 10× at 100,000 | "
                     f"{status(v >= 10, q, fast, why_shape)} |")
    if args.no_tahoe_rescan:
        L.append("| re-run: `tahoe backup` time / lafs-backup time | — | ≥ 10× | "
                 "not measured (--no-tahoe-rescan) |")
    if (v := ratio(None, R["rerun_mixed"].get("tahoe"), R["rerun_mixed"].get("lafs"))) is not None:
        L.append(f"| re-run of the mixed tree: `tahoe backup` / lafs-backup (info) | {v:.1f}× | — | info |")

    # Peak RSS of each command on each tree, and its growth from the RSS
    # growth base (N/5, or the main tree with --scale) to the largest tree.
    def command_runs(d, cmd):
        if cmd == "backup":
            return [d[k] for k in ("lafs_first", "noise") if d.get(k)] + \
                (d.get("lafs_rerun") or []) + (d.get("changed") or []) + (d.get("queue_only") or [])
        return [d[cmd]] if d.get(cmd) else []

    top = max(big_sizes)
    for cmd in ("backup", "restore", "verify", "check"):
        peaks = {}
        for n in sorted({growth_n, *big_sizes}):
            runs = command_runs(rescan[str(n)], cmd)
            if runs:
                peaks[n] = max(r["maxrss_kib"] for r in runs)
        for n in big_sizes:
            if n not in peaks:
                continue
            peak = peaks[n]
            ratios[f"peak_rss_mib_{cmd}_{n}"] = peak / 1024
            if cmd == "backup" and n == main_n:
                ratios["peak_rss_mib"] = peak / 1024
            L.append(f"| peak RSS of `{cmd}` on the {n:,}-file tree"
                     f"{' (all its runs)' if cmd == 'backup' else ''} | {peak / 1024:.1f} MiB | "
                     f"< 64 MiB | {status(peak < 64 * 1024, q, n >= 100_000 or q, 'tree smaller than 100,000')} |")
        if growth_n != top and growth_n in peaks and top in peaks:
            sp, peak = peaks[growth_n], peaks[top]
            ratios[f"rss_growth_{cmd}"] = peak / sp
            if cmd == "backup":
                ratios["rss_growth"] = peak / sp
            L.append(f"| peak RSS of `{cmd}` from {growth_n:,} to {top:,} files | "
                     f"{fmt_mib(sp)} → {fmt_mib(peak)} MiB ({peak / sp:.2f}×) | not growing with "
                     f"entries (≤ 1.1× + 2 MiB) | {status(peak <= sp * 1.1 + 2048, q)} |")
    L.append("")
    return "\n".join(L), ratios


# ----------------------------------------------------------------- main


def parse_args():
    p = argparse.ArgumentParser(
        prog="scripts/bench", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("fast", "3n"), default="fast",
                   help="grid shape: fast = introducer + one gateway/storage node, 1-of-1, foolscap "
                        "(default; the targets are for it); 3n = 3 storage nodes + gateway, 2-of-3, HTTPS")
    p.add_argument("--quick", action="store_true",
                   help="small trees for a smoke run (200 files + 3 × 1 MiB; rescan trees of 5,000, "
                        "1,000 and 2,000 files; one round of first runs, 2 repeats); the targets are "
                        "then indicative only")
    p.add_argument("--big-mb", type=int, default=None, metavar="N",
                   help="size of each of the 3 big files of the mixed tree in MiB (default 32; quick 1; 0: none)")
    p.add_argument("--files", type=int, default=None, metavar="N",
                   help="small files in the mixed tree (default 2000; quick 200)")
    p.add_argument("--rescan-entries", type=int, default=None, metavar="N",
                   help="files in the rescan tree (default 100000; quick 5000). A tree of N/5 files "
                        "is measured too, to see whether time per entry and RSS grow with N")
    p.add_argument("--tahoe-rescan-entries", type=int, default=None, metavar="N",
                   help="files in the rescan-kind tree used for the `tahoe backup` re-run comparison "
                        "(default 20000; quick 2000; at most --rescan-entries). tahoe's first run of "
                        "it, needed before its re-run, took 2.6-18 ms per file here depending on the "
                        "load, so 100000 adds 5-30 minutes")
    p.add_argument("--scale", action="store_true",
                   help="add the scale tree: a rescan-kind tree of --scale-entries files "
                        "(1,000,000), measured as the main one (first backup, re-runs against "
                        "find, one-file-changed re-runs, restore, verify, check, peak RSS; not "
                        "`tahoe backup`, far too slow there); RSS growth is then seen from the "
                        "main tree to it, and `tahoe backup` runs on the main tree "
                        "(--tahoe-rescan-entries defaults to --rescan-entries). Takes 30-60 "
                        "minutes more; the tree is built once (a few minutes) and reused")
    p.add_argument("--scale-entries", type=int, default=1_000_000, metavar="N",
                   help="files in the --scale tree (default 1000000)")
    p.add_argument("--no-tahoe-rescan", action="store_true",
                   help="skip `tahoe backup` on the rescan-kind tree; the ≥10× target is then not measured")
    p.add_argument("--first-runs", type=int, default=None, metavar="N",
                   help="rounds of first backups of the mixed tree, each on fresh content (default 2; "
                        "quick 1), and of restores of those backups; the median is used")
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="runs of each short measurement (re-runs, scan-only, find); the median is used "
                        "(default 3; quick 2)")
    p.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="lafs-backup upload concurrency (default: the config default, "
                        "operation.concurrency); passed as --concurrency when the binary has it, "
                        "else written to the config; restore always gets --concurrency (this, or "
                        "the config default)")
    p.add_argument("--raw-threads", type=int, default=None, metavar="N",
                   help="connections of the raw ceiling clients, raw_put and raw_get (default: "
                        "lafs-backup's concurrency)")
    p.add_argument("--work-dir", type=Path, default=None, metavar="DIR",
                   help="trees, grid, logs and results (default target/bench)")
    p.add_argument("--keep", action="store_true",
                   help="leave the grid running and keep the caches and queues in WORK/run")
    p.add_argument("--mount", action="store_true",
                   help="run only the `mount` case (see above), not the backup/restore benchmark")
    p.add_argument("--mount-mb", type=int, default=200, metavar="N",
                   help="size of the compressed file of the --mount case, in MiB (default 200)")
    p.add_argument("--stream", action="store_true",
                   help="run only the stream case (see above), not the backup/restore benchmark")
    p.add_argument("--stream-mb", type=int, default=1024, metavar="N",
                   help="size of the stream of the --stream case, in MiB (default 1024)")
    p.add_argument("--stream-chunking", default=None, metavar="MIN,AVG,MAX",
                   help="(--stream) chunking sizes in KiB for the stream (default: the "
                        "config's defaults), e.g. 512,2048,4096")
    p.add_argument("--chunked-file", action="store_true",
                   help="run only the chunked-file case (see above), not the backup/restore benchmark")
    p.add_argument("--chunked-mb", type=int, default=200, metavar="N",
                   help="size of the file of the --chunked-file case, in MiB (default 200)")
    p.add_argument("--dump", action="store_true",
                   help="run only the database dump case (see above)")
    p.add_argument("--dump-rows", type=int, default=1_000_000, metavar="N",
                   help="rows of the --dump case's database (default 1000000, ~100 MiB of dump)")
    p.add_argument("--mount-reads", type=int, default=200, metavar="N",
                   help="random 1 MiB reads of each file in the --mount case (default 200)")
    p.add_argument("--native", action="store_true",
                   help="only the native storage case (issue 17): see the description")
    p.add_argument("--no-build", action="store_true",
                   help="(scripts/bench) skip `cargo build --release`")
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--venv", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.root is None or args.venv is None:
        p.error("run through scripts/bench (it passes --root and --venv)")
    q = args.quick

    def dflt(name, full, quick):
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)

    dflt("big_mb", 32, 1)
    dflt("files", 2000, 200)
    dflt("rescan_entries", 100_000, 5_000)
    if args.scale and args.tahoe_rescan_entries is None:
        args.tahoe_rescan_entries = args.rescan_entries
    dflt("tahoe_rescan_entries", 20_000, 2_000)
    dflt("first_runs", 2, 1)
    dflt("repeat", 3, 2)
    args.work = (args.work_dir or args.root / "target" / "bench").resolve()
    for name in ("big_mb", "files", "rescan_entries", "tahoe_rescan_entries", "first_runs",
                 "repeat", "concurrency", "raw_threads", "scale_entries"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "big_mb" else 1):
            p.error(f"--{name.replace('_', '-')} must be positive")
    args.tahoe_rescan_entries = min(args.tahoe_rescan_entries, args.rescan_entries)
    return args


FIRST_KINDS = ("lafs_off", "raw", "tahoe", "lafs_on")
RESTORE_KINDS = ("lafs", "tahoe_cp", "raw")


def rescan_case(bench, args, sizes, d, n, run_dir, restore_dir):
    """Everything measured on the rescan tree of n files, into d: the first
    backup (default config), then interleaved `find` walks, scan-only runs
    (main and scale trees) and unchanged re-runs; one-file-changed re-runs;
    restore, verify and check of the last backup (time and peak RSS); and on
    the tahoe tree `tahoe backup`'s first run and re-runs."""
    tree = d["info"]["path"]
    scan_only = n in (sizes["main"], sizes.get("scale"))
    say(f"rescan tree {n:,}: lafs-backup first run (default config)")
    cfg = bench.lafs_config(f"rescan-{n}", tree, compress=True)
    d["lafs_first"] = bench.lafs(cfg, f"rescan-{n}-lafs-first")
    name = d["lafs_first"].get("summary", {}).get("name")
    say(f"  {d['lafs_first']['wall']:.1f} s; re-runs{', scan-only' if scan_only else ''} "
        f"and find (x{args.repeat})")
    d["lafs_rerun"], d["find"] = [], []
    if scan_only:
        d["queue_only"] = []
    for i in range(args.repeat):
        d["find"].append(bench.find_walk(tree, f"rescan-{n}-find-{i}"))
        if scan_only:
            d["queue_only"].append(bench.lafs(
                cfg, f"rescan-{n}-queue-only-{i}",
                ["-f", "--queue-only", run_dir / f"rescan-{n}-scan-only.queue"]))
        d["lafs_rerun"].append(bench.lafs(cfg, f"rescan-{n}-lafs-rerun-{i}", ["-f"]))
    if n == sizes["main"]:
        d["noise"] = bench.lafs(cfg, f"rescan-{n}-lafs-rerun-noise", ["-f"], noise=True)

    # One file changed between runs: fresh 64 random bytes each time (above
    # the 55-byte literal limit, so it is really uploaded) and a later mtime;
    # the file gets its bytes and times back at the end, so the tree stays
    # the one its marker describes.
    target = Path(tree) / d["info"]["changed"]
    original, st = target.read_bytes(), target.stat()
    d["changed"] = []
    try:
        say(f"rescan tree {n:,}: one-file-changed re-runs (x{args.repeat})")
        for i in range(args.repeat):
            target.write_bytes(random.Random(n * 31 + i).randbytes(64))
            later = st.st_mtime_ns + (i + 1) * 1_000_000_000
            os.utime(target, ns=(st.st_atime_ns, later))
            res = bench.lafs(cfg, f"rescan-{n}-lafs-changed-{i}", ["-f"])
            d["changed"].append(res)
            sm = res.get("summary", {})
            say(f"  {res['wall']:.2f} s; {sm.get('files_uploaded', '?')} files + "
                f"{sm.get('dirs_created', '?')} dirs uploaded")
        if not name:
            raise BenchError(f"no backup name in the summary of rescan-{n}-lafs-first")
        # The last backup (with the last change) against the tree as it is.
        target_dir = restore_dir / f"rescan-{n}"
        os.sync()
        say(f"rescan tree {n:,}: restore of the last backup into {target_dir}")
        d["restore"] = bench.lafs_cmd(cfg, ["restore", name, target_dir], f"rescan-{n}-restore",
                                      f"lafs-backup restore (rescan {n})")
        files = sum(len(names) for _, _, names in os.walk(target_dir))
        d["restore"]["restored_files"] = files
        say(f"  {d['restore']['wall']:.1f} s, {files} files restored; removing it")
        remove_tree(target_dir)
        say(f"rescan tree {n:,}: verify of the last backup against the tree")
        d["verify"] = bench.lafs_cmd(cfg, ["verify", name, tree], f"rescan-{n}-verify",
                                     f"lafs-backup verify (rescan {n})", ok_codes=(0, 4))
        say(f"  {d['verify']['wall']:.1f} s, exit {d['verify']['rc']}")
        say(f"rescan tree {n:,}: check of the last backup (deep check, leases)")
        d["check"] = bench.lafs_cmd(cfg, ["check", name], f"rescan-{n}-check",
                                    f"lafs-backup check (rescan {n})", ok_codes=(0, 4))
        say(f"  {d['check']['wall']:.1f} s, exit {d['check']['rc']}")
    finally:
        target.write_bytes(original)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    if n == sizes["tahoe"] and not args.no_tahoe_rescan:
        say(f"rescan tree {n:,}: tahoe backup first run (slow: 2.6-18 ms per file)")
        d["tahoe_first"] = bench.tahoe_backup(tree, f"rescan{n}", f"rescan-{n}-tahoe-first")
        say(f"  {d['tahoe_first']['wall']:.1f} s; re-runs (x{args.repeat})")
        d["tahoe_rerun"] = [bench.tahoe_backup(tree, f"rescan{n}", f"rescan-{n}-tahoe-rerun-{i}")
                            for i in range(args.repeat)]


def round_order(kinds, rnd):
    """The order of round rnd (from 0): every second round in reverse."""
    return kinds if rnd % 2 == 0 else tuple(reversed(kinds))


# ----------------------------------------------------------------- mount


def mount_tree(trees, mb):
    """A tree of one compressible text file of mb MiB (big.txt: lines of
    words drawn from a small vocabulary, so zstd compresses it about 3-4x
    without long repeats) and a 32 MiB random file (random.bin)."""
    params = {"format": TREE_FORMAT, "kind": "mount", "mb": mb}

    def fill(root):
        rng = random.Random(LAYOUT_SEED)
        words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                 for _ in range(4096)]
        with open(root / "big.txt", "wb") as f:
            left, n = mb * MIB, 0
            while left > 0:
                lines = []
                for _ in range(4096):
                    n += 1
                    lines.append(f"{n:09d} " + " ".join(rng.choices(words, k=10)) + "\n")
                block = "".join(lines).encode()[:left]
                f.write(block)
                left -= len(block)
        with open(root / "random.bin", "wb") as f:
            f.write(rng.randbytes(32 * MIB))

    return build_tree(trees, f"mount-{mb}", params, fill)


def is_mountpoint(path):
    target = str(Path(path).resolve())
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == target for line in f)


def save_case_report(args, kind, lines, facts, runs):
    """Prints a single case's report (--mount, --stream) and saves it with
    its runs as WORK/results/KIND-STAMP.md and .json."""
    text = "\n".join(lines)
    print(text)
    results = args.work / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{kind}-{stamp}.md").write_text(text + "\n")
    (results / f"{kind}-{stamp}.json").write_text(
        json.dumps({"facts": facts, "runs": runs}, indent=1, default=str) + "\n")
    say(f"done in {time.monotonic() - T0:.0f} s; report: {results}/{kind}-{stamp}.md")


def mount_main(args, facts, trees, run_dir):
    """The --mount case: see DESCRIPTION."""
    src = mount_tree(trees, args.mount_mb)
    grid = Grid(args)
    R = {"tree": {"path": str(src), "text_mib": args.mount_mb, "random_mib": 32}}
    point = run_dir / "mnt"
    point.mkdir()
    try:
        grid.start()
        bench = Bench(args, grid)
        cfg = run_dir / "mount.yaml"
        cfg.write_text("\n".join(config_head(run_dir, "mount", grid.url, src) + [
            "  encoding:\n    codec: zstd\n    xz:\n      path_filter:\n        - [0, '\\.txt$']",
        ]) + "\n")
        say(f"backing up {args.mount_mb} MiB of text (zstd) and 32 MiB of random bytes")
        R["backup"] = bench.lafs(cfg, "mount-backup")
        say(f"  {R['backup']['wall']:.1f} s")

        holder = {}
        out, err = bench._paths("mount")
        cmd = [bench.bin, "-c", cfg, "--debug", "mount", "--cache-dir", run_dir, point]
        runner = threading.Thread(target=lambda: holder.update(res=run_measured(cmd, out, err)))
        runner.start()
        t0 = time.monotonic()
        while not is_mountpoint(point):
            if not runner.is_alive() or time.monotonic() - t0 > 60:
                runner.join(10)
                raise BenchError(f"lafs-backup mount did not mount (log: {err})")
            time.sleep(0.05)
        R["mount_seconds"] = time.monotonic() - t0
        name = src.name
        backups = [p for p in (point / name).iterdir() if p.name != "latest"]
        root = backups[0]
        rng = random.Random(7)
        try:
            for fname in ("big.txt", "random.bin"):
                size = (src / fname).stat().st_size
                with open(src / fname, "rb") as want_f:
                    t0 = time.monotonic()
                    with open(root / fname, "rb") as f:
                        first = f.read(MIB)
                        opened = time.monotonic() - t0
                        if first != want_f.read(MIB):
                            raise BenchError(f"{fname}: the first MiB differs from the source")
                        t1 = time.monotonic()
                        for _ in range(args.mount_reads):
                            at = rng.randrange(0, max(1, size - MIB))
                            f.seek(at)
                            got = f.read(MIB)
                            want_f.seek(at)
                            if got != want_f.read(MIB):
                                raise BenchError(f"{fname}: 1 MiB at {at} differs from the source")
                        reads = time.monotonic() - t1
                R[fname] = {"size": size, "first_open_read": opened, "reads": args.mount_reads,
                            "reads_seconds": reads}
                say(f"  {fname}: open + first MiB {opened:.2f} s; {args.mount_reads} random 1 MiB "
                    f"reads {reads:.2f} s; all match the source")
        finally:
            subprocess.run(["fusermount3", "-u", str(point)])
            runner.join(60)
        res = holder.get("res")
        if res is None or res["rc"] != 0:
            raise BenchError(f"lafs-backup mount did not end cleanly (log: {err})")
        R["mount"] = res
        say(f"  mount process: peak RSS {fmt_mib(res['maxrss_kib'])} MiB ({res['maxrss_method']}), "
            f"CPU {res['cpu']:.1f} s")
    except BenchError as e:
        say(f"error: {e}")
        if is_mountpoint(point):
            subprocess.run(["fusermount3", "-u", "-z", str(point)])
        grid.stop()
        return 1
    grid.stop()

    rss = R["mount"]["maxrss_kib"]
    lines = [
        "# lafs-backup mount benchmark",
        "",
        f"{facts['date_utc']}, commit {facts['git']}, {facts['model']} ({facts['nproc']} CPUs "
        f"available), {facts['mem_total']}, kernel {facts['kernel']}; grid: {args.shape}",
        "",
        "| what | result |",
        "| --- | --- |",
        f"| backup of {args.mount_mb} MiB text (zstd) + 32 MiB random | {fmt_s(R['backup']['wall'])} s |",
        f"| mount until ready | {fmt_s(R['mount_seconds'])} s |",
    ]
    for fname, how in (("big.txt", "zstd: decoded into the disk cache on open"),
                       ("random.bin", "stored as it is: ranged reads")):
        r = R[fname]
        lines += [
            f"| {fname} ({r['size'] // MIB} MiB, {how}): open + first 1 MiB | {fmt_s(r['first_open_read'])} s |",
            f"| {fname}: {r['reads']} random 1 MiB reads (each compared) | {fmt_s(r['reads_seconds'])} s |",
        ]
    lines.append(f"| peak RSS of the mount process ({R['mount']['maxrss_method']}) | "
                 f"{fmt_mib(rss)} MiB ({'PASS' if rss is not None and rss < 64 * 1024 else 'FAIL'}: "
                 "target under 64 MiB) |")
    save_case_report(args, "mount", lines, facts, R)
    return 0


# ----------------------------------------------------------------- stream


def stream_input(trees, mb, insert_mib=0):
    """WORK/trees/stream-MB[-insN]/stream.bin: MB MiB of random bytes (seeded,
    reused), optionally with insert_mib MiB of other random bytes inserted in
    the middle."""
    params = {"format": TREE_FORMAT, "kind": "stream", "mb": mb, "insert": insert_mib}

    def fill(root):
        rnd = random.Random(11)
        half = mb * MIB // 2
        with open(root / "stream.bin", "wb") as f:
            for i in range(mb):
                if insert_mib and i * MIB == half:
                    ins = random.Random(12)
                    for _ in range(insert_mib):
                        f.write(ins.randbytes(MIB))
                f.write(rnd.randbytes(MIB))

    name = f"stream-{mb}" + (f"-ins{insert_mib}" if insert_mib else "")
    return build_tree(trees, name, params, fill) / "stream.bin"


def summary_of(res, out):
    """res["summary"]: the (last) `summary` line of a `--json backup`'s
    stdout file, without its root cap."""
    for line in Path(out).read_text().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("type") == "summary":
            obj.pop("root_cap", None)  # a cap is a secret, even here
            res["summary"] = obj


def stream_main(args, facts, trees, run_dir):
    """The --stream case: see DESCRIPTION."""
    data = stream_input(trees, args.stream_mb)
    changed = stream_input(trees, args.stream_mb, insert_mib=1)
    grid = Grid(args)
    R = {"mib": args.stream_mb}
    extra, max_size = [], 4 * MIB
    if args.stream_chunking:
        lo, avg, hi = (int(v) * 1024 for v in args.stream_chunking.split(","))
        extra = ["chunking:", f"  min_size: {lo}", f"  avg_size: {avg}", f"  max_size: {hi}"]
        max_size = hi
        R["chunking"] = [lo, avg, hi]
    if args.concurrency:
        extra += ["operation:", f"  concurrency: {args.concurrency}"]
        R["concurrency"] = args.concurrency
    try:
        grid.start()
        bench = Bench(args, grid)
        cfg = run_dir / "stream.yaml"
        cfg.write_text("\n".join(config_head(run_dir, "stream", grid.url) + [
            "  result:\n    print_to_stdout: false",
        ] + extra) + "\n")
        R["load_before"] = os.getloadavg()
        say(f"raw PUT of the {args.stream_mb} MiB as one object (the ceiling)")
        grid_cpu = grid.cpu_seconds()
        R["raw_put"] = bench.raw_put(data.parent, "1", "stream-raw-put")
        R["raw_put"]["grid_cpu"] = grid.cpu_seconds() - grid_cpu
        say(f"  {R['raw_put']['wall']:.1f} s, CPU: client {R['raw_put']['cpu']:.1f} s, "
            f"grid {R['raw_put']['grid_cpu']:.1f} s")

        def store(label, path):
            cmd = [bench.bin, "-c", cfg, "--json", "backup", "--stdin", "bench-stream"]
            out, err = bench._paths(label)
            grid_cpu = grid.cpu_seconds()
            res = run_measured(cmd, out, err, stdin=path)
            res["grid_cpu"] = grid.cpu_seconds() - grid_cpu
            check_rc(res, f"backup --stdin ({label})", err)
            summary_of(res, out)
            say(f"  {label}: {res['wall']:.1f} s, peak RSS {fmt_mib(res['maxrss_kib'])} MiB, "
                f"uploaded {res.get('summary', {}).get('bytes_uploaded', '?')} bytes, "
                f"CPU: client {res['cpu']:.1f} s, grid {res['grid_cpu']:.1f} s")
            return res

        say(f"backup --stdin of {args.stream_mb} MiB of random bytes")
        R["first"] = store("stream-first", data)
        R["rerun"] = store("stream-rerun", data)
        R["insert"] = store("stream-insert", changed)
    except BenchError as e:
        say(f"error: {e}")
        grid.stop()
        return 1
    grid.stop()

    ratio = R["raw_put"]["wall"] / R["first"]["wall"] if R["first"]["wall"] else None
    rss = R["first"]["maxrss_kib"]
    ins = R["insert"].get("summary", {}).get("bytes_uploaded")
    bound = MIB + 3 * max_size
    sizes = ("chunking " + " / ".join(f"{v // 1024} KiB" for v in R["chunking"])
             if "chunking" in R else "default chunking")
    sizes += f", concurrency {R.get('concurrency', 'default (4)')}"
    cpu = " ".join(f"{k}: client {R[k]['cpu']:.1f} s, grid {R[k]['grid_cpu']:.1f} s;"
                   for k in ("raw_put", "first"))
    lines = [
        "# lafs-backup stream benchmark",
        "",
        f"{facts['date_utc']}, commit {facts['git']}, {facts['model']} ({facts['nproc']} CPUs "
        f"available), {facts['mem_total']}, kernel {facts['kernel']}; grid: {args.shape}; "
        f"{sizes}; load average before: {' '.join(f'{v:.2f}' for v in R['load_before'])}",
        "",
        f"CPU seconds (user + system) {cpu}",
        "",
        "| what | result |",
        "| --- | --- |",
        f"| raw PUT of {args.stream_mb} MiB as one object | {fmt_s(R['raw_put']['wall'])} s |",
        f"| `backup --stdin` of the same bytes | {fmt_s(R['first']['wall'])} s: "
        f"{ratio:.2f} of the raw ceiling ({'PASS' if ratio and ratio >= 0.8 else 'FAIL'}: target 0.8) |",
        f"| peak RSS of `backup --stdin` ({R['first']['maxrss_method']}) | {fmt_mib(rss)} MiB "
        f"({'PASS' if rss is not None and rss < 64 * 1024 else 'FAIL'}: target under 64 MiB) |",
        f"| unchanged re-run | {fmt_s(R['rerun']['wall'])} s, "
        f"{R['rerun'].get('summary', {}).get('bytes_uploaded', '?')} bytes uploaded |",
        f"| 1 MiB inserted in the middle | {fmt_s(R['insert']['wall'])} s, {ins} bytes uploaded "
        f"({'PASS' if ins is not None and ins <= bound else 'FAIL'}: at most 1 MiB + 3 x "
        f"{max_size // MIB} MiB) |",
    ]
    save_case_report(args, "stream", lines, facts, R)
    return 0


# ----------------------------------------------------------------- chunked file


def gateway_bytes_uploaded(url):
    """The gateway's `uploader.bytes_uploaded` counter."""
    import urllib.request
    with urllib.request.urlopen(url + "/statistics?t=json", timeout=60) as r:
        stats = json.load(r)
    return stats.get("counters", {}).get("uploader.bytes_uploaded", 0)


def chunked_main(args, facts, trees, run_dir):
    """The --chunked-file case: see DESCRIPTION."""
    mb = args.chunked_mb
    data = stream_input(trees, mb)
    src = run_dir / "chunked-src"
    src.mkdir()
    image = src / "disk.img"
    shutil.copyfile(data, image)
    grid = Grid(args)
    R = {"mib": mb}
    try:
        grid.start()
        bench = Bench(args, grid)
        cfg = run_dir / "chunked.yaml"
        cfg.write_text("\n".join(config_head(run_dir, "chunked", grid.url, src) + [
            "  result:\n    print_to_stdout: false",
            "chunking:\n  files:\n    min_size: 16777216",
        ]) + "\n")

        def run(label):
            before = gateway_bytes_uploaded(grid.url)
            res = bench.lafs(cfg, label)
            res["gateway_bytes"] = gateway_bytes_uploaded(grid.url) - before
            say(f"  {label}: {res['wall']:.1f} s, uploaded "
                f"{res.get('summary', {}).get('bytes_read', '?')} bytes "
                f"(gateway: {res['gateway_bytes']})")
            return res

        say(f"backup of a tree holding one {mb} MiB file, stored chunked")
        R["first"] = run("chunked-first")
        R["rerun"] = run("chunked-rerun")
        with open(image, "r+b") as f:
            f.seek(mb * MIB // 2)
            f.write(random.Random(13).randbytes(MIB))
        later = time.time() + 5
        os.utime(image, (later, later))
        R["changed"] = run("chunked-changed")
    except BenchError as e:
        say(f"error: {e}")
        grid.stop()
        return 1
    grid.stop()

    def up(key):
        # A tree backup's summary calls the raw bytes it uploaded bytes_read.
        return R[key].get("summary", {}).get("bytes_read", "?")

    changed = R["changed"]["gateway_bytes"]
    lines = [
        "# lafs-backup chunked-file benchmark",
        "",
        f"{facts['date_utc']}, commit {facts['git']}, {facts['model']} ({facts['nproc']} CPUs "
        f"available), {facts['mem_total']}, kernel {facts['kernel']}; grid: {args.shape}",
        "",
        "| run | wall | bytes uploaded (summary) | gateway `uploader.bytes_uploaded` |",
        "| --- | --- | --- | --- |",
        f"| first backup of the {mb} MiB file | {fmt_s(R['first']['wall'])} s | {up('first')} "
        f"| {R['first']['gateway_bytes']} |",
        f"| unchanged re-run | {fmt_s(R['rerun']['wall'])} s | {up('rerun')} "
        f"| {R['rerun']['gateway_bytes']} |",
        f"| 1 MiB rewritten in the middle | {fmt_s(R['changed']['wall'])} s | {up('changed')} "
        f"| {changed} ({'PASS' if changed < 8 * MIB else 'FAIL'}: target under 8 MiB) |",
    ]
    save_case_report(args, "chunked", lines, facts, R)
# ----------------------------------------------------------------- native


def grid_cpu_by_node(grid):
    """{node name: utime+stime seconds} of every node process of the grid
    (DIR/pids: "PID NODEDIR" lines)."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        lines = (grid.dir / "pids").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        words = line.split(maxsplit=1)
        if len(words) != 2:
            continue
        try:
            stat = Path(f"/proc/{words[0]}/stat").read_text().rsplit(")", 1)[1].split()
            out[Path(words[1]).name] = (int(stat[11]) + int(stat[12])) / tck
        except (OSError, IndexError, ValueError):
            pass
    return out


NATIVE_MODES = ("gateway", "native")


def native_main(args, facts, trees, run_dir):
    """The --native case (issue 17 item 4): see DESCRIPTION."""
    args.shape = "3n"
    rounds = args.first_runs
    # A tree of its own content per (kind, mode, round): convergent
    # encryption must not find shares of an earlier run.
    small = {(m, r): mixed_tree(trees, args.files, 0, 100 + 10 * r + i)
             for r in range(rounds) for i, m in enumerate(NATIVE_MODES)}
    large = {(m, r): mixed_tree(trees, 0, args.big_mb, 200 + 10 * r + i)
             for r in range(rounds) for i, m in enumerate(NATIVE_MODES)}
    warm = mixed_tree(trees, 300, 4, 0)
    grid = Grid(args)
    R = {"small": {m: [] for m in NATIVE_MODES}, "large": {m: [] for m in NATIVE_MODES},
         "restore": {}}
    restore_dir = args.work / "restore"
    remove_tree(restore_dir)
    try:
        grid.start()
        bench = Bench(args, grid)
        conc = bench.restore_concurrency()

        def config(name, tree, mode):
            cfg = run_dir / f"{name}.yaml"
            lines = config_head(run_dir, name, grid.url, tree)
            lines += ["  encoding:", "    xz:", "      enabled: false"]
            if mode == "native":
                lines += ["  storage: native", "  native:",
                          f"    node_dir: {json.dumps(str(grid.gateway_dir))}",
                          "    required: true"]
            lines += ["operation:", f"  concurrency: {conc}"]
            cfg.write_text("\n".join(lines) + "\n")
            return cfg

        def measured(label, fn):
            before = grid_cpu_by_node(grid)
            res = fn()
            after = grid_cpu_by_node(grid)
            res["node_cpu"] = {k: after[k] - before.get(k, 0.0) for k in after}
            return res

        say(f"warming the grid up: raw_put of {warm['files']} files")
        bench.raw_put(warm["path"], conc, "warmup")
        # The native path's first contact (TLS, the servers' versions) once,
        # not measured: a tiny backup in native mode.
        cfgs = {}
        for kind, table in (("small", small), ("large", large)):
            for rnd in range(rounds):
                for mode in round_order(NATIVE_MODES, rnd):
                    tree = table[(mode, rnd)]
                    name = f"native-{kind}-{mode}-{rnd}"
                    cfgs[name] = config(name, tree["path"], mode)
                    say(f"round {rnd + 1}/{rounds}: first backup of the {kind} tree, {mode}")
                    res = measured(name, lambda: bench.lafs(cfgs[name], name))
                    res["files"], res["bytes"] = tree["files"], tree["bytes"]
                    R[kind][mode].append(res)
                    say(f"  {res['wall']:.1f} s")
        # Restore of the native-made backups: lafs-backup in each mode, and
        # `tahoe cp -r` of the same cap.
        restore_dir.mkdir()
        for kind, table in (("small", small), ("large", large)):
            R["restore"][kind] = {"lafs_gateway": [], "lafs_native": [], "tahoe_cp": []}
            for rnd in range(rounds):
                name = f"native-{kind}-native-{rnd}"
                cap = bench.caps.get(name)
                if not cap:
                    raise BenchError(f"no root cap from the {name} backup")
                src = table[("native", rnd)]["path"]
                for how in round_order(("lafs_gateway", "lafs_native", "tahoe_cp"), rnd):
                    target = restore_dir / f"{kind}-{how}-{rnd}"
                    os.sync()
                    say(f"round {rnd + 1}/{rounds}: restore of the {kind} tree: {how}")
                    if how == "tahoe_cp":
                        res = measured(how, lambda: bench.tahoe_cp(cap, target, f"{kind}-{how}-{rnd}"))
                    else:
                        mode = how.removeprefix("lafs_")
                        cfg = cfgs[f"native-{kind}-{mode}-{rnd}"]
                        res = measured(how, lambda: bench.lafs_cmd(
                            cfg, ["restore", "--concurrency", conc, cap, target],
                            f"restore-{kind}-{how}-{rnd}", f"lafs-backup restore ({how})"))
                    res["check"] = compare_trees(
                        src, target, content=True, meta=how != "tahoe_cp",
                        extra_ok=(".lafs-backup-root",) if how == "tahoe_cp" else ())
                    R["restore"][kind][how].append(res)
                    c = res["check"]
                    say(f"  {res['wall']:.1f} s; " + ("matches the source" if c["ok"] else
                        f"DIFFERS ({c['problem_count']} problems, e.g. {'; '.join(c['problems'][:3])})"))
                    remove_tree(target)
    except BenchError as e:
        say(f"error: {e}")
        grid.stop()
        return 1
    grid_info = grid.describe()
    grid.stop()
    remove_tree(restore_dir)
    save_case_report(args, "native", native_report(args, facts, grid_info, conc, R), facts, R)
    return 0


def native_report(args, facts, grid_info, conc, R):
    def med(runs, key="wall"):
        return median([r[key] for r in runs])

    def ratio(a, b, target):
        x = a / b if b else float("nan")
        return f"{x:.2f}× ({'PASS' if x >= target else 'FAIL'}: target ≥ {target}×)"

    lines = [
        "# lafs-backup native storage benchmark (issue 17 item 4)",
        "",
        f"{facts['date_utc']}, commit {facts['git']}, {facts['model']} ({facts['nproc']} CPUs "
        f"available), {facts['mem_total']}, kernel {facts['kernel']}; grid: "
        f"{grid_info['nodes']} nodes, {grid_info['shares']}, {grid_info['protocol']}; "
        f"concurrency {conc}; compression off; {args.first_runs} round(s), medians",
        "",
        "| case | gateway path | native path | native / gateway |",
        "| --- | --- | --- | --- |",
    ]
    sm, lg = R["small"], R["large"]
    fs = {m: sm[m][0]["files"] / med(sm[m]) for m in NATIVE_MODES}
    mbs = {m: lg[m][0]["bytes"] / MIB / med(lg[m]) for m in NATIVE_MODES}
    lines.append(f"| first backup, {args.files} small files (100 B–16 KiB) | "
                 f"{fs['gateway']:.0f} files/s ({fmt_s(med(sm['gateway']))} s) | "
                 f"{fs['native']:.0f} files/s ({fmt_s(med(sm['native']))} s) | "
                 f"{ratio(fs['native'], fs['gateway'], 2.5)} |")
    lines.append(f"| first backup, 3 × {args.big_mb} MiB random | "
                 f"{mbs['gateway']:.1f} MiB/s ({fmt_s(med(lg['gateway']))} s) | "
                 f"{mbs['native']:.1f} MiB/s ({fmt_s(med(lg['native']))} s) | "
                 f"{ratio(mbs['native'], mbs['gateway'], 1.5)} |")
    lines += ["", "| restore (of the native backup) | `tahoe cp -r` | lafs-backup, gateway path | "
              "lafs-backup, native path | native / `tahoe cp -r` | all restored trees match |",
              "| --- | --- | --- | --- | --- | --- |"]
    for kind in ("small", "large"):
        rr = R["restore"][kind]
        ok = all(r["check"]["ok"] for runs in rr.values() for r in runs)
        t = {k: med(v) for k, v in rr.items()}
        lines.append(f"| {kind} tree | {fmt_s(t['tahoe_cp'])} s | {fmt_s(t['lafs_gateway'])} s | "
                     f"{fmt_s(t['lafs_native'])} s | {ratio(t['tahoe_cp'], t['lafs_native'], 2.0)} | "
                     f"{'yes' if ok else 'NO'} |")
    lines += ["", "CPU per file (ms; median of the rounds), by process: the client "
              "(lafs-backup or tahoe) and every grid node.", ""]
    nodes = sorted({n for runs in list(sm.values()) + list(lg.values()) for r in runs
                    for n in r.get("node_cpu", {})})
    lines.append("| run | client | " + " | ".join(nodes) + " | grid total |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in nodes) + " | --- |")

    def cpu_row(label, runs, files):
        per = lambda xs: median(xs) * 1000 / files
        cells = [per([r["cpu"] for r in runs])]
        cells += [per([r["node_cpu"].get(n, 0.0) for r in runs]) for n in nodes]
        cells.append(per([sum(r["node_cpu"].values()) for r in runs]))
        lines.append(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")

    for m in NATIVE_MODES:
        cpu_row(f"backup, small files, {m}", sm[m], args.files)
    for m in NATIVE_MODES:
        cpu_row(f"backup, large files, {m} (per MiB)", lg[m], 3 * args.big_mb)
    rr = R["restore"]["small"]
    for how in ("tahoe_cp", "lafs_gateway", "lafs_native"):
        cpu_row(f"restore, small files, {how}", rr[how], args.files)
    return lines


# ----------------------------------------------------------------- dump


class Postgres:
    """A throwaway PostgreSQL cluster on a unix socket in DIR (trust
    authentication, superuser postgres), as tests/common/servers.rs makes."""

    def __init__(self, dir):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
        if not bins:
            raise BenchError("no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql")
        self.bin = bins[-1].parent
        self.dir = dir
        self.started = False

    def owner(self, *cmd):
        cmd = [str(c) for c in cmd]
        return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd

    def start(self):
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        run_checked(self.owner(self.bin / "initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                               "--locale=C", "--no-sync", "-D", self.dir / "data"))
        # The server keeps pg_ctl's pipes open: it gets none.
        r = subprocess.run(self.owner(self.bin / "pg_ctl", "-w", "-t", "60", "-D", self.dir / "data",
                                      "-l", self.dir / "log", "-o",
                                      f"-k {self.dir} -c listen_addresses= -c fsync=off", "start"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            raise BenchError(f"pg_ctl start failed; see {self.dir / 'log'}")
        self.started = True

    def psql(self, db, sql):
        return run_checked([self.bin / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-U", "postgres", "-h", self.dir, "-d", db, "-c", sql]).stdout

    def stop(self):
        if self.started:
            subprocess.run(self.owner(self.bin / "pg_ctl", "-m", "fast", "-D", self.dir / "data",
                                      "stop"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.started = False


def dump_main(args, facts, run_dir):
    """The --dump case: see DESCRIPTION."""
    grid = Grid(args)
    pg = Postgres(run_dir / "pg")
    R = {"rows": args.dump_rows}
    try:
        say("starting a throwaway PostgreSQL cluster")
        pg.start()
        pg.psql("postgres", "CREATE DATABASE bench")
        say(f"filling the database with {args.dump_rows} rows")
        t0 = time.monotonic()
        pg.psql("bench", "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, "
                         "kind text, body text)")
        pg.psql("bench", "INSERT INTO events SELECT i, timestamptz '2024-01-01' + i * interval '1 s', "
                         "'kind-' || (i % 13), md5(i::text) || ' ' || md5((i * 7)::text) "
                         f"FROM generate_series(1, {args.dump_rows}) AS i")
        R["fill_s"] = time.monotonic() - t0
        grid.start()
        bench = Bench(args, grid)
        cfg = run_dir / "dump.yaml"
        cfg.write_text("\n".join(config_head(run_dir, "dump", grid.url) + [
            "  result:\n    print_to_stdout: false",
            "jobs:",
            "  - name: pg",
            "    kind: postgresql",
            "    databases: [bench]",
            f"    host: {json.dumps(str(pg.dir))}",
            "    user: postgres",
            f"    pg_dump: {json.dumps(str(pg.bin / 'pg_dump'))}",
            f"    psql: {json.dumps(str(pg.bin / 'psql'))}",
        ]) + "\n")

        def backup(label):
            cmd = [bench.bin, "-c", cfg, "--json", "backup"]
            out, err = bench._paths(label)
            res = run_measured(cmd, out, err)
            check_rc(res, f"backup of the dump job ({label})", err)
            summary_of(res, out)
            sm = res.get("summary", {})
            say(f"  {label}: {res['wall']:.1f} s, dump {sm.get('bytes_total', '?')} bytes in "
                f"{sm.get('chunks', '?')} chunks, uploaded {sm.get('bytes_uploaded', '?')} bytes")
            return res

        say("backup of the dump job: first, unchanged, after appending 10,000 rows")
        R["first"] = backup("dump-first")
        R["rerun"] = backup("dump-rerun")
        n = args.dump_rows
        pg.psql("bench", "INSERT INTO events SELECT i, timestamptz '2024-01-01' + i * interval '1 s', "
                         "'appended', md5(i::text) || ' ' || md5((i * 7)::text) "
                         f"FROM generate_series({n + 1}, {n + 10000}) AS i")
        R["append"] = backup("dump-append")
    except BenchError as e:
        say(f"error: {e}")
        pg.stop()
        grid.stop()
        return 1
    pg.stop()
    grid.stop()

    def row(label, res):
        sm = res.get("summary", {})
        up, total = sm.get("bytes_uploaded"), sm.get("bytes_total")
        share = f"{up / total:.4f}" if up is not None and total else "?"
        return (f"| {label} | {fmt_s(res['wall'])} s | {total} | {sm.get('chunks')} | "
                f"{sm.get('chunks_uploaded')} | {up} | {share} |")

    lines = [
        "# lafs-backup database dump benchmark",
        "",
        f"{facts['date_utc']}, commit {facts['git']}, {facts['model']} ({facts['nproc']} CPUs "
        f"available), {facts['mem_total']}, kernel {facts['kernel']}; grid: {args.shape}; "
        f"PostgreSQL {pg.bin.parent.name}, {args.dump_rows} rows (filled in {R['fill_s']:.1f} s)",
        "",
        "| run | time | dump bytes | chunks | chunks uploaded | bytes uploaded | uploaded / dump |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("first backup", R["first"]),
        row("unchanged re-run", R["rerun"]),
        row("10,000 rows appended", R["append"]),
    ]
    save_case_report(args, "dump", lines, facts, R)
    return 0


def main():
    args = parse_args()

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    facts = machine_facts(args)
    args.work.mkdir(parents=True, exist_ok=True)
    trees = args.work / "trees"
    trees.mkdir(exist_ok=True)
    run_dir = args.work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir()
    if args.mount:
        return mount_main(args, facts, trees, run_dir)
    if args.stream:
        return stream_main(args, facts, trees, run_dir)
    if args.chunked_file:
        return chunked_main(args, facts, trees, run_dir)
    if args.dump:
        return dump_main(args, facts, run_dir)
    if args.native:
        return native_main(args, facts, trees, run_dir)

    # Trees first, while no grid burns CPU: one mixed tree per first run
    # (one layout, a content seed each), a warm-up tree, the rescan trees.
    mixed = [{k: mixed_tree(trees, args.files, args.big_mb, 1 + 4 * rnd + i)
              for i, k in enumerate(FIRST_KINDS)} for rnd in range(args.first_runs)]
    warm = mixed_tree(trees, 300, 4, 0)
    main_n = args.rescan_entries
    # With --scale the RSS growth is seen from the main tree to the scale
    # tree; without it, from a tree of N/5 to the main one.
    sizes = {"main": main_n, "tahoe": args.tahoe_rescan_entries,
             "growth": main_n if args.scale else max(1, main_n // 5)}
    if args.scale:
        sizes["scale"] = args.scale_entries
    rescan = {}
    for n in sorted(set(sizes.values()), reverse=True):
        info = rescan_tree(trees, n, n)
        rescan[str(n)] = {"info": dict(info, path=str(info["path"]))}
    empty = build_tree(trees, "empty", {"format": TREE_FORMAT, "kind": "empty"}, lambda root: None)

    mx0 = mixed[0]["lafs_off"]
    R = {"mixed_info": dict(mx0, path=str(mx0["path"]), small=args.files,
                            big=3 if args.big_mb else 0),
         "warmup_info": dict(warm, path=str(warm["path"])),
         "sizes": sizes, "rescan": rescan, "first": {k: [] for k in FIRST_KINDS},
         "restore": {k: [] for k in RESTORE_KINDS}, "rerun_mixed": {}}
    restore_dir = args.work / "restore"
    remove_tree(restore_dir)

    grid = Grid(args)
    conc = None
    interrupted = False
    try:
        grid.start()
        bench = Bench(args, grid)
        bench.tahoe_alias()
        probe_cfg = bench.lafs_config("probe", mx0["path"], False)
        conc_value = bench.effective_concurrency(probe_cfg)
        bench.conc_value = conc_value
        conc = {
            "value": conc_value if conc_value is not None else "?",
            "source": "--concurrency" if args.concurrency else "config default",
        }
        if not bench.has_concurrency_flag:
            conc["note"] = ("this lafs-backup has no `backup --concurrency` option, i.e. it predates the "
                            "concurrent uploader: operation.concurrency may be ignored")
        conc["raw_threads"] = args.raw_threads or (conc_value if isinstance(conc_value, int) else 4)
        conc["restore"] = bench.restore_concurrency()

        say(f"warming the grid up: raw_put of {warm['files']} files")
        R["warmup"] = bench.raw_put(warm["path"], conc["raw_threads"], "warmup")

        # ---- first backups of the mixed tree, each on fresh content
        cfg_first = {}
        for rnd, trees_of_round in enumerate(mixed):
            for kind in round_order(FIRST_KINDS, rnd):
                tree = trees_of_round[kind]["path"]
                say(f"round {rnd + 1}/{args.first_runs}: first run: {kind}")
                if kind in ("lafs_off", "lafs_on"):
                    cfg = bench.lafs_config(f"mixed-{kind}-{rnd}", tree, compress=kind == "lafs_on")
                    cfg_first[(kind, rnd)] = cfg
                    res = bench.lafs(cfg, f"first-{kind}-{rnd}")
                elif kind == "raw":
                    res = bench.raw_put(tree, conc["raw_threads"], f"first-raw-{rnd}")
                else:
                    res = bench.tahoe_backup(tree, f"mixed{rnd}", f"first-tahoe-{rnd}")
                R["first"][kind].append(res)
                say(f"  {res['wall']:.1f} s")

        # ---- what lafs-backup costs the gateway besides the files (item 4)
        say("gateway cost of a backup's fixed work: an empty tree, fresh cache (x2)")
        R["fixed"] = [bench.lafs(bench.lafs_config(f"empty-{i}", empty, compress=True),
                                 f"fixed-empty-{i}") for i in range(2)]
        cap0 = bench.caps.get("first-lafs_off-0")
        if cap0:
            say("gateway cost of one mkdir-immutable (the first backup's directories, again)")
            R["mkdir"] = bench.mkdir_cost(cap0)
            say(f"  {R['mkdir']['per_dir'] * 1000:.1f} ms of grid CPU per directory")

        # ---- restore of the mixed tree: each round's compression-off
        # backup, by lafs-backup, `tahoe cp -r` and the raw GET ceiling
        restore_dir.mkdir()
        warm_cap = bench.caps.get("first-lafs_on-0")
        if warm_cap:
            # The gateway's download path has not run yet: warm it up with
            # 100 small files of another backup (not measured).
            listing = run_dir / "restore-warmup.caps"
            bench.list_backup(warm_cap, listing, last=100)
            say("warming the gateway's downloads up: raw_get of 100 files")
            bench.raw_get(listing, restore_dir / "warmup", conc["raw_threads"], "restore-warmup")
            remove_tree(restore_dir / "warmup")
        for rnd in range(args.first_runs):
            cap = bench.caps.get(f"first-lafs_off-{rnd}")
            if not cap:
                raise BenchError(f"no root cap from the first-lafs_off-{rnd} backup (its --json "
                                 "summary line)")
            src = mixed[rnd]["lafs_off"]["path"]
            listing = run_dir / f"restore-{rnd}.caps"
            R["restore_listing"] = bench.list_backup(cap, listing)
            src_entries = tree_entries(src)  # read once for the round's three checks
            for kind in round_order(RESTORE_KINDS, rnd):
                target = restore_dir / f"{kind}-{rnd}"
                os.sync()  # the previous run's writes are not this run's work
                say(f"round {rnd + 1}/{args.first_runs}: restore: {kind}")
                if kind == "lafs":
                    res = bench.lafs_restore(cap, target, f"restore-lafs-{rnd}")
                elif kind == "tahoe_cp":
                    res = bench.tahoe_cp(cap, target, f"restore-tahoe-cp-{rnd}")
                else:
                    res = bench.raw_get(listing, target, conc["raw_threads"], f"restore-raw-{rnd}")
                res["check"] = compare_trees(
                    src, target, content=True, meta=kind == "lafs",
                    extra_ok=(".lafs-backup-root",) if kind == "tahoe_cp" else (),
                    src_entries=src_entries)
                R["restore"][kind].append(res)
                c = res["check"]
                say(f"  {res['wall']:.1f} s; restored tree "
                    + ("matches the source" if c["ok"] else
                       f"DIFFERS from the source ({c['problem_count']} problems, e.g. "
                       f"{'; '.join(c['problems'][:3])})"))
                remove_tree(target)
            # For the breakdown: --dry-run lists every directory and plans,
            # and writes nothing (information, not a target).
            say(f"round {rnd + 1}/{args.first_runs}: restore --dry-run (listing only)")
            res = bench.lafs_restore(cap, restore_dir / "dry-run", f"restore-lafs-dry-run-{rnd}",
                                     dry_run=True)
            R["restore"].setdefault("lafs_dry", []).append(res)
            say(f"  {res['wall']:.2f} s")

        # ---- unchanged re-runs of the mixed tree (round 1's trees)
        say(f"re-runs of the mixed tree (x{args.repeat})")
        R["rerun_mixed"] = {"lafs": [], "tahoe": []}
        for i in range(args.repeat):
            R["rerun_mixed"]["lafs"].append(
                bench.lafs(cfg_first[("lafs_off", 0)], f"rerun-mixed-lafs-{i}", ["-f"]))
            R["rerun_mixed"]["tahoe"].append(
                bench.tahoe_backup(mixed[0]["tahoe"]["path"], "mixed0", f"rerun-mixed-tahoe-{i}"))

        # ---- rescan trees, largest first
        for n in sorted(rescan, key=int, reverse=True):
            rescan_case(bench, args, sizes, rescan[n], int(n), run_dir, args.work / "restore")
    except KeyboardInterrupt:
        proc = CURRENT["proc"]
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        say("interrupted: stopping; the report covers what was measured so far")
        interrupted = True
    except BenchError as e:
        say(f"error: {e}")
        grid.stop()
        return 1
    grid_info = grid.describe() if grid.started and hasattr(grid, "env") else None
    grid.stop()
    remove_tree(restore_dir)
    if conc is None or grid_info is None:
        return 130
    if not args.keep:
        for p in run_dir.iterdir():
            if ".cache" in p.name or p.suffix in (".queue", ".caps"):
                p.unlink()

    facts["loadavg_end"] = os.getloadavg()
    R["total_seconds"] = time.monotonic() - T0
    text, ratios = report(args, facts, grid_info, conc, R)
    if interrupted:
        text = text.replace("\n", "  (INTERRUPTED: partial results)\n", 1)
    print(text)
    results = args.work / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"bench-{stamp}.md").write_text(text + "\n")
    raw = {"args": {k: str(v) for k, v in vars(args).items()}, "facts": facts, "grid": grid_info,
           "concurrency": conc, "ratios": ratios, "runs": R}
    (results / f"bench-{stamp}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    say(f"done in {time.monotonic() - T0:.0f} s; report and raw numbers: "
        f"{results}/bench-{stamp}.{{md,json}}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
