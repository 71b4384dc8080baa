//! A Llama-architecture transformer over GGUF quantized weights, in plain Candle tensor code.
//!
//! The layer structure follows llama.cpp's `llama` graph and Candle's `quantized_llama`, which
//! read the same GGUF tensor names. What differs is what an appliance needs: Llama 3's RoPE
//! frequency factors are applied, a tied output projection stays quantized (the input lookup
//! dequantizes only the rows it needs instead of keeping an f32 copy of the vocabulary), and the
//! KV cache is preallocated for the configured context and written in place.

use std::sync::Arc;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::kv_cache::KvCache;

use super::qlinear::QLinear;
use super::rope::{self, RopeScaling};
use super::{attend, pool, swiglu, token_heads};
use crate::attention::causal_mask;

/// The shape of a Llama model, from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub context_length: usize,
    pub vocab_size: usize,
}

impl LlamaConfig {
    /// Reads `llama.*` metadata; `Err` carries the missing or malformed key.
    pub fn from_gguf(content: &gguf_file::Content) -> std::result::Result<Self, String> {
        let md = &content.metadata;
        let get = |key: &str| md.get(key).ok_or_else(|| format!("metadata key {key} is missing"));
        let usize_of = |key: &str| -> std::result::Result<usize, String> {
            get(key)?.to_u32().map(|v| v as usize).map_err(|e| format!("metadata key {key}: {e}"))
        };
        let n_embd = usize_of("llama.embedding_length")?;
        let n_head = usize_of("llama.attention.head_count")?;
        let n_kv_head = usize_of("llama.attention.head_count_kv").unwrap_or(n_head);
        if n_head == 0 || n_embd % n_head != 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(format!("inconsistent head counts: {n_head} heads, {n_kv_head} kv heads, width {n_embd}"));
        }
        let head_dim = n_embd / n_head;
        let vocab_size = match usize_of("llama.vocab_size") {
            Ok(v) => v,
            Err(_) => content
                .tensor_infos
                .get("token_embd.weight")
                .map(|t| t.shape.dims()[0])
                .ok_or("no token_embd.weight tensor")?,
        };
        Ok(Self {
            n_layer: usize_of("llama.block_count")?,
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            rope_dim: usize_of("llama.rope.dimension_count").unwrap_or(head_dim),
            rope_base: get("llama.rope.freq_base")
                .and_then(|v| v.to_f32().map_err(|e| e.to_string()))
                .unwrap_or(10_000.0),
            rms_eps: get("llama.attention.layer_norm_rms_epsilon")?.to_f32().map_err(|e| e.to_string())? as f64,
            context_length: usize_of("llama.context_length")?,
            vocab_size,
        })
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps as f32)
    }
}

/// The token embedding kept quantized. Lookups dequantize only the requested rows.
enum Embedding {
    /// A table of its own (also the output projection's, through a shared reference, where
    /// that layer cannot read rows back or runs on a GPU).
    Table(QuantizedEmbedding),
    /// Tied to the output projection on the CPU, which owns the table in its repacked layout
    /// and reads rows back from it: one copy of the vocabulary, and the output product gets
    /// the tiled kernels.
    Output,
}

struct QuantizedEmbedding {
    table: Arc<QTensor>,
    /// Host bytes of the table when it lives on a GPU, so lookups never copy it back.
    host: Option<Vec<u8>>,
    n_embd: usize,
}

impl QuantizedEmbedding {
    fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let dtype = self.table.dtype();
        let row_bytes = self.n_embd / dtype.block_size() * dtype.type_size();
        let vocab = self.table.shape().dims()[0];
        let data = match &self.host {
            Some(h) => std::borrow::Cow::Borrowed(h.as_slice()),
            None => self.table.data()?,
        };
        let mut rows = Vec::with_capacity(ids.len() * row_bytes);
        for &id in ids {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
            }
            rows.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
        }
        let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
            dtype,
            &rows,
            vec![ids.len(), self.n_embd],
            &Device::Cpu,
        )?;
        q.dequantize(&Device::Cpu)?.to_device(device)
    }
}

