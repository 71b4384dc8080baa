//! Q4_K weights repacked sixteen rows at a time, for a register-tiled matrix product.
//!
//! [`super::q4_k`] multiplies one weight row with several activation rows, and every pair
//! pays for a horizontal sum, a float conversion and the minimums' term per block. Here the
//! weights of sixteen rows are interleaved four values at a time, so one 512-bit register
//! holds the same four positions of all sixteen rows: an activation's four bytes broadcast
//! against it give sixteen outputs' partial sums in the lanes, and nothing is ever summed
//! across lanes. The design follows ggml's `block_q4_Kx8` and its gemm/gemv kernels (rows
//! interleaved at load, activations broadcast); the layout and the kernels are wick's own:
//! sixteen rows so that one register spans a group on AVX-512 and two on AVX2, nibbles paired
//! so that one load serves two steps, and products of one 32-value sub-block summed in 16-bit
//! lanes before its scale is applied once.
//!
//! The repacked tensor replaces the GGUF one and is exactly its size: the 6-bit scales and
//! minimums stay packed, in an order a kernel widens to bytes with a few whole-register
//! operations per super-block ([`scales_and_mins`]). Stored as bytes they made the tensor
//! 2.8 % larger, and generation, which streams every weight once a token, that much slower.
//!
//! Generation (one activation row) reads each weight once, in address order, and leaves the
//! stream to the hardware prefetchers, in every repacked layout's kernels. Software prefetches
//! two blocks ahead, which they used to issue, cost more than they gave on a Zen 4 host: one
//! thread streamed Q4_K tensors at 13-15 GB/s with them and 15-17 without, Q6_K at 16 and 20,
//! and the 3B generated 10-15 % faster without them at one and two threads.
//!
//! Layout, per group of sixteen rows and per 256-value super-block (`GROUP_BYTES`):
//! - `d[16]`, then `dmin[16]` (f16, one per row);
//! - `low[8][16]`: byte `r` of sub-block `j` holds the low four bits of row `r`'s scale in its
//!   low nibble and of its minimum in its high nibble;
//! - `high[4][16]`: byte `r` of `q` holds the two high bits of row `r`'s scale for sub-blocks
//!   `q` and `q + 4` at bits 0 and 2, and of its minimum for the same sub-blocks at 4 and 6;
//! - quants `[8 sub-blocks][4 steps][16 rows][4 bytes]`: byte `i` of row `r` at step `t` of
//!   sub-block `j` holds value `32j + 8t + i` of that row in its low nibble and value
//!   `32j + 8t + 4 + i` in its high nibble.

#[cfg(target_arch = "x86_64")]
use super::grouped;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::grouped::Kernels;
use super::grouped::{Sizes, ROWS};
use super::q4_k::{self, BLOCK, Q8K};
use crate::huge_pages::HugePageBuffer;

const D: usize = 0;
const DMIN: usize = 32;
const LOW: usize = 64;
const HIGH: usize = LOW + 8 * ROWS;
const QS: usize = HIGH + 4 * ROWS;
/// Where the widened scales and minimums of [`scales_and_mins`] are: `[8 sub-blocks][16 rows]`
/// bytes each.
const SCALES: usize = 0;
const MINS: usize = 8 * ROWS;
/// Bytes of one group's super-block.
pub const GROUP_BYTES: usize = QS + ROWS * BLOCK / 2;
const SIZES: Sizes = Sizes { block: BLOCK, gguf: q4_k::WEIGHT_BYTES, group: GROUP_BYTES };

/// The 4-bit value `v` (0..256) of a GGUF Q4_K block: each 32 bytes of nibbles hold 64 values,
/// the low nibbles first.
fn nibble(qs: &[u8], v: usize) -> u8 {
    let (chunk, i) = (v / 64, v % 64);
    let byte = qs[32 * chunk + i % 32];
    if i < 32 {
        byte & 0x0f
    } else {
        byte >> 4
    }
}

/// Repacks the first `rows / 16 * 16` rows of `k` values from GGUF Q4_K blocks; the caller
/// keeps the remaining rows as they are.
pub fn repack(bytes: &[u8], k: usize) -> std::io::Result<HugePageBuffer> {
    SIZES.repack(bytes, k, |src, dst, r| {
        dst[D + 2 * r..D + 2 * r + 2].copy_from_slice(&src[0..2]);
        dst[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&src[2..4]);
        let (sc, mn) = q4_k::scales_mins(&src[4..16]);
        for j in 0..8 {
            dst[LOW + ROWS * j + r] = (sc[j] & 0x0f) | (mn[j] << 4);
        }
        for q in 0..4 {
            let high = |v: [u8; 8]| (v[q] >> 4) | ((v[q + 4] >> 4) << 2);
            dst[HIGH + ROWS * q + r] = high(sc) | (high(mn) << 4);
        }
        let qs = &src[16..];
        for j in 0..8 {
            for t in 0..4 {
                for i in 0..4 {
                    let v = 32 * j + 8 * t + i;
                    dst[QS + 256 * j + 64 * t + 4 * r + i] = nibble(qs, v) | (nibble(qs, v + 4) << 4);
                }
            }
        }
    })
}

