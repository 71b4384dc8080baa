//! Q4_K weights against 8-bit activations, several activation rows per weight row.
//!
//! A Q4_K super-block holds 256 values: f16 `d` and `dmin`, twelve bytes packing eight 6-bit
//! scales and eight 6-bit minimums (one pair per 32 values), and 128 bytes of nibbles; value
//! = d * scale * q - dmin * min. The activations are quantized per 256 to a scale and signed
//! bytes, with sums per 16 that carry the minimums through the product (ggml's Q8_K). The
//! layout and the arithmetic follow ggml's `block_q4_K` so GGUF files are read as they are.
//!
//! Candle's own Q4_K dot product handles one activation row at a time, so prompt processing
//! unpacked every weight block once per prompt token. Here a weight block's nibbles and
//! scales are unpacked once and used for up to sixteen rows; the 3B model's prompts are mostly this
//! type.

pub const BLOCK: usize = 256;
pub(super) const WEIGHT_BYTES: usize = 144;

/// One super-block of quantized activations.
#[derive(Clone, Copy)]
pub struct Q8K {
    pub d: f32,
    pub qs: [i8; BLOCK],
    /// Sums of each 16 consecutive `qs`.
    pub bsums: [i16; BLOCK / 16],
}

/// Quantizes like ggml's `quantize_row_q8_K` (the value of largest magnitude maps to -127,
/// values round half to even), so results agree with llama.cpp's K-quant products.
pub fn quantize(x: &[f32]) -> Vec<Q8K> {
    super::per_block(x, BLOCK, |b| {
        let max = b.iter().copied().fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let mut q = Q8K { d: 0.0, qs: [0; BLOCK], bsums: [0; BLOCK / 16] };
        if max == 0.0 {
            return q;
        }
        let iscale = -127.0 / max;
        for (o, v) in q.qs.iter_mut().zip(b) {
            *o = nearest(iscale * v).clamp(-128, 127) as i8;
        }
        for (s, group) in q.bsums.iter_mut().zip(q.qs.chunks_exact(16)) {
            *s = group.iter().map(|&v| v as i16).sum();
        }
        q.d = 1.0 / iscale;
        q
    })
}

/// `v` rounded half to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the integer in the
/// mantissa's low bits, rounded by the FPU's default mode (ggml's `nearest_int`).
/// `round_ties_even` is a call into libm on baseline x86-64, which has no rounding instruction
/// (3 % of SmolLM2's generation).
pub(super) fn nearest(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// The eight (scale, min) pairs packed in a block's twelve scale bytes: the low six bits of
/// bytes 0..8 for pairs 0..4, and for pairs 4..8 the nibbles of bytes 8..12 topped up with the
/// two high bits of bytes 0..8.
pub(super) fn scales_mins(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = packed[j] & 63;
        mn[j] = packed[j + 4] & 63;
        sc[j + 4] = (packed[j + 8] & 0x0f) | ((packed[j] >> 6) << 4);
        mn[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

fn header(w: &[u8]) -> (f32, f32) {
    let f = |i: usize| half::f16::from_le_bytes([w[i], w[i + 1]]).to_f32();
    (f(0), f(2))
}

pub fn dot_portable(w: &[u8], x: &[Q8K]) -> f32 {
    w.chunks_exact(WEIGHT_BYTES)
        .zip(x)
        .map(|(wb, xb)| {
            let (d, dmin) = header(wb);
            let (sc, mn) = scales_mins(&wb[4..16]);
            let qs = &wb[16..];
            let (mut sumi, mut summ) = (0i32, 0i32);
            // Each 32 bytes of nibbles hold 64 values: low nibbles first, then high nibbles.
            for c in 0..4 {
                let (mut lo, mut hi) = (0i32, 0i32);
                for i in 0..32 {
                    let byte = qs[32 * c + i];
                    lo += (byte & 0x0f) as i32 * xb.qs[64 * c + i] as i32;
                    hi += (byte >> 4) as i32 * xb.qs[64 * c + 32 + i] as i32;
                }
                sumi += lo * sc[2 * c] as i32 + hi * sc[2 * c + 1] as i32;
            }
            for (j, &m) in mn.iter().enumerate() {
                summ += m as i32 * (xb.bsums[2 * j] as i32 + xb.bsums[2 * j + 1] as i32);
            }
            xb.d * (d * sumi as f32 - dmin * summ as f32)
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<const R: usize>(w: &[u8], xs: [&[Q8K]; R]) -> [f32; R] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    let low = _mm256_set1_epi8(0x0f);
    for (b, wb) in w.chunks_exact(WEIGHT_BYTES).enumerate() {
        let header = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]])));
        let d = _mm_cvtss_f32(header);
        let dmin = _mm_cvtss_f32(_mm_movehdup_ps(header));
        let (sc, mn) = scales_mins(&wb[4..16]);
        let mut nibbles = [_mm256_setzero_si256(); 8];
        let mut scales = [_mm256_setzero_si256(); 8];
        for c in 0..4 {
            let packed = _mm256_loadu_si256(wb.as_ptr().add(16 + 32 * c) as *const __m256i);
            nibbles[2 * c] = _mm256_and_si256(packed, low);
            nibbles[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
            scales[2 * c] = _mm256_set1_epi16(sc[2 * c] as i16);
            scales[2 * c + 1] = _mm256_set1_epi16(sc[2 * c + 1] as i16);
        }
        // Each minimum applies to two of the sixteen activation sums. A scalar sum here was a
        // dependency chain that took 40 % of the kernel's time.
        let m = |j: usize| mn[j] as i16;
        let mins = _mm256_setr_epi16(
            m(0),
            m(0),
            m(1),
            m(1),
            m(2),
            m(2),
            m(3),
            m(3),
            m(4),
            m(4),
            m(5),
            m(5),
            m(6),
            m(6),
            m(7),
            m(7),
        );
        for r in 0..R {
            let xb = &xs[r][b];
            let mut sumi = _mm256_setzero_si256();
            for j in 0..8 {
                let q8 = _mm256_loadu_si256(xb.qs.as_ptr().add(32 * j) as *const __m256i);
                // Pairs of nibble x byte products fit i16 (at most 2 * 15 * 128); times the
                // 6-bit scale and summed in pairs they fit i32.
                let pairs = _mm256_maddubs_epi16(nibbles[j], q8);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pairs, scales[j]));
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(sumi), acc[r]);
            let bsums = _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i);
            let summ = _mm256_madd_epi16(bsums, mins);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * xb.d), _mm256_cvtepi32_ps(summ), acc[r]);
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

