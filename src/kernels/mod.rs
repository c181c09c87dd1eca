//! CPU kernels shared by the networks (`model`) and the classical detectors (`detect`):
//! the gemm product, loops compiled for the widest vector units, a convolution's products at
//! every size, scratch buffers kept between steps, and the threads a job may use.

pub mod buffers;
mod gemm;
pub mod small;
pub mod threads;
mod vector;

pub use gemm::matmul;
pub use vector::axpy;
pub(crate) use vector::vectorised;
