//! The building blocks every part of the voice network shares: 1-D convolutions whose
//! padding and dilation come from the graph, leaky ReLU, and counting a module's numbered
//! children.

use candle_core::{DType, Device, Module, Result, Tensor};

use super::kernels::UnfoldedConv;
use super::VitsError;
use crate::tts::onnx::{ConvAttrs, OnnxWeights};

/// A `Conv1d` as exported: weight `[out, in / groups, kernel]`, optional bias, attributes
/// from the graph node.
#[derive(Debug, Clone)]
pub struct Conv1d {
    kernel: Kernel,
    attrs: ConvAttrs,
    kernel_size: usize,
}

#[derive(Debug, Clone)]
enum Kernel {
    /// A dense convolution as one matrix product: `[out, in·k + 1]` against the input's k
    /// shifted copies stacked with a row of ones (so the last column adds the bias). On the
    /// CPU the blocked kernel in `kernels` runs it; elsewhere Candle ops build the stack
    /// from whole rows and multiply once.
    Unfolded { matrix: Tensor },
    /// Depthwise convolutions run as a sum of shifted, scaled copies: Candle would split
    /// them into one tiny convolution per channel.
    Depthwise { taps: Vec<Tensor>, bias: Option<Tensor> },
    /// Anything else (strided, grouped): Candle's conv1d, bias `[1, out, 1]`.
    General { weight: Tensor, bias: Option<Tensor> },
}

impl Conv1d {
    /// Loads module `module` (e.g. `dec.conv_pre`), which must take `in_channels` and give
    /// `out_channels`.
    pub fn load(
        w: &OnnxWeights,
        module: &str,
        in_channels: usize,
        out_channels: usize,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let name = format!("{module}.weight");
        let attrs = w.conv_attrs(module)?;
        let weight = w.tensor(&name, device)?;
        let dims = weight.dims().to_vec();
        if dims.len() != 3 || dims[0] != out_channels || dims[1] * attrs.groups != in_channels {
            return Err(VitsError::arch(
                w,
                format!(
                    "{name} has shape {dims:?}, expected [{out_channels}, {in_channels} / groups {}, kernel]",
                    attrs.groups
                ),
            ));
        }
        let kernel_size = dims[2];
        let bias = load_bias(w, module, out_channels, device)?;
        let kernel = if attrs.groups == 1 && attrs.stride == 1 {
            let bias = match bias {
                Some(b) => b.reshape((out_channels, 1))?,
                None => Tensor::zeros((out_channels, 1), weight.dtype(), device)?,
            };
            let matrix = Tensor::cat(&[&weight.reshape((out_channels, in_channels * kernel_size))?, &bias], 1)?;
            Kernel::Unfolded { matrix }
        } else if attrs.groups == in_channels && dims[1] == 1 && attrs.stride == 1 {
            let taps = (0..kernel_size)
                .map(|k| weight.narrow(2, k, 1).and_then(|t| t.reshape((1, out_channels, 1))))
                .collect::<Result<Vec<_>>>()?;
            Kernel::Depthwise { taps, bias }
        } else {
            Kernel::General { weight, bias }
        };
        Ok(Self { kernel, attrs, kernel_size })
    }

    pub fn kernel_size(&self) -> usize {
        self.kernel_size
    }