/// [`dot_avx2`] on 512-bit registers: each multiply covers 64 values, two of the block's 32-value
/// segments (low and high nibbles of the same 32 bytes, whose activations are contiguous), so
/// the inner loop is half as long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
unsafe fn dot_avx512<const R: usize>(w: &[u8], xs: [&[Q8K]; R]) -> [f32; R] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    let low = _mm256_set1_epi8(0x0f);
    for (b, wb) in w.chunks_exact(WEIGHT_BYTES).enumerate() {
        let header = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]])));
        let d = _mm_cvtss_f32(header);
        let dmin = _mm_cvtss_f32(_mm_movehdup_ps(header));
        let (sc, mn) = scales_mins(&wb[4..16]);
        let mut nibbles = [_mm512_setzero_si512(); 4];
        let mut scales = [_mm512_setzero_si512(); 4];
        for c in 0..4 {
            let packed = _mm256_loadu_si256(wb.as_ptr().add(16 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(packed, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
            nibbles[c] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            scales[c] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_set1_epi16(sc[2 * c] as i16)),
                _mm256_set1_epi16(sc[2 * c + 1] as i16),
                1,
            );
        }
        let m = |j: usize| mn[j] as i16;
        let mins = _mm256_setr_epi16(
            m(0),
            m(0),
            m(1),
            m(1),
            m(2),
            m(2),
            m(3),
            m(3),
            m(4),
            m(4),
            m(5),
            m(5),
            m(6),
            m(6),
            m(7),
            m(7),
        );
        for r in 0..R {
            let xb = &xs[r][b];
            let mut sumi = _mm512_setzero_si512();
            for c in 0..4 {
                let q8 = _mm512_loadu_si512(xb.qs.as_ptr().add(64 * c) as *const __m512i);
                let pairs = _mm512_maddubs_epi16(nibbles[c], q8);
                sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(pairs, scales[c]));
            }
            let sumi = _mm256_add_epi32(_mm512_castsi512_si256(sumi), _mm512_extracti64x4_epi64(sumi, 1));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(sumi), acc[r]);
            let bsums = _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i);
            let summ = _mm256_madd_epi16(bsums, mins);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * xb.d), _mm256_cvtepi32_ps(summ), acc[r]);
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
        // 64c..64c+64 of a 256-value block.
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
        // SAFETY: the CPU has the features; loads stay inside a 144-byte weight block (32
        // bytes from offsets 16..=112) or an activation block (its 256 values, its 16 sums), and
        // every activation row has as many blocks as the weight row (the caller's shapes).
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
    let xq = quantize(x);
    let xs: Vec<&[Q8K]> = xq.chunks_exact(k / BLOCK).collect();
    super::by_weight_rows(bytes, k / BLOCK * WEIGHT_BYTES, xs.len(), out, |w, rows, column| dots(w, &xs[rows], column));
}
