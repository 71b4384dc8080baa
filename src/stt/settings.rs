//! The `[stt]` table: which Whisper model to load and how to decode with it.

use std::path::PathBuf;

use serde::Deserialize;

use super::activity::ActivityOptions;
use super::decode::DecodeOptions;
use super::{EncoderSpan, SttOptions, DEFAULT_SPEECH_LEVEL_DBFS};
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
    /// Voice activity score (0..1) from which a frame may be speech.
    pub vad_threshold: f32,
    /// The shortest speech that counts, in milliseconds.
    pub min_speech_ms: u32,
    /// Audio kept around the speech, in milliseconds.
    pub speech_pad_ms: u32,
    /// The level speech is brought to before Whisper hears it (loudest 100 ms, dBFS).
    pub speech_level_dbfs: f32,
    /// The most a quiet recording is amplified, in dB.
    pub max_gain_db: f32,
    /// "window": the encoder hears whole 30 s windows, as Whisper was trained; "speech": only
    /// the speech and a short margin, much less work for a short question.
    pub encoder_span: EncoderSpan,
    /// Removed: the fixed level gate gave way to voice activity detection. Still read so that
    /// an older configuration keeps working; a warning says to remove it.
    #[serde(rename = "silence_threshold_dbfs")]
    pub removed_silence_threshold_dbfs: Option<f32>,
}

impl Default for Settings {
    fn default() -> Self {
        let d = DecodeOptions::default();
        let a = ActivityOptions::default();
        Self {
            model_dir: None,
            language: "en".into(),
            temperatures: d.temperatures,
            compression_ratio_threshold: d.compression_ratio_threshold,
            logprob_threshold: d.logprob_threshold,
            no_speech_threshold: d.no_speech_threshold,
            max_tokens: d.max_tokens,
            vad_threshold: a.threshold,
            min_speech_ms: a.min_speech_ms,
            speech_pad_ms: a.pad_ms,
            speech_level_dbfs: DEFAULT_SPEECH_LEVEL_DBFS,
            max_gain_db: a.max_gain_db,
            encoder_span: EncoderSpan::default(),
            removed_silence_threshold_dbfs: None,
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
        if !(0.05..=0.95).contains(&self.vad_threshold) {
            return Err(Invalid::new(
                "vad_threshold",
                format!("is {}; use a score in 0.05..=0.95 (0.5 is the detector's own default)", self.vad_threshold),
            ));
        }
        if !(16..=2_000).contains(&self.min_speech_ms) {
            return Err(Invalid::new(
                "min_speech_ms",
                format!("is {}; use 16..=2000 ms (a short word lasts about 150 ms)", self.min_speech_ms),
            ));
        }
        if self.speech_pad_ms > 2_000 {
            return Err(Invalid::new("speech_pad_ms", format!("is {}; use 0..=2000 ms", self.speech_pad_ms)));
        }
        if !(-40.0..=-3.0).contains(&self.speech_level_dbfs) {
            return Err(Invalid::new(
                "speech_level_dbfs",
                format!("is {}; use a level in -40.0..=-3.0 dBFS", self.speech_level_dbfs),
            ));
        }
        if !(0.0..=60.0).contains(&self.max_gain_db) {
            return Err(Invalid::new(
                "max_gain_db",
                format!("is {}; use 0.0..=60.0 dB (0 never amplifies)", self.max_gain_db),
            ));
        }
        Ok(())
    }

    /// How the transcriber decodes with these settings.
    pub fn options(&self) -> SttOptions {
        if let Some(level) = self.removed_silence_threshold_dbfs {
            tracing::warn!(
                "stt.silence_threshold_dbfs = {level} is no longer used (a voice activity detector decides what \
                 is speech): remove it; stt.vad_threshold and stt.max_gain_db tune the detector"
            );
        }
        SttOptions {
            language: (self.language != "auto").then(|| self.language.clone()),
            activity: ActivityOptions {
                threshold: self.vad_threshold,
                min_speech_ms: self.min_speech_ms,
                pad_ms: self.speech_pad_ms,
                max_gain_db: self.max_gain_db,
            },
            speech_level_dbfs: self.speech_level_dbfs,
            span: self.encoder_span,
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