    /// This convolution with its output (weights and bias) multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Result<Self> {
        let kernel = match &self.kernel {
            Kernel::Unfolded { matrix } => Kernel::Unfolded { matrix: (matrix * factor)? },
            Kernel::Depthwise { taps, bias } => Kernel::Depthwise {
                taps: taps.iter().map(|t| t * factor).collect::<Result<_>>()?,
                bias: bias.as_ref().map(|b| b * factor).transpose()?,
            },
            Kernel::General { weight, bias } => {
                Kernel::General { weight: (weight * factor)?, bias: bias.as_ref().map(|b| b * factor).transpose()? }
            }
        };
        Ok(Self { kernel, ..*self })
    }

    /// This convolution applied to its input multiplied by `factor` (> 0): the weights are
    /// scaled, the bias is not. With leaky ReLU in front, `conv(lrelu(c·x)) = conv'(lrelu(x))`
    /// for c > 0, so a scale on the input can move into the weights.
    pub fn scaled_input(&self, factor: f64) -> Result<Self> {
        let kernel = match &self.kernel {
            Kernel::Unfolded { matrix } => {
                let width = matrix.dim(1)?;
                let weights = (matrix.narrow(1, 0, width - 1)? * factor)?;
                Kernel::Unfolded { matrix: Tensor::cat(&[&weights, &matrix.narrow(1, width - 1, 1)?], 1)? }
            }
            Kernel::Depthwise { taps, bias } => {
                Kernel::Depthwise { taps: taps.iter().map(|t| t * factor).collect::<Result<_>>()?, bias: bias.clone() }
            }
            Kernel::General { weight, bias } => Kernel::General { weight: (weight * factor)?, bias: bias.clone() },
        };
        Ok(Self { kernel, ..*self })
    }

    /// This convolution with `extra` more zero padding on both sides than the graph gives
    /// it: for blocks that pad the input themselves, so the kernel pads instead of a copy.
    pub fn padded(&self, extra: usize) -> Self {
        Self { attrs: ConvAttrs { padding: self.attrs.padding + extra, ..self.attrs }, ..self.clone() }
    }

    /// One convolution giving the outputs of `convs` stacked on the channel axis, when
    /// they read the same input the same way (same kernel, padding, dilation) as dense
    /// convolutions; `None` otherwise.
    pub fn stacked(convs: &[&Conv1d]) -> Result<Option<Self>> {
        let first = match convs.first() {
            Some(c) => *c,
            None => return Ok(None),
        };
        let mut matrices = Vec::with_capacity(convs.len());
        for c in convs {
            match &c.kernel {
                Kernel::Unfolded { matrix } if c.attrs == first.attrs && c.kernel_size == first.kernel_size => {
                    matrices.push(matrix)
                }
                _ => return Ok(None),
            }
        }
        let matrix = Tensor::cat(&matrices, 0)?;
        Ok(Some(Self { kernel: Kernel::Unfolded { matrix }, ..*first }))
    }

    /// `conv(leaky_relu(x, slope)) + residual`, with the activation and the residual fused
    /// into the CPU kernel where it applies.
    pub fn forward_fused(&self, x: &Tensor, slope: Option<f64>, residual: Option<&Tensor>) -> Result<Tensor> {
        let a = self.attrs;
        if let Kernel::Unfolded { matrix } = &self.kernel {
            if x.device().is_cpu() && x.dtype() == DType::F32 && x.dim(0)? == 1 {
                let op = UnfoldedConv {
                    kernel: self.kernel_size,
                    dilation: a.dilation,
                    padding: a.padding,
                    slope: slope.map(|s| s as f32),
                };
                let x = x.contiguous()?;
                return match residual {
                    Some(r) => x.apply_op3_no_bwd(matrix, &r.contiguous()?, &op),
                    None => x.apply_op2_no_bwd(matrix, &op),
                };
            }
        }
        let x = match slope {
            Some(s) => leaky_relu(x, s)?,
            None => x.clone(),
        };
        let y = self.forward_ops(&x)?;
        match residual {
            Some(r) => y + r,
            None => Ok(y),
        }
    }

    /// The convolution in Candle ops, for any device.
    fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attrs;
        let (batch, _, len) = x.dims3()?;
        let span = a.dilation * (self.kernel_size - 1);
        let out_len = (len + 2 * a.padding).saturating_sub(span);
        match &self.kernel {
            Kernel::Unfolded { matrix } if batch == 1 => {
                let x = x.squeeze(0)?.pad_with_zeros(1, a.padding, a.padding)?;
                let ones = Tensor::ones((1, 1, out_len), x.dtype(), x.device())?;
                let mut rows = Vec::with_capacity(self.kernel_size);
                for k in 0..self.kernel_size {
                    rows.push(x.narrow(1, k * a.dilation, out_len)?.unsqueeze(1)?);
                }
                // [in, k, time]: row i·k + j is input channel i shifted by tap j, matching
                // the weight's [out, in, k] layout.
                let stacked = Tensor::cat(&rows, 1)?.flatten(0, 1)?;
                let stacked = Tensor::cat(&[&stacked, &ones.squeeze(0)?], 0)?;
                matrix.matmul(&stacked)?.unsqueeze(0)
            }
            Kernel::Unfolded { .. } => {
                // The voice runs one sentence at a time; other batches go one by one.
                let ys = (0..batch).map(|b| self.forward_ops(&x.narrow(0, b, 1)?)).collect::<Result<Vec<_>>>()?;
                Tensor::cat(&ys, 0)
            }
            Kernel::Depthwise { taps, bias } => {
                let padded = x.pad_with_zeros(2, a.padding, a.padding)?;
                let mut acc: Option<Tensor> = None;
                for (k, tap) in taps.iter().enumerate() {
                    let term = padded.narrow(2, k * a.dilation, out_len)?.broadcast_mul(tap)?;
                    acc = Some(match acc {
                        Some(acc) => (acc + term)?,
                        None => term,
                    });
                }
                add_bias(acc.expect("a convolution has at least one tap"), bias.as_ref())
            }
            Kernel::General { weight, bias } => {
                add_bias(x.conv1d(weight, a.padding, a.stride, a.dilation, a.groups)?, bias.as_ref())
            }
        }
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, None, None)
    }
}

