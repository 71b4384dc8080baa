//! The stochastic duration predictor (VITS `dp`), run backwards: a normalizing flow over
//! (log-duration, auxiliary) pairs per phoneme, conditioned on the text encoder's output.
//! Inference starts from Gaussian noise scaled by `noise_w` (zeros when it is 0) and inverts
//! the flows: spline coupling layers whose splines a dilated depthwise-separable convolution
//! stack predicts, channel flips between them, and an element-wise affine map last. The
//! first coupling layer only ever transformed the auxiliary channel, which inference
//! discards, so exporters drop it and it is skipped here too.

use candle_core::{Device, Module, Result, Tensor};

use super::layers::{add_speaker, count_children, dim_of, load_cond, split_channels, Conv1d};
use super::norm::ChannelNorm;
use super::spline::{rational_quadratic, Direction};
use super::VitsError;
use crate::tts::onnx::OnnxWeights;

/// The spline's domain half-width: VITS's `ConvFlow` constant, which the graph keeps only as
/// folded literals.
const TAIL_BOUND: f64 = 5.0;

/// exp(-logs) of the last affine map, as a constant-folding exporter names it.
const FOLDED_INV_SCALE: &str = "/dp/flows.0/Exp_output_0";

#[derive(Debug, Clone)]
pub struct DurationPredictor {
    pre: Conv1d,
    /// Speaker conditioning added after `pre` (multi-speaker voices).
    cond: Option<Conv1d>,
    convs: DdsConv,
    proj: Conv1d,
    /// Coupling layers in the order inference runs them (last trained first).
    couplings: Vec<ConvFlow>,
    /// `ElementwiseAffine` run backwards: subtract `shift`, multiply by `inv_scale` = e^-logs.
    shift: Tensor,
    inv_scale: Tensor,
}

impl DurationPredictor {
    pub fn load(
        w: &OnnxWeights,
        hidden: usize,
        speaker_channels: Option<usize>,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let filter = dim_of(w, "dp.pre.weight", 0)?;
        let pre = Conv1d::load(w, "dp.pre", hidden, filter, device)?;
        let cond = load_cond(w, "dp.cond", speaker_channels, filter, device)?;
        let convs = DdsConv::load(w, "dp.convs", filter, device)?;
        let proj = Conv1d::load(w, "dp.proj", filter, filter, device)?;

        // flows.0 is the affine map, then (coupling, flip) pairs at 1/2, 3/4, ...; flows.1 is
        // the dropped one, so counting starts at flows.3.
        let couplings: Vec<usize> =
            (1..).map(|k| 2 * k + 1).take_while(|i| w.contains(&format!("dp.flows.{i}.pre.weight"))).collect();
        if couplings.is_empty() {
            return Err(VitsError::arch(w, "the duration predictor has no coupling flows (dp.flows.3)".into()));
        }
        let couplings = couplings
            .iter()
            .rev()
            .map(|i| ConvFlow::load(w, &format!("dp.flows.{i}"), filter, device))
            .collect::<std::result::Result<Vec<_>, _>>()?;

        let shift = w.tensor_shaped("dp.flows.0.m", &[2, 1], device)?.unsqueeze(0)?;
        let inv_scale = if w.contains("dp.flows.0.logs") {
            w.tensor_shaped("dp.flows.0.logs", &[2, 1], device)?.neg()?.exp()?
        } else if w.contains(FOLDED_INV_SCALE) {
            // Older exporters fold exp(-logs) into a constant named after the node that made it,
            w.tensor_shaped(FOLDED_INV_SCALE, &[2, 1], device)?
        } else {
            // newer ones only -logs, which the Exp node reads.
            w.tensor_shaped("/dp/flows.0/Exp#0", &[2, 1], device)?.exp()?
        };
        Ok(Self { pre, cond, convs, proj, couplings, shift, inv_scale: inv_scale.unsqueeze(0)? })
    }

    /// Log-durations `[1, 1, t]` for the encoder output `x` `[1, hidden, t]`, starting the
    /// flow from `noise` `[1, 2, t]` (already scaled by `noise_w`), for the speaker
    /// embedding `g` in multi-speaker voices.
    pub fn log_durations(&self, x: &Tensor, noise: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let h = add_speaker(self.pre.forward(x)?, self.cond.as_ref(), g)?;
        let cond = self.proj.forward(&self.convs.forward(&h, None)?)?;
        let mut z = noise.clone();
        for coupling in &self.couplings {
            z = coupling.reverse(&flip_pair(&z)?, &cond)?;
        }
        // The flip before the dropped first coupling layer, then the affine map.
        let z = flip_pair(&z)?;
        let z = z.broadcast_sub(&self.shift)?.broadcast_mul(&self.inv_scale)?;
        z.narrow(1, 0, 1)
    }
}

