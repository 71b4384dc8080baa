//! What the Whisper and voice CPU kernels share (the LLM's quantized kernels have their own in
//! `llm::qlinear`).
//!
//! - `vector_tier` and `widest!`: the run-time choice of vector width. The release build targets baseline
//!   x86-64 (SSE2), which would leave a loop 4 floats wide; the macro compiles the same body a
//!   second and third time for AVX2+FMA and AVX-512 and picks the widest the CPU has. The
//!   bodies are plain loops the compiler vectorises, written so that no tier reassociates or
//!   fuses differently: every tier gives the same bits.
//! - `libm_exp`: libm's exponential without its slow path at the ends of its range.
//! - `contiguous_f32`: a custom op's input as a slice.
//! - `Strided`, `gemm_f32` and `SharedOut`: gemm's nineteen arguments as three matrix views,
//!   and one output written by parallel tasks at disjoint places.

use candle_core::{CpuStorage, Layout, Result};
use gemm::Parallelism;

/// The vector units the kernels here are compiled for, widest first. Only x86-64 has tiers;
/// elsewhere `vector_tier` is `None` and portable code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// AVX-512F (with AVX2 and FMA).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 with FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// The widest tier this CPU has, if any.
pub fn vector_tier() -> Option<Tier> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(Tier::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Some(Tier::Avx2);
        }
    }
    None
}

/// `$vis fn $name(args) $body`, dispatched to the widest vector unit present.
macro_rules! widest {
    ($(#[$doc:meta])* $vis:vis $name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn widest($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::cpu_kernels::vector_tier() {
                    // SAFETY: the CPU has the features `widest` is compiled for.
                    Some($crate::cpu_kernels::Tier::Avx512) => return unsafe { widest($($arg),*) },
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    Some($crate::cpu_kernels::Tier::Avx2) => return unsafe { wide($($arg),*) },
                    None => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use widest;

widest!(
    /// `y += a · x`: the voice's direct convolution, the LLM's attention weighing its values.
    /// Each element is one product and one sum, so every tier gives the same bits.
    pub(crate) axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }
);

/// libm's `expf(x)`, bit for bit, without its slow path where the result overflows to
/// infinity or underflows to zero: glibc reaches those through a call that raises the
/// floating-point flags and sets `errno`, several times the cost of an ordinary value, and
/// scores far below a row's maximum or a large negative gate hit it often. Past the
/// thresholds here every libm returns exactly infinity or zero, so the bits are libm's.
/// For the LLM's element-wise steps, which must keep libm's bits (see `llm::swiglu`).
#[inline(always)]
pub fn libm_exp(x: f32) -> f32 {
    if x > 89.0 {
        f32::INFINITY
    } else if x < -104.0 {
        0.0
    } else {
        x.exp()
    }
}

/// The f32 values of a contiguous CPU tensor, for custom ops; `who` names the op in the error.
pub fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, who: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{who} takes contiguous f32 tensors"),
    }
}

/// A matrix in memory: element (i, j) at `ptr + i * row + j * col` (strides in elements).
#[derive(Clone, Copy)]
pub struct Strided<P> {
    pub ptr: P,
    pub row: usize,
    pub col: usize,
}

impl<P> Strided<P> {
    /// Rows `row` elements apart, each contiguous.
    pub fn rows(ptr: P, row: usize) -> Self {
        Self { ptr, row, col: 1 }
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) · rhs (k x n)`, adding onto `dst` when `accumulate`.
///
/// # Safety
/// Every element the shapes and strides reach must lie in its buffer, `dst`'s must not be
/// read or written by anyone else during the call, and `dst` must not overlap the inputs.
pub unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    accumulate: bool,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    parallelism: Parallelism,
) {
    // SAFETY: the caller's promise; gemm reads `dst` only when asked to accumulate.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.col as isize,
            dst.row as isize,
            accumulate,
            lhs.ptr,
            lhs.col as isize,
            lhs.row as isize,
            rhs.ptr,
            rhs.col as isize,
            rhs.row as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// An output buffer that parallel tasks write at disjoint places; who writes where is the
/// user's proof (each use says it at its `unsafe`).
#[derive(Clone, Copy)]
pub struct SharedOut(*mut f32);
// SAFETY: only a pointer; the writes through it are disjoint by each user's construction.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub fn new(buffer: &mut [f32]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// Over memory not yet written (a `Vec`'s spare capacity), which the users fill whole.
    pub fn uninit(buffer: &mut [std::mem::MaybeUninit<f32>]) -> Self {
        Self(buffer.as_mut_ptr().cast())
    }

    /// The element at `offset`. A method, not a field access, so that closures capture the
    /// whole (Sync) wrapper.
    pub fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libm_exp_gives_libms_bits() {
        // Across the thresholds and the ranges where libm overflows, underflows to zero and
        // returns subnormals, in steps of a thousandth.
        for i in -120_000..100_000 {
            let x = i as f32 / 1000.0;
            assert_eq!(libm_exp(x).to_bits(), x.exp().to_bits(), "exp({x})");
        }
        for x in [f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN, 0.0, -0.0] {
            assert_eq!(libm_exp(x).to_bits(), x.exp().to_bits(), "exp({x})");
        }
        assert!(libm_exp(f32::NAN).is_nan());
    }
}
