//! Q6_K weights repacked sixteen rows at a time, for a register-tiled matrix product.
//!
//! The scheme of [`super::q4_k_x16`] for the 3B model's `attn_v` and `ffn_down` on half its
//! layers: sixteen rows interleaved four values at a time, activations broadcast four bytes at
//! a time, one output per lane. The low nibbles are paired as in Q4_K's layout and the two
//! high bits of four steps share a byte, so a 16-value scale group is three 64-byte loads for
//! all sixteen rows. After ggml's interleaved layouts; the layout and kernels are wick's own.
//! The repacked tensor is exactly the size of the GGUF one and replaces it.
//!
//! Layout, per group of sixteen rows and per 256-value super-block (`GROUP_BYTES`):
//! - `d[16]` (f16, one per row);
//! - `scales[16][16]` (signed bytes, per 16-value scale group then row);
//! - per scale group `g`, 192 bytes: two 64-byte `[16 rows][4 bytes]` arrays of low nibbles,
//!   byte `i` of row `r` holding value `16g + 8p + i` in its low nibble and `16g + 8p + 4 + i`
//!   in its high nibble (`p` = 0, 1), then 64 bytes of high bits, byte `i` of row `r` holding
//!   the two high bits of value `16g + 4s + i` at bits `2s..2s + 2` (`s` = 0..4).

#[cfg(target_arch = "x86_64")]
use super::grouped;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::grouped::Kernels;
use super::grouped::{Sizes, ROWS};
use super::q4_k::{BLOCK, Q8K};
use crate::huge_pages::HugePageBuffer;

/// Bytes of a GGUF Q6_K block.
pub const WEIGHT_BYTES: usize = 210;
const D: usize = 0;
const SCALES: usize = 2 * ROWS;
const QS: usize = SCALES + 16 * ROWS;
/// Bytes of one scale group's values, all sixteen rows.
const GROUP_VALUES: usize = 3 * 4 * ROWS;
/// Bytes of one group's super-block.
pub const GROUP_BYTES: usize = QS + 16 * GROUP_VALUES;
const SIZES: Sizes = Sizes { block: BLOCK, gguf: WEIGHT_BYTES, group: GROUP_BYTES };

/// The 6-bit value `v` (0..256) of a GGUF Q6_K block (see [`super::q6_k`]).
fn q6(w: &[u8], v: usize) -> u8 {
    let (half, i) = (v / 128, v % 128);
    let (quarter, l) = (i / 32, i % 32);
    let ql = w[64 * half + l + 32 * (quarter % 2)];
    let low = if quarter < 2 { ql & 0x0f } else { ql >> 4 };
    let high = (w[128 + 32 * half + l] >> (2 * quarter)) & 3;
    low | (high << 4)
}

/// Repacks the first `rows / 16 * 16` rows of `k` values from GGUF Q6_K blocks; the caller
/// keeps the remaining rows as they are.
pub fn repack(bytes: &[u8], k: usize) -> std::io::Result<HugePageBuffer> {
    SIZES.repack(bytes, k, |src, dst, r| {
        dst[D + 2 * r..D + 2 * r + 2].copy_from_slice(&src[208..210]);
        for sg in 0..16 {
            dst[SCALES + ROWS * sg + r] = src[192 + sg];
            let at = QS + GROUP_VALUES * sg;
            for i in 0..4 {
                for p in 0..2 {
                    let v = 16 * sg + 8 * p + i;
                    dst[at + 64 * p + 4 * r + i] = (q6(src, v) & 0x0f) | ((q6(src, v + 4) & 0x0f) << 4);
                }
                dst[at + 128 + 4 * r + i] = (0..4).map(|s| (q6(src, 16 * sg + 4 * s + i) >> 4) << (2 * s)).sum();
            }
        }
    })
}

/// The 6-bit value at byte `i` of row `r`, step `s` (0..4) of scale group `sg` in a
/// super-block of the layout.
fn value_at(gb: &[u8], sg: usize, s: usize, r: usize, i: usize) -> i32 {
    let at = QS + GROUP_VALUES * sg;
    let ql = gb[at + 64 * (s / 2) + 4 * r + i];
    let low = if s.is_multiple_of(2) { ql & 0x0f } else { ql >> 4 };
    let high = (gb[at + 128 + 4 * r + i] >> (2 * s)) & 3;
    (low | (high << 4)) as i32
}

