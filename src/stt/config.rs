//! The Whisper model's shape and token rules, read from a Hugging Face style `config.json`
//! (what the hub ships and what `wick models import-ct2` writes).

use std::path::Path;

use serde::Deserialize;

use super::SttError;

#[derive(Debug, Clone, Deserialize)]
pub struct WhisperConfig {
    pub vocab_size: usize,
    pub num_mel_bins: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_layers: usize,
    pub decoder_attention_heads: usize,
    pub max_source_positions: usize,
    pub max_target_positions: usize,
    /// Tokens never emitted (symbols and speaker tags in OpenAI's default list).
    #[serde(default)]
    pub suppress_tokens: Vec<u32>,
    /// Tokens not allowed as the first sampled token (a bare space, end of text).
    #[serde(default)]
    pub begin_suppress_tokens: Vec<u32>,
}

impl WhisperConfig {
    pub fn load(path: &Path) -> Result<Self, SttError> {
        let text = std::fs::read_to_string(path).map_err(|e| SttError::io(path, e))?;
        let config: WhisperConfig = serde_json::from_str(&text).map_err(|e| SttError::BadModel {
            path: path.to_path_buf(),
            message: format!("not a Whisper config.json: {e}"),
        })?;
        let bad = |message: String| SttError::BadModel { path: path.to_path_buf(), message };
        if config.encoder_attention_heads == 0
            || !config.d_model.is_multiple_of(config.encoder_attention_heads)
            || config.decoder_attention_heads == 0
            || !config.d_model.is_multiple_of(config.decoder_attention_heads)
        {
            return Err(bad(format!("d_model {} is not divisible by the attention head counts", config.d_model)));
        }
        if config.max_source_positions * 2 != super::mel::WINDOW_FRAMES {
            return Err(bad(format!(
                "max_source_positions is {}, but Whisper's 30 s window needs 1500",
                config.max_source_positions
            )));
        }
        Ok(config)
    }

    /// Multilingual checkpoints have one more token (the extra language tokens shift the specials).
    pub fn is_multilingual(&self) -> bool {
        self.vocab_size >= 51865
    }
}
