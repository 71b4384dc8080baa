//! Whisper's encoder-decoder transformer in plain Candle tensor code.
//!
//! The layer structure follows OpenAI's Whisper (and Candle's `whisper::model`, which reads the
//! same Hugging Face weight names). What differs is the decoder's state: Candle's stock model
//! re-runs the whole token prefix at every step, while here each decoder layer keeps its
//! self-attention keys and values in a preallocated cache and the cross-attention keys and values
//! are projected once per 30 s window, so a decoding step costs one token's worth of work.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{kv_cache::KvCache, Conv1d, Conv1dConfig, Embedding, LayerNorm, VarBuilder};

use super::config::WhisperConfig;
use super::dense::Dense;
use super::{attend, ops};
use crate::attention::causal_mask;

fn layer_norm(size: usize, vb: VarBuilder) -> Result<LayerNorm> {
    candle_nn::layer_norm(size, 1e-5, vb)
}

/// How a layer's width splits into attention heads.
#[derive(Clone, Copy)]
struct Heads {
    n: usize,
    dim: usize,
}

impl Heads {
    /// `[b, t, d]` -> `[b, heads, t, head_dim]`
    fn split(self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.n, self.dim))?.transpose(1, 2)?.contiguous()
    }

    /// `[b, heads, t, head_dim]` -> `[b, t, d]`
    fn merge(self, x: &Tensor) -> Result<Tensor> {
        let (b, _, t, _) = x.dims4()?;
        x.transpose(1, 2)?.reshape((b, t, self.n * self.dim))
    }

    /// `softmax(q kᵀ / √head_dim + mask) v` over split heads.
    fn attention(self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let t = q.dim(2)?;
        let scale = 1.0 / (self.dim as f64).sqrt();
        // A long window's score matrices (1500 x 1500 per head) are computed a block of
        // queries at a time, so that the blocks stay in cache.
        let blocks = (0..t).step_by(QUERY_BLOCK).map(|start| {
            let q = q.narrow(2, start, QUERY_BLOCK.min(t - start))?;
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(mask) = mask {
                scores = scores.broadcast_add(&mask.narrow(0, start, q.dim(2)?)?)?;
            }
            ops::scaled_softmax(&scores, scale)?.matmul(v)
        });
        if t <= QUERY_BLOCK {
            blocks.into_iter().next().expect("t >= 1")
        } else {
            Tensor::cat(&blocks.collect::<Result<Vec<_>>>()?, 2)
        }
    }
}

/// The decoder's attention: its self-attention keys and values are cached, and its
/// cross-attention ones are projected once per window.
struct Attention {
    q: Dense,
    k: Dense,
    v: Dense,
    out: Dense,
    heads: Heads,
}

impl Attention {
    fn load(d: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            q: Dense::load(d, d, true, vb.pp("q_proj"))?,
            k: Dense::load(d, d, false, vb.pp("k_proj"))?,
            v: Dense::load(d, d, true, vb.pp("v_proj"))?,
            out: Dense::load(d, d, true, vb.pp("out_proj"))?,
            heads: Heads { n: n_head, dim: d / n_head },
        })
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.heads.split(&self.k.forward(x)?)?, self.heads.split(&self.v.forward(x)?)?))
    }

    /// `residual` plus the scaled dot-product attention of `x`'s queries over `k`/`v` through
    /// the output projection.
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, residual: &Tensor) -> Result<Tensor> {
        let q = self.heads.split(&self.q.forward(x)?)?;
        self.out.forward_residual(&self.heads.merge(&self.heads.attention(&q, k, v, mask)?)?, residual)
    }
}

/// The encoder's self-attention, its query, key and value projections fused into one
/// product. On the CPU the attention itself is one op (`attend`); elsewhere it is
/// `Heads::attention`.
struct WindowSelfAttention {
    qkv: Dense,
    out: Dense,
    heads: Heads,
}

impl WindowSelfAttention {
    fn load(d: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        let weight = |name: &str| vb.pp(name).get((d, d), "weight");
        let bias = |name: &str| vb.pp(name).get(d, "bias");
        let weight = Tensor::cat(&[weight("q_proj")?, weight("k_proj")?, weight("v_proj")?], 0)?;
        // The key projection has no bias.
        let no_bias = Tensor::zeros(d, weight.dtype(), weight.device())?;
        let bias = Tensor::cat(&[bias("q_proj")?, no_bias, bias("v_proj")?], 0)?;
        Ok(Self {
            qkv: Dense::new(weight, Some(bias))?,
            out: Dense::load(d, d, true, vb.pp("out_proj"))?,
            heads: Heads { n: n_head, dim: d / n_head },
        })
    }

