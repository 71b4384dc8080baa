//! The text encoder (VITS `enc_p`): phoneme ids to a hidden sequence and, per phoneme, the
//! mean and log standard deviation of the prior over the acoustic latent. A transformer:
//! embedding scaled by √hidden, then layers of relative-position attention and a
//! convolutional feed-forward block, each followed by a residual add and a channel layer norm
//! (post-norm), then a 1×1 projection to mean and log-std.

use candle_core::{Device, Module, Result, Tensor};

use super::attention::RelativeAttention;
use super::layers::{count_children, dim_of, Conv1d};
use super::norm::ChannelNorm;
use super::VitsError;
use crate::tts::onnx::OnnxWeights;

#[derive(Debug, Clone)]
pub struct TextEncoder {
    /// `[symbols, hidden]`.
    embedding: Tensor,
    layers: Vec<EncoderLayer>,
    proj: Conv1d,
    hidden: usize,
    latent: usize,
}

/// What the encoder gives the rest of the network, each `[1, channels, phonemes]`.
pub struct Encoded {
    pub hidden: Tensor,
    pub mean: Tensor,
    pub log_std: Tensor,
}

impl TextEncoder {
    pub fn load(w: &OnnxWeights, device: &Device) -> std::result::Result<Self, VitsError> {
        let emb = "enc_p.emb.weight";
        let (symbols, hidden) = (dim_of(w, emb, 0)?, dim_of(w, emb, 1)?);
        let embedding = w.tensor_shaped(emb, &[symbols, hidden], device)?;
        let count = count_children(w, "enc_p.encoder.attn_layers", "conv_q.weight");
        if count == 0 {
            return Err(VitsError::arch(
                w,
                "the text encoder has no attention layers (enc_p.encoder.attn_layers.0)".into(),
            ));
        }
        let layers =
            (0..count).map(|i| EncoderLayer::load(w, i, hidden, device)).collect::<std::result::Result<_, _>>()?;
        let stats = dim_of(w, "enc_p.proj.weight", 0)?;
        if stats % 2 != 0 {
            return Err(VitsError::arch(w, format!("enc_p.proj gives {stats} channels, not mean and log-std halves")));
        }
        let proj = Conv1d::load(w, "enc_p.proj", hidden, stats, device)?;
        Ok(Self { embedding, layers, proj, hidden, latent: stats / 2 })
    }

    pub fn symbols(&self) -> usize {
        self.embedding.dim(0).unwrap_or(0)
    }

    /// Channels of the latent the prior describes.
    pub fn latent_channels(&self) -> usize {
        self.latent
    }

    pub fn hidden_channels(&self) -> usize {
        self.hidden
    }

    /// `ids` `[t]` (u32, already checked against [`Self::symbols`]).
    pub fn forward(&self, ids: &Tensor) -> Result<Encoded> {
        let x = self.embedding.index_select(ids, 0)?;
        let x = (x * (self.hidden as f64).sqrt())?;
        let mut x = x.t()?.unsqueeze(0)?.contiguous()?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let stats = self.proj.forward(&x)?;
        let mean = stats.narrow(1, 0, self.latent)?;
        let log_std = stats.narrow(1, self.latent, self.latent)?;
        Ok(Encoded { hidden: x, mean, log_std })
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    attention: RelativeAttention,
    norm_1: ChannelNorm,
    ffn: FeedForward,
    norm_2: ChannelNorm,
}

impl EncoderLayer {
    fn load(w: &OnnxWeights, i: usize, hidden: usize, device: &Device) -> std::result::Result<Self, VitsError> {
        let p = "enc_p.encoder";
        Ok(Self {
            attention: RelativeAttention::load(w, &format!("{p}.attn_layers.{i}"), hidden, device)?,
            norm_1: ChannelNorm::load(w, &format!("{p}.norm_layers_1.{i}"), hidden, device)?,
            ffn: FeedForward::load(w, &format!("{p}.ffn_layers.{i}"), hidden, device)?,
            norm_2: ChannelNorm::load(w, &format!("{p}.norm_layers_2.{i}"), hidden, device)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm_1.forward(&self.attention.forward_residual(x)?)?;
        self.norm_2.forward(&self.ffn.forward_residual(&x)?)
    }
}

/// Two convolutions with a ReLU between, each "same" length.
#[derive(Debug, Clone)]
struct FeedForward {
    conv_1: SameConv,
    conv_2: SameConv,
}

impl FeedForward {
    fn load(w: &OnnxWeights, module: &str, hidden: usize, device: &Device) -> std::result::Result<Self, VitsError> {
        let filter = dim_of(w, &format!("{module}.conv_1.weight"), 0)?;
        Ok(Self {
            conv_1: SameConv::new(Conv1d::load(w, &format!("{module}.conv_1"), hidden, filter, device)?),
            conv_2: SameConv::new(Conv1d::load(w, &format!("{module}.conv_2"), filter, hidden, device)?),
        })
    }

    /// `x + ffn(x)`: the ReLU is the second convolution's input activation (a leaky ReLU of
    /// slope 0) and the residual its output's, both fused into the CPU kernel.
    fn forward_residual(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv_1.forward_fused(x, None, None)?;
        self.conv_2.forward_fused(&h, Some(0.0), Some(x))
    }
}

/// A convolution kept at its input's length as VITS does it: the graph's convolution has no
/// padding of its own, the block pads (k-1)/2 before and k/2 after. For odd kernels that is
/// symmetric and the convolution pads itself (`Conv1d::padded`), without a copy.
#[derive(Debug, Clone)]
struct SameConv {
    conv: Conv1d,
    /// Zeros before and after that the input still gets by a copy (even kernels).
    copy_pad: Option<(usize, usize)>,
}

impl SameConv {
    fn new(conv: Conv1d) -> Self {
        let k = conv.kernel_size();
        if k % 2 == 1 {
            Self { conv: conv.padded(k / 2), copy_pad: None }
        } else {
            Self { conv, copy_pad: Some(((k - 1) / 2, k / 2)) }
        }
    }

    fn forward_fused(&self, x: &Tensor, slope: Option<f64>, residual: Option<&Tensor>) -> Result<Tensor> {
        match self.copy_pad {
            None => self.conv.forward_fused(x, slope, residual),
            Some((before, after)) => self.conv.forward_fused(&x.pad_with_zeros(2, before, after)?, slope, residual),
        }
    }
}
