//! Q4_1 weights (per 32 values: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles; value =
//! d * q + m) against 8-bit activations (per 32: scale, scale * sum, 32 signed bytes), as in
//! llama.cpp's Q4_1 x Q8_1 dot product. Candle has no SIMD version of this one, which left
//! SmolLM2 (a Q4_1 model) at a sixth of llama.cpp's speed; the SIMD kernels are the repacked
//! layout's ([`super::q4_1_x16`]), and this module holds the format, the activations'
//! quantization and the plain product they are checked against.

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

super::quantize_vectorised!(
    /// Quantizes as llama.cpp's x86 `quantize_row_q8_1` does, so that products agree with its
    /// own up to the order of float sums: the multiplier is 127 / max, values round half to
    /// even, and `d` and `s` are stored as f16 (ggml's block keeps them so), here already
    /// widened back.
    quantize_block -> Q8
);

#[inline(always)]
fn quantize_block(b: &[f32]) -> Q8 {
    let f16 = |v: f32| half::f16::from_f32(v).to_f32();
    let amax = super::q4_k::largest_magnitude(b);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; BLOCK];
    for (q, v) in qs.iter_mut().zip(b) {
        *q = super::q4_k::nearest(v * id) as i8;
    }
    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
    Q8 { d: f16(d), s: f16(d * sum as f32), qs }
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

/// `dot(w, xs[r])` for every r: for a repacked tensor's rows past its last group of sixteen
/// (at most fifteen), and for the whole tensor on a CPU without the repacked layout's kernels
/// (no AVX2, or no dot-product extension on aarch64), where there is no SIMD to use.
pub fn dots(w: &[u8], xs: &[&[Q8]], out: &mut [f32]) {
    for (x, o) in xs.iter().zip(out) {
        *o = dot_portable(w, x);
    }
}

pub fn matmul_t(bytes: &[u8], x: &[f32], k: usize, out: &mut [f32]) {
    let xq = quantize(x);
    let xs: Vec<&[Q8]> = xq.chunks_exact(k / BLOCK).collect();
    super::by_weight_rows(bytes, k / BLOCK * WEIGHT_BYTES, xs.len(), out, |w, rows, column| dots(w, &xs[rows], column));
}

#[cfg(test)]
mod tests {
    /// Every block as the baseline code quantizes it, on whatever the dispatch picks here.
    #[test]
    fn the_dispatched_quantization_gives_the_baselines_bytes() {
        use super::*;
        for b in
            super::super::q4_k::tests::awkward_blocks(BLOCK).into_iter().filter(|b| b.iter().all(|v| v.is_finite()))
        {
            let (base, picked) = (quantize_block(&b), quantize(&b).remove(0));
            assert_eq!(
                (base.d.to_bits(), base.s.to_bits(), base.qs),
                (picked.d.to_bits(), picked.s.to_bits(), picked.qs)
            );
        }
    }
}
