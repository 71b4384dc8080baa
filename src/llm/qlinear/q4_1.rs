//! Q4_1 weights (per 32 values: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles; value =
//! d * q + m) against 8-bit activations (per 32: scale, scale * sum, 32 signed bytes), as in
//! llama.cpp's Q4_1 x Q8_1 dot product. Candle has no SIMD version of this one, which left
//! SmolLM2 (a Q4_1 model) at a sixth of llama.cpp's speed.

pub const BLOCK: usize = 32;
pub(super) const WEIGHT_BYTES: usize = 20;

/// One block of quantized activations.
#[derive(Clone, Copy)]
pub struct Q8 {
    pub d: f32,
    /// `d * sum(qs)`, which carries the weights' minimum through the dot product.
    pub s: f32,
    pub qs: [i8; BLOCK],
}

/// Quantizes as llama.cpp's x86 `quantize_row_q8_1` does, so that products agree with its
/// own up to the order of float sums: the multiplier is 127 / max, values round half to even,
/// and `d` and `s` are stored as f16 (ggml's block keeps them so), here already widened back.
pub fn quantize(x: &[f32]) -> Vec<Q8> {
    let f16 = |v: f32| half::f16::from_f32(v).to_f32();
    super::per_block(x, BLOCK, |b| {
        let amax = b.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut qs = [0i8; BLOCK];
        for (q, v) in qs.iter_mut().zip(b) {
            *q = super::q4_k::nearest(v * id) as i8;
        }
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        Q8 { d: f16(d), s: f16(d * sum as f32), qs }
    })
}

fn header(w: &[u8]) -> (f32, f32) {
    let f = |i: usize| half::f16::from_le_bytes([w[i], w[i + 1]]).to_f32();
    (f(0), f(2))
}

pub fn dot_portable(w: &[u8], x: &[Q8]) -> f32 {
    w.chunks_exact(WEIGHT_BYTES)
        .zip(x)
        .map(|(wb, xb)| {
            let (d, m) = header(wb);
            let mut sum = 0i32;
            for j in 0..BLOCK / 2 {
                let byte = wb[4 + j];
                sum += (byte & 0x0f) as i32 * xb.qs[j] as i32 + (byte >> 4) as i32 * xb.qs[j + BLOCK / 2] as i32;
            }
            d * xb.d * sum as f32 + m * xb.s
        })
        .sum()
}

/// Dot products of one weight row with `R` activation rows at once: each weight block is
/// unpacked once and used `R` times, which is what makes prompt processing (many rows)
/// cheaper per row than generation. The scales are converted with F16C in place; calling
/// `half` here cost a fifth of the time in a baseline x86-64 build, where it cannot inline.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<const R: usize>(w: &[u8], xs: [&[Q8]; R]) -> [f32; R] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    let mut min_sum = [0.0f32; R];
    let low = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    for (b, wb) in w.chunks_exact(WEIGHT_BYTES).enumerate() {
        let header = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]])));
        let d = _mm_cvtss_f32(header);
        let m = _mm_cvtss_f32(_mm_movehdup_ps(header));
        let packed = _mm_loadu_si128(wb.as_ptr().add(4) as *const __m128i);
        // Low nibbles hold values 0..16 of the block, high nibbles 16..32.
        let nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
        for r in 0..R {
            let xb = &xs[r][b];
            let q8 = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
            let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles, q8), ones);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(sums), acc[r]);
            min_sum[r] += m * xb.s;
        }
    }
    let mut out = [0.0f32; R];
    for r in 0..R {
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
        out[r] = lanes.iter().sum::<f32>() + min_sum[r];
    }
    out
}

/// `dot(w, xs[r])` for every r, the weight row unpacked once per four activation rows.
pub fn dots(w: &[u8], xs: &[&[Q8]], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2_fma_f16c() {
        // SAFETY: the CPU has the features; every load stays inside a 20-byte weight block
        // (16 bytes from offset 4) or a 32-byte activation block, and each activation row has
        // as many blocks as the weight row (the caller's shapes).
        // Sixteen rows a call was slower here (194 against 230 tokens/s on SmolLM2's prompt):
        // Q4_1 unpacks little, and sixteen accumulators spill.
        return super::in_groups(
            xs,
            out,
            |g| {
                let mut o = [0.0f32; 16];
                for q in 0..4 {
                    let four = unsafe { dot_avx2::<4>(w, [g[4 * q], g[4 * q + 1], g[4 * q + 2], g[4 * q + 3]]) };
                    o[4 * q..4 * q + 4].copy_from_slice(&four);
                }
                o
            },
            |g| unsafe { dot_avx2::<4>(w, g) },
            |x| unsafe { dot_avx2::<1>(w, [x]) }[0],
        );
    }
    for (x, o) in xs.iter().zip(out) {
        *o = dot_portable(w, x);
    }
}

#[cfg(test)]
pub fn dot(w: &[u8], x: &[Q8]) -> f32 {
    let mut out = [0.0];
    dots(w, &[x], &mut out);
    out[0]
}

pub fn matmul_t(bytes: &[u8], x: &[f32], k: usize, out: &mut [f32]) {
    let xq = quantize(x);
    let xs: Vec<&[Q8]> = xq.chunks_exact(k / BLOCK).collect();
    super::by_weight_rows(bytes, k / BLOCK * WEIGHT_BYTES, xs.len(), out, |w, rows, column| dots(w, &xs[rows], column));
}
