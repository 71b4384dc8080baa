//! Decoding one 30 s window: greedy search without timestamps, with OpenAI's safeguards —
//! suppressed tokens, a blank-start ban, no-speech detection, and temperature fallback when
//! the text looks like a repetition loop (high compression ratio) or the model is unsure
//! (low average log-probability).

use std::io::Write;

use candle_core::Tensor;
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::model::{DecoderState, Whisper};
use super::tokens::WhisperTokens;

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Tried in order until a result passes both thresholds; the first is normally 0 (greedy).
    pub temperatures: Vec<f32>,
    pub compression_ratio_threshold: f32,
    pub logprob_threshold: f32,
    /// A window whose no-speech probability exceeds this (and whose text is unsure) is silence.
    pub no_speech_threshold: f32,
    /// Cap on sampled tokens per window (OpenAI uses half the decoder context).
    pub max_tokens: usize,
    pub seed: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: 2.4,
            logprob_threshold: -1.0,
            no_speech_threshold: 0.6,
            max_tokens: 224,
            seed: 299_792_458,
        }
    }
}

/// What decoding one window produced.
#[derive(Debug, Clone)]
pub struct WindowResult {
    pub tokens: Vec<u32>,
    pub text: String,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    pub temperature: f32,
    pub compression_ratio: f32,
    /// True when the window was judged silent or unintelligible and its text dropped.
    pub silent: bool,
}

impl WindowResult {
    /// A window judged silent before decoding.
    pub fn silence() -> Self {
        Self {
            tokens: Vec::new(),
            text: String::new(),
            avg_logprob: 0.0,
            no_speech_prob: 1.0,
            temperature: 0.0,
            compression_ratio: 0.0,
            silent: true,
        }
    }
}

pub struct WindowDecoder<'a> {
    model: &'a Whisper,
    tokens: &'a WhisperTokens,
    options: &'a DecodeOptions,
    /// `true` for every token id that may never be sampled.
    suppressed: Vec<bool>,
    rng: StdRng,
    /// Called for every decoded token: the caller's sign of life during a long window.
    progress: &'a dyn Fn(),
}

impl<'a> WindowDecoder<'a> {
    pub fn new(model: &'a Whisper, tokens: &'a WhisperTokens, options: &'a DecodeOptions) -> Self {
        let vocab = model.config.vocab_size;
        let mut suppressed = vec![false; vocab];
        let mut ban = |t: u32| {
            if let Some(s) = suppressed.get_mut(t as usize) {
                *s = true;
            }
        };
        model.config.suppress_tokens.iter().copied().for_each(&mut ban);
        [Some(tokens.sot), tokens.transcribe, tokens.translate, tokens.no_speech, Some(tokens.no_timestamps)]
            .into_iter()
            .flatten()
            .chain(tokens.prompt_only.iter().copied())
            .chain(tokens.languages.iter().map(|(t, _)| *t))
            .for_each(&mut ban);
        // Timestamp tokens follow <|notimestamps|>; wick decodes without them.
        (tokens.no_timestamps + 1..vocab as u32).for_each(&mut ban);
        Self { model, tokens, options, suppressed, rng: StdRng::seed_from_u64(options.seed), progress: &|| {} }
    }

    /// Calls `progress` for every decoded token.
    pub fn with_progress(mut self, progress: &'a dyn Fn()) -> Self {
        self.progress = progress;
        self
    }

    /// Decodes a window whose cross-attention state is in `state`, retrying at higher
    /// temperatures while the result looks wrong. When no temperature gives a confident,
    /// non-repeating result, the window is noise the model cannot read (on hiss, tiny models
    /// loop on "." greedily and invent whole sentences at high temperature) and its text is
    /// dropped: an appliance should say it did not catch that rather than act on invented words.
    pub fn decode(&mut self, state: &mut DecoderState, prompt: &[u32]) -> candle_core::Result<WindowResult> {
        let o = self.options;
        let mut result = None;
        let mut accepted = false;
        for &temperature in &o.temperatures {
            state.reset();
            let r = self.sample(state, prompt, temperature)?;
            let unsure = r.avg_logprob < o.logprob_threshold;
            let looping = r.compression_ratio > o.compression_ratio_threshold;
            let silence = r.no_speech_prob > o.no_speech_threshold && unsure;
            accepted = !(unsure || looping);
            result = Some(r);
            if silence || accepted {
                break;
            }
        }
        let mut r = result.expect("at least one temperature is configured");
        if !accepted {
            r.silent = true;
            r.text.clear();
            r.tokens.clear();
        }
        Ok(r)
    }