/// `Flip` on the two channels.
fn flip_pair(z: &Tensor) -> Result<Tensor> {
    let (a, b) = split_channels(z, 1)?;
    Tensor::cat(&[&b, &a], 1)
}

/// A coupling layer: the first channel, with the conditioning, predicts a spline that
/// transforms the second.
#[derive(Debug, Clone)]
struct ConvFlow {
    pre: Conv1d,
    convs: DdsConv,
    proj: Conv1d,
    bins: usize,
    filter: usize,
}

impl ConvFlow {
    fn load(w: &OnnxWeights, module: &str, filter: usize, device: &Device) -> std::result::Result<Self, VitsError> {
        let pre = Conv1d::load(w, &format!("{module}.pre"), 1, filter, device)?;
        let convs = DdsConv::load(w, &format!("{module}.convs"), filter, device)?;
        // Per bin a width and a height, per interior knot a derivative: 3K - 1 values.
        let outputs = dim_of(w, &format!("{module}.proj.weight"), 0)?;
        if outputs < 5 || (outputs + 1) % 3 != 0 {
            return Err(VitsError::arch(w, format!("{module}.proj gives {outputs} values per step, not 3·bins - 1")));
        }
        let proj = Conv1d::load(w, &format!("{module}.proj"), filter, outputs, device)?;
        Ok(Self { pre, convs, proj, bins: (outputs + 1) / 3, filter })
    }

    fn reverse(&self, z: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let (z0, z1) = split_channels(z, 1)?;
        let h = self.proj.forward(&self.convs.forward(&self.pre.forward(&z0)?, Some(cond))?)?;
        // [1, 3K-1, t] -> [t, 3K-1]: one spline per time step.
        let h = h.squeeze(0)?.t()?.contiguous()?;
        let k = self.bins;
        let norm = (self.filter as f64).sqrt();
        let widths = (h.narrow(1, 0, k)? / norm)?;
        let heights = (h.narrow(1, k, k)? / norm)?;
        let derivatives = h.narrow(1, 2 * k, k - 1)?;
        let x1 = z1.flatten_all()?;
        let y1 = rational_quadratic(&x1, &widths, &heights, &derivatives, TAIL_BOUND, Direction::Inverse)?;
        Tensor::cat(&[&z0, &y1.reshape(z1.shape())?], 1)
    }
}

/// Dilated depthwise-separable convolutions (VITS `DDSConv`): per layer a depthwise conv with
/// dilation kᶦ, layer norm, GELU, a 1×1 conv, layer norm, GELU, and a residual add.
#[derive(Debug, Clone)]
struct DdsConv {
    layers: Vec<DdsLayer>,
}

#[derive(Debug, Clone)]
struct DdsLayer {
    sep: Conv1d,
    norm_1: ChannelNorm,
    pointwise: Conv1d,
    norm_2: ChannelNorm,
}

impl DdsConv {
    fn load(w: &OnnxWeights, module: &str, channels: usize, device: &Device) -> std::result::Result<Self, VitsError> {
        let count = count_children(w, &format!("{module}.convs_sep"), "weight");
        if count == 0 {
            return Err(VitsError::arch(w, format!("{module} has no layers ({module}.convs_sep.0)")));
        }
        let layers = (0..count)
            .map(|i| {
                Ok(DdsLayer {
                    sep: Conv1d::load(w, &format!("{module}.convs_sep.{i}"), channels, channels, device)?,
                    norm_1: ChannelNorm::load(w, &format!("{module}.norms_1.{i}"), channels, device)?,
                    pointwise: Conv1d::load(w, &format!("{module}.convs_1x1.{i}"), channels, channels, device)?,
                    norm_2: ChannelNorm::load(w, &format!("{module}.norms_2.{i}"), channels, device)?,
                })
            })
            .collect::<std::result::Result<_, VitsError>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor, cond: Option<&Tensor>) -> Result<Tensor> {
        let mut x = match cond {
            Some(g) => (x + g)?,
            None => x.clone(),
        };
        for l in &self.layers {
            let y = l.norm_1.forward(&l.sep.forward(&x)?)?.gelu_erf()?;
            let y = l.norm_2.forward(&l.pointwise.forward(&y)?)?.gelu_erf()?;
            x = (x + y)?;
        }
        Ok(x)
    }
}