/// The scales and minimums of a group's super-block at `p`, widened to bytes: `[8][16]` of
/// each (at [`SCALES`] and [`MINS`]). Every byte is a few bitwise steps on bytes at the same
/// index, so the loop compiles to whole-register operations in the kernels it is inlined into.
///
/// # Safety
/// `QS` bytes are readable at `p`.
#[inline(always)]
unsafe fn scales_and_mins(p: *const u8) -> [u8; 16 * ROWS] {
    let low = std::slice::from_raw_parts(p.add(LOW), 8 * ROWS);
    let high = std::slice::from_raw_parts(p.add(HIGH), 4 * ROWS);
    let mut out = [0u8; 16 * ROWS];
    let (scales, mins) = out.split_at_mut(8 * ROWS);
    for i in 0..4 * ROWS {
        let (h, first, second) = (high[i], low[i], low[4 * ROWS + i]);
        scales[i] = (first & 0x0f) | ((h << 4) & 0x30);
        scales[4 * ROWS + i] = (second & 0x0f) | ((h << 2) & 0x30);
        mins[i] = (first >> 4) | (h & 0x30);
        mins[4 * ROWS + i] = (second >> 4) | ((h >> 2) & 0x30);
    }
    out
}

fn f16_at(p: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([p[at], p[at + 1]]).to_f32()
}

/// Row `r` of a group (`k / 256` super-blocks in `group`) as floats, as Candle dequantizes
/// Q4_K (the scale and the minimum's products first, unfused): for a tied embedding, whose
/// table is this tensor.
pub fn dequantize_row(group: &[u8], r: usize, out: &mut [f32]) {
    for (gb, o) in group.chunks_exact(GROUP_BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let (d, dmin) = (f16_at(gb, D + 2 * r), f16_at(gb, DMIN + 2 * r));
        // SAFETY: a super-block is GROUP_BYTES > QS long.
        let sm = unsafe { scales_and_mins(gb.as_ptr()) };
        for (v, o) in o.iter_mut().enumerate() {
            // Value 32j + 8t + i is in the low nibble of byte i at step t, 32j + 8t + 4 + i in
            // the high one.
            let (j, t, i) = (v / 32, v % 32 / 8, v % 4);
            let byte = gb[QS + 256 * j + 64 * t + 4 * r + i];
            let q = if v % 8 < 4 { byte & 0x0f } else { byte >> 4 };
            let (scale, min) = (sm[SCALES + ROWS * j + r] as f32, sm[MINS + ROWS * j + r] as f32);
            *o = d * scale * q as f32 - dmin * min;
        }
    }
}

/// `out[t][r] = dot(row r of the group, xs[t])`, reading the layout value by value: the
/// reference the SIMD kernels are tested against, bit for bit (the integer sums are exact, and
/// the float steps are theirs, in their order).
pub fn group_dots_portable(group: &[u8], xs: &[&[Q8K]], out: &mut [[f32; ROWS]]) {
    for (x, o) in xs.iter().zip(out) {
        *o = [0.0; ROWS];
        for (gb, xb) in group.chunks_exact(GROUP_BYTES).zip(x.iter()) {
            // SAFETY: a super-block is GROUP_BYTES > QS long.
            let sm = unsafe { scales_and_mins(gb.as_ptr()) };
            for (r, o) in o.iter_mut().enumerate() {
                let (mut sumi, mut summ) = (0i32, 0i32);
                for j in 0..8 {
                    let mut dot = 0i32;
                    for t in 0..4 {
                        for i in 0..4 {
                            let byte = gb[QS + 256 * j + 64 * t + 4 * r + i];
                            let v = 32 * j + 8 * t + i;
                            dot += (byte & 0x0f) as i32 * xb.qs[v] as i32 + (byte >> 4) as i32 * xb.qs[v + 4] as i32;
                        }
                    }
                    sumi += sm[SCALES + ROWS * j + r] as i32 * dot;
                    summ += sm[MINS + ROWS * j + r] as i32 * (xb.bsums[2 * j] as i32 + xb.bsums[2 * j + 1] as i32);
                }
                // The SIMD kernels' float steps, fused as theirs are: the same bits.
                *o = (-(f16_at(gb, DMIN + 2 * r) * xb.d)).mul_add(summ as f32, *o);
                *o = (f16_at(gb, D + 2 * r) * xb.d).mul_add(sumi as f32, *o);
            }
        }
    }
}

