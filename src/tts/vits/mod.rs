//! The VITS voice network at inference, in plain Candle tensor code: phoneme ids in, audio
//! samples out. The architecture is VITS (Kim, Kong and Son, "Conditional Variational
//! Autoencoder with Adversarial Learning for End-to-End Text-to-Speech", ICML 2021) as Piper
//! trains and exports it; the sizes, layer counts, dilations and paddings are read from the
//! voice's ONNX graph, not assumed.
//!
//! Inference, one sentence at a time:
//! 1. the text encoder gives a hidden sequence and the prior's mean and log-std per phoneme;
//! 2. the stochastic duration predictor, run backwards from noise, gives log-durations;
//!    durations are `ceil(exp(logw) · length_scale)` frames;
//! 3. each phoneme's prior statistics are repeated for its frames (the alignment path) and a
//!    latent is sampled: `mean + noise · exp(log_std) · noise_scale`;
//! 4. the prior flow, run backwards, maps it to the decoder's latent;
//! 5. the HiFi-GAN decoder turns frames into samples.
//!
//! Multi-speaker voices carry a table of speaker embeddings (`emb_g`); the chosen speaker's
//! row conditions the duration predictor, every layer of the flow and the decoder.
//!
//! Everything is Candle tensor code and runs on any Candle device. On the CPU the hot spots
//! take wick's own kernels instead (`kernels` for the convolutions, `upsample`,
//! `activations`, `norm`), checked against the Candle ops in their unit tests.

mod activations;
mod attention;
mod decoder;
mod duration;
mod flow;
mod kernels;
mod layers;
mod norm;
mod spline;
mod text_encoder;
mod tiled_conv;
mod upsample;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rand::Rng;

use self::decoder::Decoder;
use self::duration::DurationPredictor;
use self::flow::Flow;
use self::text_encoder::TextEncoder;
use crate::tts::onnx::{OnnxError, OnnxWeights};

#[derive(Debug, thiserror::Error)]
pub enum VitsError {
    #[error(transparent)]
    Weights(#[from] OnnxError),
    #[error("{}: {what}; is this a Piper VITS voice?", path.display())]
    Architecture { path: PathBuf, what: String },
    #[error("phoneme id {id} at position {position} is not one of the voice's {symbols} symbols")]
    BadId { id: i64, position: usize, symbols: usize },
    #[error("the sentence would last {frames} frames, more than the {MAX_FRAMES} wick synthesizes at once; split it or lower length_scale")]
    TooLong { frames: usize },
    #[error("speaker {speaker} is not one of the voice's {speakers} speaker(s)")]
    BadSpeaker { speaker: usize, speakers: usize },
    #[error("the voice network failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl VitsError {
    fn arch(w: &OnnxWeights, what: String) -> Self {
        VitsError::Architecture { path: w.path().to_path_buf(), what }
    }
}

/// The most latent frames one call synthesizes (about 6 minutes at 22.05 kHz): a bound on
/// memory for absurd length scales, far above any sentence.
pub const MAX_FRAMES: usize = 30_000;

/// How much randomness and how much time: Piper's three inference scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// Spread of the acoustic latent around the prior mean (0: the mean itself).
    pub noise_scale: f32,
    /// Multiplies every duration: above 1 is slower speech.
    pub length_scale: f32,
    /// Spread of the duration predictor's starting noise (0: its mode).
    pub noise_w: f32,
}

/// A loaded VITS voice network.
#[derive(Debug, Clone)]
pub struct Vits {
    encoder: TextEncoder,
    durations: DurationPredictor,
    flow: Flow,
    decoder: Decoder,
    /// Speaker embeddings `[speakers, channels]` of a multi-speaker voice.
    speakers: Option<Tensor>,
    device: Device,
}