/// Row `r` of a group (`k / 256` super-blocks in `group`) as floats, as Candle dequantizes
/// Q6_K: for a tied embedding, whose table is this tensor.
pub fn dequantize_row(group: &[u8], r: usize, out: &mut [f32]) {
    for (gb, o) in group.chunks_exact(GROUP_BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = half::f16::from_le_bytes([gb[D + 2 * r], gb[D + 2 * r + 1]]).to_f32();
        for (v, o) in o.iter_mut().enumerate() {
            let (sg, s, i) = (v / 16, v % 16 / 4, v % 4);
            *o = d * gb[SCALES + ROWS * sg + r] as i8 as f32 * (value_at(gb, sg, s, r, i) - 32) as f32;
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
            for (r, o) in o.iter_mut().enumerate() {
                let mut sum = 0i32;
                for sg in 0..16 {
                    let mut dot = 0i32;
                    for s in 0..4 {
                        for i in 0..4 {
                            dot += value_at(gb, sg, s, r, i) * xb.qs[16 * sg + 4 * s + i] as i32;
                        }
                    }
                    sum += gb[SCALES + ROWS * sg + r] as i8 as i32 * (dot - 32 * xb.bsums[sg] as i32);
                }
                // The SIMD kernels' float step, fused as theirs is: the same bits.
                let d = half::f16::from_le_bytes([gb[D + 2 * r], gb[D + 2 * r + 1]]).to_f32();
                *o = (d * xb.d).mul_add(sum as f32, *o);
            }
        }
    }
}

/// One group against `R` activation rows on 512-bit registers. Per scale group the sixteen
/// rows' values are unpacked into four registers once; each activation row sums two products
/// at a time in 16-bit lanes (at most 2 * 2 * 63 * 128 = 32256) before applying the scale.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
unsafe fn group_avx512<const R: usize>(group: &[u8], xs: [&[Q8K]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let low = _mm512_set1_epi8(0x0f);
    let pair = _mm512_set1_epi8(3);
    let low_half = _mm512_set1_epi32(0xffff);
    let bcast = |p: *const i8| _mm512_set1_epi32((p as *const i32).read_unaligned());
    // Sixteen signed bytes as 32-bit lanes: the byte in the low 16-bit half (`lo`) and,
    // shifted, in the high one (`hi`).
    let widen = |p: *const u8| _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i));
    let mut acc = [_mm512_setzero_ps(); R];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let p = gb.as_ptr();
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(D) as *const __m256i));
        // The -32 offset: sum over scale groups of scale * (the activations' sum), two
        // groups per `madd`.
        let mut offset = [_mm512_setzero_si512(); R];
        for h in 0..8 {
            let lo = _mm512_and_si512(widen(p.add(SCALES + ROWS * 2 * h)), low_half);
            let scales = _mm512_or_si512(lo, _mm512_slli_epi32(widen(p.add(SCALES + ROWS * (2 * h + 1))), 16));
            for r in 0..R {
                let sums = bcast(xs[r][b].bsums.as_ptr().add(2 * h) as *const i8);
                offset[r] = _mm512_add_epi32(offset[r], _mm512_madd_epi16(sums, scales));
            }
        }
        let mut sumi = [_mm512_setzero_si512(); R];
        for sg in 0..16 {
            let at = p.add(QS + GROUP_VALUES * sg);
            let ql0 = _mm512_loadu_si512(at as *const __m512i);
            let ql1 = _mm512_loadu_si512(at.add(64) as *const __m512i);
            let qh = _mm512_loadu_si512(at.add(128) as *const __m512i);
            let high = |shift: u32| {
                let bits = match shift {
                    0 => qh,
                    2 => _mm512_srli_epi16(qh, 2),
                    4 => _mm512_srli_epi16(qh, 4),
                    _ => _mm512_srli_epi16(qh, 6),
                };
                _mm512_slli_epi16(_mm512_and_si512(bits, pair), 4)
            };
            let w = [
                _mm512_or_si512(_mm512_and_si512(ql0, low), high(0)),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql0, 4), low), high(2)),
                _mm512_or_si512(_mm512_and_si512(ql1, low), high(4)),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql1, 4), low), high(6)),
            ];
            let s = widen(p.add(SCALES + ROWS * sg));
            let scales = _mm512_or_si512(_mm512_and_si512(s, low_half), _mm512_slli_epi32(s, 16));
            for r in 0..R {
                let x = xs[r][b].qs.as_ptr().add(16 * sg);
                let first =
                    _mm512_add_epi16(_mm512_maddubs_epi16(w[0], bcast(x)), _mm512_maddubs_epi16(w[1], bcast(x.add(4))));
                let second = _mm512_add_epi16(
                    _mm512_maddubs_epi16(w[2], bcast(x.add(8))),
                    _mm512_maddubs_epi16(w[3], bcast(x.add(12))),
                );
                sumi[r] = _mm512_add_epi32(sumi[r], _mm512_madd_epi16(first, scales));
                sumi[r] = _mm512_add_epi32(sumi[r], _mm512_madd_epi16(second, scales));
            }
        }
        for r in 0..R {
            let total = _mm512_sub_epi32(sumi[r], _mm512_slli_epi32(offset[r], 5));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(xs[r][b].d)), _mm512_cvtepi32_ps(total), acc[r]);
        }
    }
    let mut out = [[0.0f32; ROWS]; R];
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
    out
}

