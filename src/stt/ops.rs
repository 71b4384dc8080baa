//! CPU kernels for the two element-wise hot spots of Whisper: exact-GELU and the attention
//! softmax. Candle evaluates them with libm's scalar `erf`/`exp`, on one thread for GELU;
//! together they took about a quarter of the encoder's time. Here both use a branch-free
//! exponential that the compiler vectorises, spread over the rayon pool; in-place forms serve
//! the fused encoder ops (`attend`, `dense`). Also the decoder's f16 output projection.
//! Other devices and layouts fall back to Candle's own ops, so results match within 1e-6.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_kernels::widest;

/// Below this many elements threading costs more than it saves.
pub(super) const PARALLEL_MIN: usize = 1 << 15;

/// `exp(x)` for f32 with a relative error below 3e-7: x = k ln2 + r with |r| <= ln2 / 2, then
/// a degree-7 Taylor polynomial for e^r and the exponent bits for 2^k. Written without
/// branches or libm calls so that loops over it vectorise.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to the nearest integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let shifted = xc * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let k_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((k_int + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// `erf(x)` after Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7, plus f32 rounding).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// Eight independent accumulators, so the reduction vectorises without reordering concerns.
#[inline(always)]
fn reduce8(s: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = s.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    let mut r = tail.iter().fold(init, |a, &x| f(a, x));
    for a in acc {
        r = f(r, a);
    }
    r
}

/// Exact GELU.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

widest!(
    gelu_rows(s: &[f32], d: &mut [f32]) {
        for (x, y) in s.iter().zip(d.iter_mut()) {
            *y = gelu(*x);
        }
    }
);

widest!(
    gelu_row_in_place(x: &mut [f32]) {
        for y in x.iter_mut() {
            *y = gelu(*y);
        }
    }
);

widest!(
    /// `softmax(x * scale)` of one row in place; `scale` must be positive.
    pub(super) softmax_row_in_place(x: &mut [f32], scale: f32) {
        let max = reduce8(x, f32::NEG_INFINITY, f32::max);
        x.iter_mut().for_each(|y| *y = exp((*y - max) * scale));
        let inv = 1.0 / reduce8(x, 0.0, |a, b| a + b);
        x.iter_mut().for_each(|y| *y *= inv);
    }
);

/// Portable `out[i] = rows[i] · h` over f16 rows.
fn dot_f16_portable(rows: &[half::f16], cols: usize, h: &[f32], out: &mut [f32]) {
    for (r, o) in rows.chunks_exact(cols).zip(out.iter_mut()) {
        *o = r.iter().zip(h).map(|(w, x)| w.to_f32() * x).sum();
    }
}

/// The same with F16C conversion and FMA, eight columns at a time; `cols` must be a multiple of 8
/// (Whisper's widths are multiples of 64).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(rows: &[half::f16], cols: usize, h: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    for (r, o) in rows.chunks_exact(cols).zip(out.iter_mut()) {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut c = 0;
        while c + 16 <= cols {
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(r.as_ptr().add(c) as *const __m128i));
            let w1 = _mm256_cvtph_ps(_mm_loadu_si128(r.as_ptr().add(c + 8) as *const __m128i));
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(h.as_ptr().add(c)), a0);
            a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(h.as_ptr().add(c + 8)), a1);
            c += 16;
        }
        if c < cols {
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(r.as_ptr().add(c) as *const __m128i));
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(h.as_ptr().add(c)), a0);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(a0, a1));
        *o = lanes.iter().sum();
    }
}

fn dot_f16_rows(rows: &[half::f16], cols: usize, h: &[f32], out: &mut [f32]) {
    assert_eq!(h.len(), cols);
    #[cfg(target_arch = "x86_64")]
    if cols.is_multiple_of(8)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU has the features; every load stays inside a row of `cols` values
        // (a multiple of 8) and `h` has `cols` values.
        return unsafe { dot_f16_avx2(rows, cols, h, out) };
    }
    dot_f16_portable(rows, cols, h, out)
}

/// Exact GELU over `x` in place, rows of `row` values spread over the pool when large.
pub(super) fn gelu_in_place(x: &mut [f32], row: usize) {
    if x.len() >= PARALLEL_MIN {
        x.par_chunks_mut(row.max(1)).for_each(gelu_row_in_place);
    } else {
        gelu_row_in_place(x);
    }
}

pub(super) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    crate::cpu_kernels::contiguous_f32(storage, layout, "wick's Whisper CPU kernels")
}

