//! Q4_1 weights repacked sixteen rows at a time, for a register-tiled matrix product.
//!
//! The same scheme as [`super::q4_k_x16`] for SmolLM2's type: sixteen rows interleaved four
//! values at a time, an activation's four bytes broadcast against them, and each lane one
//! output, so that a 32-value block costs one float step per sixteen outputs instead of a
//! horizontal sum per output. After ggml's interleaved (`_x8`) layouts; the layout and kernels
//! are wick's own. The repacked tensor is the size of the GGUF one and replaces it.
//!
//! Layout, per group of sixteen rows and per 32-value block (`GROUP_BYTES`): `d[16]`, then
//! `m[16]` (f16, one per row), then quants `[4 steps][16 rows][4 bytes]`: byte `i` of row `r`
//! at step `t` holds value `8t + i` of that row's block in its low nibble and `8t + 4 + i`
//! in its high nibble.

#[cfg(target_arch = "x86_64")]
use super::grouped;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::grouped::Kernels;
use super::grouped::{Sizes, ROWS};
use super::q4_1::{self, BLOCK, Q8};
use crate::huge_pages::HugePageBuffer;

const D: usize = 0;
const M: usize = 2 * ROWS;
const QS: usize = 4 * ROWS;
/// Bytes of one group's block.
pub const GROUP_BYTES: usize = QS + ROWS * BLOCK / 2;
const SIZES: Sizes = Sizes { block: BLOCK, gguf: q4_1::WEIGHT_BYTES, group: GROUP_BYTES };

/// Repacks the first `rows / 16 * 16` rows of `k` values from GGUF Q4_1 blocks; the caller
/// keeps the remaining rows as they are.
pub fn repack(bytes: &[u8], k: usize) -> std::io::Result<HugePageBuffer> {
    SIZES.repack(bytes, k, |src, dst, r| {
        dst[D + 2 * r..D + 2 * r + 2].copy_from_slice(&src[0..2]);
        dst[M + 2 * r..M + 2 * r + 2].copy_from_slice(&src[2..4]);
        // GGUF's nibbles: byte j holds value j (low) and j + 16 (high).
        let value = |v: usize| if v < 16 { src[4 + v] & 0x0f } else { src[4 + v - 16] >> 4 };
        for t in 0..4 {
            for i in 0..4 {
                let v = 8 * t + i;
                dst[QS + 64 * t + 4 * r + i] = value(v) | (value(v + 4) << 4);
            }
        }
    })
}

fn f16_at(p: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([p[at], p[at + 1]]).to_f32()
}

/// Row `r` of a group (`k / 32` blocks in `group`) as floats, as Candle dequantizes Q4_1: for
/// a tied embedding, whose table is this tensor.
pub fn dequantize_row(group: &[u8], r: usize, out: &mut [f32]) {
    for (gb, o) in group.chunks_exact(GROUP_BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let (d, m) = (f16_at(gb, D + 2 * r), f16_at(gb, M + 2 * r));
        for (v, o) in o.iter_mut().enumerate() {
            // Value 8t + i is in the low nibble of byte i at step t, 8t + 4 + i in the high one.
            let byte = gb[QS + 64 * (v / 8) + 4 * r + v % 4];
            let q = if v % 8 < 4 { byte & 0x0f } else { byte >> 4 };
            *o = q as f32 * d + m;
        }
    }
}

/// `out[t][r] = dot(row r of the group, xs[t])`, reading the layout value by value: the
/// reference the SIMD kernels are tested against, bit for bit (the integer sums are exact, and
/// the float steps are theirs, in their order).
pub fn group_dots_portable(group: &[u8], xs: &[&[Q8]], out: &mut [[f32; ROWS]]) {
    for (x, o) in xs.iter().zip(out) {
        *o = [0.0; ROWS];
        for (gb, xb) in group.chunks_exact(GROUP_BYTES).zip(x.iter()) {
            for (r, o) in o.iter_mut().enumerate() {
                let mut dot = 0i32;
                for t in 0..4 {
                    for i in 0..4 {
                        let byte = gb[QS + 64 * t + 4 * r + i];
                        let v = 8 * t + i;
                        dot += (byte & 0x0f) as i32 * xb.qs[v] as i32 + (byte >> 4) as i32 * xb.qs[v + 4] as i32;
                    }
                }
                // The SIMD kernels' float steps, fused as theirs are: the same bits.
                *o = (f16_at(gb, D + 2 * r) * xb.d).mul_add(dot as f32, *o);
                *o = f16_at(gb, M + 2 * r).mul_add(xb.s, *o);
            }
        }
    }
}

