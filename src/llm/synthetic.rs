//! Synthetic GGUF models with exactly the tensors (names, shapes, quantization types) of real
//! ones, filled with random quantized blocks, so speed and memory can be measured without a
//! multi-gigabyte download. The values mean nothing; the work per token is the real model's.

use std::path::Path;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use super::rope::RopeScaling;

/// A model shape to imitate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    n_layer: usize,
    n_embd: usize,
    n_ff: usize,
    n_head: usize,
    n_kv_head: usize,
    vocab: usize,
}

/// Llama 3.2 Instruct at Q4_K_M, as llama.cpp quantizes it.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "llama-3.2-3b-q4_k_m",
        n_layer: 28,
        n_embd: 3072,
        n_ff: 8192,
        n_head: 24,
        n_kv_head: 8,
        vocab: 128_256,
    },
    Spec {
        name: "llama-3.2-1b-q4_k_m",
        n_layer: 16,
        n_embd: 2048,
        n_ff: 8192,
        n_head: 32,
        n_kv_head: 8,
        vocab: 128_256,
    },
];

impl Spec {
    /// Tokens in the vocabulary.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
}

pub fn spec(name: &str) -> Option<Spec> {
    SPECS.iter().copied().find(|s| s.name == name)
}

/// Q4_K_M gives attn_v and ffn_down more bits on the first and last eighth of the layers and
/// on every third layer between (llama.cpp's rule).
fn more_bits(layer: usize, n_layer: usize) -> bool {
    // The first test guarantees the subtraction cannot underflow.
    layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2
}

/// Random quantized blocks with small, finite scales.
fn random_blocks(dtype: GgmlDType, rows: usize, cols: usize, state: &mut u64) -> candle_core::Result<QTensor> {
    let n_blocks = rows * cols / dtype.block_size();
    let block = dtype.type_size();
    let mut data = vec![0u8; n_blocks * block];
    for chunk in data.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    let scale = half::f16::from_f32(0.002).to_le_bytes();
    for b in data.chunks_mut(block) {
        match dtype {
            // d and dmin lead the block.
            GgmlDType::Q4K => {
                b[0..2].copy_from_slice(&scale);
                b[2..4].copy_from_slice(&scale);
            }
            // d closes the block.
            GgmlDType::Q6K => b[block - 2..].copy_from_slice(&scale),
            _ => candle_core::bail!("synthetic models use Q4_K and Q6_K only"),
        }
    }
    qtensor_from_ggml(dtype, &data, vec![rows, cols], &Device::Cpu)
}

fn f32_tensor(values: Vec<f32>) -> candle_core::Result<QTensor> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    qtensor_from_ggml(GgmlDType::F32, &bytes, vec![values.len()], &Device::Cpu)
}

/// Llama 3.2's RoPE divisors, as its GGUF stores them in `rope_freqs.weight`.
fn llama3_divisors(head_dim: usize, base: f32) -> Vec<f32> {
    RopeScaling::LLAMA_3_2.divisors(head_dim, base).unwrap_or_default()
}

/// Marks files written by this version of the generator; an older file is written again.
const GENERATOR_KEY: &str = "wick.synthetic.version";
const GENERATOR_VERSION: u32 = 2;
/// Which vocabulary the file carries: "placeholder", or the sha256 of the tokenizer.json.
const VOCAB_KEY: &str = "wick.synthetic.vocab";

/// The tokenizer a synthetic model carries.
#[derive(Debug, Clone, Copy)]
pub enum Vocabulary<'a> {
    /// Made-up tokens of the right count: enough for speed, meaningless as text.
    Placeholder,
    /// A real model's vocabulary and merges from its Hugging Face `tokenizer.json` (Meta's
    /// Llama 3.2 one: `make llama3-text`), so that every engine reading the file tokenizes
    /// text as that model does.
    TokenizerJson(&'a Path),
}

impl Vocabulary<'_> {
    fn id(self) -> candle_core::Result<String> {
        match self {
            Vocabulary::Placeholder => Ok("placeholder".into()),
            Vocabulary::TokenizerJson(path) => {
                use sha2::Digest;
                let bytes =
                    std::fs::read(path).map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
                Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
            }
        }
    }
}

