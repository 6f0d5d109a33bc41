//! The process-wide limit on xz encoders running at the same time.
//!
//! An xz encoder at preset 6 allocates about 94 MiB (674 MiB at preset 9),
//! so four upload workers compressing at once would need ~376 MiB: the gate
//! lets at most `destination.encoding.xz.max_parallel` (default 1) of them
//! exist at a time in the whole process, whatever the number of workers,
//! jobs or encoders. The other workers wait for a slot; a worker uploading
//! raw or zstd bodies never does. A slot is held from before the encoder is
//! allocated until it is dropped, so the limit bounds the memory, not only
//! the CPU.

use std::sync::{Condvar, Mutex, PoisonError};

/// How many xz encoders exist now.
static RUNNING: Mutex<usize> = Mutex::new(0);
/// Signalled when one ends.
static ENDED: Condvar = Condvar::new();

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct XzSlot(());

impl XzSlot {
    /// Waits until fewer than `limit` xz encoders exist (at least one is
    /// always allowed), and takes a slot.
    pub(crate) fn acquire(limit: usize) -> XzSlot {
        let limit = limit.max(1);
        // A poisoned lock only means a holder panicked after counting: the
        // count itself is still a plain integer, so keep using it.
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        while *running >= limit {
            running = ENDED.wait(running).unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        XzSlot(())
    }
}

impl Drop for XzSlot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        drop(running);
        ENDED.notify_all();
    }
}