/// Four bytes of an activation row broadcast to every 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bcast4(p: *const i8) -> std::arch::x86_64::__m512i {
    std::arch::x86_64::_mm512_set1_epi32((p as *const i32).read_unaligned())
}

/// Sixteen bytes as 32-bit lanes with the byte in both 16-bit halves: a `madd` multiplier.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn both_halves(p: *const u8) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i));
    _mm512_or_si512(v, _mm512_slli_epi32(v, 16))
}

/// Sub-block `j` of a group's super-block at `p` as eight registers of 4-bit values: register
/// `s` holds values `8(s/2)..+4` of each row for even `s` (low nibbles), the next four for odd
/// `s` (high nibbles); see the layout, and [`step_at`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn nibbles(p: *const u8, j: usize) -> [std::arch::x86_64::__m512i; 8] {
    use std::arch::x86_64::*;
    let low = _mm512_set1_epi8(0x0f);
    let mut w = [_mm512_setzero_si512(); 8];
    for t in 0..4 {
        let packed = _mm512_loadu_si512(p.add(QS + 256 * j + 64 * t) as *const __m512i);
        w[2 * t] = _mm512_and_si512(packed, low);
        w[2 * t + 1] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
    }
    w
}

/// Where register `s` of [`nibbles`] finds its four activations within the sub-block.
#[cfg(target_arch = "x86_64")]
const fn step_at(s: usize) -> usize {
    8 * (s / 2) + 4 * (s % 2)
}

/// One group against `R` activation rows on 512-bit registers.
///
/// Per sub-block the group's 512 weight bytes are unpacked into eight registers once; each
/// activation row then broadcasts its four-byte steps against them and sums the eight
/// products in 16-bit lanes (at most 8 * 2 * 15 * 128 = 30720), applying the sub-block's
/// scales once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
unsafe fn group_avx512<const R: usize>(group: &[u8], xs: [&[Q8K]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let p = gb.as_ptr();
        let sm = scales_and_mins(p);
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(D) as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(DMIN) as *const __m256i));
        // The minimums' term first, folded into the float sums, so its integers die here.
        let mut summ = [_mm512_setzero_si512(); R];
        for j in 0..8 {
            let mins = both_halves(sm.as_ptr().add(MINS + ROWS * j));
            for r in 0..R {
                // The pair of 16-value sums of sub-block j, each multiplied by the minimum.
                let pair = bcast4(xs[r][b].bsums.as_ptr().add(2 * j) as *const i8);
                summ[r] = _mm512_add_epi32(summ[r], _mm512_madd_epi16(pair, mins));
            }
        }
        for r in 0..R {
            let scale = _mm512_mul_ps(dmin, _mm512_set1_ps(xs[r][b].d));
            acc[r] = _mm512_fnmadd_ps(scale, _mm512_cvtepi32_ps(summ[r]), acc[r]);
        }
        let mut sumi = [_mm512_setzero_si512(); R];
        for j in 0..8 {
            let w = nibbles(p, j);
            let scales = both_halves(sm.as_ptr().add(SCALES + ROWS * j));
            for r in 0..R {
                let x = xs[r][b].qs.as_ptr().add(32 * j);
                let mut dot = _mm512_maddubs_epi16(w[0], bcast4(x));
                for (s, ws) in w.iter().enumerate().skip(1) {
                    dot = _mm512_add_epi16(dot, _mm512_maddubs_epi16(*ws, bcast4(x.add(step_at(s)))));
                }
                sumi[r] = _mm512_add_epi32(sumi[r], _mm512_madd_epi16(dot, scales));
            }
        }
        for r in 0..R {
            let scale = _mm512_mul_ps(d, _mm512_set1_ps(xs[r][b].d));
            acc[r] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[r]), acc[r]);
        }
    }
    let mut out = [[0.0f32; ROWS]; R];
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
    out
}

