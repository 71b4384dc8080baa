//! Q8_0 weights repacked sixteen rows at a time, for a register-tiled matrix product.
//!
//! SmolLM2's output projection (tied to its embedding) is Q8_0, and was a fifth of its
//! generation through Candle's one-row product. The scheme of [`super::q4_k_x16`]: sixteen
//! rows interleaved four values at a time, activations broadcast. Both sides are signed here,
//! so each product goes through `maddubs` as |w| times x with w's sign (ggml's trick for
//! Q8_0); AVX-512BW has no 512-bit byte sign instruction, so the kernel is AVX2's on both. The
//! activations are Q4_1's (ggml's x86 Q8_1 quantization, whose `d` and values are Q8_0's).
//! The repacked tensor is the size of the GGUF one and replaces it.
//!
//! Layout, per group of sixteen rows and per 32-value block (`GROUP_BYTES`): `d[16]` (f16,
//! one per row), then quants `[8 steps][16 rows][4 bytes]`: byte `i` of row `r` at step `t`
//! is value `4t + i` of that row's block.

#[cfg(target_arch = "x86_64")]
use super::grouped;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::grouped::Kernels;
use super::grouped::{Sizes, ROWS};
use super::q4_1::{BLOCK, Q8};
use crate::huge_pages::HugePageBuffer;

/// Bytes of a GGUF Q8_0 block.
pub const WEIGHT_BYTES: usize = 34;
const D: usize = 0;
const QS: usize = 2 * ROWS;
/// Bytes of one group's block.
pub const GROUP_BYTES: usize = QS + ROWS * BLOCK;
const SIZES: Sizes = Sizes { block: BLOCK, gguf: WEIGHT_BYTES, group: GROUP_BYTES };

/// Repacks the first `rows / 16 * 16` rows of `k` values from GGUF Q8_0 blocks; the caller
/// keeps the remaining rows as they are.
pub fn repack(bytes: &[u8], k: usize) -> std::io::Result<HugePageBuffer> {
    SIZES.repack(bytes, k, |src, dst, r| {
        dst[D + 2 * r..D + 2 * r + 2].copy_from_slice(&src[0..2]);
        for t in 0..8 {
            dst[QS + 64 * t + 4 * r..QS + 64 * t + 4 * r + 4].copy_from_slice(&src[2 + 4 * t..6 + 4 * t]);
        }
    })
}

fn d_at(gb: &[u8], r: usize) -> f32 {
    half::f16::from_le_bytes([gb[D + 2 * r], gb[D + 2 * r + 1]]).to_f32()
}

/// Row `r` of a group (`k / 32` blocks in `group`) as floats, as Candle dequantizes Q8_0.
pub fn dequantize_row(group: &[u8], r: usize, out: &mut [f32]) {
    for (gb, o) in group.chunks_exact(GROUP_BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = d_at(gb, r);
        for (v, o) in o.iter_mut().enumerate() {
            *o = gb[QS + 64 * (v / 4) + 4 * r + v % 4] as i8 as f32 * d;
        }
    }
}

/// `out[t][r] = dot(row r of the group, xs[t])`, reading the layout value by value: the
/// reference the SIMD kernel is tested against.
pub fn group_dots_portable(group: &[u8], xs: &[&[Q8]], out: &mut [[f32; ROWS]]) {
    for (x, o) in xs.iter().zip(out) {
        *o = [0.0; ROWS];
        for (gb, xb) in group.chunks_exact(GROUP_BYTES).zip(x.iter()) {
            for (r, o) in o.iter_mut().enumerate() {
                let dot: i32 =
                    (0..BLOCK).map(|v| gb[QS + 64 * (v / 4) + 4 * r + v % 4] as i8 as i32 * xb.qs[v] as i32).sum();
                // The SIMD kernel's float step, fused as theirs is: the same bits.
                *o = (d_at(gb, r) * xb.d).mul_add(dot as f32, *o);
            }
        }
    }
}

