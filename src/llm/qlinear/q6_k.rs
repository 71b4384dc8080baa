//! Q6_K weights in GGUF blocks against 8-bit activations: the block format and the plain dot
//! product that the repacked layout's kernels ([`super::q6_k_x16`]) are checked against and
//! that the rows past its last group use.
//!
//! A Q6_K super-block holds 256 values in 210 bytes: 128 bytes of low nibbles, 64 bytes of
//! high bit pairs, sixteen signed 8-bit scales (one per 16 values) and an f16 `d`; value =
//! d * scale * (q - 32) for the 6-bit q. The layout follows ggml's `block_q6_K` so GGUF files
//! are read as they are; the activations are the same Q8K as Q4_K's, whose sums per 16 carry
//! the -32 offset through the product.

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

/// `dot(w, xs[r])` for every r: for a repacked tensor's rows past its last group of sixteen
/// (at most fifteen), so plain code.
pub fn dots(w: &[u8], xs: &[&[Q8K]], out: &mut [f32]) {
    for (x, o) in xs.iter().zip(out) {
        *o = dot_portable(w, x);
    }
}
