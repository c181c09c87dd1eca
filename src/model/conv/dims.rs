//! The sizes of a stride-1 convolution (and of the 2x2 pool after it, in the fused block).

use candle_core::{Layout, Result};

use crate::kernels::small::Product;

/// A convolution's sizes: input (N, C, H, W), O filters of K x K, output OH x OW, and after
/// the fused block's pool PH x PW.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub oh: usize,
    pub ow: usize,
    pub ph: usize,
    pub pw: usize,
    /// Zero padding on each side (0: valid conv, 1: same).
    pub pad: usize,
    /// The (square) kernel's side: 3 for EIDN's blocks, 5 for Deep SAD's convolutions.
    pub kernel: usize,
}

impl Dims {
    /// A stride-1 convolution of an input (N, C, H, W) by a weight (O, C, K, K) with an odd
    /// square kernel, zero-padded by `pad` (no pool: `ph`, `pw` are 0).
    pub fn conv(x: &Layout, weight: &Layout, pad: usize) -> Result<Dims> {
        let (n, c, h, w) = x.shape().dims4()?;
        let (o, wc, kh, kw) = weight.shape().dims4()?;
        if wc != c || kh != kw || kh % 2 == 0 || h + 2 * pad < kh || w + 2 * pad < kw {
            candle_core::bail!(
                "conv: input {:?} and weight {:?} do not fit an odd square kernel",
                x.shape(),
                weight.shape()
            );
        }
        let (oh, ow) = (h + 2 * pad + 1 - kh, w + 2 * pad + 1 - kw);
        Ok(Dims {
            n,
            c,
            h,
            w,
            o,
            oh,
            ow,
            ph: 0,
            pw: 0,
            pad,
            kernel: kh,
        })
    }

    /// Unrolled rows per image: C x K x K.
    pub fn k(&self) -> usize {
        self.c * self.kernel * self.kernel
    }

    /// Output positions per filter: OH x OW.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// One image's convolution as a matrix product.
    pub fn product(&self) -> Product {
        Product {
            o: self.o,
            k: self.k(),
            p: self.p(),
        }
    }

    /// Pooled outputs per image: O x PH x PW.
    pub fn pooled(&self) -> usize {
        self.o * self.ph * self.pw
    }
}
