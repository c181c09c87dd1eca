//! Convolutions on the CPU as candle custom ops with their own forward and backward passes:
//! EIDN's fused conv + ReLU + pool block ([`ConvBlock`]) and a plain bias-free convolution
//! ([`Conv`], Deep SAD's), plus the pieces Deep SAD's fused convolution + batch norm is built
//! on. Why: with candle's stock ops a training step spent ~80 % of its time in conv2d's
//! backward pass. Off the CPU the networks keep candle's own ops ([`enabled`]).
//!
//! Per image, the input is unrolled (im2col) and multiplied by the weights (kernels::small);
//! images are split over the job's threads, each running single-threaded products on its
//! own images (small matrices parallelise badly inside gemm).

mod backward;
mod block;
mod dims;
mod im2col;
mod plain;
mod pool;
mod tensor;
mod winners;

use candle_core::Device;

pub(crate) use backward::backward;
pub use block::ConvBlock;
pub(crate) use dims::Dims;
pub(crate) use plain::conv_forward_then;
pub use plain::Conv;
pub(crate) use pool::max4;
pub use pool::max_pool2x2;
pub(crate) use tensor::f32_slice;

/// Whether the fast path applies on this device (CPU only; CUDA keeps candle's kernels).
pub fn enabled(device: &Device) -> bool {
    device.is_cpu()
}