    fn sample(
        &mut self,
        state: &mut DecoderState,
        prompt: &[u32],
        temperature: f32,
    ) -> candle_core::Result<WindowResult> {
        let sot_row = prompt.iter().position(|&t| t == self.tokens.sot).unwrap_or(0);
        let first = self.model.decode(state, prompt, &[sot_row, prompt.len() - 1])?;
        let no_speech_prob = match self.tokens.no_speech {
            Some(ns) => softmax_at(&first.get(0)?.to_vec1::<f32>()?, ns as usize),
            None => 0.0,
        };
        let mut logits = first.get(1)?.to_vec1::<f32>()?;
        let mut out = Vec::new();
        let mut sum_logprob = 0.0f32;
        let limit = self.options.max_tokens.min(state.room());
        loop {
            self.filter(&mut logits, out.is_empty());
            let next = if temperature == 0.0 { argmax(&logits) } else { self.draw(&logits, temperature) };
            sum_logprob += log_softmax_at(&logits, next);
            if next as u32 == self.tokens.eot || out.len() + 1 >= limit {
                if next as u32 != self.tokens.eot {
                    out.push(next as u32);
                }
                break;
            }
            out.push(next as u32);
            (self.progress)();
            logits = last_row(&self.model.decode(state, &[next as u32], &[0])?)?;
        }
        let text = self.tokens.text(&out);
        Ok(WindowResult {
            avg_logprob: sum_logprob / (out.len() + 1) as f32,
            compression_ratio: compression_ratio(&text),
            tokens: out,
            text,
            no_speech_prob,
            temperature,
            silent: false,
        })
    }

    fn filter(&self, logits: &mut [f32], at_start: bool) {
        for (l, &s) in logits.iter_mut().zip(&self.suppressed) {
            if s {
                *l = f32::NEG_INFINITY;
            }
        }
        if at_start {
            for &t in &self.model.config.begin_suppress_tokens {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    fn draw(&mut self, logits: &[f32], temperature: f32) -> usize {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = logits.iter().map(|&l| ((l - max) / temperature).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut target = self.rng.random::<f32>() * total;
        for (i, w) in weights.iter().enumerate() {
            target -= w;
            if target <= 0.0 && *w > 0.0 {
                return i;
            }
        }
        argmax(logits)
    }
}

/// Picks the most likely language among the vocabulary's language tokens from the logits
/// that follow `<|startoftranscript|>`.
pub fn detect_language(
    model: &Whisper,
    tokens: &WhisperTokens,
    state: &mut DecoderState,
) -> candle_core::Result<Option<String>> {
    state.reset();
    let logits = last_row(&model.decode(state, &[tokens.sot], &[0])?)?;
    state.reset();
    Ok(tokens
        .languages
        .iter()
        .max_by(|a, b| logits[a.0 as usize].total_cmp(&logits[b.0 as usize]))
        .map(|(_, code)| code.clone()))
}

fn last_row(logits: &Tensor) -> candle_core::Result<Vec<f32>> {
    logits.get(logits.dim(0)? - 1)?.to_vec1::<f32>()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

fn log_sum_exp(v: &[f32]) -> f32 {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + v.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

fn log_softmax_at(v: &[f32], i: usize) -> f32 {
    v[i] - log_sum_exp(v)
}

fn softmax_at(v: &[f32], i: usize) -> f32 {
    log_softmax_at(v, i).exp()
}

/// How much zlib shrinks the text; repetition loops compress far better than speech.
pub fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(text.as_bytes()).expect("writing to a Vec cannot fail");
    let compressed = z.finish().expect("finishing a Vec cannot fail");
    text.len() as f32 / compressed.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_compresses_better_than_speech() {
        let speech = "feels like these days go on forever";
        let loop_text = "the the the the the the the the the the the the the the the the the the the the";
        assert!(compression_ratio(speech) < 2.4);
        assert!(compression_ratio(loop_text) > 2.4);
        assert_eq!(compression_ratio(""), 0.0);
    }

    #[test]
    fn log_softmax_is_normalised() {
        let v = [1.0, 2.0, f32::NEG_INFINITY, 0.5];
        let total: f32 = (0..4).map(|i| softmax_at(&v, i)).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&v), 1);
    }
}
