//! The prior flow (VITS `flow`), run backwards: it turns a sample of the text-conditioned
//! prior into the latent the decoder was trained on. Residual coupling layers, mean-only:
//! the first half of the channels, through a WaveNet-style stack of gated dilated
//! convolutions, predicts a shift that is subtracted from the second half. A channel flip
//! sits between layers so both halves get transformed. Multi-speaker voices condition
//! every WaveNet layer on the speaker.

use candle_core::{Device, Module, Result, Tensor};

use super::activations::gated_tanh;
use super::layers::{count_children, dim_of, flip_channels, load_cond, reversed_indices, split_channels, Conv1d};
use super::VitsError;
use crate::tts::onnx::OnnxWeights;

#[derive(Debug, Clone)]
pub struct Flow {
    /// Coupling layers in training order (`flow.flows.0`, `.2`, ...).
    couplings: Vec<Coupling>,
    reversed: Tensor,
}

impl Flow {
    pub fn load(
        w: &OnnxWeights,
        channels: usize,
        speaker_channels: Option<usize>,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let couplings = (0..)
            .map(|k| 2 * k)
            .take_while(|i| w.contains(&format!("flow.flows.{i}.pre.weight")))
            .map(|i| Coupling::load(w, &format!("flow.flows.{i}"), channels, speaker_channels, device))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if couplings.is_empty() {
            return Err(VitsError::arch(w, "the flow has no coupling layers (flow.flows.0)".into()));
        }
        Ok(Self { couplings, reversed: reversed_indices(channels, device)? })
    }

    /// The decoder's latent for `z` `[1, channels, frames]` sampled from the prior, for the
    /// speaker embedding `g` in multi-speaker voices.
    pub fn reverse(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut z = z.clone();
        for coupling in self.couplings.iter().rev() {
            z = coupling.reverse(&flip_channels(&z, &self.reversed)?, g)?;
        }
        Ok(z)
    }
}

#[derive(Debug, Clone)]
struct Coupling {
    pre: Conv1d,
    wavenet: WaveNet,
    post: Conv1d,
    half: usize,
}

impl Coupling {
    fn load(
        w: &OnnxWeights,
        module: &str,
        channels: usize,
        speaker_channels: Option<usize>,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let half = channels / 2;
        let hidden = dim_of(w, &format!("{module}.pre.weight"), 0)?;
        if w.shape(&format!("{module}.post.weight")).map(|s| s.first() == Some(&(channels - half))) != Some(true) {
            return Err(VitsError::arch(
                w,
                format!("{module}.post must give {} channels: wick runs mean-only coupling layers", channels - half),
            ));
        }
        Ok(Self {
            pre: Conv1d::load(w, &format!("{module}.pre"), half, hidden, device)?,
            wavenet: WaveNet::load(w, &format!("{module}.enc"), hidden, speaker_channels, device)?,
            post: Conv1d::load(w, &format!("{module}.post"), hidden, channels - half, device)?,
            half,
        })
    }

    fn reverse(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let (x0, x1) = split_channels(x, self.half)?;
        let shift = self.post.forward(&self.wavenet.forward(&self.pre.forward(&x0)?, g)?)?;
        Tensor::cat(&[&x0, &(x1 - shift)?], 1)
    }
}

/// VITS's `WN`: per layer a dilated conv to twice the hidden width, the gated tanh·sigmoid,
/// and a 1×1 conv whose first half is the residual and second half the skip output (the
/// last layer has only the skip half). In multi-speaker voices one 1×1 conv of the speaker
/// embedding (`cond_layer`) gives every layer its own slice of twice the hidden width,
/// added before the gate.
#[derive(Debug, Clone)]
struct WaveNet {
    in_layers: Vec<Conv1d>,
    res_skip: Vec<Conv1d>,
    cond: Option<Conv1d>,
    hidden: usize,
}

impl WaveNet {
    fn load(
        w: &OnnxWeights,
        module: &str,
        hidden: usize,
        speaker_channels: Option<usize>,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let count = count_children(w, &format!("{module}.in_layers"), "weight");
        if count == 0 {
            return Err(VitsError::arch(w, format!("{module} has no layers ({module}.in_layers.0)")));
        }
        let cond = load_cond(w, &format!("{module}.cond_layer"), speaker_channels, 2 * hidden * count, device)?;
        let mut in_layers = Vec::with_capacity(count);
        let mut res_skip = Vec::with_capacity(count);
        for i in 0..count {
            in_layers.push(Conv1d::load(w, &format!("{module}.in_layers.{i}"), hidden, 2 * hidden, device)?);
            let out = if i + 1 < count { 2 * hidden } else { hidden };
            res_skip.push(Conv1d::load(w, &format!("{module}.res_skip_layers.{i}"), hidden, out, device)?);
        }
        Ok(Self { in_layers, res_skip, cond, hidden })
    }

    fn forward(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let speaker = match (&self.cond, g) {
            (Some(cond), Some(g)) => Some(cond.forward(g)?),
            _ => None,
        };
        let mut x = x.clone();
        let mut skip: Option<Tensor> = None;
        let last = self.in_layers.len() - 1;
        for (i, (inner, res_skip)) in self.in_layers.iter().zip(&self.res_skip).enumerate() {
            let mut pre_gate = inner.forward(&x)?;
            if let Some(s) = &speaker {
                pre_gate = pre_gate.broadcast_add(&s.narrow(1, 2 * self.hidden * i, 2 * self.hidden)?)?;
            }
            let acts = res_skip.forward(&gated_tanh(&pre_gate, self.hidden)?)?;
            let out = if i < last {
                let (res, out) = split_channels(&acts, self.hidden)?;
                x = (x + res)?;
                out
            } else {
                acts
            };
            skip = Some(match skip {
                Some(s) => (s + out)?,
                None => out,
            });
        }
        Ok(skip.expect("a WaveNet has at least one layer"))
    }
}