    /// `residual` plus the attention of `x` (already normalised) over itself.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        let heads = self.heads;
        let ctx = if attend::fits(&qkv) {
            let scale = 1.0 / (heads.dim as f32).sqrt();
            qkv.apply_op1_no_bwd(&attend::WindowAttention { heads: heads.n, scale })?
        } else {
            let d = heads.n * heads.dim;
            let split = |i| heads.split(&qkv.narrow(2, i * d, d)?);
            heads.merge(&heads.attention(&split(0)?, &split(1)?, &split(2)?, None)?)?
        };
        self.out.forward_residual(&ctx, residual)
    }
}

/// Queries per attention block; see `Heads::attention`.
const QUERY_BLOCK: usize = 256;

struct Mlp {
    fc1: Dense,
    fc2: Dense,
}

impl Mlp {
    fn load(d: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { fc1: Dense::load(d, hidden, true, vb.pp("fc1"))?, fc2: Dense::load(hidden, d, true, vb.pp("fc2"))? })
    }

    /// `residual + mlp(x)`. Whisper uses the exact (erf) GELU, not the tanh approximation.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.fc2.forward_residual(&self.fc1.forward_gelu(x)?, residual)
    }
}

struct EncoderLayer {
    attn: WindowSelfAttention,
    attn_ln: LayerNorm,
    mlp: Mlp,
    mlp_ln: LayerNorm,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.attn.forward(&self.attn_ln.forward(x)?, x)?;
        self.mlp.forward(&self.mlp_ln.forward(&x)?, &x)
    }
}

struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor,
    layers: Vec<EncoderLayer>,
    ln_post: LayerNorm,
}

impl Encoder {
    fn load(cfg: &WhisperConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let conv = |stride| Conv1dConfig { padding: 1, stride, ..Default::default() };
        let layers = (0..cfg.encoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(EncoderLayer {
                    attn: WindowSelfAttention::load(d, cfg.encoder_attention_heads, vb.pp("self_attn"))?,
                    attn_ln: layer_norm(d, vb.pp("self_attn_layer_norm"))?,
                    mlp: Mlp::load(d, 4 * d, vb.clone())?,
                    mlp_ln: layer_norm(d, vb.pp("final_layer_norm"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            conv1: candle_nn::conv1d(cfg.num_mel_bins, d, 3, conv(1), vb.pp("conv1"))?,
            conv2: candle_nn::conv1d(d, d, 3, conv(2), vb.pp("conv2"))?,
            positions: vb.get((cfg.max_source_positions, d), "embed_positions.weight")?,
            layers,
            ln_post: layer_norm(d, vb.pp("layer_norm"))?,
        })
    }

    /// `[b, n_mels, frames]` -> `[b, frames / 2, d]`, calling `progress` after each layer.
    fn forward(&self, mel: &Tensor, progress: &dyn Fn()) -> Result<Tensor> {
        let x = ops::gelu_erf(&self.conv1.forward(mel)?)?;
        let x = ops::gelu_erf(&self.conv2.forward(&x)?)?;
        let x = x.transpose(1, 2)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, x.dim(1)?)?)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
            progress();
        }
        self.ln_post.forward(&x)
    }
}

struct DecoderLayer {
    self_attn: Attention,
    self_ln: LayerNorm,
    cross_attn: Attention,
    cross_ln: LayerNorm,
    mlp: Mlp,
    mlp_ln: LayerNorm,
}

/// The token embedding, which is also the (tied) output projection.
enum TokenEmbedding {
    Dense(Embedding),
    /// Kept in the checkpoint's f16 on the CPU, where the projection is bound by memory
    /// traffic; see `ops::F16Matrix`.
    F16(ops::F16Matrix),
}

impl TokenEmbedding {
    fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            TokenEmbedding::Dense(e) => e.forward(&Tensor::new(ids, device)?),
            TokenEmbedding::F16(m) => m.rows(ids),
        }
    }

    /// Logits (f32) for each row of `h`.
    fn project(&self, h: &Tensor) -> Result<Tensor> {
        match self {
            TokenEmbedding::Dense(e) => h.matmul(&e.embeddings().t()?)?.to_dtype(DType::F32),
            TokenEmbedding::F16(m) => m.matmul_t(h),
        }
    }
}

struct Decoder {
    embed: TokenEmbedding,
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    ln: LayerNorm,
}

