//! Q4_K weights in GGUF blocks against 8-bit activations: the activations' quantization
//! (Q8_K), the block format, and the plain dot product that the repacked layout's kernels
//! ([`super::q4_k_x16`]) are checked against and that the rows past its last group use.
//!
//! A Q4_K super-block holds 256 values: f16 `d` and `dmin`, twelve bytes packing eight 6-bit
//! scales and eight 6-bit minimums (one pair per 32 values), and 128 bytes of nibbles; value
//! = d * scale * q - dmin * min. The activations are quantized per 256 to a scale and signed
//! bytes, with sums per 16 that carry the minimums through the product (ggml's Q8_K). The
//! layout and the arithmetic follow ggml's `block_q4_K` so GGUF files are read as they are.

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

super::quantize_vectorised!(
    /// Quantizes like ggml's `quantize_row_q8_K` (the value of largest magnitude maps to -127,
    /// values round half to even), so results agree with llama.cpp's K-quant products.
    quantize_block -> Q8K
);

#[inline(always)]
fn quantize_block(b: &[f32]) -> Q8K {
    let max = first_of_largest_magnitude(b);
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
}

/// The first value of `b` with the largest magnitude, or 0 if all are zero: what ggml's
/// running comparison (`|v| > |max|`) keeps, NaN never taken.
///
/// The running comparison is one chain of dependent selects, which made a token's activation
/// quantization cost about a millisecond on the 3B. Here the largest magnitude is found in
/// vector lanes ([`largest_magnitude`]), then the first eight values holding it, then the
/// value among them.
#[inline(always)]
fn first_of_largest_magnitude(b: &[f32]) -> f32 {
    let largest = magnitude_bits(largest_magnitude(b));
    if largest == 0 {
        return 0.0;
    }
    // Without a short cut, so that each eight compile to one vector comparison.
    let holds = |c: &[f32]| c.iter().fold(false, |any, &v| any | (magnitude_bits(v) == largest));
    let eight = b.chunks(8).find(|c| holds(c)).unwrap_or(&[]);
    eight.iter().copied().find(|&v| magnitude_bits(v) == largest).unwrap_or(0.0)
}

/// `|v|`'s bits as an integer, 0 for NaN: finite and infinite magnitudes order as these do.
/// Signed, since baseline x86-64 (SSE2) compares signed lanes in vector registers.
#[inline(always)]
fn magnitude_bits(v: f32) -> i32 {
    let bits = (v.to_bits() & 0x7fff_ffff) as i32;
    if bits > 0x7f80_0000 {
        0
    } else {
        bits
    }
}

/// The largest `|v|` in `b`, NaN ignored (0 for none): `f32::max` over `|v|`, but as an
/// integer maximum over eight independent lanes, which compiles to vector code where the
/// float fold is one dependent chain.
#[inline(always)]
pub(super) fn largest_magnitude(b: &[f32]) -> f32 {
    let mut lanes = [0i32; 8];
    let chunks = b.chunks_exact(8);
    let rest = chunks.remainder().iter().map(|&v| magnitude_bits(v)).fold(0, i32::max);
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = (*lane).max(magnitude_bits(v));
        }
    }
    f32::from_bits(lanes.into_iter().fold(rest, i32::max) as u32)
}

/// `v` rounded half to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the integer in the
/// mantissa's low bits, rounded by the FPU's default mode (ggml's `nearest_int`).
/// `round_ties_even` is a call into libm on baseline x86-64, which has no rounding instruction
/// (3 % of SmolLM2's generation).
#[inline(always)]
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

/// `dot(w, xs[r])` for every r: for a repacked tensor's rows past its last group of sixteen
/// (at most fifteen), so plain code.
pub fn dots(w: &[u8], xs: &[&[Q8K]], out: &mut [f32]) {
    for (x, o) in xs.iter().zip(out) {
        *o = dot_portable(w, x);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Blocks of `n` values that put the largest magnitude where a shortcut would miss it:
    /// ties of opposite signs, at the first and last places, among NaN, zeros of both signs,
    /// infinities, and spread values.
    pub fn awkward_blocks(n: usize) -> Vec<Vec<f32>> {
        let mut seed = 0x2545_f491u32;
        let mut spread = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 * 6.0 - 3.0
        };
        let mut blocks: Vec<Vec<f32>> = (0..40).map(|_| (0..n).map(|_| spread()).collect()).collect();
        let with = |at: &[(usize, f32)]| {
            let mut b = vec![0.5f32; n];
            for &(i, v) in at {
                b[i % n] = v;
            }
            b
        };
        blocks.extend([
            with(&[(3, -7.0), (9, 7.0)]),
            with(&[(3, 7.0), (9, -7.0)]),
            with(&[(0, -7.0)]),
            with(&[(n - 1, -7.0)]),
            with(&[(n - 1, 7.0), (n - 2, -7.0)]),
            with(&[(1, f32::NAN), (5, -2.0)]),
            with(&[(2, f32::INFINITY), (6, f32::NEG_INFINITY)]),
            vec![0.0; n],
            vec![-0.0; n],
            vec![f32::NAN; n],
            with(&[(4, -1e-30), (8, 1e-30)]).into_iter().map(|v| if v == 0.5 { 0.0 } else { v }).collect(),
        ]);
        blocks
    }

    #[test]
    fn the_largest_magnitude_is_the_running_comparisons() {
        for n in [32, 37, 256] {
            for b in awkward_blocks(n) {
                let first = b.iter().copied().fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
                assert_eq!(first_of_largest_magnitude(&b).to_bits(), first.to_bits(), "{b:?}");
                let largest = b.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                assert_eq!(largest_magnitude(&b).to_bits(), largest.to_bits(), "{b:?}");
            }
        }
    }

    /// Every block as the baseline code quantizes it, on whatever the dispatch picks here.
    #[test]
    fn the_dispatched_quantization_gives_the_baselines_bytes() {
        for b in awkward_blocks(BLOCK).into_iter().filter(|b| b.iter().all(|v| v.is_finite())) {
            let (base, picked) = (quantize_block(&b), quantize(&b).remove(0));
            assert_eq!(base.d.to_bits(), picked.d.to_bits());
            assert_eq!(base.qs, picked.qs);
            assert_eq!(base.bsums, picked.bsums);
        }
    }
}
