//! How many threads one job's compute may use, decided once per process by [`init`].
//!
//! By default all of candle's (RAYON_NUM_THREADS, else the cores); `reproduce --jobs N` runs
//! N cells at once, by default one per core with candle on one thread, and with fewer gives
//! each job's thread its share ([`with_budget`]), which the CPU kernels read here. Sums never
//! depend on the share, so results are the same for any.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

thread_local! {
    /// 0: no budget set on this thread.
    static BUDGET: Cell<usize> = const { Cell::new(0) };
}

/// What [`init`] decided: (jobs it was asked for, candle's thread count).
static FIXED: OnceLock<(usize, usize)> = OnceLock::new();

/// Parts of a batch per thread. Why more than one: with one share of the batch each, the
/// first thread done waits for the slowest (candle's `BarrierGuard` spin).
const PARTS_PER_THREAD: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("the thread count was fixed for {fixed} job(s) at a time; it cannot change to {asked} in the same process")]
pub struct AlreadyFixed {
    pub fixed: usize,
    pub asked: usize,
}

/// The one start-up call: fixes the threads of this process for `jobs` cells run at once and
/// returns candle's thread count. Call it before any compute (the binary and the benches do);
/// a later call with the same `jobs` returns the same count, another `jobs` is an error.
///
/// It sets `RAYON_NUM_THREADS` (when unset): with at least one job per core to 1, so every
/// job runs its whole step on its own thread (a step has serial parts during which a second
/// thread of the same network waits), else to the cores. Why set it at all: candle otherwise
/// asks the OS at every matrix product. It also puts faer (LDA's linear algebra) on one
/// thread: its products and eigensolver split by thread count, and the last digits of LDA's
/// directions moved with it, so records would depend on the core count.
pub fn init(jobs: usize) -> Result<usize, AlreadyFixed> {
    let jobs = jobs.max(1);
    let &(fixed, count) = FIXED.get_or_init(|| {
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let cores = cores();
            let n = if jobs > 1 && jobs >= cores { 1 } else { cores };
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        faer::set_global_parallelism(faer::Par::Seq);
        (jobs, cores())
    });
    if fixed != jobs {
        return Err(AlreadyFixed { fixed, asked: jobs });
    }
    Ok(count)
}

/// Threads the process has: candle's count as fixed by [`init`] (which a library caller that
/// never called it gets here, as for one job).
pub fn available() -> usize {
    match FIXED.get() {
        Some(&(_, count)) => count,
        None => init(1).expect("first call fixes the count"),
    }
}

/// The cores candle would use (RAYON_NUM_THREADS when set, else the machine's): the default
/// number of cells a grid runs at once. Asks the OS each time; [`available`] is the fixed count.
pub fn cores() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

/// Threads the calling job may use.
pub fn budget() -> usize {
    match BUDGET.with(Cell::get) {
        0 => available(),
        n => n,
    }
}

/// Runs `f` with this thread's budget set to `threads` (0: no budget).
pub fn with_budget<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let before = BUDGET.with(|b| b.replace(threads));
    let out = f();
    BUDGET.with(|b| b.set(before));
    out
}

/// Runs `f` on every part, over at most [`budget`] threads, and returns the results in the
/// parts' order. Threads take the next part as they finish one, so callers cut the work
/// into a few parts per thread and a slow thread holds the others up by one part at most.
///
/// Why candle's barrier pool when the job has every thread: candle runs its own large
/// element-wise ops on that pool, whose workers spin for a while after each op before they
/// sleep. Fresh threads started right after such an op (as `std::thread::scope` does) share
/// the cores with the spinning workers: on 2 cores a Deep SAD CIFAR-10 step lost 14 % to
/// that. On the pool, the spinning worker is the one that takes the next part, and no thread
/// is started per call. A job with a share of the cores (`--jobs N`) starts its own threads,
/// since the pool runs one call at a time.
pub fn run_parts<P: Send, R: Send>(parts: Vec<P>, f: impl Fn(P) -> R + Sync) -> Vec<R> {
    let threads = budget().min(parts.len());
    if threads <= 1 {
        return parts.into_iter().map(f).collect();
    }
    let n = parts.len();
    let parts: Vec<Mutex<Option<P>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(part) = parts.get(i) else { break };
        let part = part
            .lock()
            .expect("part")
            .take()
            .expect("each part runs once");
        *results[i].lock().expect("result") = Some(f(part));
    };
    let pool = candle_core::utils::barrier_pool();
    if budget() < available() || pool.n_workers() + 1 < threads {
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            work();
        });
    } else {
        // The pool calls `tid` 0..=workers (the caller is the last); only `threads` work.
        pool.execute(|tid| {
            if tid < threads {
                work();
            }
        });
    }
    (results.into_iter())
        .map(|r| r.into_inner().expect("result").expect("every part ran"))
        .collect()
}

/// Splits `0..n` images into contiguous ranges for `threads`: one when single-threaded, else
/// up to [`PARTS_PER_THREAD`] per thread, which take them as they go
/// ([`run_parts`]).
pub fn ranges(n: usize, threads: usize) -> Vec<std::ops::Range<usize>> {
    let parts = if threads > 1 {
        threads * PARTS_PER_THREAD
    } else {
        1
    };
    let per = n.div_ceil(parts).max(1);
    (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect()
}

/// `buf` cut into the [`ranges`] of `n` images over `threads`, `per` values per image.
pub fn split_images<T>(n: usize, threads: usize, buf: &mut [T], per: usize) -> Vec<&mut [T]> {
    let mut rest = buf;
    let mut parts = Vec::new();
    for r in ranges(n, threads) {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(r.len() * per);
        rest = tail;
        parts.push(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_per_thread_and_restored() {
        let all = budget();
        with_budget(1, || {
            assert_eq!(budget(), 1);
            // Another thread has no budget set.
            assert_eq!(std::thread::spawn(budget).join().unwrap(), all);
        });
        assert_eq!(budget(), all);
    }

    #[test]
    fn init_fixes_the_count_once() {
        let n = available();
        assert_eq!(init(1).unwrap(), n);
        let e = init(3).unwrap_err();
        assert_eq!((e.fixed, e.asked), (1, 3));
    }

    #[test]
    fn ranges_cover_the_images_in_order() {
        for (n, t) in [(0, 1), (1, 2), (7, 2), (100, 3)] {
            let r = ranges(n, t);
            let flat: Vec<usize> = r.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..n).collect::<Vec<_>>());
            assert!(r.len() <= t * PARTS_PER_THREAD || t == 1);
        }
        let mut buf: Vec<usize> = (0..14).collect();
        let parts = split_images(7, 2, &mut buf, 2);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 14);
    }
}