/// [`group_avx512`] with AVX-512 VNNI: `vpdpbusd` adds four bytes' products a lane straight
/// into 32 bits, so a sub-block's eight products per activation row need no 16-bit sums, and
/// its scales multiply the 32-bit sum (`vpmulld`) instead of going through a `madd`; the
/// minimums' pairs are summed by `vpdpwssd`. The integers are `group_avx512`'s, so are the
/// bits. With a tensor's groups in L2, on one Zen 4 core: 1.17x as fast for one activation
/// row (49 to 57 GB/s of weights) and 1.19x for a tile of eight. From memory, generation is
/// mostly bound by the stream itself; prompts are bound by this arithmetic.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
unsafe fn group_avx512_vnni<const R: usize>(group: &[u8], xs: [&[Q8K]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let p = gb.as_ptr();
        let sm = scales_and_mins(p);
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(D) as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(DMIN) as *const __m256i));
        let mut summ = [_mm512_setzero_si512(); R];
        for j in 0..8 {
            let mins = both_halves(sm.as_ptr().add(MINS + ROWS * j));
            for r in 0..R {
                let pair = bcast4(xs[r][b].bsums.as_ptr().add(2 * j) as *const i8);
                summ[r] = _mm512_dpwssd_epi32(summ[r], pair, mins);
            }
        }
        for r in 0..R {
            let scale = _mm512_mul_ps(dmin, _mm512_set1_ps(xs[r][b].d));
            acc[r] = _mm512_fnmadd_ps(scale, _mm512_cvtepi32_ps(summ[r]), acc[r]);
        }
        let mut sumi = [_mm512_setzero_si512(); R];
        for j in 0..8 {
            let w = nibbles(p, j);
            let scales = _mm512_cvtepu8_epi32(_mm_loadu_si128(sm.as_ptr().add(SCALES + ROWS * j) as *const __m128i));
            for r in 0..R {
                let x = xs[r][b].qs.as_ptr().add(32 * j);
                let mut dot = _mm512_setzero_si512();
                for (s, ws) in w.iter().enumerate() {
                    dot = _mm512_dpbusd_epi32(dot, *ws, bcast4(x.add(step_at(s))));
                }
                sumi[r] = _mm512_add_epi32(sumi[r], _mm512_mullo_epi32(dot, scales));
            }
        }
        for r in 0..R {
            let scale = _mm512_mul_ps(d, _mm512_set1_ps(xs[r][b].d));
            acc[r] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[r]), acc[r]);
        }
    }
    let mut out = [[0.0f32; ROWS]; R];
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
    out
}

/// [`group_avx512`] on 256-bit registers: a group is two halves of eight rows (the first and
/// last 32 bytes of each 64-byte step), taken one after the other so that a half's eight
/// unpacked registers and the activation rows' sums fit the sixteen registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_avx2<const R: usize>(group: &[u8], xs: [&[Q8K]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    let bcast = |p: *const i8| _mm256_set1_epi32((p as *const i32).read_unaligned());
    let both_halves = |p: *const u8| {
        let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
        _mm256_or_si256(v, _mm256_slli_epi32(v, 16))
    };
    let mut acc = [[_mm256_setzero_ps(); R]; 2];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let sm = scales_and_mins(gb.as_ptr());
        for (h, acc) in acc.iter_mut().enumerate() {
            let p = gb.as_ptr();
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p.add(D + 16 * h) as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(p.add(DMIN + 16 * h) as *const __m128i));
            let mut summ = [_mm256_setzero_si256(); R];
            for j in 0..8 {
                let mins = both_halves(sm.as_ptr().add(MINS + ROWS * j + 8 * h));
                for r in 0..R {
                    let pair = bcast(xs[r][b].bsums.as_ptr().add(2 * j) as *const i8);
                    summ[r] = _mm256_add_epi32(summ[r], _mm256_madd_epi16(pair, mins));
                }
            }
            for r in 0..R {
                let scale = _mm256_mul_ps(dmin, _mm256_set1_ps(xs[r][b].d));
                acc[r] = _mm256_fnmadd_ps(scale, _mm256_cvtepi32_ps(summ[r]), acc[r]);
            }
            let mut sumi = [_mm256_setzero_si256(); R];
            for j in 0..8 {
                let mut w = [_mm256_setzero_si256(); 8];
                for t in 0..4 {
                    let packed = _mm256_loadu_si256(p.add(QS + 256 * j + 64 * t + 32 * h) as *const __m256i);
                    w[2 * t] = _mm256_and_si256(packed, low);
                    w[2 * t + 1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
                }
                let scales = both_halves(sm.as_ptr().add(SCALES + ROWS * j + 8 * h));
                for r in 0..R {
                    let x = xs[r][b].qs.as_ptr().add(32 * j);
                    let mut dot = _mm256_maddubs_epi16(w[0], bcast(x));
                    for (s, ws) in w.iter().enumerate().skip(1) {
                        let at = 8 * (s / 2) + 4 * (s % 2);
                        dot = _mm256_add_epi16(dot, _mm256_maddubs_epi16(*ws, bcast(x.add(at))));
                    }
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(dot, scales));
                }
            }
            for r in 0..R {
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(xs[r][b].d));
                acc[r] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
    }
    grouped::avx2_sums(&acc)
}

