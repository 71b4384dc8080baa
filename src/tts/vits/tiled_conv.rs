//! A register-tiled direct convolution for the voice decoder's long, narrow layers (32 to 128
//! channels over thousands to tens of thousands of steps). There, unfolding the input into a
//! `[in·k, time]` matrix for gemm costs more than the product: 32-channel layers ran at about
//! half the speed of 64-channel ones, and the leaky ReLU ran k times per input value.
//!
//! Here nothing is unfolded. The caller activates a block of input once into a window; a
//! tile of 4 output channels by 96 steps (AVX-512) or 24 steps (AVX2) stays in registers
//! while the loop walks input channels and taps: per tap one load of shifted input per vector,
//! one broadcast weight per output channel, and a fused multiply-add for each pair. This is
//! the classic direct-convolution micro-kernel (the shape oneDNN and XNNPACK use for narrow
//! convolutions), written for wick's weight layout. Only x86-64 has it; elsewhere `available`
//! is false and the unfolding kernel runs.

use crate::cpu_kernels::vector_tier;
#[cfg(target_arch = "x86_64")]
use crate::cpu_kernels::Tier;

/// Where a block's operands lie. Rows are channels; strides are in elements.
#[derive(Debug, Clone, Copy)]
// Read only by the x86-64 kernels.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct Geometry {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub dilation: usize,
    /// Distance between the window's channel rows.
    pub span: usize,
    /// Output steps in this block.
    pub n: usize,
    /// Length of a weight row: `c_in·kernel` weights, then the bias.
    pub width: usize,
    /// Distance between output rows, and between residual rows.
    pub out_row: usize,
}

impl Geometry {
    /// Window row length the kernel may read: the block rounded up to whole tiles, plus the
    /// taps' reach. Columns past the real input must be zero (or any finite value: they only
    /// feed outputs past `n`, which are never stored).
    pub fn window_len(n: usize, kernel: usize, dilation: usize) -> usize {
        n.div_ceil(TILE_MAX) * TILE_MAX + (kernel - 1) * dilation
    }
}

/// The longest time tile of any tier; windows are padded to a multiple of it, and blocks
/// are best cut at multiples of it.
pub const TILE_MAX: usize = 96;

/// Whether this CPU has a tiled kernel.
pub fn available() -> bool {
    vector_tier().is_some()
}

