//! The feed-forward block's gate on the CPU: `silu(gate) · up` in one pass.
//!
//! Candle computes it as two operations (the SiLU, then the product), each a pass of its own
//! that allocates its result, on one thread. On the 3B at two threads that took about 0.9 ms
//! of a 45-70 ms token, all of it on one thread while the other waited for the next matrix
//! product. Here one pass does both, split over the generation pool for a token and over
//! rayon's for a prompt.
//!
//! The arithmetic is Candle's, `x / (e^-x + 1) · up` with libm's `expf`, bit for bit (less
//! its slow path at the ends of its range: `cpu_kernels::libm_exp`). A
//! vectorised exponential (within 3e-7 of libm's) was about four times as fast, but the small
//! model's activations are quantized to 8 bits before every product, so a last-bit change can
//! move a value to the next step: greedy decoding then left llama.cpp's tokens at two steps
//! where its top-2 margin was 0.06 and 0.09 (`tests/llm.rs`). Other devices and types use
//! Candle's ops.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::pool::Pool;
use crate::cpu_kernels::{contiguous_f32, libm_exp};

/// From this many values on (a prompt's rows) the work goes to rayon's threads; below (one
/// token's row, or a prompt of a few tokens) it is split over the generation pool.
const PROMPT_MIN: usize = 1 << 16;
/// Values a task: a 3B token's 8192 make four.
const CHUNK: usize = 1 << 11;

/// `silu(gate) · up`, elementwise; the two have one shape.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.device().is_cpu() && gate.dtype() == DType::F32 && up.dtype() == DType::F32 {
        return gate.contiguous()?.apply_op2_no_bwd(&up.contiguous()?, &SiluMul);
    }
    candle_nn::ops::silu(gate)? * up
}

struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "wick-silu-mul"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        g_layout: &Layout,
        u: &CpuStorage,
        u_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if g_layout.shape() != u_layout.shape() {
            candle_core::bail!(
                "silu(gate) · up: gate {:?} and up {:?} differ in shape",
                g_layout.shape(),
                u_layout.shape()
            );
        }
        let gate = contiguous_f32(g, g_layout, "silu(gate) · up")?;
        let up = contiguous_f32(u, u_layout, "silu(gate) · up")?;
        let n = gate.len();
        if n < PROMPT_MIN {
            let mut out = vec![0.0f32; n];
            Pool::global().for_each_chunk_mut(&mut out, CHUNK, |c, o| {
                for (o, v) in o.iter_mut().zip(silu_mul_values(gate, up, c * CHUNK)) {
                    *o = v;
                }
            });
            return Ok((CpuStorage::F32(out), g_layout.shape().clone()));
        }
        // A prompt's megabytes are written whole, so not zeroed first: a zeroed allocation
        // this large took fresh pages from mimalloc each time, and raised SmolLM2's peak
        // memory by a tenth on a 1000-token prompt.
        let mut out = Vec::with_capacity(n);
        out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
            for (o, v) in o.iter_mut().zip(silu_mul_values(gate, up, c * CHUNK)) {
                o.write(v);
            }
        });
        // SAFETY: the chunks cover the first `n` values, and each was written.
        unsafe { out.set_len(n) };
        Ok((CpuStorage::F32(out), g_layout.shape().clone()))
    }
}

/// `silu(gate[i]) · up[i]` from `i = at` on, as Candle computes it.
fn silu_mul_values<'a>(gate: &'a [f32], up: &'a [f32], at: usize) -> impl Iterator<Item = f32> + 'a {
    gate[at..].iter().zip(&up[at..]).map(|(&g, &u)| g / (libm_exp(-g) + 1.0) * u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Candle's bits, for one token's row (the pool) and a prompt's (rayon), with values where
    /// the exponential saturates.
    #[test]
    fn gives_candles_silu_times_up() -> Result<()> {
        for n in [8192 + 37, PROMPT_MIN + 37] {
            let gate: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2001) as f32 / 5.0 - 200.0).collect();
            let up: Vec<f32> = (0..n).map(|i| ((i * 104_729) % 997) as f32 / 99.0 - 5.0).collect();
            let gate = Tensor::from_vec(gate, (1, n), &Device::Cpu)?;
            let up = Tensor::from_vec(up, (1, n), &Device::Cpu)?;
            let want = (candle_nn::ops::silu(&gate)? * &up)?;
            let got = silu_mul(&gate, &up)?;
            assert_eq!(got.dims(), &[1, n]);
            let bits = |t: &Tensor| -> Result<Vec<u32>> {
                Ok(t.flatten_all()?.to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect())
            };
            assert!(bits(&got)? == bits(&want)?, "{n} values: not Candle's bits");
        }
        // A strided (transposed) input is made contiguous first.
        let g2 = Tensor::from_vec((0..6).map(|i| i as f32 - 3.0).collect::<Vec<_>>(), (2, 3), &Device::Cpu)?.t()?;
        let u2 = Tensor::ones((3, 2), DType::F32, &Device::Cpu)?;
        assert_eq!(silu_mul(&g2, &u2)?.to_vec2::<f32>()?, candle_nn::ops::silu(&g2)?.to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn shapes_must_agree() -> Result<()> {
        let a = Tensor::zeros((1, 4), DType::F32, &Device::Cpu)?;
        let b = Tensor::zeros((1, 5), DType::F32, &Device::Cpu)?;
        let err = silu_mul(&a, &b).unwrap_err().to_string();
        assert!(err.contains("differ in shape"), "{err}");
        Ok(())
    }
}
