//! `wick bench llm`: load time, prompt processing and generation speed, the latency of a
//! 50-token answer and peak memory, measured on token ids (content does not change the work).

use std::time::Instant;

use candle_core::{Device, Tensor};

use super::{sampling::argmax_logits, GgufFile, Llama, LlmError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct LlmBench {
    pub model: String,
    pub threads: usize,
    pub load_s: f64,
    pub prompt_tokens: usize,
    pub prompt_tok_s: f64,
    pub gen_tokens: usize,
    pub gen_tok_s: f64,
    /// A 32-token question answered with 50 tokens, from the first prompt token to the last.
    pub answer_50_s: f64,
    pub peak_rss_mb: Option<f64>,
    /// "cpu" or "cuda:N".
    pub device: String,
    /// Memory in use on the GPU at the end, model and cache loaded (the whole device's).
    pub gpu_used_mb: Option<f64>,
}

/// Token ids from the middle of the vocabulary, clear of the special tokens at either end.
fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| (vocab / 4 + (i * 7919) % (vocab / 2)) as u32).collect()
}

/// Feeds the most likely token `steps` times, starting from `logits`; returns the last logits.
fn greedy_steps(model: &mut Llama, mut logits: Tensor, steps: usize) -> candle_core::Result<Tensor> {
    for _ in 0..steps {
        let next = argmax_logits(&logits)?;
        logits = model.forward(&[next])?;
    }
    Ok(logits)
}

pub fn run(
    file: &mut GgufFile,
    prompt_tokens: usize,
    gen_tokens: usize,
    device: &Device,
) -> Result<LlmBench, LlmError> {
    let fail = |e: candle_core::Error| LlmError::Generate(e.to_string());
    let context = (prompt_tokens + gen_tokens).max(32 + 50) + 1;
    let start = Instant::now();
    let mut model = file.load_model(context, device)?;
    // The first matmul of each weight prepares Candle's kernels; count that as loading.
    model.forward(&prompt_ids(8, model.config.vocab_size)).map_err(fail)?;
    model.reset();
    let load_s = start.elapsed().as_secs_f64();
    let vocab = model.config.vocab_size;

    // A GPU runs ahead of the host: each figure waits for its work to finish.
    let sync = || device.synchronize().map_err(fail);
    sync()?;
    let t = Instant::now();
    let logits = model.forward(&prompt_ids(prompt_tokens, vocab)).map_err(fail)?;
    sync()?;
    let prompt_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    greedy_steps(&mut model, logits, gen_tokens).map_err(fail)?;
    sync()?;
    let gen_s = t.elapsed().as_secs_f64();

    model.reset();
    let t = Instant::now();
    let logits = model.forward(&prompt_ids(32, vocab)).map_err(fail)?;
    let logits = greedy_steps(&mut model, logits, 49).map_err(fail)?;
    argmax_logits(&logits).map_err(fail)?;
    let answer_50_s = t.elapsed().as_secs_f64();

    Ok(LlmBench {
        model: file.path.display().to_string(),
        threads: candle_core::utils::get_num_threads(),
        load_s,
        prompt_tokens,
        prompt_tok_s: prompt_tokens as f64 / prompt_s,
        gen_tokens,
        gen_tok_s: gen_tokens as f64 / gen_s,
        answer_50_s,
        peak_rss_mb: crate::measure::peak_rss_mib(),
        device: crate::device::describe(device),
        gpu_used_mb: crate::device::gpu_info(device).map(|g| crate::measure::round3(g.used_mib())),
    })
}
