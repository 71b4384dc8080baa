//! Element-wise activations on the voice's hot path, with a CPU kernel each: WaveNet's gate
//! tanh(a)·σ(b) (sixteen times per sentence in the flow) and the decoder's closing tanh.
//! Candle evaluates tanh and the sigmoid with libm one element at a time, the gate as three
//! passes with two copies; here each is one pass over a branch-free exponential that the
//! compiler vectorises (absolute error below 1e-6), spread over the rayon pool when large.
//! Other devices, dtypes and batch sizes use Candle's ops.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::layers::split_channels;
use crate::cpu_kernels::{contiguous_f32, widest};

/// Below this many elements a single thread is faster than fanning out.
const PARALLEL_MIN: usize = 1 << 15;
const CHUNK: usize = 1 << 13;

/// `tanh(a) · sigmoid(b)` for `x = [a; b]` `[1, 2·half, t]` split on channels.
pub fn gated_tanh(x: &Tensor, half: usize) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.dim(0)? == 1 && x.dim(1)? == 2 * half {
        return x.contiguous()?.apply_op1_no_bwd(&GatedTanh);
    }
    let (a, b) = split_channels(x, half)?;
    a.tanh()? * candle_nn::ops::sigmoid(&b)?
}

/// `tanh(x)`.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1_no_bwd(&Tanh);
    }
    x.tanh()
}

struct GatedTanh;

impl CustomOp1 for GatedTanh {
    fn name(&self) -> &'static str {
        "wick-gated-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, channels, t) = layout.shape().dims3()?;
        let x = contiguous_f32(storage, layout, "the voice's CPU activations")?;
        let half = channels / 2 * t;
        let (a, b) = x.split_at(half);
        let mut out = vec![0.0f32; half];
        let run = |(o, (a, b)): (&mut [f32], (&[f32], &[f32]))| gate_slice(o, a, b);
        if half >= PARALLEL_MIN {
            out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(run);
        } else {
            run((&mut out, (a, b)));
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, channels / 2, t))))
    }
}

struct Tanh;

impl CustomOp1 for Tanh {
    fn name(&self) -> &'static str {
        "wick-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "the voice's CPU activations")?;
        let mut out = vec![0.0f32; x.len()];
        if x.len() >= PARALLEL_MIN {
            out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, x)| tanh_slice(o, x));
        } else {
            tanh_slice(&mut out, x);
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

widest!(
    /// `dst = leaky_relu(src, slope)`, for the convolution kernel's unfolding.
    pub(super) leaky_relu_into(dst: &mut [f32], src: &[f32], slope: f32) {
        for (d, &v) in dst.iter_mut().zip(src) {
            // A plain comparison (not `f32::max`, whose NaN rule blocks vectorising).
            let w = v * slope;
            *d = if v > w { v } else { w };
        }
    }
);

widest!(
    gate_slice(out: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = tanh_f32(a) * sigmoid_f32(b);
        }
    }
);

widest!(
    tanh_slice(out: &mut [f32], x: &[f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = tanh_f32(x);
        }
    }
);

/// e^x for x <= 0: x = k·ln2 + r with |r| <= ln2/2, e^r by its Taylor series to r⁶
/// (relative error about 1e-7), 2^k through the exponent bits. Below -87 the result is
/// flushed towards zero by the clamp, which is harmless where it is used.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let k = (x * std::f32::consts::LOG2_E + ROUNDER) - ROUNDER;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// tanh through e^(-2|x|), which never overflows.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

/// The logistic function through e^(-|x|).
#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 {
        s
    } else {
        1.0 - s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn match_candle_within_a_millionth() {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 3.0, (1, 8, 5000), &dev).unwrap() * 1.0).unwrap();
        let edge = Tensor::new(&[[[-100f32, -20.0, -1e-5, 0.0, 1e-5, 20.0, 100.0, 0.5]]], &dev).unwrap();
        let x = Tensor::cat(&[x.narrow(2, 0, 4992).unwrap(), edge.broadcast_as((1, 8, 8)).unwrap()], 2).unwrap();
        let (a, b) = split_channels(&x, 4).unwrap();
        let expected = (a.tanh().unwrap() * candle_nn::ops::sigmoid(&b).unwrap()).unwrap();
        let diff =
            |p: Tensor, q: Tensor| (p - q).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(gated_tanh(&x, 4).unwrap(), expected) < 1e-6);
        assert!(diff(tanh(&x).unwrap(), x.tanh().unwrap()) < 1e-6);
    }
}