#[cfg(target_arch = "x86_64")]
// SAFETY: loads stay inside a GROUP_BYTES super-block (at most 64 bytes from QS + 256j + 64t), the 256 widened scales and minimums (16 bytes from 16j and 128 + 16j) and an activation block (four bytes from 32j + at <= 252, and the pairs of its 16 sums).
const AVX512: Kernels<Q8K, 8> = unsafe { Kernels::new(group_avx512::<8>, group_avx512::<1>) };
#[cfg(target_arch = "x86_64")]
// SAFETY: the loads of AVX512's kernels; `best` runs these only where the CPU has AVX-512 VNNI.
const AVX512_VNNI: Kernels<Q8K, 8> = unsafe { Kernels::new(group_avx512_vnni::<8>, group_avx512_vnni::<1>) };
#[cfg(target_arch = "x86_64")]
// SAFETY: as for AVX512, with 32-byte loads at 32h within each 64-byte array.
const AVX2: Kernels<Q8K, 4> = unsafe { Kernels::new(group_avx2::<4>, group_avx2::<1>) };

/// [`group_avx512`] on aarch64 with the dot-product extension: a quarter of four rows (16
/// bytes of each 64-byte step) after the other, a sub-block's 32 products per row summed by
/// eight `sdot`s before its scales are applied. The float steps are the x86 kernels', in
/// their order, so both give the same bits.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon,dotprod")]
unsafe fn group_neon<const R: usize>(group: &[u8], xs: [&[Q8K]; R]) -> [[f32; ROWS]; R] {
    use super::neon::{dot32_at, f16x4, nibbles, store_quarter, u8x4};
    use std::arch::aarch64::*;
    let mut out = [[0.0f32; ROWS]; R];
    for q in 0..ROWS / 4 {
        let mut acc = [vdupq_n_f32(0.0); R];
        for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
            let p = gb.as_ptr();
            let sm = scales_and_mins(p);
            let (d, dmin) = (f16x4(p.add(D + 8 * q)), f16x4(p.add(DMIN + 8 * q)));
            let mut summ = [vdupq_n_s32(0); R];
            for j in 0..8 {
                let mins = u8x4(sm.as_ptr().add(MINS + ROWS * j + 4 * q));
                for r in 0..R {
                    let bsums = &xs[r][b].bsums;
                    summ[r] = vmlaq_n_s32(summ[r], mins, bsums[2 * j] as i32 + bsums[2 * j + 1] as i32);
                }
            }
            for r in 0..R {
                acc[r] = vfmsq_f32(acc[r], vmulq_n_f32(dmin, xs[r][b].d), vcvtq_f32_s32(summ[r]));
            }
            let mut sumi = [vdupq_n_s32(0); R];
            for j in 0..8 {
                // Step 2t holds values 32j + 8t..+4 (low nibbles), step 2t + 1 the next four.
                let mut w = [vdupq_n_s8(0); 8];
                for t in 0..4 {
                    (w[2 * t], w[2 * t + 1]) = nibbles(p.add(QS + 256 * j + 64 * t + 16 * q));
                }
                let scales = u8x4(sm.as_ptr().add(SCALES + ROWS * j + 4 * q));
                for r in 0..R {
                    let dot = dot32_at(&w, xs[r][b].qs.as_ptr().add(32 * j));
                    sumi[r] = vmlaq_s32(sumi[r], dot, scales);
                }
            }
            for r in 0..R {
                acc[r] = vfmaq_f32(acc[r], vmulq_n_f32(d, xs[r][b].d), vcvtq_f32_s32(sumi[r]));
            }
        }
        store_quarter(&mut out, q, &acc);
    }
    out
}

#[cfg(target_arch = "aarch64")]
// SAFETY: loads stay inside a GROUP_BYTES super-block (16 bytes from QS + 256j + 64t + 16q, 8
// from D + 8q and DMIN + 8q), the 256 widened scales and minimums (4 bytes from 16j + 4q and
// 128 + 16j + 4q) and an activation block (16 bytes from 32j and 32j + 16, and its sums).
const NEON: Kernels<Q8K, 4> = unsafe { Kernels::new(group_neon::<4>, group_neon::<1>) };

super::grouped::entry_points!(Q8K, q4_k::quantize, q4_k::dots, avx512, vnni);
