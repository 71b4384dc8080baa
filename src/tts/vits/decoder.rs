//! The waveform decoder (VITS `dec`, a HiFi-GAN generator): the latent at frame rate goes
//! through a convolution, then per stage a leaky ReLU and a transposed convolution that
//! upsamples in time, followed by the average of several residual blocks with different
//! kernel sizes and dilations (multi-receptive-field fusion); a last convolution and tanh
//! give samples in [-1, 1].

use candle_core::{Device, Module, Result, Tensor};

use super::activations;
use super::layers::{count_children, dim_of, Conv1d};
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
    pub fn load(w: &OnnxWeights, latent: usize, device: &Device) -> std::result::Result<Self, VitsError> {
        if w.contains("dec.cond.weight") {
            return Err(VitsError::arch(
                w,
                "the decoder is speaker-conditioned (dec.cond); wick runs single-speaker voices".into(),
            ));
        }
        let initial = dim_of(w, "dec.conv_pre.weight", 0)?;
        let conv_pre = Conv1d::load(w, "dec.conv_pre", latent, initial, device)?;
        let ups = count_children(w, "dec.ups", "weight");
        let blocks = count_children(w, "dec.resblocks", "convs.0.weight");
        if ups == 0 || blocks == 0 || !blocks.is_multiple_of(ups) {
            let what = if w.contains("dec.resblocks.0.convs1.0.weight") {
                "the decoder uses HiFi-GAN's three-convolution residual blocks (resblock \"1\", Piper's high quality voices), which wick does not implement yet".to_string()
            } else {
                format!(
                    "the decoder has {ups} upsampling stages and {blocks} residual blocks of the two-convolution kind"
                )
            };
            return Err(VitsError::arch(w, what));
        }
        let per_stage = blocks / ups;
        let mut channels = initial;
        let mut stages = Vec::with_capacity(ups);
        let mut hop = 1;
        for i in 0..ups {
            let upsample = ConvTranspose1d::load(w, &format!("dec.ups.{i}"), channels, device)?;
            hop *= w.conv_attrs(&format!("dec.ups.{i}"))?.stride;
            channels = upsample.out_channels();
            let resblocks = (0..per_stage)
                .map(|j| ResBlock::load(w, &format!("dec.resblocks.{}", i * per_stage + j), channels, device))
                .collect::<std::result::Result<_, _>>()?;
            stages.push(Stage { upsample, resblocks });
        }
        let conv_post = Conv1d::load(w, "dec.conv_post", channels, 1, device)?;
        Ok(Self { conv_pre, stages, conv_post, hop })
    }

    /// Output samples per latent frame.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Samples `[1, 1, frames·hop]` for the latent `z` `[1, latent, frames]`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut x = self.conv_pre.forward(z)?;
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
            x = (sum.expect("a stage has residual blocks") / stage.resblocks.len() as f64)?;
        }
        activations::tanh(&self.conv_post.forward_fused(&x, Some(FINAL_SLOPE), None)?)
    }
}

/// HiFi-GAN's two-convolution residual block (resblock "2"): each convolution, with its own
/// dilation, sees the leaky-ReLU of the running sum and adds back to it.
#[derive(Debug, Clone)]
struct ResBlock {
    convs: Vec<Conv1d>,
}

impl ResBlock {
    fn load(w: &OnnxWeights, module: &str, channels: usize, device: &Device) -> std::result::Result<Self, VitsError> {
        let count = count_children(w, &format!("{module}.convs"), "weight");
        let convs = (0..count)
            .map(|i| Conv1d::load(w, &format!("{module}.convs.{i}"), channels, channels, device))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self { convs })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for conv in &self.convs {
            x = conv.forward_fused(&x, Some(SLOPE), Some(&x))?;
        }
        Ok(x)
    }
}
