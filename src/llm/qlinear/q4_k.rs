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

/// `dot(w, xs[r])` for every r: for a repacked tensor's rows past its last group of sixteen
/// (at most fifteen), so plain code.
pub fn dots(w: &[u8], xs: &[&[Q8K]], out: &mut [f32]) {
    for (x, o) in xs.iter().zip(out) {
        *o = dot_portable(w, x);
    }
}
