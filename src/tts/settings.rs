//! The `[tts]` table: which voice speaks, overrides of its synthesis scales, the speaker of a
//! multi-speaker voice, and espeak-ng's voice for phonemes and the fallback.

use std::path::PathBuf;

use serde::Deserialize;

use super::voice::SpeakerChoice;
use crate::settings::{Checked, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A Piper voice (`.onnx.json`) to use instead of the model set's.
    pub voice: Option<PathBuf>,
    /// Overrides of the voice file's inference settings.
    pub noise_scale: Option<f32>,
    pub length_scale: Option<f32>,
    pub noise_w: Option<f32>,
    /// Speaker of a multi-speaker voice: an id (`3`) or a name from its speaker_id_map
    /// (`"p239"`); none is speaker 0.
    pub speaker: Option<SpeakerChoice>,
    /// Seeds the voice's noise: the same text sounds the same every time.
    pub seed: u64,
    /// espeak-ng voice of the fallback synthesizer (and of phonemes when the voice file names none).
    pub espeak_voice: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            voice: None,
            noise_scale: None,
            length_scale: None,
            noise_w: None,
            speaker: None,
            seed: 0,
            espeak_voice: "en-us".into(),
        }
    }
}

impl Settings {
    pub fn check(&self) -> Checked {
        for (key, value, positive) in [
            ("noise_scale", self.noise_scale, false),
            ("noise_w", self.noise_w, false),
            ("length_scale", self.length_scale, true),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
                    let what = if positive { "a positive number (1.0 is normal speed)" } else { "0 or more" };
                    return Err(Invalid::new(key, format!("is {v}; use {what}")));
                }
            }
        }
        if self.espeak_voice.trim().is_empty() {
            return Err(Invalid::new("espeak_voice", "is empty; name an espeak-ng voice such as \"en-us\""));
        }
        Ok(())
    }
}