/// `out[co, t] = bias[co] + Σ_ci Σ_j matrix[co, ci·k + j] · window[ci, t + j·dilation]
/// (+ residual[co, t])` for `t < g.n`, every output channel.
///
/// # Safety
/// `window` must be readable for `c_in` rows of `Geometry::window_len` at `span` apart,
/// `matrix` for `c_out` rows of `width`, `out` writable (and `residual`, when not null,
/// readable) for `c_out` rows of `n` at `out_row` apart; nobody else may touch that part of
/// `out` during the call. Panics if `available()` is false.
pub unsafe fn conv(g: &Geometry, window: *const f32, matrix: *const f32, out: *mut f32, residual: *const f32) {
    #[cfg(target_arch = "x86_64")]
    match vector_tier() {
        // SAFETY (both): the CPU has the tier's features; the rest is the caller's promise.
        Some(Tier::Avx512) => return unsafe { x86::avx512(g, window, matrix, out, residual) },
        Some(Tier::Avx2) => return unsafe { x86::avx2(g, window, matrix, out, residual) },
        None => {}
    }
    let _ = (g, window, matrix, out, residual);
    panic!("tiled_conv::conv called where available() is false")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Geometry;
    use std::arch::x86_64::*;

    /// Output channels per tile (single ones for the rest).
    const TILE_CHANNELS: usize = 4;

    /// One tier: `$name` runs the whole block with `$lanes`-float vectors, tiles of 4 output
    /// channels (then single ones for the rest) by `$vectors` vectors of time.
    macro_rules! tier {
        ($name:ident, $feature:literal, $lanes:literal, $vectors:literal,
         $set1:ident, $load:ident, $store:ident, $fmadd:ident, $add:ident) => {
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(
                g: &Geometry,
                window: *const f32,
                matrix: *const f32,
                out: *mut f32,
                residual: *const f32,
            ) {
                const TILE: usize = $lanes * $vectors;
                let mut t = 0;
                while t < g.n {
                    let valid = TILE.min(g.n - t);
                    let mut co = 0;
                    // SAFETY (both loops): the tiles stay inside the rows and columns the
                    // caller vouched for; see `tile`.
                    while co + TILE_CHANNELS <= g.c_out {
                        unsafe { tile::<{ TILE_CHANNELS }>(g, window, matrix, out, residual, co, t, valid) };
                        co += TILE_CHANNELS;
                    }
                    while co < g.c_out {
                        unsafe { tile::<1>(g, window, matrix, out, residual, co, t, valid) };
                        co += 1;
                    }
                    t += TILE;
                }

                /// Output channels co..co+R, steps t..t+valid.
                #[inline(always)]
                #[allow(clippy::too_many_arguments)]
                unsafe fn tile<const R: usize>(
                    g: &Geometry,
                    window: *const f32,
                    matrix: *const f32,
                    out: *mut f32,
                    residual: *const f32,
                    co: usize,
                    t: usize,
                    valid: usize,
                ) {
                    // SAFETY: weight rows co..co+R exist; window reads end before
                    // t + TILE + (k-1)·dilation <= window_len; outputs are written only
                    // below `valid`.
                    unsafe {
                        let mut acc = [[$set1(0.0); $vectors]; R];
                        for (r, row) in acc.iter_mut().enumerate() {
                            let bias = $set1(*matrix.add((co + r) * g.width + g.width - 1));
                            row.iter_mut().for_each(|a| *a = bias);
                        }
                        for ci in 0..g.c_in {
                            let weights = matrix.add(co * g.width + ci * g.kernel);
                            let input = window.add(ci * g.span + t);
                            for j in 0..g.kernel {
                                let at = input.add(j * g.dilation);
                                let mut x = [$set1(0.0); $vectors];
                                for (v, x) in x.iter_mut().enumerate() {
                                    *x = $load(at.add(v * $lanes));
                                }
                                for (r, row) in acc.iter_mut().enumerate() {
                                    let w = $set1(*weights.add(r * g.width + j));
                                    for (a, &x) in row.iter_mut().zip(&x) {
                                        *a = $fmadd(w, x, *a);
                                    }
                                }
                            }
                        }
                        for (r, row) in acc.iter().enumerate() {
                            let at = (co + r) * g.out_row + t;
                            if valid == TILE {
                                for (v, &a) in row.iter().enumerate() {
                                    let i = at + v * $lanes;
                                    let y = if residual.is_null() { a } else { $add(a, $load(residual.add(i))) };
                                    $store(out.add(i), y);
                                }
                            } else {
                                let mut spill = [0.0f32; TILE];
                                for (v, &a) in row.iter().enumerate() {
                                    $store(spill.as_mut_ptr().add(v * $lanes), a);
                                }
                                for (i, &y) in spill[..valid].iter().enumerate() {
                                    let extra = if residual.is_null() { 0.0 } else { *residual.add(at + i) };
                                    *out.add(at + i) = y + extra;
                                }
                            }
                        }
                    }
                }
            }
        };
    }

    tier!(avx512, "avx512f", 16, 6, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_add_ps);
    tier!(avx2, "avx2,fma", 8, 3, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_add_ps);
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Every tier this CPU has against a plain loop: tiles of 4 channels and single ones,
    /// a partial last tile, dilation, with and without a residual.
    #[test]
    fn tiers_match_a_plain_loop() {
        let (c_in, c_out, kernel, dilation, n) = (3, 6, 5, 2, 150);
        let span = Geometry::window_len(n, kernel, dilation);
        let width = c_in * kernel + 1;
        let out_row = n + 7;
        let value = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 250.0;
        let window: Vec<f32> = (0..c_in * span).map(value).collect();
        let matrix: Vec<f32> = (0..c_out * width).map(|i| value(i + 3)).collect();
        let residual: Vec<f32> = (0..c_out * out_row).map(|i| value(i + 11)).collect();
        let g = Geometry { c_in, c_out, kernel, dilation, span, n, width, out_row };
        type Kernel = unsafe fn(&Geometry, *const f32, *const f32, *mut f32, *const f32);
        let mut tiers: Vec<(&str, Kernel)> = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            tiers.push(("avx2", x86::avx2));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            tiers.push(("avx512", x86::avx512));
        }
        assert!(!tiers.is_empty(), "this x86-64 CPU has neither AVX2+FMA nor AVX-512: the test needs one");
        for with_residual in [false, true] {
            let mut expected = vec![f32::NAN; c_out * out_row];
            for co in 0..c_out {
                for t in 0..n {
                    let mut y = matrix[co * width + width - 1];
                    for ci in 0..c_in {
                        for j in 0..kernel {
                            y += matrix[co * width + ci * kernel + j] * window[ci * span + t + j * dilation];
                        }
                    }
                    let at = co * out_row + t;
                    expected[at] = if with_residual { y + residual[at] } else { y };
                }
            }
            for (name, kernel_fn) in &tiers {
                let mut out = vec![f32::NAN; c_out * out_row];
                let r = if with_residual { residual.as_ptr() } else { std::ptr::null() };
                // SAFETY: the buffers have the sizes `conv` asks for; the CPU has the tier.
                unsafe { kernel_fn(&g, window.as_ptr(), matrix.as_ptr(), out.as_mut_ptr(), r) };
                for (i, (&a, &b)) in out.iter().zip(&expected).enumerate() {
                    let (co, t) = (i / out_row, i % out_row);
                    if t >= n {
                        assert!(a.is_nan(), "{name}: wrote past the block at channel {co}, step {t}");
                    } else {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "{name}, residual {with_residual}: channel {co} step {t}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
