//! A Piper voice: its `.onnx.json` settings and its VITS network, loaded from the `.onnx`
//! beside them, and synthesis from phoneme ids to samples at the voice's sample rate. Turning
//! text into phoneme ids (espeak-ng and the voice's `phoneme_id_map`) happens before this.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::tts::onnx::{OnnxError, OnnxWeights};
use crate::tts::vits::{Scales, Vits, VitsError};

/// The settings in a voice's `.onnx.json` that wick uses.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceConfig {
    pub audio: AudioConfig,
    pub espeak: EspeakConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    /// Phoneme (one character, as espeak-ng writes it) to its ids.
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default = "one")]
    pub num_speakers: u32,
    #[serde(default)]
    pub speaker_id_map: HashMap<String, i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EspeakConfig {
    /// espeak-ng voice that phonemizes for this voice, e.g. `en-us`.
    pub voice: String,
}

/// The voice's default inference scales.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct InferenceConfig {
    #[serde(default = "default_noise_scale")]
    pub noise_scale: f32,
    #[serde(default = "default_length_scale")]
    pub length_scale: f32,
    #[serde(default = "default_noise_w")]
    pub noise_w: f32,
}

// Piper's defaults, for voice files that leave them out.
fn default_noise_scale() -> f32 {
    0.667
}
fn default_length_scale() -> f32 {
    1.0
}
fn default_noise_w() -> f32 {
    0.8
}
fn one() -> u32 {
    1
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self { noise_scale: default_noise_scale(), length_scale: default_length_scale(), noise_w: default_noise_w() }
    }
}

impl VoiceConfig {
    /// Reads and parses a `.onnx.json`.
    pub fn read(path: &Path) -> Result<Self, VoiceError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| VoiceError::ReadConfig { path: path.into(), source })?;
        serde_json::from_str(&text).map_err(|source| VoiceError::BadConfig { path: path.into(), source })
    }

    /// The id of `choice` among `speakers` (`None`: Piper's default, speaker 0). Names are
    /// looked up in `speaker_id_map` first, so a voice whose speakers are named by numbers
    /// (as LibriTTS's are) is addressed by those names.
    pub fn speaker_id(&self, choice: Option<&SpeakerChoice>, speakers: usize) -> Result<i64, VoiceError> {
        let id = match choice {
            None => return Ok(0),
            Some(SpeakerChoice::Id(id)) => Some(*id),
            Some(SpeakerChoice::Name(name)) => {
                self.speaker_id_map.get(name).copied().or_else(|| name.trim().parse::<i64>().ok())
            }
        };
        match id {
            Some(id) if (0..speakers as i64).contains(&id) => Ok(id),
            _ => {
                let mut known: Vec<(&String, &i64)> = self.speaker_id_map.iter().collect();
                known.sort_by_key(|(_, id)| **id);
                Err(VoiceError::UnknownSpeaker {
                    speaker: choice.map(ToString::to_string).unwrap_or_default(),
                    speakers,
                    known: known.into_iter().map(|(name, _)| name.clone()).collect(),
                })
            }
        }
    }
}

/// A speaker of a multi-speaker voice, as the settings name it: an id, or a name from the
/// voice's `speaker_id_map` (a name that is not in the map but is a number is read as an id,
/// so `"3"` works from the command line).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SpeakerChoice {
    Id(i64),
    Name(String),
}

