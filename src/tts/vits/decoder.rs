//! The waveform decoder (VITS `dec`, a HiFi-GAN generator): the latent at frame rate goes
//! through a convolution, then per stage a leaky ReLU and a transposed convolution that
//! upsamples in time, followed by the average of several residual blocks with different
//! kernel sizes and dilations (multi-receptive-field fusion); a last convolution and tanh
//! give samples in [-1, 1]. Both of HiFi-GAN's residual block kinds are run (Piper's medium
//! and high voices), and multi-speaker voices add the speaker after the first convolution.

use candle_core::{Device, Module, Result, Tensor};

use super::activations;
use super::layers::{add_speaker, count_children, dim_of, load_cond, Conv1d};
use super::upsample::ConvTranspose1d;
use super::VitsError;
use crate::tts::onnx::OnnxWeights;

/// HiFi-GAN's slope between layers.
const SLOPE: f64 = 0.1;
/// The slope before the last convolution: PyTorch's default, which HiFi-GAN uses there.
const FINAL_SLOPE: f64 = 0.01;

#[derive(Debug, Clone)]
pub struct Decoder {
    conv_pre: Conv1d,
    /// Speaker conditioning added after `conv_pre` (multi-speaker voices).
    cond: Option<Conv1d>,
    stages: Vec<Stage>,
    conv_post: Conv1d,
    hop: usize,
}

#[derive(Debug, Clone)]
struct Stage {
    upsample: ConvTranspose1d,
    resblocks: Vec<ResBlock>,
}

impl Decoder {
    pub fn load(
        w: &OnnxWeights,
        latent: usize,
        speaker_channels: Option<usize>,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let initial = dim_of(w, "dec.conv_pre.weight", 0)?;
        let conv_pre = Conv1d::load(w, "dec.conv_pre", latent, initial, device)?;
        let cond = load_cond(w, "dec.cond", speaker_channels, initial, device)?;
        let ups = count_children(w, "dec.ups", "weight");
        let kind = if w.contains("dec.resblocks.0.convs1.0.weight") { BlockKind::Paired } else { BlockKind::Single };
        let blocks = count_children(w, "dec.resblocks", kind.first_weight());
        if ups == 0 || blocks == 0 || !blocks.is_multiple_of(ups) {
            return Err(VitsError::arch(
                w,
                format!("the decoder has {ups} upsampling stages and {blocks} residual blocks ({kind:?})"),
            ));
        }
        let per_stage = blocks / ups;
        // A stage ends in the mean of its residual blocks; the next layer takes the sum and
        // divides through its weights (leaky ReLU commutes with a positive scale), which
        // saves a pass over the audio-rate signal per stage.
        let mean = 1.0 / per_stage as f64;
        let mut channels = initial;
        let mut stages = Vec::with_capacity(ups);
        let mut hop = 1;
        for i in 0..ups {
            let scale = if i == 0 { 1.0 } else { mean };
            let upsample = ConvTranspose1d::load(w, &format!("dec.ups.{i}"), channels, scale, device)?;
            hop *= w.conv_attrs(&format!("dec.ups.{i}"))?.stride;
            channels = upsample.out_channels();
            let resblocks = (0..per_stage)
                .map(|j| ResBlock::load(w, &format!("dec.resblocks.{}", i * per_stage + j), kind, channels, device))
                .collect::<std::result::Result<_, _>>()?;
            stages.push(Stage { upsample, resblocks });
        }
        let conv_post = Conv1d::load(w, "dec.conv_post", channels, 1, device)?.scaled_input(mean)?;
        Ok(Self { conv_pre, cond, stages, conv_post, hop })
    }

    /// Output samples per latent frame.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Samples `[1, 1, frames·hop]` for the latent `z` `[1, latent, frames]`, spoken by the
    /// speaker embedding `g` `[1, speaker_channels, 1]` in multi-speaker voices.
    pub fn forward(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut x = add_speaker(self.conv_pre.forward(z)?, self.cond.as_ref(), g)?;
        for stage in &self.stages {
            x = stage.upsample.forward_fused(&x, SLOPE)?;
            let mut sum: Option<Tensor> = None;
            for block in &stage.resblocks {
                let y = block.forward(&x)?;
                sum = Some(match sum {
                    Some(s) => (s + y)?,
                    None => y,
                });
            }
            // The sum, not the mean: the next layer's weights divide (see `load`).
            x = sum.expect("a stage has residual blocks");
        }
        activations::tanh(&self.conv_post.forward_fused(&x, Some(FINAL_SLOPE), None)?)
    }
}

/// HiFi-GAN's two kinds of residual block, as Piper's `resblock` setting names them.
#[derive(Debug, Clone, Copy)]
enum BlockKind {
    /// Resblock "2" (Piper's medium voices): per dilation one convolution,
    /// `x += conv(lrelu(x))`.
    Single,
    /// Resblock "1" (Piper's high voices): per dilation a dilated convolution followed by
    /// an undilated one, `x += conv2(lrelu(conv1(lrelu(x))))`.
    Paired,
}

impl BlockKind {
    fn first_weight(self) -> &'static str {
        match self {
            BlockKind::Single => "convs.0.weight",
            BlockKind::Paired => "convs1.0.weight",
        }
    }
}

/// One residual block: a chain of steps, each adding its output back to the running sum.
#[derive(Debug, Clone)]
struct ResBlock {
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Single(Conv1d),
    Paired(Conv1d, Conv1d),
}

impl ResBlock {
    fn load(
        w: &OnnxWeights,
        module: &str,
        kind: BlockKind,
        channels: usize,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let conv = |name: String| Conv1d::load(w, &name, channels, channels, device);
        let steps = match kind {
            BlockKind::Single => (0..count_children(w, &format!("{module}.convs"), "weight"))
                .map(|i| Ok(Step::Single(conv(format!("{module}.convs.{i}"))?)))
                .collect::<std::result::Result<Vec<_>, VitsError>>()?,
            BlockKind::Paired => {
                let count = count_children(w, &format!("{module}.convs1"), "weight");
                if count_children(w, &format!("{module}.convs2"), "weight") != count {
                    return Err(VitsError::arch(
                        w,
                        format!("{module} has {count} convs1 but a different number of convs2"),
                    ));
                }
                (0..count)
                    .map(|i| {
                        Ok(Step::Paired(conv(format!("{module}.convs1.{i}"))?, conv(format!("{module}.convs2.{i}"))?))
                    })
                    .collect::<std::result::Result<Vec<_>, VitsError>>()?
            }
        };
        if steps.is_empty() {
            return Err(VitsError::arch(w, format!("{module} has no convolutions")));
        }
        Ok(Self { steps })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for step in &self.steps {
            x = match step {
                Step::Single(conv) => conv.forward_fused(&x, Some(SLOPE), Some(&x))?,
                Step::Paired(first, second) => {
                    let y = first.forward_fused(&x, Some(SLOPE), None)?;
                    second.forward_fused(&y, Some(SLOPE), Some(&x))?
                }
            };
        }
        Ok(x)
    }
}
