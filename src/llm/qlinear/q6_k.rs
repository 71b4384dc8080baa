//! Q6_K weights against 8-bit activations, several activation rows per weight row.
//!
//! A Q6_K super-block holds 256 values in 210 bytes: 128 bytes of low nibbles, 64 bytes of
//! high bit pairs, sixteen signed 8-bit scales (one per 16 values) and an f16 `d`; value =
//! d * scale * (q - 32) for the 6-bit q. The layout follows ggml's `block_q6_K` so GGUF files
//! are read as they are; the activations are the same Q8K as Q4_K's, whose sums per 16 carry
//! the -32 offset through the product.
//!
//! Candle's Q6_K dot product takes one activation row at a time, so a prompt unpacked every
//! weight block once per token. The 3B model's `attn_v` and `ffn_down` are Q6_K on half its
//! layers (llama.cpp's Q4_K_M rule); here a block is unpacked once per sixteen prompt rows.

use super::q4_k::{BLOCK, Q8K};

const WEIGHT_BYTES: usize = 210;
const QH: usize = 128;
const SCALES: usize = 192;
const D: usize = 208;

fn d(w: &[u8]) -> f32 {
    half::f16::from_le_bytes([w[D], w[D + 1]]).to_f32()
}

/// The 6-bit value `v` (0..256) of a block: the low nibbles of 64 bytes of `ql` per half,
/// bytes 0..32 then 32..64, low nibbles first; the high pairs from `qh`, two bits per quarter.
fn q6(w: &[u8], v: usize) -> i32 {
    let (half, i) = (v / 128, v % 128);
    let (quarter, l) = (i / 32, i % 32);
    let ql = w[64 * half + l + 32 * (quarter % 2)];
    let low = if quarter < 2 { ql & 0x0f } else { ql >> 4 };
    let high = (w[QH + 32 * half + l] >> (2 * quarter)) & 3;
    (low | (high << 4)) as i32
}

pub fn dot_portable(w: &[u8], x: &[Q8K]) -> f32 {
    w.chunks_exact(WEIGHT_BYTES)
        .zip(x)
        .map(|(wb, xb)| {
            let mut sum = 0i32;
            for g in 0..BLOCK / 16 {
                let scale = wb[SCALES + g] as i8 as i32;
                let dot: i32 = (16 * g..16 * g + 16).map(|v| q6(wb, v) * xb.qs[v] as i32).sum();
                sum += scale * (dot - 32 * xb.bsums[g] as i32);
            }
            d(wb) * xb.d * sum as f32
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<const R: usize>(w: &[u8], xs: [&[Q8K]; R]) -> [f32; R] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    let low = _mm256_set1_epi8(0x0f);
    let pair = _mm256_set1_epi8(3);
    for (b, wb) in w.chunks_exact(WEIGHT_BYTES).enumerate() {
        let d = d(wb);
        let p = wb.as_ptr();
        // The block unpacked once: eight 32-value segments of 6-bit values (0..64), each with
        // its two scales spread over 16 lanes, and all sixteen scales for the offset's term.
        let mut q = [_mm256_setzero_si256(); 8];
        let mut scales = [_mm256_setzero_si256(); 8];
        for half in 0..2 {
            let ql0 = _mm256_loadu_si256(p.add(64 * half) as *const __m256i);
            let ql1 = _mm256_loadu_si256(p.add(64 * half + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(p.add(QH + 32 * half) as *const __m256i);
            let high = |shift: i32| {
                let bits = match shift {
                    0 => qh,
                    2 => _mm256_srli_epi16(qh, 2),
                    4 => _mm256_srli_epi16(qh, 4),
                    _ => _mm256_srli_epi16(qh, 6),
                };
                _mm256_slli_epi16(_mm256_and_si256(bits, pair), 4)
            };
            let s = 4 * half;
            q[s] = _mm256_or_si256(_mm256_and_si256(ql0, low), high(0));
            q[s + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low), high(2));
            q[s + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), high(4));
            q[s + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), high(6));
            for k in 0..4 {
                let g = 8 * half + 2 * k;
                let sc = |i: usize| wb[SCALES + i] as i8 as i16;
                scales[s + k] = _mm256_set_m128i(_mm_set1_epi16(sc(g + 1)), _mm_set1_epi16(sc(g)));
            }
        }
        let all_scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(SCALES) as *const __m128i));
        for r in 0..R {
            let xb = &xs[r][b];
            let mut sumi = _mm256_setzero_si256();
            for (j, (qj, sj)) in q.iter().zip(&scales).enumerate() {
                let x8 = _mm256_loadu_si256(xb.qs.as_ptr().add(32 * j) as *const __m256i);
                // Pairs of 6-bit x byte products fit i16 (at most 2 * 63 * 128); times the
                // 8-bit scale and summed in pairs they fit i32.
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(*qj, x8), *sj));
            }
            // The -32 offset: 32 * sum over groups of scale * (the activations' sum).
            let bsums = _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i);
            let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, all_scales), 5);
            let total = _mm256_sub_epi32(sumi, offset);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(total), acc[r]);
        }
    }
    let mut out = [0.0f32; R];
    for r in 0..R {
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
        out[r] = lanes.iter().sum::<f32>();
    }
    out
}

