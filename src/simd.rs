//! Run-time choice of vector width for wick's element-wise CPU kernels. The release build
//! targets baseline x86-64 (SSE2), which would leave a loop 4 floats wide; `widest!` compiles
//! the same body a second and third time for AVX2+FMA and AVX-512 and picks the widest the CPU
//! has. The bodies are plain loops the compiler vectorises, written so that no tier
//! reassociates or fuses differently: every tier gives the same bits.

use candle_core::{CpuStorage, Layout, Result};

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
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `widest` is compiled for.
                    return unsafe { widest($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use widest;

/// The f32 values of a contiguous CPU tensor, for custom ops; `who` names the op in the error.
pub fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, who: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{who} takes contiguous f32 tensors"),
    }
}
