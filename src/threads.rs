//! How many threads one job's compute may use. By default all of candle's (RAYON_NUM_THREADS,
//! else the cores); `reproduce --jobs N` runs N cells at once and gives each job's thread its
//! share, which the CPU kernels (`model::fast`, the detectors) read here. Sums never depend on
//! it, so results are the same for any share.

use std::cell::Cell;

thread_local! {
    /// 0: no budget set on this thread.
    static BUDGET: Cell<usize> = const { Cell::new(0) };
}

/// Threads the machine offers (candle's count).
pub fn available() -> usize {
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