/// [`group_avx512`] on 256-bit registers, a half of eight rows (32 bytes of each 64-byte
/// array) after the other.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_avx2<const R: usize>(group: &[u8], xs: [&[Q8K]; R]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    let pair = _mm256_set1_epi8(3);
    let low_half = _mm256_set1_epi32(0xffff);
    let bcast = |p: *const i8| _mm256_set1_epi32((p as *const i32).read_unaligned());
    let widen = |p: *const u8| _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i));
    let mut acc = [[_mm256_setzero_ps(); R]; 2];
    for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
        let p = gb.as_ptr();
        for (h8, acc) in acc.iter_mut().enumerate() {
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p.add(D + 16 * h8) as *const __m128i));
            let mut offset = [_mm256_setzero_si256(); R];
            for h in 0..8 {
                let lo = _mm256_and_si256(widen(p.add(SCALES + ROWS * 2 * h + 8 * h8)), low_half);
                let scales =
                    _mm256_or_si256(lo, _mm256_slli_epi32(widen(p.add(SCALES + ROWS * (2 * h + 1) + 8 * h8)), 16));
                for r in 0..R {
                    let sums = bcast(xs[r][b].bsums.as_ptr().add(2 * h) as *const i8);
                    offset[r] = _mm256_add_epi32(offset[r], _mm256_madd_epi16(sums, scales));
                }
            }
            let mut sumi = [_mm256_setzero_si256(); R];
            for sg in 0..16 {
                let at = p.add(QS + GROUP_VALUES * sg + 32 * h8);
                let ql0 = _mm256_loadu_si256(at as *const __m256i);
                let ql1 = _mm256_loadu_si256(at.add(64) as *const __m256i);
                let qh = _mm256_loadu_si256(at.add(128) as *const __m256i);
                let high = |shift: u32| {
                    let bits = match shift {
                        0 => qh,
                        2 => _mm256_srli_epi16(qh, 2),
                        4 => _mm256_srli_epi16(qh, 4),
                        _ => _mm256_srli_epi16(qh, 6),
                    };
                    _mm256_slli_epi16(_mm256_and_si256(bits, pair), 4)
                };
                let w = [
                    _mm256_or_si256(_mm256_and_si256(ql0, low), high(0)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), high(2)),
                    _mm256_or_si256(_mm256_and_si256(ql1, low), high(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), high(6)),
                ];
                let s = widen(p.add(SCALES + ROWS * sg + 8 * h8));
                let scales = _mm256_or_si256(_mm256_and_si256(s, low_half), _mm256_slli_epi32(s, 16));
                for r in 0..R {
                    let x = xs[r][b].qs.as_ptr().add(16 * sg);
                    let first = _mm256_add_epi16(
                        _mm256_maddubs_epi16(w[0], bcast(x)),
                        _mm256_maddubs_epi16(w[1], bcast(x.add(4))),
                    );
                    let second = _mm256_add_epi16(
                        _mm256_maddubs_epi16(w[2], bcast(x.add(8))),
                        _mm256_maddubs_epi16(w[3], bcast(x.add(12))),
                    );
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(first, scales));
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(second, scales));
                }
            }
            for r in 0..R {
                let total = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(offset[r], 5));
                acc[r] =
                    _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xs[r][b].d)), _mm256_cvtepi32_ps(total), acc[r]);
            }
        }
    }
    grouped::avx2_sums(&acc)
}