/// [`dot_avx2`] on 512-bit registers: each multiply covers two consecutive 32-value segments.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
unsafe fn dot_avx512<const R: usize>(w: &[u8], xs: [&[Q8K]; R]) -> [f32; R] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    let low = _mm256_set1_epi8(0x0f);
    let pair = _mm256_set1_epi8(3);
    for (b, wb) in w.chunks_exact(WEIGHT_BYTES).enumerate() {
        let d = d(wb);
        let p = wb.as_ptr();
        let mut q = [_mm512_setzero_si512(); 4];
        let mut scales = [_mm512_setzero_si512(); 4];
        let sc = |i: usize| _mm256_set1_epi16(wb[SCALES + i] as i8 as i16);
        let join = |a: __m256i, b: __m256i| _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
        for half in 0..2 {
            let ql0 = _mm256_loadu_si256(p.add(64 * half) as *const __m256i);
            let ql1 = _mm256_loadu_si256(p.add(64 * half + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(p.add(QH + 32 * half) as *const __m256i);
            let high = |bits: __m256i| _mm256_slli_epi16(_mm256_and_si256(bits, pair), 4);
            let q0 = _mm256_or_si256(_mm256_and_si256(ql0, low), high(qh));
            let q1 = _mm256_or_si256(_mm256_and_si256(ql1, low), high(_mm256_srli_epi16(qh, 2)));
            let q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), high(_mm256_srli_epi16(qh, 4)));
            let q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), high(_mm256_srli_epi16(qh, 6)));
            q[2 * half] = join(q0, q1);
            q[2 * half + 1] = join(q2, q3);
            // Segment k of this half has groups 8*half + 2k and + 2k + 1.
            for pairk in 0..2 {
                let g = 8 * half + 4 * pairk;
                scales[2 * half + pairk] = join(
                    _mm256_set_m128i(_mm256_castsi256_si128(sc(g + 1)), _mm256_castsi256_si128(sc(g))),
                    _mm256_set_m128i(_mm256_castsi256_si128(sc(g + 3)), _mm256_castsi256_si128(sc(g + 2))),
                );
            }
        }
        let all_scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(SCALES) as *const __m128i));
        for r in 0..R {
            let xb = &xs[r][b];
            let mut sumi = _mm512_setzero_si512();
            for (j, (qj, sj)) in q.iter().zip(&scales).enumerate() {
                let x8 = _mm512_loadu_si512(xb.qs.as_ptr().add(64 * j) as *const __m512i);
                sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_maddubs_epi16(*qj, x8), *sj));
            }
            let sumi = _mm256_add_epi32(_mm512_castsi512_si256(sumi), _mm512_extracti64x4_epi64(sumi, 1));
            let bsums = _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i);
            let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, all_scales), 5);
            let total = _mm256_sub_epi32(sumi, offset);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(total), acc[r]);
        }
    }
    let mut out = [0.0f32; R];
    for r in 0..R {
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
        out[r] = lanes.iter().sum::<f32>();
    }
    out
}

/// `dot(w, xs[r])` for every r, the weight row unpacked once per sixteen activation rows.
pub fn dots(w: &[u8], xs: &[&[Q8K]], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::has_avx512bw() {
        // SAFETY: as for the AVX2 kernel below; the 64-byte activation loads cover values
        // 64j..64j+64 of a 256-value block.
        return super::in_groups(
            xs,
            out,
            |g| unsafe { dot_avx512::<16>(w, g) },
            |g| unsafe { dot_avx512::<4>(w, g) },
            |x| unsafe { dot_avx512::<1>(w, [x]) }[0],
        );
    }
    dots_avx2_or_portable(w, xs, out)
}

/// [`dots`] without AVX-512 (also what the tests check the AVX-512 kernel against).
pub fn dots_avx2_or_portable(w: &[u8], xs: &[&[Q8K]], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2_fma_f16c() {
        // SAFETY: the CPU has the features; loads stay inside a 210-byte weight block (32 bytes
        // from offsets 0..=160, 16 scale bytes at 192) or an activation block (its 256 values,
        // its 16 sums), and every activation row has as many blocks as the weight row (the
        // caller's shapes).
        return super::in_groups(
            xs,
            out,
            |g| unsafe { dot_avx2::<16>(w, g) },
            |g| unsafe { dot_avx2::<4>(w, g) },
            |x| unsafe { dot_avx2::<1>(w, [x]) }[0],
        );
    }
    for (x, o) in xs.iter().zip(out) {
        *o = dot_portable(w, x);
    }
}

pub fn matmul_t(bytes: &[u8], x: &[f32], k: usize, out: &mut [f32]) {
    let xq = super::q4_k::quantize(x);
    let xs: Vec<&[Q8K]> = xq.chunks_exact(k / BLOCK).collect();
    super::by_weight_rows(bytes, k / BLOCK * WEIGHT_BYTES, xs.len(), out, |w, rows, column| dots(w, &xs[rows], column));
}
