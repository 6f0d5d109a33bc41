//! The on-disk cache of decoded (decompressed) file contents: a compressed
//! file cannot be read at an offset without decoding what comes before it,
//! so its content is decoded once, start to end, into an unnamed temporary
//! file (`O_TMPFILE`), and reads are served from there.
//!
//! The cache holds at most `limit` bytes of decoded content; a new entry
//! first pushes out the least recently used ones. An entry pushed out while
//! a reader still has the file open stays readable through that reader's
//! descriptor (its disk space comes back when the last one closes), so the
//! bound is "cached bytes, plus files open right now". Nothing named is
//! ever left on disk: the files have no name, so even a killed process
//! leaves nothing behind.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Why an entry could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiskError {
    /// The decoded file is larger than the whole cache.
    #[error(
        "the decoded file is {size} bytes, more than the cache may hold ({limit} bytes; see --cache-size)"
    )]
    TooLarge { size: u64, limit: u64 },
    /// Filling the entry failed (download, decoding, disk).
    #[error("{0}")]
    Fill(String),
}

#[derive(Debug)]
struct Entry {
    /// `None` while one thread fills it (others wait).
    file: Option<Arc<File>>,
    size: u64,
    /// When last used (the `tick` of the cache).
    last: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Bytes of all entries, those being filled included.
    used: u64,
    tick: u64,
}

/// See the module doc.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    filled: Condvar,
}

impl DiskCache {
    pub(crate) fn new(dir: PathBuf, limit: u64) -> DiskCache {
        DiskCache {
            dir,
            limit,
            state: Mutex::new(State::default()),
            filled: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state (every
        // change is a single step), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached file for `key` (`size` bytes once decoded), made with
    /// `fill` (which writes the whole content into the empty file it is
    /// given) when it is not cached. Concurrent callers for one key wait for
    /// the first one's fill.
    pub(crate) fn get(
        &self,
        key: &str,
        size: u64,
        fill: impl FnOnce(&File) -> Result<(), String>,
    ) -> Result<Arc<File>, DiskError> {
        let mut state = self.lock();
        loop {
            state.tick += 1;
            let tick = state.tick;
            match state.entries.get_mut(key) {
                Some(entry) => match &entry.file {
                    Some(file) => {
                        entry.last = tick;
                        return Ok(Arc::clone(file));
                    }
                    None => {
                        state = self.filled.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                },
                None => break,
            }
        }
        if size > self.limit {
            return Err(DiskError::TooLarge {
                size,
                limit: self.limit,
            });
        }
        Self::evict(&mut state, self.limit - size);
        state.used += size;
        let last = state.tick;
        state.entries.insert(
            key.to_owned(),
            Entry {
                file: None,
                size,
                last,
            },
        );
        drop(state);

        let made = tempfile::tempfile_in(&self.dir)
            .map_err(|e| format!("cannot make a file in {}: {e}", self.dir.display()))
            .and_then(|file| fill(&file).map(|()| Arc::new(file)));

        let mut state = self.lock();
        let result = match made {
            Ok(file) => {
                if let Some(entry) = state.entries.get_mut(key) {
                    entry.file = Some(Arc::clone(&file));
                }
                Ok(file)
            }
            Err(why) => {
                if state.entries.remove(key).is_some() {
                    state.used -= size;
                }
                Err(DiskError::Fill(why))
            }
        };
        drop(state);
        self.filled.notify_all();
        result
    }

    /// Drops the least recently used filled entries until at most `room`
    /// bytes are in use (entries being filled stay).
    fn evict(state: &mut State, room: u64) {
        while state.used > room {
            let oldest = state
                .entries
                .iter()
                .filter(|(_, e)| e.file.is_some())
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone());
            let Some(key) = oldest else { return };
            if let Some(entry) = state.entries.remove(&key) {
                state.used -= entry.size;
            }
        }
    }

    /// Bytes in the cache now (tests).
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.lock().used
    }
}

/// Writes all of `data` to `file` from its start, for `fill` functions.
pub(crate) fn copy_into(mut data: impl io::Read, file: &File, expect: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    file.set_len(0)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if at + n as u64 > expect {
            return Err(io::Error::other(format!(
                "the content is longer than the {expect} bytes the backup recorded"
            )));
        }
        file.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    if at != expect {
        return Err(io::Error::other(format!(
            "the content is {at} bytes, the backup recorded {expect}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt as _;

    fn fill_with(byte: u8, n: usize) -> impl FnOnce(&File) -> Result<(), String> {
        move |f: &File| f.write_all_at(&vec![byte; n], 0).map_err(|e| e.to_string())
    }

    #[test]
    fn least_recently_used_goes_first_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_owned(), 100);
        cache.get("a", 40, fill_with(1, 40)).unwrap();
        cache.get("b", 40, fill_with(2, 40)).unwrap();
        // Touch a: b is now the oldest.
        cache.get("a", 40, |_| panic!("a is cached")).unwrap();
        cache.get("c", 40, fill_with(3, 40)).unwrap();
        assert_eq!(cache.used(), 80);
        cache.get("a", 40, |_| panic!("a is still cached")).unwrap();
        let mut refilled = false;
        cache
            .get("b", 40, |f| {
                refilled = true;
                fill_with(2, 40)(f)
            })
            .unwrap();
        assert!(refilled, "b was pushed out");
        // Nothing named is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn too_large_and_failed_fills_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_owned(), 10);
        assert!(matches!(
            cache.get("big", 11, fill_with(0, 11)),
            Err(DiskError::TooLarge { .. })
        ));
        assert!(matches!(
            cache.get("bad", 5, |_| Err("broken".into())),
            Err(DiskError::Fill(_))
        ));
        assert_eq!(cache.used(), 0);
    }

    #[test]
    fn copy_into_insists_on_the_recorded_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = tempfile::tempfile_in(dir.path()).unwrap();
        copy_into(&b"hello"[..], &f, 5).unwrap();
        assert!(copy_into(&b"hello"[..], &f, 4).is_err());
        assert!(copy_into(&b"hello"[..], &f, 6).is_err());
    }
}