/// One group against `R` activation rows on 512-bit registers: a block's 256 weight bytes
/// are unpacked into eight registers once, and each activation row sums its eight products in
/// 16-bit lanes (at most 8 * 2 * 15 * 128 = 30720).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
unsafe fn group_avx512<const R: usize>(group: &[u8], xs: [&[Q8]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let low = _mm512_set1_epi8(0x0f);
    let ones = _mm512_set1_epi16(1);
    let bcast = |p: *const i8| _mm512_set1_epi32((p as *const i32).read_unaligned());
    let mut acc = [_mm512_setzero_ps(); R];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let p = gb.as_ptr();
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(D) as *const __m256i));
        let m = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(M) as *const __m256i));
        let mut w = [_mm512_setzero_si512(); 8];
        for t in 0..4 {
            let packed = _mm512_loadu_si512(p.add(QS + 64 * t) as *const __m512i);
            w[2 * t] = _mm512_and_si512(packed, low);
            w[2 * t + 1] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
        }
        for r in 0..R {
            let xb = &xs[r][b];
            let x = xb.qs.as_ptr();
            let mut dot = _mm512_maddubs_epi16(w[0], bcast(x));
            for (s, ws) in w.iter().enumerate().skip(1) {
                // Register s holds values 8(s/2)..+4 for even s, the next four for odd s.
                let at = 8 * (s / 2) + 4 * (s % 2);
                dot = _mm512_add_epi16(dot, _mm512_maddubs_epi16(*ws, bcast(x.add(at))));
            }
            let dot = _mm512_cvtepi32_ps(_mm512_madd_epi16(dot, ones));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(xb.d)), dot, acc[r]);
            acc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(xb.s), acc[r]);
        }
    }
    let mut out = [[0.0f32; ROWS]; R];
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
    out
}

/// [`group_avx512`] on 256-bit registers, a half of eight rows (32 bytes of each 64-byte
/// step) after the other.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_avx2<const R: usize>(group: &[u8], xs: [&[Q8]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let bcast = |p: *const i8| _mm256_set1_epi32((p as *const i32).read_unaligned());
    let mut acc = [[_mm256_setzero_ps(); R]; 2];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let p = gb.as_ptr();
        for (h, acc) in acc.iter_mut().enumerate() {
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p.add(D + 16 * h) as *const __m128i));
            let m = _mm256_cvtph_ps(_mm_loadu_si128(p.add(M + 16 * h) as *const __m128i));
            let mut w = [_mm256_setzero_si256(); 8];
            for t in 0..4 {
                let packed = _mm256_loadu_si256(p.add(QS + 64 * t + 32 * h) as *const __m256i);
                w[2 * t] = _mm256_and_si256(packed, low);
                w[2 * t + 1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
            }
            for r in 0..R {
                let xb = &xs[r][b];
                let x = xb.qs.as_ptr();
                let mut dot = _mm256_maddubs_epi16(w[0], bcast(x));
                for (s, ws) in w.iter().enumerate().skip(1) {
                    let at = 8 * (s / 2) + 4 * (s % 2);
                    dot = _mm256_add_epi16(dot, _mm256_maddubs_epi16(*ws, bcast(x.add(at))));
                }
                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, ones));
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb.d)), dot, acc[r]);
                acc[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(xb.s), acc[r]);
            }
        }
    }
    grouped::avx2_sums(&acc)
}

#[cfg(target_arch = "x86_64")]
// SAFETY: loads stay inside a GROUP_BYTES block (64 bytes from QS + 64t, 32 from D and M) and an activation block (four bytes from at <= 28).
const AVX512: Kernels<Q8, 8> = unsafe { Kernels::new(group_avx512::<8>, group_avx512::<1>) };
#[cfg(target_arch = "x86_64")]
// SAFETY: as for AVX512, with 32-byte loads at 32h within each 64-byte array.
const AVX2: Kernels<Q8, 4> = unsafe { Kernels::new(group_avx2::<4>, group_avx2::<1>) };

/// [`group_avx512`] on aarch64 with the dot-product extension: a quarter of four rows (16
/// bytes of each 64-byte step) after the other, a block's 32 products per row summed by eight
/// `sdot`s. The float steps are the x86 kernels', in their order, so both give the same bits.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon,dotprod")]
unsafe fn group_neon<const R: usize>(group: &[u8], xs: [&[Q8]; R]) -> [[f32; ROWS]; R] {
    use super::neon::{dot32_at, f16x4, nibbles, store_quarter};
    use std::arch::aarch64::*;
    let mut out = [[0.0f32; ROWS]; R];
    for q in 0..ROWS / 4 {
        let mut acc = [vdupq_n_f32(0.0); R];
        for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
            let p = gb.as_ptr();
            let (d, m) = (f16x4(p.add(D + 8 * q)), f16x4(p.add(M + 8 * q)));
            // Step 2t holds values 8t..+4 (low nibbles), step 2t + 1 the next four.
            let mut w = [vdupq_n_s8(0); 8];
            for t in 0..4 {
                (w[2 * t], w[2 * t + 1]) = nibbles(p.add(QS + 64 * t + 16 * q));
            }
            for r in 0..R {
                let xb = &xs[r][b];
                let dot = dot32_at(&w, xb.qs.as_ptr());
                acc[r] = vfmaq_f32(acc[r], vmulq_n_f32(d, xb.d), vcvtq_f32_s32(dot));
                acc[r] = vfmaq_n_f32(acc[r], m, xb.s);
            }
        }
        store_quarter(&mut out, q, &acc);
    }
    out
}

#[cfg(target_arch = "aarch64")]
// SAFETY: loads stay inside a GROUP_BYTES block (16 bytes from QS + 64t + 16q, 8 from D + 8q
// and M + 8q) and an activation block (16 bytes from 0 and 16).
const NEON: Kernels<Q8, 4> = unsafe { Kernels::new(group_neon::<4>, group_neon::<1>) };

super::grouped::entry_points!(Q8, q4_1::quantize, q4_1::dots, avx512);
