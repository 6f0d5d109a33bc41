//! The one ordered, bounded-concurrency map of the crate: `restore` lists
//! directories with it, `check --leases` renews leases with it. The gateway
//! serves a few requests at a time well; more threads than that only queue
//! there, so callers pass their configured concurrency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Calls `work` on every item of `items` on up to `workers` threads (at
/// least 1, at most one per item; with one, on the calling thread) and
/// returns the results in the order of `items`. Once `stop` is true for a
/// result (e.g. the gateway is gone), no worker starts another item: those
/// never started are `None`; those already running finish.
pub(crate) fn ordered_map<T, R, W, S>(
    items: &[T],
    workers: usize,
    work: W,
    stop: S,
) -> Vec<Option<R>>
where
    T: Sync,
    R: Send,
    W: Fn(&T) -> R + Sync,
    S: Fn(&R) -> bool + Sync,
{
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        let mut out = Vec::with_capacity(items.len());
        let mut stopped = false;
        for item in items {
            if stopped {
                out.push(None);
                continue;
            }
            let result = work(item);
            stopped = stop(&result);
            out.push(Some(result));
        }
        return out;
    }
    let next = AtomicUsize::new(0);
    let halt = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !halt.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(item), Some(slot)) = (items.get(i), slots.get(i)) else {
                        return;
                    };
                    let result = work(item);
                    if stop(&result) {
                        halt.store(true, Ordering::Relaxed);
                    }
                    // A slot is only ever locked here, once: never poisoned
                    // by another holder, but a poisoned one still holds it.
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_keep_the_order_of_the_items_whatever_the_workers() {
        let items: Vec<u64> = (0..50).collect();
        for workers in [0, 1, 3, 64] {
            let got = ordered_map(
                &items,
                workers,
                |&n| {
                    // Later items finish first.
                    std::thread::sleep(Duration::from_micros(50 - n));
                    n * 2
                },
                |_| false,
            );
            let want: Vec<Option<u64>> = items.iter().map(|n| Some(n * 2)).collect();
            assert_eq!(got, want, "{workers} workers");
        }
        assert!(ordered_map(&[] as &[u8], 4, |_| 1, |_| false).is_empty());
    }

    #[test]
    fn a_stop_result_ends_the_taking_of_new_items() {
        let items: Vec<u32> = (0..1000).collect();
        for workers in [1, 4] {
            let started = AtomicUsize::new(0);
            let got = ordered_map(
                &items,
                workers,
                |&n| {
                    started.fetch_add(1, Ordering::Relaxed);
                    if n != 10 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    n
                },
                |&n| n == 10,
            );
            assert_eq!(got[10], Some(10));
            let done = got.iter().filter(|r| r.is_some()).count();
            assert_eq!(done, started.load(Ordering::Relaxed));
            if workers == 1 {
                assert_eq!(done, 11);
            } else {
                // Workers already running finish their item, then stop.
                assert!(done < items.len() / 2, "{done}");
            }
        }
    }
}
