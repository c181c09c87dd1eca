//! Loops compiled for the CPU's widest vector units, chosen at run time.

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function of the same
/// arguments) compiled for the widest vector units this CPU has (AVX-512 or AVX2, with FMA),
/// else as built. Why: the crate is built for baseline x86-64, whose 4-lane SSE2 leaves plain
/// loops at a quarter or less of what the core can do.
macro_rules! vectorised {
    ($(#[$doc:meta])* fn $name:ident => $body:ident($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("fma") {
                    if is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU has the features `avx512` is compiled for.
                        return unsafe { avx512($($arg),*) };
                    }
                    if is_x86_feature_detected!("avx2") {
                        // SAFETY: as above, for `avx2`.
                        return unsafe { avx2($($arg),*) };
                    }
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use vectorised;

/// `y += a x`, `N` long (0: as long as `y`).
#[inline(always)]
pub fn axpy<const N: usize>(y: &mut [f32], x: &[f32], a: f32) {
    if N == 0 {
        for (t, s) in y.iter_mut().zip(x) {
            *t = a.mul_add(*s, *t);
        }
    } else {
        let y: &mut [f32; N] = y.try_into().expect("N long");
        let x: &[f32; N] = x.try_into().expect("N long");
        for i in 0..N {
            y[i] = a.mul_add(x[i], y[i]);
        }
    }
}
