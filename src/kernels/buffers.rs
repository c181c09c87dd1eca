//! Scratch buffers kept between training steps, and the allocator setting that keeps freed
//! memory mapped.
//!
//! Why: a training step frees and reallocates buffers of several MB (the unrolled inputs,
//! conv outputs, pool winners); fresh ones come back as pages whose first-touch faults cost
//! as much as the arithmetic of the first conv block.

use std::sync::Mutex;

/// Buffers handed back by finished ops (the unrolled inputs, tens of MB, conv outputs and
/// the pool winners), so that a training loop does not allocate and first-touch them every step:
/// page faults on fresh buffers cost as much as the arithmetic of the first block.
static F32_POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
static U32_POOL: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 8;

/// A buffer of exactly `len` values with arbitrary contents (callers overwrite it whole):
/// the smallest kept buffer that fits, so that a small request does not take the one a large
/// request then has to map afresh.
fn take<T: Copy + Default>(pool: &Mutex<Vec<Vec<T>>>, len: usize) -> Vec<T> {
    let mut pool = pool.lock().expect("buffer pool");
    let best = (pool.iter().enumerate())
        .filter(|(_, b)| b.capacity() >= len)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i);
    let mut buf = best.map_or_else(Vec::new, |i| pool.swap_remove(i));
    drop(pool);
    buf.truncate(len);
    buf.resize(len, T::default());
    buf
}

/// Keeps `buf` for a later [`take`]; a full pool keeps its largest buffers.
fn give_back<T>(pool: &Mutex<Vec<Vec<T>>>, buf: Vec<T>) {
    let mut pool = pool.lock().expect("buffer pool");
    if pool.len() < POOL_MAX {
        pool.push(buf);
    } else if let Some(smallest) = pool.iter_mut().min_by_key(|b| b.capacity()) {
        if smallest.capacity() < buf.capacity() {
            *smallest = buf;
        }
    }
}

/// A float buffer of `len` values (arbitrary contents) from the pool the conv ops share.
pub fn take_f32(len: usize) -> Vec<f32> {
    take(&F32_POOL, len)
}

/// Hands a buffer from [`take_f32`] back.
pub fn give_back_f32(buf: Vec<f32>) {
    give_back(&F32_POOL, buf)
}

/// The same as [`take_f32`] for pool winners.
pub fn take_u32(len: usize) -> Vec<u32> {
    take(&U32_POOL, len)
}

/// Hands a buffer from [`take_u32`] back.
pub fn give_back_u32(buf: Vec<u32>) {
    give_back(&U32_POOL, buf)
}

/// Asks glibc's malloc to keep freed memory instead of unmapping it: every training step
/// frees and reallocates buffers of several MB (activations, gradients) that candle owns, and
/// with glibc's defaults each comes back as fresh pages whose first-touch faults cost ~20 %
/// of a 3x32x32 step. Process-wide, so binaries call it once at start; a no-op elsewhere.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; called before heavy use.
    unsafe {
        // 32 MiB is glibc's largest mmap threshold on 64-bit; above it mallopt refuses.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
