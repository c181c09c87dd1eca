//! The machine's FP32 peak, measured: every thread (RAYON_NUM_THREADS, else the cores) runs
//! independent fused multiply-adds in the widest vector lanes the CPU has, for about a
//! second. `just bench-vs-pytorch` divides each training step's GFLOP/s by it (issue 14: a
//! fraction of the peak says how much a faster kernel could still give, where a ratio to
//! PyTorch does not). Prints `peak_gflops <value>` for the script to read.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Independent accumulators: enough to cover the FMA latency on two ports.
const ACC: usize = 12;

/// Runs `iters` rounds of `ACC` vector multiply-adds in lanes of type `V`; returns one lane
/// of the sum so nothing is elided. Written with the intrinsics: left to the compiler, the
/// array version vectorised across the accumulators through memory.
macro_rules! fma_rounds {
    ($name:ident, $feature:literal, $v:ty, $set1:ident, $fma:ident, $add:ident, $first:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(iters: u64, a: f32, b: f32) -> f32 {
            use std::arch::x86_64::*;
            let (va, vb): ($v, $v) = ($set1(a), $set1(b));
            let mut acc: [$v; ACC] = [$set1(1.0); ACC];
            for _ in 0..iters {
                for v in acc.iter_mut() {
                    *v = $fma(*v, va, vb);
                }
            }
            let mut sum = acc[0];
            for v in &acc[1..] {
                sum = $add(sum, *v);
            }
            $first(sum)
        }
    };
}

fma_rounds!(
    fma_avx512,
    "avx512f,fma",
    __m512,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_cvtss_f32
);
fma_rounds!(
    fma_avx2,
    "avx2,fma",
    __m256,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_cvtss_f32
);

/// Without vector fused multiply-adds: plain multiply-adds, counted as 2 FLOPs each.
fn scalar_rounds(iters: u64, a: f32, b: f32) -> f32 {
    let mut acc = [1f32; ACC];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = *v * a + b;
        }
    }
    acc.iter().sum()
}

/// `iters` rounds of multiply-adds with multiplier `a` and addend `b`.
type Rounds = fn(u64, f32, f32) -> f32;

/// The widest lanes this CPU runs fused multiply-adds in, and a loop over them.
fn kernel() -> (&'static str, usize, Rounds) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the features are present (checked just above).
            return ("avx512f", 16, |n, a, b| unsafe { fma_avx512(n, a, b) });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return ("avx2", 8, |n, a, b| unsafe { fma_avx2(n, a, b) });
        }
    }
    ("scalar", 1, scalar_rounds)
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (name, lanes, run) = kernel();
    // Calibrate one thread's rounds per ~0.1 s, then time ~1 s on every thread at once.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        black_box(run(black_box(iters), black_box(0.9999), black_box(1e-4)));
        if t.elapsed() > Duration::from_millis(100) {
            break;
        }
        iters *= 2;
    }
    iters *= 10;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| black_box(run(black_box(iters), black_box(0.9999), black_box(1e-4))));
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let flops = 2.0 * (ACC * lanes) as f64 * iters as f64 * threads as f64;
    let gflops = flops / secs / 1e9;
    println!("fp32 peak: {gflops:.1} GFLOP/s on {threads} threads ({name} fused multiply-adds)");
    println!("peak_gflops {gflops:.3}");
}