#[cfg(target_arch = "x86_64")]
// SAFETY: loads stay inside a GROUP_BYTES super-block (64 bytes from QS + 192g + 0, 64, 128; 16 from SCALES + 16g; 32 from D) and inside an activation block (four bytes from 16g + 12 <= 252, and pairs of its 16 sums).
const AVX512: Kernels<Q8K, 8> = unsafe { Kernels::new(group_avx512::<8>, group_avx512::<1>) };
#[cfg(target_arch = "x86_64")]
// SAFETY: as for AVX512, with 32-byte loads at 32h within each 64-byte array.
const AVX2: Kernels<Q8K, 4> = unsafe { Kernels::new(group_avx2::<4>, group_avx2::<1>) };

/// [`group_avx512`] on aarch64 with the dot-product extension: a quarter of four rows (16
/// bytes of each 64-byte array) after the other, a scale group's 16 products per row summed
/// by four `sdot`s. The float steps are the x86 kernels', so both give the same bits.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon,dotprod")]
unsafe fn group_neon<const R: usize>(group: &[u8], xs: [&[Q8K]; R]) -> [[f32; ROWS]; R] {
    use super::neon::{dot16, f16x4, i8x4, load, store_quarter};
    use std::arch::aarch64::*;
    let (low, pair) = (vdupq_n_u8(0x0f), vdupq_n_u8(3));
    let mut out = [[0.0f32; ROWS]; R];
    for q in 0..ROWS / 4 {
        let mut acc = [vdupq_n_f32(0.0); R];
        for (b, gb) in group.chunks_exact(GROUP_BYTES).enumerate() {
            let p = gb.as_ptr();
            let d = f16x4(p.add(D + 8 * q));
            let mut sumi = [vdupq_n_s32(0); R];
            for sg in 0..16 {
                let at = p.add(QS + GROUP_VALUES * sg + 16 * q);
                let (ql0, ql1, qh) = (vld1q_u8(at), vld1q_u8(at.add(64)), vld1q_u8(at.add(128)));
                // Step s: the low four bits from a nibble, the high two from bits 2s..2s + 2.
                let high = |bits: uint8x16_t| vshlq_n_u8::<4>(vandq_u8(bits, pair));
                let w = [
                    vreinterpretq_s8_u8(vorrq_u8(vandq_u8(ql0, low), high(qh))),
                    vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(ql0), high(vshrq_n_u8::<2>(qh)))),
                    vreinterpretq_s8_u8(vorrq_u8(vandq_u8(ql1, low), high(vshrq_n_u8::<4>(qh)))),
                    vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(ql1), high(vshrq_n_u8::<6>(qh)))),
                ];
                let scales = i8x4(p.add(SCALES + ROWS * sg + 4 * q));
                for r in 0..R {
                    let xb = &xs[r][b];
                    // Starting from -32 times the activations' sum carries the values' offset.
                    let offset = vdupq_n_s32(-32 * xb.bsums[sg] as i32);
                    let dot = dot16(offset, w, load(xb.qs.as_ptr().add(16 * sg) as *const u8));
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
// SAFETY: loads stay inside a GROUP_BYTES super-block (16 bytes from QS + 192g + 16q + 0, 64,
// 128; 8 from D + 8q; 4 from SCALES + 16g + 4q) and an activation block (16 bytes from 16g,
// and its sums).
const NEON: Kernels<Q8K, 4> = unsafe { Kernels::new(group_neon::<4>, group_neon::<1>) };

super::grouped::entry_points!(Q8K, super::q4_k::quantize, super::q6_k::dots, avx512);