/// One group against `R` activation rows, a half of eight rows per 256-bit register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_avx2<const R: usize>(group: &[u8], xs: [&[Q8]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let bcast = |p: *const i8| _mm256_set1_epi32((p as *const i32).read_unaligned());
    let mut acc = [[_mm256_setzero_ps(); R]; 2];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let p = gb.as_ptr();
        let mut sums = [[_mm256_setzero_si256(); R]; 2];
        for t in 0..8 {
            for (h, sums) in sums.iter_mut().enumerate() {
                let w = _mm256_loadu_si256(p.add(QS + 64 * t + 32 * h) as *const __m256i);
                let magnitude = _mm256_sign_epi8(w, w);
                for r in 0..R {
                    let x = bcast(xs[r][b].qs.as_ptr().add(4 * t));
                    // |w| * (x with w's sign): pairs fit i16 (at most 2 * 128 * 127).
                    let products = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(x, w));
                    sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(products, ones));
                }
            }
        }
        for (h, acc) in acc.iter_mut().enumerate() {
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p.add(D + 16 * h) as *const __m128i));
            for r in 0..R {
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r][b].d));
                acc[r] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums[h][r]), acc[r]);
            }
        }
    }
    grouped::avx2_sums(&acc)
}

#[cfg(target_arch = "x86_64")]
// SAFETY: loads stay inside a GROUP_BYTES block (32 bytes from QS + 64t + 32h, 16 from D +
// 16h) and an activation block (four bytes from 4t <= 28).
const AVX2: Kernels<Q8, 4> = unsafe { Kernels::new(group_avx2::<4>, group_avx2::<1>) };

/// [`group_avx2`] on aarch64 with the dot-product extension: a quarter of four rows (16 bytes
/// of each 64-byte step) after the other, a block's 32 products per row summed by eight
/// `sdot`s (signed by signed, so no sign trick). The float steps are the x86 kernel's, so both
/// give the same bits.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon,dotprod")]
unsafe fn group_neon<const R: usize>(group: &[u8], xs: [&[Q8]; R]) -> [[f32; ROWS]; R] {
    use super::neon::{dot32_at, f16x4, load, store_quarter};
    use std::arch::aarch64::*;
    let mut out = [[0.0f32; ROWS]; R];
    for q in 0..ROWS / 4 {
        let mut acc = [vdupq_n_f32(0.0); R];
        for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
            let p = gb.as_ptr();
            let d = f16x4(p.add(D + 8 * q));
            let mut w = [vdupq_n_s8(0); 8];
            for (t, w) in w.iter_mut().enumerate() {
                *w = load(p.add(QS + 64 * t + 16 * q));
            }
            for r in 0..R {
                let xb = &xs[r][b];
                let dot = dot32_at(&w, xb.qs.as_ptr());
                acc[r] = vfmaq_f32(acc[r], vmulq_n_f32(d, xb.d), vcvtq_f32_s32(dot));
            }
        }
        store_quarter(&mut out, q, &acc);
    }
    out
}

#[cfg(target_arch = "aarch64")]
// SAFETY: loads stay inside a GROUP_BYTES block (16 bytes from QS + 64t + 16q, 8 from D + 8q)
// and an activation block (16 bytes from 0 and 16).
const NEON: Kernels<Q8, 4> = unsafe { Kernels::new(group_neon::<4>, group_neon::<1>) };

/// The dot product of one GGUF Q8_0 row with activations: for the at most fifteen rows past
/// the last group, so plain code.
pub fn row_dot(w: &[u8], x: &[Q8]) -> f32 {
    w.chunks_exact(WEIGHT_BYTES)
        .zip(x)
        .map(|(wb, xb)| {
            let d = half::f16::from_le_bytes([wb[0], wb[1]]).to_f32();
            let dot: i32 = wb[2..].iter().zip(&xb.qs).map(|(&w, &x)| w as i8 as i32 * x as i32).sum();
            d * xb.d * dot as f32
        })
        .sum()
}

super::grouped::entry_points!(Q8, super::q4_1::quantize, |row, xs, out| {
    for (o, x) in out.iter_mut().zip(xs) {
        *o = row_dot(row, x);
    }
});
