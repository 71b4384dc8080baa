//! The appliance's one voice: the configured Piper voice, or espeak-ng's own synthesizer when
//! none is configured or it cannot be loaded (the reason is logged and kept, so `doctor` and
//! `say --json` can show it). Text goes in a chunk at a time; phonemes, ids and audio come out.

use std::path::Path;

use candle_core::Device;

use super::phonemes::{self, PhonemeError};
use super::voice::{SynthOptions, Voice, VoiceError};
use super::Settings;
use super::{espeak, espeak::EspeakError};

enum Engine {
    Neural { voice: Box<Voice>, options: SynthOptions },
    Espeak,
}

pub struct Speaker {
    engine: Engine,
    espeak_voice: String,
    /// Why the neural voice is not speaking, when it is not.
    fallback_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakError {
    #[error(transparent)]
    Phonemes(#[from] PhonemeError),
    #[error(transparent)]
    Espeak(#[from] EspeakError),
    #[error(transparent)]
    Voice(Box<VoiceError>),
    #[error("phoneme ids need a neural voice, but {0}")]
    NoNeuralVoice(String),
}

impl From<VoiceError> for SpeakError {
    fn from(e: VoiceError) -> Self {
        SpeakError::Voice(Box::new(e))
    }
}

/// What one piece of text became.
#[derive(Debug, Clone, Default)]
pub struct Spoken {
    /// Phonemes per sentence.
    pub phonemes: Vec<String>,
    /// The voice's ids per sentence (empty with the espeak-ng fallback).
    pub phoneme_ids: Vec<Vec<i64>>,
    pub samples: usize,
}

/// A whole text spoken through the chunker.
#[derive(Debug, Clone, Default)]
pub struct SpokenText {
    pub chunks: Vec<String>,
    pub spoken: Spoken,
    /// Seconds until the first audio was ready (`None`: nothing to say).
    pub first_chunk_s: Option<f64>,
    pub synth_s: f64,
}

impl Speaker {
    /// Loads the configured voice, falling back to espeak-ng (with the reason logged) when there
    /// is none or it fails to load: the appliance must always be able to answer out loud.
    pub fn open(voice: Option<&Path>, settings: &Settings, device: &Device) -> Self {
        let Some(path) = voice else {
            return Self::fallback(settings, "no neural voice is configured".into());
        };
        match Self::neural(path, settings, device) {
            Ok(speaker) => speaker,
            Err(e) => {
                tracing::warn!("{e}: speaking with espeak-ng instead");
                Self::espeak(settings, e.to_string())
            }
        }
    }

    /// Loads a neural voice (`.onnx.json`, or the `.onnx` beside it) with `settings`' overrides
    /// of its inference settings, or fails.
    pub fn neural(path: &Path, settings: &Settings, device: &Device) -> Result<Self, SpeakError> {
        let voice = Voice::load(&super::voice::settings_path(path), device)?;
        let mut options = voice.default_options();
        options.noise_scale = settings.noise_scale.unwrap_or(options.noise_scale);
        options.length_scale = settings.length_scale.unwrap_or(options.length_scale);
        options.noise_w = settings.noise_w.unwrap_or(options.noise_w);
        options.speaker = Some(voice.speaker_id(settings.speaker.as_ref())?);
        options.seed = settings.seed;
        // Checked here, not only per sentence: a bad override would otherwise silence every
        // answer instead of falling back with the reason.
        super::voice::check_options(&options)?;
        let espeak_voice = match voice.config().espeak.voice.as_str() {
            "" => settings.espeak_voice.clone(),
            v => v.to_string(),
        };
        Ok(Speaker { engine: Engine::Neural { voice: Box::new(voice), options }, espeak_voice, fallback_reason: None })
    }

    /// espeak-ng's own voice, for when there is no neural voice to load; `reason` says why
    /// (it is logged and kept).
    pub fn fallback(settings: &Settings, reason: String) -> Self {
        tracing::warn!("{reason}: speaking with espeak-ng");
        Self::espeak(settings, reason)
    }

    fn espeak(settings: &Settings, reason: String) -> Self {
        Speaker { engine: Engine::Espeak, espeak_voice: settings.espeak_voice.clone(), fallback_reason: Some(reason) }
    }

    /// Why espeak-ng speaks instead of a neural voice (`None` when the neural voice speaks).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// "piper" or "espeak-ng".
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Neural { .. } => "piper",
            Engine::Espeak => "espeak-ng",
        }
    }

    /// The neural voice's speaker id (`None` with the espeak-ng fallback).
    pub fn speaker_id(&self) -> Option<i64> {
        match &self.engine {
            Engine::Neural { options, .. } => options.speaker,
            Engine::Espeak => None,
        }
    }

    pub fn sample_rate(&self) -> Result<u32, SpeakError> {
        match &self.engine {
            Engine::Neural { voice, .. } => Ok(voice.sample_rate()),
            Engine::Espeak => Ok(espeak::lock()?.sample_rate()),
        }
    }

    /// Speaks one chunk of text, handing audio to `on_audio` sentence by sentence (the neural
    /// voice) or all at once (espeak-ng). Text with nothing to say gives no audio and no error.
    pub fn speak(&self, text: &str, on_audio: &mut dyn FnMut(&[f32])) -> Result<Spoken, SpeakError> {
        let mut spoken = Spoken::default();
        match &self.engine {
            Engine::Neural { voice, options } => {
                let map = &voice.config().phoneme_id_map;
                for sentence in phonemes::text_to_ids(text, &self.espeak_voice, map)? {
                    if !sentence.unknown.is_empty() {
                        tracing::warn!(unknown = ?sentence.unknown, "phonemes the voice has no id for were left out");
                    }
                    let audio = voice.synthesize(&sentence.ids, options)?;
                    spoken.samples += audio.len();
                    on_audio(&audio);
                    spoken.phonemes.push(sentence.phonemes);
                    spoken.phoneme_ids.push(sentence.ids);
                }
            }
            Engine::Espeak => {
                let text = crate::text::strip_emoji(text);
                spoken.phonemes = espeak::phonemize(&text, &self.espeak_voice)?;
                if !spoken.phonemes.is_empty() {
                    let (audio, _) = espeak::synthesize(&text, &self.espeak_voice)?;
                    spoken.samples = audio.len();
                    on_audio(&audio);
                }
            }
        }
        Ok(spoken)
    }

    /// Speaks a whole text the way the appliance speaks an answer: cut by the chunker (the
    /// first chunk early, then sentences; markdown and emoji dropped; long sentences cut), each
    /// chunk synthesized in turn. `first_chunk_s` is the time until the first audio was ready.
    pub fn speak_text(&self, text: &str, on_audio: &mut dyn FnMut(&[f32])) -> Result<SpokenText, SpeakError> {
        let start = std::time::Instant::now();
        let mut chunker = crate::text::Chunker::new(Default::default());
        let mut chunks = chunker.push(text);
        chunks.extend(chunker.finish());
        let mut out = SpokenText::default();
        for chunk in &chunks {
            let spoken = self.speak(chunk, &mut |audio| {
                if out.first_chunk_s.is_none() && !audio.is_empty() {
                    out.first_chunk_s = Some(start.elapsed().as_secs_f64());
                }
                on_audio(audio)
            })?;
            out.spoken.phonemes.extend(spoken.phonemes);
            out.spoken.phoneme_ids.extend(spoken.phoneme_ids);
            out.spoken.samples += spoken.samples;
        }
        out.chunks = chunks;
        out.synth_s = start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Speaks exactly these phoneme ids as one sentence (for parity checks).
    pub fn speak_ids(&self, ids: &[i64]) -> Result<Vec<f32>, SpeakError> {
        match &self.engine {
            Engine::Neural { voice, options } => Ok(voice.synthesize(ids, options)?),
            Engine::Espeak => Err(SpeakError::NoNeuralVoice(self.fallback_reason.clone().unwrap_or_default())),
        }
    }
}
