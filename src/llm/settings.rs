//! The `[llm]` table: which model to load, the system prompt, the context and how to sample.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::engine::GenerateOptions;
use super::sampling::SamplingOptions;
use crate::settings::{Checked, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A GGUF file to use instead of the model set's.
    pub model: Option<PathBuf>,
    /// The system prompt the conversation starts with.
    pub system: String,
    /// Tokens the KV cache holds (capped at the model's own context).
    pub context: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repeat_penalty: f32,
    pub seed: u64,
    /// Seconds without a turn after which the conversation starts over (0: never).
    pub idle_reset_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let s = SamplingOptions::default();
        Self {
            model: None,
            system: "You are a helpful voice assistant. Answer briefly, in plain spoken sentences.".into(),
            context: 2048,
            max_tokens: 256,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            repeat_penalty: s.repeat_penalty,
            seed: s.seed,
            idle_reset_s: 300,
        }
    }
}

impl Settings {
    pub fn check(&self) -> Checked {
        if !(16..=131_072).contains(&self.context) {
            return Err(Invalid::new(
                "context",
                format!("is {}; use 16..=131072 tokens (2048 suits a voice assistant)", self.context),
            ));
        }
        if self.max_tokens == 0 || self.max_tokens >= self.context {
            return Err(Invalid::new(
                "max_tokens",
                format!("is {}; use 1 up to less than llm.context ({})", self.max_tokens, self.context),
            ));
        }
        if !(0.0..=5.0).contains(&self.temperature) {
            return Err(Invalid::new("temperature", format!("is {}; use 0.0 (greedy) ..= 5.0", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Invalid::new("top_p", format!("is {}; use a probability in (0.0, 1.0]", self.top_p)));
        }
        if !(self.repeat_penalty >= 1.0 && self.repeat_penalty <= 10.0) {
            return Err(Invalid::new("repeat_penalty", format!("is {}; use 1.0 (off) ..= 10.0", self.repeat_penalty)));
        }
        Ok(())
    }

    /// How long a conversation may sit idle before it is forgotten (`None`: never).
    pub fn idle_reset(&self) -> Option<Duration> {
        (self.idle_reset_s > 0).then(|| Duration::from_secs(self.idle_reset_s))
    }

    /// How answers are generated with these settings.
    pub fn generate_options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: SamplingOptions {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repeat_penalty: self.repeat_penalty,
                seed: self.seed,
                ..Default::default()
            },
        }
    }
}