/// Writes the synthetic model to `path` unless a file from this generator version with this
/// vocabulary is there. Returns true when it wrote.
pub fn ensure(spec: Spec, path: &Path, vocab: Vocabulary) -> candle_core::Result<bool> {
    let id = vocab.id()?;
    let current =
        std::fs::File::open(path).ok().and_then(|mut f| gguf_file::Content::read(&mut f).ok()).is_some_and(|c| {
            c.metadata.get(GENERATOR_KEY).and_then(|v| v.to_u32().ok()) == Some(GENERATOR_VERSION)
                && c.metadata.get(VOCAB_KEY).and_then(|v| v.to_string().ok()) == Some(&id)
        });
    if current {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write(spec, path, vocab)?;
    Ok(true)
}

/// A Llama 3-shaped byte-level BPE vocabulary, so that other engines (llama.cpp's
/// `llama-bench`) load the file too: the 256 byte tokens, two-letter merges of a..z, filler
/// tokens up to 128000, then the special tokens with `<|begin_of_text|>` and `<|eot_id|>` at
/// Llama 3's ids. Its text means nothing; only its size matches.
fn placeholder_vocabulary(vocab: usize) -> Vec<(&'static str, gguf_file::Value)> {
    use gguf_file::Value;
    const FIRST_SPECIAL: usize = 128_000;
    let letters = b'a'..=b'z';
    let pairs: Vec<(char, char)> =
        letters.clone().flat_map(|a| letters.clone().map(move |b| (a as char, b as char))).collect();
    let mut tokens: Vec<String> = (0..=255u8).map(|b| super::tokenizer::char_of_byte(b).to_string()).collect();
    tokens.extend(pairs.iter().map(|(a, b)| format!("{a}{b}")));
    let mut types = vec![1i32; tokens.len()];
    for i in tokens.len()..vocab {
        let (text, kind) = match i.checked_sub(FIRST_SPECIAL) {
            None => (format!("<synthetic_{i}>"), 1),
            Some(0) => ("<|begin_of_text|>".into(), 3),
            Some(1) => ("<|end_of_text|>".into(), 3),
            Some(9) => ("<|eot_id|>".into(), 3),
            Some(n) => (format!("<|reserved_special_token_{n}|>"), 3),
        };
        tokens.push(text);
        types.push(kind);
    }
    let merges = pairs.iter().map(|(a, b)| Value::String(format!("{a} {b}"))).collect();
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("llama-bpe".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens.into_iter().map(Value::String).collect())),
        ("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.merges", Value::Array(merges)),
    ]
}

/// The GGUF tokenizer metadata of a Hugging Face byte-level BPE `tokenizer.json`, as
/// llama.cpp's converter writes it for Llama 3: tokens by id, added special tokens as control
/// tokens, merges as "left right" strings, the `llama-bpe` pre-tokenizer.
fn json_vocabulary(path: &Path, vocab: usize) -> candle_core::Result<Vec<(&'static str, gguf_file::Value)>> {
    use gguf_file::Value;
    let fail = |why: String| candle_core::Error::Msg(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let model = &json["model"];
    if model["type"] != "BPE" {
        return Err(fail(format!("the model is {}, not byte-level BPE", model["type"])));
    }
    let mut tokens: Vec<Option<String>> = vec![None; vocab];
    let mut types = vec![1i32; vocab];
    let mut place = |token: &str, id: Option<u64>| -> candle_core::Result<usize> {
        let id = id.ok_or_else(|| fail(format!("token {token:?} has no id")))? as usize;
        let slot =
            tokens.get_mut(id).ok_or_else(|| fail(format!("token id {id} is beyond the model's {vocab} tokens")))?;
        *slot = Some(token.to_string());
        Ok(id)
    };
    for (token, id) in model["vocab"].as_object().ok_or_else(|| fail("model.vocab is not a map".into()))? {
        place(token, id.as_u64())?;
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        // Added tokens past the model's vocabulary belong to a sibling model sharing the file
        // (Llama 3.2 Vision's `<|image|>`, id 128256, in the tokenizer.json the tests use).
        if added["id"].as_u64().is_some_and(|id| id as usize >= vocab) {
            continue;
        }
        let id = place(added["content"].as_str().unwrap_or_default(), added["id"].as_u64())?;
        if added["special"].as_bool() == Some(true) {
            types[id] = 3;
        }
    }
    let tokens: Vec<Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            t.map(Value::String).ok_or_else(|| fail(format!("no token has id {id} (the model has {vocab})")))
        })
        .collect::<candle_core::Result<_>>()?;
    // Merges are "a b" strings, or [a, b] pairs in newer files.
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| fail("model.merges is not a list".into()))?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(Value::String(s.clone())),
            serde_json::Value::Array(pair) if pair.len() == 2 => Ok(Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap_or_default(),
                pair[1].as_str().unwrap_or_default()
            ))),
            other => Err(fail(format!("a merge is {other}"))),
        })
        .collect::<candle_core::Result<_>>()?;
    Ok(vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("llama-bpe".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.merges", Value::Array(merges)),
    ])
}