pub(super) fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

pub(super) fn load_bias(
    w: &OnnxWeights,
    module: &str,
    channels: usize,
    device: &Device,
) -> std::result::Result<Option<Tensor>, VitsError> {
    let name = format!("{module}.bias");
    if !w.contains(&name) {
        return Ok(None);
    }
    Ok(Some(w.tensor_shaped(&name, &[channels], device)?.reshape((1, channels, 1))?))
}

/// The speaker-conditioning 1×1 convolution `module` (`dp.cond`, `dec.cond`, a WaveNet's
/// `cond_layer`) from the voice's `speaker_channels` to `out` channels. A voice has one in
/// each conditioned module exactly when it has speaker embeddings; anything else is a graph
/// wick would run wrongly, so it is refused.
pub fn load_cond(
    w: &OnnxWeights,
    module: &str,
    speaker_channels: Option<usize>,
    out: usize,
    device: &Device,
) -> std::result::Result<Option<Conv1d>, VitsError> {
    match (speaker_channels, w.contains(&format!("{module}.weight"))) {
        (Some(gin), true) => Ok(Some(Conv1d::load(w, module, gin, out, device)?)),
        (None, false) => Ok(None),
        (Some(_), false) => Err(VitsError::arch(
            w,
            format!("the voice has speaker embeddings (emb_g) but no speaker conditioning in {module}"),
        )),
        (None, true) => Err(VitsError::arch(
            w,
            format!("{module} is speaker-conditioned but the voice has no speaker embeddings (emb_g)"),
        )),
    }
}

/// `x + cond(g)`: the speaker's conditioning, one value per channel, added at every frame.
/// Unconditioned modules (`cond` is `None`) and calls without a speaker pass `x` through.
pub fn add_speaker(x: Tensor, cond: Option<&Conv1d>, g: Option<&Tensor>) -> Result<Tensor> {
    match (cond, g) {
        (Some(cond), Some(g)) => x.broadcast_add(&cond.forward(g)?),
        _ => Ok(x),
    }
}

/// Leaky ReLU for slopes in (0, 1): max(x, slope * x) takes two passes instead of four.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.maximum(&(x * slope)?)
}

/// How many children `prefix.0`, `prefix.1`, ... exist, judged by `leaf` under each.
pub fn count_children(w: &OnnxWeights, prefix: &str, leaf: &str) -> usize {
    (0..).take_while(|i| w.contains(&format!("{prefix}.{i}.{leaf}"))).count()
}

/// The size of dimension `dim` of tensor `name`, or an architecture error naming it.
pub fn dim_of(w: &OnnxWeights, name: &str, dim: usize) -> std::result::Result<usize, VitsError> {
    let shape = w.require_shape(name)?;
    shape
        .get(dim)
        .copied()
        .ok_or_else(|| VitsError::arch(w, format!("{name} has shape {shape:?}, which has no dimension {dim}")))
}

/// Splits `[b, c, t]` into its first `c0` channels and the rest.
pub fn split_channels(x: &Tensor, c0: usize) -> Result<(Tensor, Tensor)> {
    let c = x.dim(1)?;
    Ok((x.narrow(1, 0, c0)?, x.narrow(1, c0, c - c0)?))
}

/// VITS's `Flip` layer (`torch.flip(x, [1])`): the channels in reverse order.
pub fn flip_channels(x: &Tensor, reversed: &Tensor) -> Result<Tensor> {
    x.index_select(reversed, 1)
}

/// Reversed channel indices `[c-1, ..., 0]` for [`flip_channels`].
pub fn reversed_indices(channels: usize, device: &Device) -> Result<Tensor> {
    let idx: Vec<u32> = (0..channels as u32).rev().collect();
    Tensor::from_vec(idx, channels, device)
}
