//! The `[stt]` table: which Whisper model to load and how to decode with it.

use std::path::PathBuf;

use serde::Deserialize;

use super::decode::DecodeOptions;
use super::{SttOptions, DEFAULT_SILENCE_DBFS};
use crate::settings::{Checked, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A Whisper model directory to use instead of the model set's.
    pub model_dir: Option<PathBuf>,
    /// Language code for multilingual models, or "auto" to detect it.
    pub language: String,
    pub temperatures: Vec<f32>,
    pub compression_ratio_threshold: f32,
    pub logprob_threshold: f32,
    pub no_speech_threshold: f32,
    pub max_tokens: usize,
    /// Windows quieter than this (loudest 100 ms, dBFS) are silence and skip the model.
    pub silence_threshold_dbfs: f32,
}

impl Default for Settings {
    fn default() -> Self {
        let d = DecodeOptions::default();
        Self {
            model_dir: None,
            language: "en".into(),
            temperatures: d.temperatures,
            compression_ratio_threshold: d.compression_ratio_threshold,
            logprob_threshold: d.logprob_threshold,
            no_speech_threshold: d.no_speech_threshold,
            max_tokens: d.max_tokens,
            silence_threshold_dbfs: DEFAULT_SILENCE_DBFS,
        }
    }
}

impl Settings {
    pub fn check(&self) -> Checked {
        let lang_ok = self.language == "auto"
            || (2..=3).contains(&self.language.len()) && self.language.chars().all(|c| c.is_ascii_lowercase());
        if !lang_ok {
            return Err(Invalid::new(
                "language",
                format!("is {:?}; use a language code such as \"en\", or \"auto\"", self.language),
            ));
        }
        if self.temperatures.is_empty() || self.temperatures.iter().any(|t| !(0.0..=2.0).contains(t)) {
            return Err(Invalid::new(
                "temperatures",
                format!("is {:?}; give one or more values in 0.0..=2.0, e.g. [0.0, 0.2, 0.4]", self.temperatures),
            ));
        }
        if !(0.0..=1.0).contains(&self.no_speech_threshold) {
            return Err(Invalid::new(
                "no_speech_threshold",
                format!("is {}; it is a probability in 0.0..=1.0", self.no_speech_threshold),
            ));
        }
        if self.compression_ratio_threshold.is_nan() || self.compression_ratio_threshold <= 0.0 {
            return Err(Invalid::new(
                "compression_ratio_threshold",
                format!("is {}; it must be positive (Whisper uses 2.4)", self.compression_ratio_threshold),
            ));
        }
        if self.logprob_threshold.is_nan() || self.logprob_threshold > 0.0 {
            return Err(Invalid::new(
                "logprob_threshold",
                format!("is {}; a log-probability is at most 0 (Whisper uses -1.0)", self.logprob_threshold),
            ));
        }
        if !(1..=440).contains(&self.max_tokens) {
            return Err(Invalid::new(
                "max_tokens",
                format!("is {}; use 1..=440 (the decoder holds 448 positions)", self.max_tokens),
            ));
        }
        if !(-120.0..=0.0).contains(&self.silence_threshold_dbfs) {
            return Err(Invalid::new(
                "silence_threshold_dbfs",
                format!(
                    "is {}; use a level in -120.0..=0.0 dBFS (-120 turns the gate off)",
                    self.silence_threshold_dbfs
                ),
            ));
        }
        Ok(())
    }

    /// How the transcriber decodes with these settings.
    pub fn options(&self) -> SttOptions {
        SttOptions {
            language: (self.language != "auto").then(|| self.language.clone()),
            silence_threshold_dbfs: self.silence_threshold_dbfs,
            decode: DecodeOptions {
                temperatures: self.temperatures.clone(),
                compression_ratio_threshold: self.compression_ratio_threshold,
                logprob_threshold: self.logprob_threshold,
                no_speech_threshold: self.no_speech_threshold,
                max_tokens: self.max_tokens,
                ..Default::default()
            },
        }
    }
}