/// The `tokenizer.ggml.*` metadata a synthetic model of `n` tokens carries for `vocab`.
pub fn tokenizer_metadata(vocab: Vocabulary, n: usize) -> candle_core::Result<Vec<(&'static str, gguf_file::Value)>> {
    match vocab {
        Vocabulary::Placeholder => Ok(placeholder_vocabulary(n)),
        Vocabulary::TokenizerJson(json) => json_vocabulary(json, n),
    }
}

/// Writes the synthetic model `spec` with `vocab` to `path` (through a temporary name).
pub fn write(spec: Spec, path: &Path, vocab: Vocabulary) -> candle_core::Result<()> {
    use gguf_file::Value;
    let head_dim = spec.n_embd / spec.n_head;
    let base = 500_000.0f32;
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String(format!("wick synthetic {}", spec.name))),
        ("llama.block_count", Value::U32(spec.n_layer as u32)),
        ("llama.context_length", Value::U32(131_072)),
        ("llama.embedding_length", Value::U32(spec.n_embd as u32)),
        ("llama.feed_forward_length", Value::U32(spec.n_ff as u32)),
        ("llama.attention.head_count", Value::U32(spec.n_head as u32)),
        ("llama.attention.head_count_kv", Value::U32(spec.n_kv_head as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.rope.freq_base", Value::F32(base)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.vocab_size", Value::U32(spec.vocab as u32)),
        ("tokenizer.ggml.bos_token_id", Value::U32(128_000)),
        ("tokenizer.ggml.eos_token_id", Value::U32(128_009)),
        (GENERATOR_KEY, Value::U32(GENERATOR_VERSION)),
        (VOCAB_KEY, Value::String(vocab.id()?)),
    ];
    let metadata: Vec<(&str, Value)> = metadata.into_iter().chain(tokenizer_metadata(vocab, spec.vocab)?).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let (d, kv, ff) = (spec.n_embd, spec.n_kv_head * head_dim, spec.n_ff);
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), random_blocks(GgmlDType::Q6K, spec.vocab, d, &mut state)?),
        ("output_norm.weight".into(), f32_tensor(vec![1.0; d])?),
        ("rope_freqs.weight".into(), f32_tensor(llama3_divisors(head_dim, base))?),
    ];
    for i in 0..spec.n_layer {
        let wide = if more_bits(i, spec.n_layer) { GgmlDType::Q6K } else { GgmlDType::Q4K };
        let mut add = |name: &str, t: QTensor| tensors.push((format!("blk.{i}.{name}.weight"), t));
        add("attn_norm", f32_tensor(vec![1.0; d])?);
        add("ffn_norm", f32_tensor(vec![1.0; d])?);
        // Shapes as QTensor dims: [output rows, input columns] (GGUF lists them reversed).
        add("attn_q", random_blocks(GgmlDType::Q4K, d, d, &mut state)?);
        add("attn_k", random_blocks(GgmlDType::Q4K, kv, d, &mut state)?);
        add("attn_v", random_blocks(wide, kv, d, &mut state)?);
        add("attn_output", random_blocks(GgmlDType::Q4K, d, d, &mut state)?);
        add("ffn_gate", random_blocks(GgmlDType::Q4K, ff, d, &mut state)?);
        add("ffn_up", random_blocks(GgmlDType::Q4K, ff, d, &mut state)?);
        add("ffn_down", random_blocks(wide, d, ff, &mut state)?);
    }
    let tmp = path.with_extension("gguf.part");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &md, &ts)?;
    file.into_inner().map_err(|e| candle_core::Error::Msg(e.to_string()))?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_gives_the_documented_layers_more_bits() {
        let wide: Vec<usize> = (0..28).filter(|&i| more_bits(i, 28)).collect();
        assert_eq!(wide, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    }

    #[test]
    fn a_small_synthetic_model_loads_and_runs() {
        let spec = Spec { name: "tiny", n_layer: 3, n_embd: 256, n_ff: 512, n_head: 4, n_kv_head: 2, vocab: 1000 };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write(spec, &path, Vocabulary::Placeholder).unwrap();
        let mut file = crate::llm::GgufFile::open(&path).unwrap();
        let names: Vec<_> = file.content.tensor_infos.keys().cloned().collect();
        assert_eq!(names.len(), 3 + 9 * 3);
        let info = &file.content.tensor_infos["blk.2.attn_v.weight"];
        assert_eq!(info.ggml_dtype, GgmlDType::Q6K);
        assert_eq!(info.shape.dims(), &[128, 256]);
        let mut model = file.load_model(64, &Device::Cpu).unwrap();
        let logits = model.forward(&[1, 2, 3]).unwrap();
        assert_eq!(logits.dims(), &[1000]);
        let v: Vec<f32> = logits.to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }
}