impl std::fmt::Display for SpeakerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpeakerChoice::Id(id) => write!(f, "{id}"),
            SpeakerChoice::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// How one synthesis runs. [`Voice::default_options`] gives the voice file's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthOptions {
    /// Variation of the voice around its average rendering (0: none).
    pub noise_scale: f32,
    /// Speaking time multiplier: above 1 is slower.
    pub length_scale: f32,
    /// Variation of the phoneme durations (0: none).
    pub noise_w: f32,
    /// Speaker id; `None` is speaker 0, as in Piper. Single-speaker voices have only 0.
    pub speaker: Option<i64>,
    /// Seeds the noise: the same seed, options and ids give the same audio.
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("voice settings {} must be a Piper `.onnx.json` file", path.display())]
    NotVoiceConfig { path: PathBuf },
    #[error("cannot read voice settings {}: {source}", path.display())]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("voice settings {} are not valid Piper voice JSON: {source}", path.display())]
    BadConfig { path: PathBuf, source: serde_json::Error },
    #[error("voice model {} is missing (it must sit beside its .onnx.json); run `wick models pull` to fetch the voice", path.display())]
    MissingModel { path: PathBuf },
    #[error("cannot read voice model {}: {source}", path.display())]
    ReadModel { path: PathBuf, source: std::io::Error },
    #[error("voice model {} is truncated or corrupt: {source}; delete it and run `wick models pull` again", path.display())]
    CorruptModel { path: PathBuf, source: Box<OnnxError> },
    #[error("voice model {} cannot be mapped onto wick's VITS network: {source}", path.display())]
    UnmappableGraph { path: PathBuf, source: Box<VitsError> },
    #[error("invalid synthesis options: {0}")]
    BadOptions(String),
    #[error("speaker {speaker} is not one of this voice's {speakers} speaker(s) (ids 0 to {}){}", speakers.saturating_sub(1), name_hint(known))]
    UnknownSpeaker { speaker: String, speakers: usize, known: Vec<String> },
    #[error("voice settings {} {what}; they do not belong to the model {}", json.display(), onnx.display())]
    SpeakersMismatch { json: PathBuf, onnx: PathBuf, what: String },
    #[error("synthesis failed: {0}")]
    Synthesis(#[source] Box<VitsError>),
}

/// ", or a name from its speaker_id_map: a, b, ..." for a voice that names its speakers,
/// listing a handful.
fn name_hint(known: &[String]) -> String {
    const SHOWN: usize = 5;
    if known.is_empty() {
        return String::new();
    }
    let mut names = known.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join(", ");
    if known.len() > SHOWN {
        names.push_str(&format!(" and {} more", known.len() - SHOWN));
    }
    format!(", or a name from its speaker_id_map: {names}")
}

/// A loaded voice, ready to speak.
#[derive(Debug, Clone)]
pub struct Voice {
    config: VoiceConfig,
    network: Vits,
}

impl Voice {
    /// Loads the voice whose settings are `onnx_json_path` (`name.onnx.json`); the network
    /// comes from `name.onnx` beside it.
    pub fn load(onnx_json_path: &Path, device: &Device) -> Result<Voice, VoiceError> {
        let model_path = model_path(onnx_json_path)?;
        let config = VoiceConfig::read(onnx_json_path)?;
        if !model_path.is_file() {
            return Err(VoiceError::MissingModel { path: model_path });
        }
        let weights = OnnxWeights::read(&model_path).map_err(|e| match e {
            OnnxError::Io { path, source } => VoiceError::ReadModel { path, source },
            e => VoiceError::CorruptModel { path: model_path.clone(), source: Box::new(e) },
        })?;
        let network = Vits::load(&weights, device)
            .map_err(|source| VoiceError::UnmappableGraph { path: model_path.clone(), source: Box::new(source) })?;
        // Piper writes num_speakers 1 for single-speaker voices; a map naming ids the model
        // lacks would only fail later, in the middle of an answer.
        let speakers = network.speakers();
        let mismatch = if config.num_speakers as usize != speakers {
            Some(format!("give num_speakers {}, but the model has {speakers} speaker(s)", config.num_speakers))
        } else {
            let mut map: Vec<_> = config.speaker_id_map.iter().collect();
            map.sort();
            map.into_iter()
                .find(|(_, id)| !(0..speakers as i64).contains(id))
                .map(|(name, id)| format!("map speaker {name:?} to id {id}, but the model has {speakers} speaker(s)"))
        };
        if let Some(what) = mismatch {
            return Err(VoiceError::SpeakersMismatch { json: onnx_json_path.into(), onnx: model_path, what });
        }
        Ok(Voice { config, network })
    }

    /// How many speakers the voice has (1 for most Piper voices).
    pub fn speakers(&self) -> usize {
        self.network.speakers()
    }