fn map_rows(src: &[f32], row: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut dst = vec![0.0f32; src.len()];
    if src.len() >= PARALLEL_MIN {
        src.par_chunks(row).zip(dst.par_chunks_mut(row)).for_each(|(s, d)| f(s, d));
    } else {
        src.chunks(row).zip(dst.chunks_mut(row)).for_each(|(s, d)| f(s, d));
    }
    dst
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "wick-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)?;
        let dst = map_rows(src, 4096, gelu_rows);
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

struct ScaledSoftmax(f32);

impl CustomOp1 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "wick-scaled-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)?;
        let row = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let scale = self.0;
        let dst = map_rows(src, row, |s, d| {
            d.copy_from_slice(s);
            softmax_row_in_place(d, scale)
        });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// A matrix kept in f16 and multiplied with f32 vectors: Whisper's tied output projection.
/// Each decoding step reads the whole vocabulary embedding (20 M values for tiny), so the
/// step is bound by memory traffic; reading checkpoint-exact f16 halves it compared with an
/// f32 copy, and the products are the same because every f16 widens exactly to f32.
pub struct F16Matrix {
    data: Vec<half::f16>,
    cols: usize,
}

impl F16Matrix {
    /// From a 2-D f16 tensor `[rows, cols]`.
    pub fn new(t: &Tensor) -> Result<Self> {
        let (_, cols) = t.dims2()?;
        Ok(Self { data: t.flatten_all()?.to_vec1::<half::f16>()?, cols })
    }

    /// Rows `ids`, widened to f32: `[ids.len(), cols]`.
    pub fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let start = id as usize * self.cols;
            let row = self
                .data
                .get(start..start + self.cols)
                .ok_or_else(|| candle_core::Error::Msg(format!("token id {id} is outside the vocabulary")))?;
            out.extend(row.iter().map(|v| v.to_f32()));
        }
        Tensor::from_vec(out, (ids.len(), self.cols), &candle_core::Device::Cpu)
    }

    /// `self · h` for each row `h` of `hidden` (`[n, cols]`, f32) -> `[n, rows]`.
    pub fn matmul_t(&self, hidden: &Tensor) -> Result<Tensor> {
        let rows = self.data.len() / self.cols;
        let hidden = hidden.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let mut out = vec![0.0f32; hidden.len() * rows];
        const BLOCK: usize = 512;
        for (h, o) in hidden.iter().zip(out.chunks_mut(rows)) {
            self.data
                .par_chunks(BLOCK * self.cols)
                .zip(o.par_chunks_mut(BLOCK))
                .for_each(|(w, o)| dot_f16_rows(w, self.cols, h, o));
        }
        Tensor::from_vec(out, (hidden.len(), rows), &candle_core::Device::Cpu)
    }
}

/// Whether `x` can take wick's CPU ops: contiguous f32 on the CPU.
pub(super) fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.is_contiguous()
}

/// GELU with the exact (erf) form, as Whisper was trained.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        x.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// `softmax(x * scale)` over the last dimension; `scale` must be positive.
pub fn scaled_softmax(x: &Tensor, scale: f64) -> Result<Tensor> {
    if fast_path(x) {
        x.apply_op1_no_bwd(&ScaledSoftmax(scale as f32))
    } else {
        candle_nn::ops::softmax_last_dim(&(x * scale)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -8000..8000 {
            let x = i as f32 * 0.01;
            let (e, want) = (exp(x), x.exp());
            assert!(((e - want) / want).abs() < 3e-7, "exp({x}) = {e}, want {want}");
            let want = libm_erf(x as f64) as f32;
            assert!((erf(x) - want).abs() < 5e-7, "erf({x}) = {}, want {want}", erf(x));
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }

    /// erf by its Taylor series (for |x| < 3) or 1 otherwise, in f64: a reference independent
    /// of the approximation under test.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() >= 4.0 {
            return x.signum();
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn kernels_match_candle() {
        let x = Tensor::randn(0f32, 3.0, (2, 3, 700, 37), &Device::Cpu).unwrap();
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
        };
        assert!(diff(&gelu_erf(&x).unwrap(), &x.gelu_erf().unwrap()) < 1e-5);
        let want = candle_nn::ops::softmax_last_dim(&(&x * 0.125).unwrap()).unwrap();
        assert!(diff(&scaled_softmax(&x, 0.125).unwrap(), &want) < 1e-6);
        // Masked (-inf) entries get exactly zero weight.
        let masked = Tensor::new(&[[0.0f32, f32::NEG_INFINITY, 1.0]], &Device::Cpu).unwrap();
        let p: Vec<f32> = scaled_softmax(&masked, 1.0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(p[1], 0.0);
        assert!((p[0] + p[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn f16_matrix_matches_candle_matmul() {
        let w = Tensor::randn(0f32, 1.0, (1031, 56), &Device::Cpu).unwrap().to_dtype(candle_core::DType::F16).unwrap();
        let h = Tensor::randn(0f32, 1.0, (2, 56), &Device::Cpu).unwrap();
        let want = h.matmul(&w.to_dtype(candle_core::DType::F32).unwrap().t().unwrap()).unwrap();
        let got = F16Matrix::new(&w).unwrap().matmul_t(&h).unwrap();
        let rows: Vec<half::f16> = w.flatten_all().unwrap().to_vec1().unwrap();
        let hv: Vec<f32> = h.get(0).unwrap().to_vec1().unwrap();
        let mut portable = vec![0.0f32; 1031];
        dot_f16_portable(&rows, 56, &hv, &mut portable);
        let first: Vec<f32> = got.get(0).unwrap().to_vec1().unwrap();
        assert!(portable.iter().zip(&first).all(|(a, b)| (a - b).abs() < 1e-4));
        assert_eq!(got.dims(), &[2, 1031]);
        let diff: f32 =
            (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        assert!(diff < 1e-4, "{diff}");
        let picked: Vec<f32> =
            F16Matrix::new(&w).unwrap().rows(&[3]).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = w.get(3).unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1().unwrap();
        assert_eq!(picked, want);
        assert!(F16Matrix::new(&w).unwrap().rows(&[1031]).is_err());
    }
}
