//! Reading candle's CPU storage as plain f32 slices, for the custom ops' own loops.

use candle_core::{CpuStorage, Layout, Result, Tensor};

/// A contiguous f32 storage's values (`what` names the operand in errors).
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("conv block: {what} must be f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("conv block: {what} must be contiguous"),
    }
}

/// Runs `f` on a CPU tensor's contiguous f32 values, without copying them.
pub(crate) fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(f(f32_slice(s, layout, what)?)),
        _ => candle_core::bail!("conv: {what} is not on the CPU"),
    }
}

/// Runs a backward pass `f` on the input's values; makes its dx a tensor when `need_dx`.
pub(crate) fn on_values(
    x: &Tensor,
    need_dx: bool,
    f: impl FnOnce(&[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>),
) -> Result<(Option<Tensor>, Vec<f32>, Vec<f32>)> {
    let (dx, dw, db) = with_f32(x, "input", f)?;
    let dx = if need_dx {
        Some(Tensor::from_vec(dx, x.shape(), x.device())?)
    } else {
        None
    };
    Ok((dx, dw, db))
}
