//! Whisper's linear layers, with what follows them in the same op on the CPU.
//!
//! Candle's `Linear` multiplies by a transposed view of the `[out, in]` weight, which gemm
//! packs one float at a time (its panels want rows of the right-hand matrix contiguous), then
//! adds the bias in a second pass over a second freshly zeroed buffer. On the CPU the weight is
//! kept transposed here (`[in, out]`, rows contiguous); the output starts as the bias (plus a
//! residual, when the layer adds onto one) and gemm accumulates the product onto it; GELU, when
//! it follows, runs over the rows in place. On other devices the same layer is Candle's
//! `Linear` and Candle ops, so both compute `residual + x Wᵀ + b` and agree to float rounding.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Linear, VarBuilder};
use gemm::Parallelism;
use rayon::prelude::*;

use super::ops;
use crate::cpu_kernels::{gemm_f32, Strided};

/// Below this many multiply-adds one thread is quicker than waking the pool.
const PARALLEL_MIN_MACS: usize = 1 << 21;

pub enum Dense {
    /// `w_t` is `[in, out]` row-major; `bias` has `out` values (zeros when the layer has none).
    Cpu {
        w_t: Vec<f32>,
        bias: Vec<f32>,
        in_dim: usize,
        out_dim: usize,
    },
    Candle(Linear),
}

impl Dense {
    /// From a `[out, in]` weight and an optional bias, as `Linear::new` takes them.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if !(weight.device().is_cpu() && weight.dtype() == DType::F32) {
            return Ok(Dense::Candle(Linear::new(weight, bias)));
        }
        let (out_dim, in_dim) = weight.dims2()?;
        let w_t = weight.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let bias = match bias {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; out_dim],
        };
        Ok(Dense::Cpu { w_t, bias, in_dim, out_dim })
    }

    /// `vb`'s `weight` (`[out, in]`) and, when `with_bias`, its `bias`.
    pub fn load(in_dim: usize, out_dim: usize, with_bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = with_bias.then(|| vb.get(out_dim, "bias")).transpose()?;
        Self::new(weight, bias)
    }

    /// `x Wᵀ + b`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None, false)
    }

    /// `gelu(x Wᵀ + b)`, with the exact (erf) GELU.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None, true)
    }

    /// `residual + x Wᵀ + b`
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.run(x, Some(residual), false)
    }

    fn run(&self, x: &Tensor, residual: Option<&Tensor>, gelu: bool) -> Result<Tensor> {
        match self {
            Dense::Cpu { w_t, bias, in_dim, out_dim } => {
                // The op takes contiguous rows (the model's activations already are; `contiguous`
                // is then free). Another dtype cannot reach it: `new` keeps f32 weights only, and
                // a model's activations have its weights' dtype.
                let op = DenseOp { w_t, bias, in_dim: *in_dim, out_dim: *out_dim, gelu };
                let x = x.contiguous()?;
                match residual {
                    Some(r) => x.apply_op2_no_bwd(&r.contiguous()?, &op),
                    None => x.apply_op1_no_bwd(&op),
                }
            }
            Dense::Candle(linear) => {
                let y = linear.forward(x)?;
                let y = if gelu { ops::gelu_erf(&y)? } else { y };
                match residual {
                    Some(r) => r + y,
                    None => Ok(y),
                }
            }
        }
    }
}

struct DenseOp<'a> {
    w_t: &'a [f32],
    bias: &'a [f32],
    in_dim: usize,
    out_dim: usize,
    gelu: bool,
}