struct Layer {
    attn_norm: RmsNorm,
    q: QLinear,
    k: QLinear,
    v: QLinear,
    o: QLinear,
    ffn_norm: RmsNorm,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
    cache: KvCache,
}

pub struct Llama {
    pub config: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QLinear,
    cos: Tensor,
    sin: Tensor,
    max_context: usize,
    device: Device,
    /// The attention products' type: f16 on a GPU, f32 on the CPU (the KV cache is f16 on both).
    kv_dtype: DType,
    /// Generation's serial part on the CPU (see [`Llama::forward`]); started at the first
    /// generated token, one per model so that two models in one process do not queue.
    generation_thread: Option<Arc<rayon::ThreadPool>>,
}

impl Llama {
    /// Builds the model from an open GGUF file. `context` caps the KV cache (at most the
    /// model's trained context).
    pub fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        context: usize,
        device: &Device,
    ) -> std::result::Result<Self, LoadError> {
        let config = LlamaConfig::from_gguf(content).map_err(LoadError::Metadata)?;
        let max_context = context.min(config.context_length).max(1);
        let mut tensor = |name: &str| -> std::result::Result<QTensor, LoadError> {
            if !content.tensor_infos.contains_key(name) {
                return Err(LoadError::MissingTensor(name.to_string()));
            }
            content.tensor(reader, name, device).map_err(|e| LoadError::Tensor { name: name.to_string(), source: e })
        };
        let qmm = |t: QTensor| QLinear::new(Arc::new(t)).map_err(LoadError::Candle);
        let norm = |t: QTensor, eps| -> std::result::Result<RmsNorm, LoadError> {
            Ok(RmsNorm { weight: t.dequantize(device).map_err(LoadError::Candle)?, eps })
        };

        let table = Arc::new(tensor("token_embd.weight")?);
        let tied = !content.tensor_infos.contains_key("output.weight");
        let fits = config.n_embd % table.dtype().block_size() == 0;
        let (output, embed) = if tied && fits && device.is_cpu() && QLinear::serves_lookups(table.dtype()) {
            (QLinear::new(table).map_err(LoadError::Candle)?, Embedding::Output)
        } else {
            let host = if device.is_cpu() { None } else { Some(table.data().map_err(LoadError::Candle)?.into_owned()) };
            let output = if tied {
                QLinear::new(table.clone()).map_err(LoadError::Candle)?
            } else {
                qmm(tensor("output.weight")?)?
            };
            (output, Embedding::Table(QuantizedEmbedding { table, host, n_embd: config.n_embd }))
        };
        // A rope_freqs tensor holds the divisors directly; otherwise metadata may describe them.
        let divisors = if content.tensor_infos.contains_key("rope_freqs.weight") {
            Some(
                tensor("rope_freqs.weight")?
                    .dequantize(&Device::Cpu)
                    .map_err(LoadError::Candle)?
                    .to_vec1::<f32>()
                    .map_err(LoadError::Candle)?,
            )
        } else {
            RopeScaling::from_metadata(&content.metadata)
                .map_err(LoadError::Metadata)?
                .divisors(config.rope_dim, config.rope_base)
        };
        let (cos, sin) = rope::tables(config.rope_dim, config.rope_base, divisors.as_deref(), max_context, device)
            .map_err(LoadError::Candle)?;

        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            layers.push(Layer {
                attn_norm: norm(tensor(&p("attn_norm"))?, config.rms_eps)?,
                q: qmm(tensor(&p("attn_q"))?)?,
                k: qmm(tensor(&p("attn_k"))?)?,
                v: qmm(tensor(&p("attn_v"))?)?,
                o: qmm(tensor(&p("attn_output"))?)?,
                ffn_norm: norm(tensor(&p("ffn_norm"))?, config.rms_eps)?,
                gate: qmm(tensor(&p("ffn_gate"))?)?,
                up: qmm(tensor(&p("ffn_up"))?)?,
                down: qmm(tensor(&p("ffn_down"))?)?,
                cache: KvCache::new(2, max_context),
            });
        }
        let norm = norm(tensor("output_norm.weight")?, config.rms_eps)?;
        let kv_dtype = if device.is_cuda() { DType::F16 } else { DType::F32 };
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            max_context,
            device: device.clone(),
            kv_dtype,
            generation_thread: None,
        })
    }

    /// Tokens currently held in the KV cache.
    pub fn position(&self) -> usize {
        self.layers.first().map_or(0, |l| l.cache.current_seq_len())
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    /// Runs the attention in `dtype` from now on (q, the products and the probabilities; the
    /// cache stays f16, the mask and the softmax f32), and empties the cache. Loading picks
    /// f16 on a GPU and f32 on the CPU; the tests choose f16 on the CPU to run the GPU's
    /// attention code where there is no GPU.
    pub fn set_attention_dtype(&mut self, dtype: DType) {
        self.kv_dtype = dtype;
        self.reset();
    }

    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| l.cache.reset());
    }

    /// Runs `tokens` after the cached ones and returns the f32 logits of the last position.
    ///
    /// A prompt's pass runs as one job on rayon's pool: from outside the pool, every parallel
    /// matmul would hand its work to the pool and put the caller to sleep until it was done, a
    /// wake-up and a sleep per matmul (a third of the time of SmolLM2's tokens on one thread);
    /// inside, the pool's own threads share each matmul and the first of them works through
    /// the small operations in between.
    ///
    /// Generating one token on the CPU shares its matmuls and attention on wick's spinning
    /// pool ([`super::pool`]) instead, and runs the rest on a rayon pool of one thread: there
    /// Candle's small operations (RoPE's heads, the norms) run in line rather than waking
    /// rayon's workers, which would compete with the spinning ones for the cores.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        if tokens.len() == 1 && self.device.is_cpu() {
            let thread = match &self.generation_thread {
                Some(thread) => thread.clone(),
                None => {
                    let thread = rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .thread_name(|_| "wick-llm-0".into())
                        .start_handler(|_| pool::lower_priority())
                        .build()
                        .map_err(|e| candle_core::Error::Msg(format!("cannot start the generation thread: {e}")))?;
                    self.generation_thread.insert(Arc::new(thread)).clone()
                }
            };
            thread.install(|| self.forward_in_pool(tokens))
        } else {
            rayon::scope(|_| self.forward_in_pool(tokens))
        }
    }

    fn forward_in_pool(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let n = tokens.len();
        let offset = self.position();
        if n == 0 || offset + n > self.max_context {
            candle_core::bail!("{} tokens do not fit after {offset} in a context of {}", n, self.max_context);
        }
        let c = &self.config;
        let (n_head, n_kv, hd) = (c.n_head, c.n_kv_head, c.head_dim);
        let cos = self.cos.narrow(0, offset, n)?;
        let sin = self.sin.narrow(0, offset, n)?;
        let mask = (n > 1).then(|| causal_mask(n, offset, &self.device, DType::F32)).transpose()?;
        let mut x = match &self.embed {
            Embedding::Table(table) => table.lookup(tokens, &self.device)?,
            Embedding::Output => {
                Tensor::from_vec(self.output.dequantize_rows(tokens)?, (n, self.config.n_embd), &self.device)?
            }
        }
        .unsqueeze(0)?;
        let kv_dtype = self.kv_dtype;
        // One new token on the CPU with an f32 attention: its heads are prepared in one pass
        // each (`token_heads`) and the cache is read where it lies (`attend`).
        let one_token_on_cpu = n == 1 && kv_dtype == DType::F32 && self.device.is_cpu() && hd % attend::LANES == 0;
        for layer in &mut self.layers {
            let h = layer.attn_norm.forward(&x)?;
            let [q, k, v] = QLinear::forward_shared([&layer.q, &layer.k, &layer.v], &h)?;
            // The cache is f16 on every device, as llama.cpp's default cache: half the memory and
            // half the bytes read per token of f32. On a GPU the attention products are f16 too
            // (tensor-core matmuls); the softmax stays f32. The CPU computes in f32 on values
            // rounded to f16 where llama.cpp rounds them (its f16 cache, without flash
            // attention: q, k, v and the probabilities), so that greedy decoding follows it.
            let (q, k, v) = if one_token_on_cpu {
                token_heads::prepare((&q, &k, &v), (&cos, &sin), (n_head, n_kv, hd))?
            } else {
                let heads = |t: Tensor, count: usize| t.reshape((1, n, count, hd))?.transpose(1, 2)?.contiguous();
                let (q, k, v) = (heads(q, n_head)?, heads(k, n_kv)?, heads(v, n_kv)?);
                let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
                let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
                (attn_operand(kv_dtype, &q)?, k.to_dtype(DType::F16)?, v.to_dtype(DType::F16)?)
            };
            let (k, v) = layer.cache.append(&k.contiguous()?, &v.contiguous()?)?;
            let ctx = if one_token_on_cpu {
                q.apply_op3_no_bwd(&k, &v, &attend::CachedAttention { f16_probs: true })?
            } else {
                // Grouped-query attention: each kv head serves n_head / n_kv query heads. Folding
                // the group into the query length lets one matmul per kv head do the work.
                let group = n_head / n_kv;
                let q = q.reshape((1, n_kv, group * n, hd))?;
                // The mask and the softmax are f32 on every device; the CPU's products are f32, on
                // the cache's values converted exactly.
                let (k, v) = (k.to_dtype(kv_dtype)?, v.to_dtype(kv_dtype)?);
                let mut scores = (q.matmul(&k.contiguous()?.t()?)? / (hd as f64).sqrt())?.to_dtype(DType::F32)?;
                if let Some(mask) = &mask {
                    let total = offset + n;
                    scores = scores.reshape((1, n_kv, group, n, total))?.broadcast_add(mask)?.reshape((
                        1,
                        n_kv,
                        group * n,
                        total,
                    ))?;
                }
                let probs = attn_operand(kv_dtype, &candle_nn::ops::softmax_last_dim(&scores)?)?;
                probs
                    .matmul(&v.contiguous()?)?
                    .reshape((1, n_head, n, hd))?
                    .transpose(1, 2)?
                    .reshape((1, n, n_head * hd))?
                    .to_dtype(DType::F32)?
            };
            x = (x + layer.o.forward(&ctx)?)?;
            let h = layer.ffn_norm.forward(&x)?;
            // gate and up are freed before the down projection allocates (a prompt's are
            // megabytes each).
            let ffn = {
                let [gate, up] = QLinear::forward_shared([&layer.gate, &layer.up], &h)?;
                swiglu::silu_mul(&gate, &up)?
            };
            x = (&x + layer.down.forward(&ffn)?)?;
        }
        let last = x.narrow(1, n - 1, 1)?;
        let logits = self.output.forward(&self.norm.forward(&last)?)?;
        logits.flatten_all()?.to_dtype(DType::F32)
    }
}

/// An attention operand in the attention's type: f16 on a GPU; on the CPU f32 holding the
/// value rounded to f16.
fn attn_operand(kv_dtype: DType, t: &Tensor) -> Result<Tensor> {
    match kv_dtype {
        DType::F32 => t.to_dtype(DType::F16)?.to_dtype(DType::F32),
        dtype => t.to_dtype(dtype),
    }
}

/// Why a GGUF could not become a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Metadata(String),
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    #[error("cannot read tensor {name}: {source}")]
    Tensor { name: String, source: candle_core::Error },
    #[error("{0}")]
    Candle(candle_core::Error),
}
