//! Layer norm over the channel axis of `[1, channels, time]`, as VITS applies it after every
//! attention, feed-forward and separable-convolution block (36 times per sentence). Candle
//! needs nine small ops for it; on the CPU one kernel does two passes over the channels,
//! vectorised along time. Other devices use the nine ops.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Result, Shape, Tensor};

use super::VitsError;
use crate::tts::onnx::OnnxWeights;

/// VITS's `LayerNorm` epsilon (the graph's constant 1e-5).
const EPS: f32 = 1e-5;

#[derive(Debug, Clone)]
pub struct ChannelNorm {
    /// `[1, channels, 1]`.
    gamma: Tensor,
    beta: Tensor,
    /// The same values on the host, for the CPU kernel.
    host: (Vec<f32>, Vec<f32>),
}

impl ChannelNorm {
    pub fn load(
        w: &OnnxWeights,
        module: &str,
        channels: usize,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let load = |p: &str| w.tensor_shaped(&format!("{module}.{p}"), &[channels], device);
        let (gamma, beta) = (load("gamma")?, load("beta")?);
        let host = (gamma.to_vec1::<f32>()?, beta.to_vec1::<f32>()?);
        Ok(Self { gamma: gamma.reshape((1, channels, 1))?, beta: beta.reshape((1, channels, 1))?, host })
    }
}

impl Module for ChannelNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 && x.dim(0)? == 1 && x.dim(1)? == self.host.0.len() {
            return x.contiguous()?.apply_op1_no_bwd(&NormOp { gamma: &self.host.0, beta: &self.host.1 });
        }
        let mean = x.mean_keepdim(1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(1)?;
        let normed = centered.broadcast_div(&(var + f64::from(EPS))?.sqrt()?)?;
        normed.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)
    }
}

struct NormOp<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
}

impl CustomOp1 for NormOp<'_> {
    fn name(&self) -> &'static str {
        "wick-channel-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, t) = layout.shape().dims3()?;
        let x = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) => &data[start..end],
            _ => candle_core::bail!("the voice's channel norm takes a contiguous f32 tensor"),
        };
        let rows = || x.chunks_exact(t);
        let scale = 1.0 / c as f32;
        // Mean, then variance around it (two passes, like PyTorch), per time step.
        let mut mean = vec![0.0f32; t];
        for row in rows() {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v);
        }
        mean.iter_mut().for_each(|m| *m *= scale);
        let mut inv_std = vec![0.0f32; t];
        for row in rows() {
            inv_std.iter_mut().zip(row).zip(&mean).for_each(|((s, &v), &m)| *s += (v - m) * (v - m));
        }
        inv_std.iter_mut().for_each(|s| *s = 1.0 / (*s * scale + EPS).sqrt());
        let mut out = vec![0.0f32; c * t];
        for ((out, row), (&g, &b)) in out.chunks_exact_mut(t).zip(rows()).zip(self.gamma.iter().zip(self.beta)) {
            for (((o, &v), &m), &s) in out.iter_mut().zip(row).zip(&mean).zip(&inv_std) {
                *o = (v - m) * s * g + b;
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_matches_the_candle_ops() {
        let dev = Device::Cpu;
        let (c, t) = (7, 33);
        let x = (Tensor::randn(0f32, 2.0, (1, c, t), &dev).unwrap() + 0.5).unwrap();
        let gamma = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
        let beta = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
        let norm = ChannelNorm {
            gamma: gamma.reshape((1, c, 1)).unwrap(),
            beta: beta.reshape((1, c, 1)).unwrap(),
            host: (gamma.to_vec1().unwrap(), beta.to_vec1().unwrap()),
        };
        let ours = norm.forward(&x).unwrap();
        // Off the fast path: a batch of two runs the Candle ops.
        let both = norm.forward(&Tensor::cat(&[&x, &x], 0).unwrap()).unwrap().narrow(0, 0, 1).unwrap();
        let diff = (ours - both).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "max diff {diff}");
    }
}