impl DenseOp<'_> {
    /// `x` is `[rows, in]`; `dst` holds `[rows, out]` already set to the bias (and residual).
    fn compute(&self, x: &[f32], dst: &mut [f32]) {
        let rows = x.len() / self.in_dim;
        let macs = rows * self.in_dim * self.out_dim;
        let threads = rayon::current_num_threads();
        let parallelism =
            if threads > 1 && macs >= PARALLEL_MIN_MACS { Parallelism::Rayon(threads) } else { Parallelism::None };
        // SAFETY: x is rows x in, w_t in x out and dst rows x out, all row-major and exactly
        // that long (checked by the callers), and dst is not aliased.
        unsafe {
            gemm_f32(
                (rows, self.out_dim, self.in_dim),
                Strided::rows(dst.as_mut_ptr(), self.out_dim),
                true,
                Strided::rows(x.as_ptr(), self.in_dim),
                Strided::rows(self.w_t.as_ptr(), self.out_dim),
                parallelism,
            )
        }
        if self.gelu {
            ops::gelu_in_place(dst, self.out_dim);
        }
    }

    fn shape(&self, layout: &Layout) -> Result<(usize, Shape)> {
        let dims = layout.shape().dims();
        if dims.last() != Some(&self.in_dim) {
            candle_core::bail!("linear layer takes rows of {} values, got shape {dims:?}", self.in_dim);
        }
        let mut out = dims.to_vec();
        *out.last_mut().expect("at least one dim") = self.out_dim;
        Ok((layout.shape().elem_count() / self.in_dim, Shape::from(out)))
    }
}

/// A `rows x width` buffer whose rows `fill` writes (row index, row), spread over the pool when
/// large. Written once instead of zeroed first: zeroing a fresh buffer of several MB costs as
/// much as the bias pass itself.
fn rows_from(rows: usize, width: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let mut dst = Vec::with_capacity(rows * width);
    let spare = &mut dst.spare_capacity_mut()[..rows * width];
    if rows * width >= ops::PARALLEL_MIN {
        spare.par_chunks_mut(width).enumerate().for_each(|(i, row)| fill(i, row));
    } else {
        spare.chunks_mut(width).enumerate().for_each(|(i, row)| fill(i, row));
    }
    // SAFETY: every one of the rows x width elements was written by `fill`, which gets each
    // row whole and must write all of it (both callers zip over the full row).
    unsafe { dst.set_len(rows * width) };
    dst
}

impl CustomOp1 for DenseOp<'_> {
    fn name(&self) -> &'static str {
        "wick-dense"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = ops::contiguous_f32(storage, layout)?;
        let (rows, shape) = self.shape(layout)?;
        let mut dst = rows_from(rows, self.out_dim, |_, row| {
            row.iter_mut().zip(self.bias).for_each(|(y, &b)| _ = y.write(b));
        });
        self.compute(x, &mut dst);
        Ok((CpuStorage::F32(dst), shape))
    }
}

impl CustomOp2 for DenseOp<'_> {
    fn name(&self) -> &'static str {
        "wick-dense-residual"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = ops::contiguous_f32(s1, l1)?;
        let residual = ops::contiguous_f32(s2, l2)?;
        let (rows, shape) = self.shape(l1)?;
        if l2.shape() != &shape {
            candle_core::bail!("linear layer's residual has shape {:?}, expected {shape:?}", l2.shape());
        }
        let out = self.out_dim;
        let mut dst = rows_from(rows, out, |i, row| {
            let r = &residual[i * out..(i + 1) * out];
            row.iter_mut().zip(r.iter().zip(self.bias)).for_each(|(y, (&r, &b))| _ = y.write(r + b));
        });
        self.compute(x, &mut dst);
        Ok((CpuStorage::F32(dst), shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The CPU op against Candle's `Linear` and ops, for each epilogue, with more rows than
    /// one thread takes and with a single row (a decoding step).
    #[test]
    fn matches_candle_linear() -> Result<()> {
        let dev = Device::Cpu;
        let (i, o) = (96, 160);
        let w = Tensor::randn(0f32, 0.1, (o, i), &dev)?;
        let b = Tensor::randn(0f32, 0.1, o, &dev)?;
        let dense = Dense::new(w.clone(), Some(b.clone()))?;
        let linear = Linear::new(w, Some(b));
        for rows in [1, 300] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, i), &dev)?;
            let r = Tensor::randn(0f32, 1.0, (1, rows, o), &dev)?;
            let want = linear.forward(&x)?;
            let cases = [
                (dense.forward(&x)?, want.clone()),
                (dense.forward_gelu(&x)?, want.gelu_erf()?),
                (dense.forward_residual(&x, &r)?, (&r + &want)?),
            ];
            for (n, (got, want)) in cases.into_iter().enumerate() {
                assert_eq!(got.dims(), want.dims());
                let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-5, "rows {rows}, case {n}: largest difference {diff}");
            }
        }
        Ok(())
    }
}
