//! A one-class SVM fit on 50,000 2-D points (a large user's normal pool, embedded), with its
//! wall time and the process's peak resident memory, both printed. With a dense kernel matrix
//! (linfa-svm, before) this needed ~20 GB; the solver's kernel cache is bounded (200 MiB by
//! default), so the peak should stay far under 2 GB. `just bench-vs-sklearn` runs it.
//!
//!     cargo bench --bench ocsvm_memory [-- N]

use std::time::Instant;

use eidn::detect::{AnomalyScorer, OneClassSvmParams};
use ndarray::Array2;

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments overrides the size.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000usize);
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        let v = ((i as f64) * 12.9898 + (j as f64) * 78.233).sin() * 43758.5453;
        v - v.floor()
    });
    let before = peak_rss_mib();
    let start = Instant::now();
    let svm = OneClassSvmParams::default().fit(&x).expect("fit");
    let fit_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let scores = svm.score(&x).expect("score");
    let score_s = start.elapsed().as_secs_f64();
    let outside = scores.iter().filter(|&&s| s > 0.0).count();
    let dense_gib = (n * n * 8) as f64 / (1u64 << 30) as f64;
    println!(
        "one-class SVM on {n} x 2: fit {fit_s:.2} s, score {score_s:.2} s, {} support vectors, \
         {:.1} % of training points outside (nu = 0.1)",
        svm.n_support(),
        100.0 * outside as f64 / n as f64
    );
    match (before, peak_rss_mib()) {
        (Some(b), Some(p)) => println!(
            "peak resident memory: {p:.0} MiB (before the fit {b:.0} MiB; a dense f64 kernel \
             matrix would be {dense_gib:.1} GiB)"
        ),
        _ => println!("peak resident memory: not available on this system (no /proc)"),
    }
}

/// VmHWM of this process from /proc (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
