//! How many threads one job's compute may use. By default all of candle's (RAYON_NUM_THREADS,
//! else the cores); `reproduce --jobs N` runs N cells at once, by default one per core with
//! candle on one thread ([`fix_count_for_jobs`]), and with fewer gives each job's thread its
//! share, which the CPU kernels (`model::fast`, the detectors) read here. Sums never depend on
//! it, so results are the same for any share.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

thread_local! {
    /// 0: no budget set on this thread.
    static BUDGET: Cell<usize> = const { Cell::new(0) };
}

/// Threads the machine offers (candle's count), asked once.
pub fn available() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(cores)
}

/// Fixes candle's thread count for the process by setting `RAYON_NUM_THREADS` (when unset)
/// to the count candle detects. Why: without it, candle asks the OS at every matrix product
/// (reading the CPU mask and /proc/cpuinfo), 3 % of an EIDN training step. Call it before
/// any thread starts.
pub fn fix_count() {
    fix_count_for_jobs(1)
}

/// [`fix_count`] for `jobs` cells run at once: with at least one job per core, candle gets
/// one thread, so every job runs its whole step on its own thread.
///
/// Why: a training step has serial parts (candle's small ops, the optimiser, the loss)
/// during which a second thread of the same network waits; on 2 cores an EIDN CIFAR-10 step
/// took 20.8 ms on 2 threads and 31.8 ms on one, and two single-threaded networks side by
/// side 31.6 ms each: 1.3x the cells per hour. Jobs sharing candle's threads instead
/// queue on its one pool (1.3x slower than one job).
pub fn fix_count_for_jobs(jobs: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = cores();
        let n = if jobs > 1 && jobs >= cores { 1 } else { cores };
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// The cores candle would use (RAYON_NUM_THREADS when set, else the machine's): the default
/// number of cells a grid runs at once.
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

/// Runs `f` with this thread's budget set to `threads` (0: no budget).
pub fn with_budget<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let before = BUDGET.with(|b| b.replace(threads));
    let out = f();
    BUDGET.with(|b| b.set(before));
    out
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
}
