//! The decoder's upsampler, a `ConvTranspose1d` with stride s. On the CPU it runs as an
//! ordinary convolution in polyphase form: output sample q·s + r only ever sees a few inputs
//! around q, through kernel taps r + p, r + p ± s, ..., so one short convolution with s·out
//! channels (one group per phase r) computes all phases at once in the shared conv kernel,
//! and interleaving the phases gives the output. That holds when the output is exactly
//! s times the input (kernel - 2·padding = s, as in HiFi-GAN); other shapes, and other
//! devices, use Candle's transposed convolution.

use candle_core::{DType, Device, Module, Result, Tensor};

use super::kernels::UnfoldedConv;
use super::layers::{add_bias, leaky_relu, load_bias};
use super::VitsError;
use crate::tts::onnx::{ConvAttrs, OnnxWeights};

#[derive(Debug, Clone)]
pub struct ConvTranspose1d {
    /// `[in, out, kernel]`.
    weight: Tensor,
    /// `[1, out, 1]`.
    bias: Option<Tensor>,
    attrs: ConvAttrs,
    polyphase: Option<Polyphase>,
}

/// The equivalent convolution: `[out·s, in·taps + 1]` (row o·s + r is phase r of output
/// channel o; the last column is the bias), over the input padded by `pad` on both sides.
#[derive(Debug, Clone)]
struct Polyphase {
    matrix: Tensor,
    taps: usize,
    pad: usize,
}

impl ConvTranspose1d {
    /// Loads module `module`, taking `in_channels`, applied to its input multiplied by
    /// `input_scale` (> 0; folded into the weights, see `Conv1d::scaled_input`).
    pub fn load(
        w: &OnnxWeights,
        module: &str,
        in_channels: usize,
        input_scale: f64,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let name = format!("{module}.weight");
        let attrs = w.conv_attrs(module)?;
        let weight = (w.tensor(&name, device)? * input_scale)?;
        let dims = weight.dims().to_vec();
        if dims.len() != 3 || dims[0] != in_channels || attrs.groups != 1 || attrs.dilation != 1 {
            return Err(VitsError::arch(
                w,
                format!("{name} has shape {dims:?} (groups {}, dilation {}), expected [{in_channels}, out, kernel] with one group and no dilation", attrs.groups, attrs.dilation),
            ));
        }
        let bias = load_bias(w, module, dims[1], device)?;
        let polyphase = if device.is_cpu() { Polyphase::new(&weight, bias.as_ref(), attrs)? } else { None };
        Ok(Self { weight, bias, attrs, polyphase })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dim(1).unwrap_or(0)
    }

    /// `upsample(leaky_relu(x, slope))`.
    pub fn forward_fused(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        if let Some(p) = &self.polyphase {
            if x.device().is_cpu() && x.dtype() == DType::F32 && x.dim(0)? == 1 {
                let op = UnfoldedConv { kernel: p.taps, dilation: 1, padding: p.pad, slope: Some(slope as f32) };
                let phases = x.contiguous()?.apply_op2_no_bwd(&p.matrix, &op)?;
                let (_, rows, len) = phases.dims3()?;
                let (c_out, s) = (self.out_channels(), self.attrs.stride);
                debug_assert_eq!(rows, c_out * s);
                return phases.reshape((c_out, s, len))?.transpose(1, 2)?.reshape((1, c_out, len * s));
            }
        }
        self.forward(&leaky_relu(x, slope)?)
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attrs;
        // Candle's fast CPU path covers only zero padding: compute in full, then trim.
        let full = x.conv_transpose1d(&self.weight, 0, 0, a.stride, 1, 1)?;
        let len = full.dim(2)?;
        add_bias(full.narrow(2, a.padding, len - 2 * a.padding)?, self.bias.as_ref())
    }
}

impl Polyphase {
    /// The polyphase matrix, or `None` where the shapes do not allow it.
    fn new(weight: &Tensor, bias: Option<&Tensor>, a: ConvAttrs) -> Result<Option<Self>> {
        let (c_in, c_out, k) = weight.dims3()?;
        let (s, p) = (a.stride as isize, a.padding as isize);
        if s < 1 || k as isize - 2 * p != s {
            return Ok(None);
        }
        // Output q·s + r takes input q - d through kernel tap m = r + p + d·s. The offsets d
        // used by any phase span dmin..=dmax; the convolution's taps j = dmax - d.
        let (dmin, dmax) = (-((p + s - 1) / s), (k as isize - 1 - p).div_euclid(s));
        if dmax != -dmin {
            return Ok(None);
        }
        let taps = (dmax - dmin + 1) as usize;
        let width = c_in * taps + 1;
        let w = weight.flatten_all()?.to_vec1::<f32>()?;
        let b = match bias {
            Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; c_out],
        };
        let mut m = vec![0.0f32; c_out * s as usize * width];
        for co in 0..c_out {
            for r in 0..s {
                let row = (co * s as usize + r as usize) * width;
                for d in dmin..=dmax {
                    let tap = r + p + d * s;
                    if !(0..k as isize).contains(&tap) {
                        continue;
                    }
                    let j = (dmax - d) as usize;
                    for ci in 0..c_in {
                        m[row + ci * taps + j] = w[(ci * c_out + co) * k + tap as usize];
                    }
                }
                m[row + width - 1] = b[co];
            }
        }
        let matrix = Tensor::from_vec(m, (c_out * s as usize, width), weight.device())?;
        Ok(Some(Self { matrix, taps, pad: dmax as usize }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polyphase_matches_the_transposed_convolution() {
        let dev = Device::Cpu;
        for (k, s, p) in [(16, 8, 4), (8, 4, 2), (4, 2, 1)] {
            let (c_in, c_out, len) = (6, 5, 37);
            let weight = Tensor::randn(0f32, 1.0, (c_in, c_out, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, (1, c_out, 1), &dev).unwrap();
            let attrs = ConvAttrs { padding: p, dilation: 1, stride: s, groups: 1 };
            let polyphase = Polyphase::new(&weight, Some(&bias), attrs).unwrap();
            assert!(polyphase.is_some(), "k={k} s={s} p={p}");
            let up = ConvTranspose1d { weight, bias: Some(bias), attrs, polyphase };
            let x = Tensor::randn(0f32, 1.0, (1, c_in, len), &dev).unwrap();
            let ours = up.forward_fused(&x, 0.1).unwrap();
            let expected = up.forward(&leaky_relu(&x, 0.1).unwrap()).unwrap();
            assert_eq!(ours.dims(), expected.dims());
            let diff = (ours - expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "k={k} s={s} p={p}: max diff {diff}");
        }
    }
}
