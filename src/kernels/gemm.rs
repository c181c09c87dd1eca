//! The matrix product of the gemm crate (the kernel under candle's own matmul), with its
//! bounds checked so that callers stay safe.

/// `c (m x n) = [c +] a (m x k) * b (k x n)`, each matrix given with its row and column
/// strides. Bounds are checked here so the unsafe call cannot read or write outside the
/// slices.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Copy + From<f32> + 'static>(
    (m, n, k): (usize, usize, usize),
    a: &[T],
    (a_rs, a_cs): (usize, usize),
    b: &[T],
    (b_rs, b_cs): (usize, usize),
    c: &mut [T],
    (c_rs, c_cs): (usize, usize),
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    if k > 0 {
        assert!(
            last(m, k, a_rs, a_cs) < a.len(),
            "matmul: lhs out of bounds"
        );
        assert!(
            last(k, n, b_rs, b_cs) < b.len(),
            "matmul: rhs out of bounds"
        );
    }
    assert!(
        last(m, n, c_rs, c_cs) < c.len(),
        "matmul: dst out of bounds"
    );
    // SAFETY: every index the kernel touches is within the slices (asserted above); the
    // slices do not alias (one is &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::from(1.0),
            T::from(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
