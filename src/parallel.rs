//! One work queue for everything keyferry spreads over threads (hashing files, copying
//! them, syncing several targets): items are taken in a given order (largest first, so one
//! big file does not finish last), each thread keeps its own scratch state (a read buffer),
//! and the first error stops the others from taking more work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `f(&mut state, i)` for every index of `order` on up to `threads` threads (each with
/// a `state` from `init`), and returns the results by index (`0..order.len()` positions of
/// `order`'s values, which must be a permutation of `0..order.len()`). The first `Err` stops
/// the work and is returned.
pub fn try_map<S, T: Send, E: Send>(
    order: &[usize],
    threads: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..order.len()).map(|_| None).collect());
    let failed: Mutex<Option<E>> = Mutex::new(None);
    let work = || {
        let mut state = init();
        while !stop.load(Ordering::Relaxed) {
            let Some(&idx) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match f(&mut state, idx) {
                Ok(r) => results.lock().expect("no panics while held")[idx] = Some(r),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    failed
                        .lock()
                        .expect("no panics while held")
                        .get_or_insert(e);
                }
            }
        }
    };
    let n = threads.clamp(1, order.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..n {
            s.spawn(work);
        }
        work();
    });
    if let Some(e) = failed.into_inner().expect("threads joined") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("threads joined")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect())
}

/// [`try_map`] for work that cannot fail, in index order.
pub fn map<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let order: Vec<usize> = (0..n).collect();
    match try_map(
        &order,
        threads,
        || (),
        |_, i| Ok::<T, std::convert::Infallible>(f(i)),
    ) {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// Threads to use: one per core, at most `cap` (at least one).
pub fn threads(cap: usize) -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(cap.max(1))
}

/// Indices of `sizes`, largest first.
pub fn largest_first(sizes: impl ExactSizeIterator<Item = u64>) -> Vec<usize> {
    let sizes: Vec<u64> = sizes.collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(sizes[*i]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_by_index_and_the_first_error_stops_the_work() {
        let order = largest_first([3u64, 9, 1, 7].into_iter());
        assert_eq!(order, [1, 3, 0, 2]);
        let got = try_map(&order, 4, || 0u32, |_, i| Ok::<_, ()>(i * 10)).unwrap();
        assert_eq!(got, [0, 10, 20, 30]);
        let err = try_map(&order, 2, || (), |_, i| if i == 3 { Err(i) } else { Ok(i) });
        assert_eq!(err, Err(3));
        assert_eq!(map(5, 3, |i| i + 1), [1, 2, 3, 4, 5]);
    }
}