    /// The id of `choice` (`None`: Piper's default, speaker 0); see
    /// [`VoiceConfig::speaker_id`].
    pub fn speaker_id(&self, choice: Option<&SpeakerChoice>) -> Result<i64, VoiceError> {
        self.config.speaker_id(choice, self.speakers())
    }

    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// Samples per second of the audio [`Self::synthesize`] returns.
    pub fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    /// The voice file's inference settings, no speaker, seed 0.
    pub fn default_options(&self) -> SynthOptions {
        let i = self.config.inference;
        SynthOptions {
            noise_scale: i.noise_scale,
            length_scale: i.length_scale,
            noise_w: i.noise_w,
            speaker: None,
            seed: 0,
        }
    }

    /// Mono samples in [-1, 1] for one sentence of phoneme ids (with Piper's `^`, `_` and `$`
    /// markers already in place). An empty id list gives empty audio, not an error: there is
    /// nothing to say.
    pub fn synthesize(&self, ids: &[i64], opts: &SynthOptions) -> Result<Vec<f32>, VoiceError> {
        check_options(opts)?;
        let speaker = self.speaker_id(opts.speaker.map(SpeakerChoice::Id).as_ref())? as usize;
        let scales = Scales { noise_scale: opts.noise_scale, length_scale: opts.length_scale, noise_w: opts.noise_w };
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        self.network.synthesize(ids, scales, speaker, &mut rng).map_err(|e| VoiceError::Synthesis(Box::new(e)))
    }
}

/// The `.onnx.json` of a voice named by either of its files (`x.onnx` -> `x.onnx.json`).
pub fn settings_path(voice: &Path) -> PathBuf {
    if voice.extension().is_some_and(|e| e == "onnx") {
        let mut p = voice.as_os_str().to_owned();
        p.push(".json");
        PathBuf::from(p)
    } else {
        voice.to_path_buf()
    }
}

/// `x.onnx.json` -> `x.onnx`.
pub fn model_path(onnx_json_path: &Path) -> Result<PathBuf, VoiceError> {
    let name = onnx_json_path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match name.strip_suffix(".json") {
        Some(stem) if stem.ends_with(".onnx") => Ok(onnx_json_path.with_file_name(stem)),
        _ => Err(VoiceError::NotVoiceConfig { path: onnx_json_path.into() }),
    }
}

/// Refuses scales the network cannot honour, naming the setting.
pub fn check_options(o: &SynthOptions) -> Result<(), VoiceError> {
    let bad = |what: &str, v: f32| Err(VoiceError::BadOptions(format!("{what}, not {v}")));
    if !(o.length_scale.is_finite() && o.length_scale > 0.0) {
        return bad("length_scale must be a positive number", o.length_scale);
    }
    if !(o.noise_scale.is_finite() && o.noise_scale >= 0.0) {
        return bad("noise_scale must be zero or a positive number", o.noise_scale);
    }
    if !(o.noise_w.is_finite() && o.noise_w >= 0.0) {
        return bad("noise_w must be zero or a positive number", o.noise_w);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_sits_beside_its_json() {
        assert_eq!(
            model_path(Path::new("/v/en_US-joe-medium.onnx.json")).unwrap(),
            Path::new("/v/en_US-joe-medium.onnx")
        );
        assert!(matches!(model_path(Path::new("/v/joe.json")), Err(VoiceError::NotVoiceConfig { .. })));
        assert!(matches!(model_path(Path::new("/v/joe.onnx")), Err(VoiceError::NotVoiceConfig { .. })));
    }

    #[test]
    fn a_voice_can_move_to_its_stage_thread() {
        fn check<T: Send + Sync>() {}
        check::<Voice>();
    }

    #[test]
    fn scales_are_checked() {
        let ok = SynthOptions { noise_scale: 0.0, length_scale: 1.0, noise_w: 0.0, speaker: None, seed: 1 };
        assert!(check_options(&ok).is_ok());
        for o in [
            SynthOptions { length_scale: 0.0, ..ok },
            SynthOptions { length_scale: f32::NAN, ..ok },
            SynthOptions { noise_scale: -1.0, ..ok },
            SynthOptions { noise_w: f32::INFINITY, ..ok },
        ] {
            assert!(matches!(check_options(&o), Err(VoiceError::BadOptions(_))), "{o:?}");
        }
    }
}