impl Vits {
    /// Builds the network from the weights of a Piper ONNX export.
    pub fn load(w: &OnnxWeights, device: &Device) -> Result<Self, VitsError> {
        let speakers = if w.contains("emb_g.weight") {
            let shape = w.require_shape("emb_g.weight")?;
            if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
                return Err(VitsError::arch(
                    w,
                    format!("emb_g.weight has shape {shape:?}, expected [speakers, channels]"),
                ));
            }
            Some(w.tensor("emb_g.weight", device)?)
        } else {
            None
        };
        let gin = speakers.as_ref().map(|e| e.dim(1)).transpose()?;
        let encoder = TextEncoder::load(w, device)?;
        let durations = DurationPredictor::load(w, encoder.hidden_channels(), gin, device)?;
        let flow = Flow::load(w, encoder.latent_channels(), gin, device)?;
        let decoder = Decoder::load(w, encoder.latent_channels(), gin, device)?;
        Ok(Self { encoder, durations, flow, decoder, speakers, device: device.clone() })
    }

    /// How many speakers the voice has (1 for a single-speaker voice).
    pub fn speakers(&self) -> usize {
        self.speakers.as_ref().map_or(1, |e| e.dims()[0])
    }

    /// Output samples per latent frame (256 for Piper's 22.05 kHz voices).
    pub fn hop(&self) -> usize {
        self.decoder.hop()
    }

    /// Audio samples for one sentence of phoneme ids, spoken by `speaker` (0 for a
    /// single-speaker voice). Noise comes from `rng` only when its scale is not zero, so zero
    /// scales give the same audio whatever the generator.
    pub fn synthesize(
        &self,
        ids: &[i64],
        scales: Scales,
        speaker: usize,
        rng: &mut impl Rng,
    ) -> Result<Vec<f32>, VitsError> {
        if speaker >= self.speakers() {
            return Err(VitsError::BadSpeaker { speaker, speakers: self.speakers() });
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The speaker's embedding as a one-frame signal `[1, channels, 1]`.
        let g = match &self.speakers {
            Some(table) => Some(table.narrow(0, speaker, 1)?.unsqueeze(2)?),
            None => None,
        };
        let g = g.as_ref();
        let symbols = self.encoder.symbols();
        let ids = ids
            .iter()
            .enumerate()
            .map(|(position, &id)| match u32::try_from(id) {
                Ok(v) if (v as usize) < symbols => Ok(v),
                _ => Err(VitsError::BadId { id, position, symbols }),
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let t = ids.len();
        let ids = Tensor::from_vec(ids, t, &self.device)?;

        let enc = self.encoder.forward(&ids)?;
        let noise = gaussian(rng, (1, 2, t), scales.noise_w, &self.device)?;
        let log_w = self.durations.log_durations(&enc.hidden, &noise, g)?;
        let frames = (log_w.exp()? * f64::from(scales.length_scale))?.ceil()?.flatten_all()?.to_vec1::<f32>()?;

        let total: f64 = frames.iter().map(|&n| f64::from(n.max(0.0))).sum();
        if total > MAX_FRAMES as f64 {
            return Err(VitsError::TooLong { frames: total as usize });
        }
        // The alignment path as a gather: phoneme i's statistics, once per frame it lasts.
        let path: Vec<u32> =
            frames.iter().enumerate().flat_map(|(i, &n)| std::iter::repeat_n(i as u32, n.max(0.0) as usize)).collect();
        if path.is_empty() {
            return Ok(Vec::new());
        }
        let len = path.len();
        let path = Tensor::from_vec(path, len, &self.device)?;
        let mean = enc.mean.index_select(&path, 2)?;
        let z = if scales.noise_scale == 0.0 {
            mean
        } else {
            let log_std = enc.log_std.index_select(&path, 2)?;
            let noise = gaussian(rng, mean.shape().dims3()?, scales.noise_scale, &self.device)?;
            (mean + (noise * log_std.exp()?)?)?
        };
        let z = self.flow.reverse(&z, g)?;
        let audio = self.decoder.forward(&z, g)?;
        Ok(audio.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Standard normal noise times `scale`, drawn from `rng` by the Box–Muller transform (the
/// same seed gives the same noise on every machine), or zeros when `scale` is 0.
fn gaussian(
    rng: &mut impl Rng,
    shape: (usize, usize, usize),
    scale: f32,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if scale == 0.0 {
        return Tensor::zeros(shape, DType::F32, device);
    }
    let n = shape.0 * shape.1 * shape.2;
    let mut values = Vec::with_capacity(n + 1);
    while values.len() < n {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1: f32 = 1.0 - rng.random::<f32>();
        let u2: f32 = rng.random::<f32>();
        let r = (-2.0 * u1.ln()).sqrt() * scale;
        let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
        values.push(r * c);
        values.push(r * s);
    }
    values.truncate(n);
    Tensor::from_vec(values, shape, device)
}