impl Decoder {
    fn load(cfg: &WhisperConfig, vb: VarBuilder, embed_is_f16: bool) -> Result<Self> {
        let d = cfg.d_model;
        let h = cfg.decoder_attention_heads;
        let embed = if embed_is_f16 && vb.device().is_cpu() {
            TokenEmbedding::F16(ops::F16Matrix::new(&vb.get_with_hints_dtype(
                (cfg.vocab_size, d),
                "embed_tokens.weight",
                Default::default(),
                DType::F16,
            )?)?)
        } else {
            TokenEmbedding::Dense(candle_nn::embedding(cfg.vocab_size, d, vb.pp("embed_tokens"))?)
        };
        let layers = (0..cfg.decoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(DecoderLayer {
                    self_attn: Attention::load(d, h, vb.pp("self_attn"))?,
                    self_ln: layer_norm(d, vb.pp("self_attn_layer_norm"))?,
                    cross_attn: Attention::load(d, h, vb.pp("encoder_attn"))?,
                    cross_ln: layer_norm(d, vb.pp("encoder_attn_layer_norm"))?,
                    mlp: Mlp::load(d, 4 * d, vb.clone())?,
                    mlp_ln: layer_norm(d, vb.pp("final_layer_norm"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embed,
            positions: vb.get((cfg.max_target_positions, d), "embed_positions.weight")?,
            layers,
            ln: layer_norm(d, vb.pp("layer_norm"))?,
        })
    }
}

/// Per-window decoder state: the cross-attention keys/values of one encoded window and the
/// self-attention cache of the tokens decoded so far.
pub struct DecoderState {
    cross: Vec<(Tensor, Tensor)>,
    cache: Vec<KvCache>,
    max_positions: usize,
}

impl DecoderState {
    /// Tokens already in the self-attention cache.
    pub fn len(&self) -> usize {
        self.cache.first().map_or(0, |c| c.current_seq_len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets decoded tokens but keeps the encoded window (for a retry at another temperature).
    pub fn reset(&mut self) {
        self.cache.iter_mut().for_each(KvCache::reset);
    }

    pub fn room(&self) -> usize {
        self.max_positions - self.len()
    }
}

pub struct Whisper {
    encoder: Encoder,
    decoder: Decoder,
    pub config: WhisperConfig,
    device: Device,
    dtype: DType,
}

impl Whisper {
    /// `embed_is_f16`: the checkpoint stores the token embedding in f16 (CTranslate2 imports do),
    /// so the CPU output projection can read it without widening it first.
    pub fn load(vb: VarBuilder, config: WhisperConfig, embed_is_f16: bool) -> Result<Self> {
        let device = vb.device().clone();
        let dtype = vb.dtype();
        Ok(Self {
            encoder: Encoder::load(&config, vb.pp("model.encoder"))?,
            decoder: Decoder::load(&config, vb.pp("model.decoder"), embed_is_f16)?,
            config,
            device,
            dtype,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes log-mel frames laid out `[n_mels][frames]`: a 30 s window (3000 frames) or,
    /// with an even count, its start. `progress` is called after each layer, so a watchdog
    /// sees an emulated CPU working through a long encoder.
    pub fn encode(&self, mel: &[f32], progress: &dyn Fn()) -> Result<Tensor> {
        let frames = mel.len() / self.config.num_mel_bins;
        let mel = Tensor::from_slice(mel, (1, self.config.num_mel_bins, frames), &self.device)?.to_dtype(self.dtype)?;
        self.encoder.forward(&mel, progress)
    }

    /// Projects the encoder output into every decoder layer's cross-attention keys and values.
    pub fn start_decoding(&self, audio: &Tensor) -> Result<DecoderState> {
        let cross = self.decoder.layers.iter().map(|l| l.cross_attn.keys_values(audio)).collect::<Result<_>>()?;
        let max = self.config.max_target_positions;
        let cache = self.decoder.layers.iter().map(|_| KvCache::new(2, max)).collect();
        Ok(DecoderState { cross, cache, max_positions: max })
    }

    /// Runs `tokens` (appended after the cached ones) through the decoder and returns the logits
    /// (f32, `[rows.len(), vocab]`) at the given positions of `tokens`.
    pub fn decode(&self, state: &mut DecoderState, tokens: &[u32], rows: &[usize]) -> Result<Tensor> {
        let n = tokens.len();
        let offset = state.len();
        if offset + n > state.max_positions {
            candle_core::bail!("decoder context of {} tokens exceeded", state.max_positions);
        }
        let embedded = self.decoder.embed.lookup(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = embedded.broadcast_add(&self.decoder.positions.narrow(0, offset, n)?)?;
        let mask = (n > 1).then(|| causal_mask(n, offset, &self.device, self.dtype)).transpose()?;
        for ((layer, cache), (ck, cv)) in self.decoder.layers.iter().zip(&mut state.cache).zip(&state.cross) {
            let h = layer.self_ln.forward(&x)?;
            let (k, v) = layer.self_attn.keys_values(&h)?;
            let (k, v) = cache.append(&k, &v)?;
            x = layer.self_attn.attend(&h, &k, &v, mask.as_ref(), &x)?;
            let h = layer.cross_ln.forward(&x)?;
            x = layer.cross_attn.attend(&h, ck, cv, None, &x)?;
            x = layer.mlp.forward(&layer.mlp_ln.forward(&x)?, &x)?;
        }
        let rows = Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), &self.device)?;
        let h = self.decoder.ln.forward(&x.squeeze(0)?.index_select(&rows, 0)?)?;
        // The output projection is tied to the token embedding.
        self.decoder.embed.project(&h)
    }
}
