//! Speech to text: Whisper on Candle. Audio (16 kHz mono) goes through the log-mel front end,
//! the encoder runs once per 30 s window, and the decoder writes text token by token with a
//! cached self-attention state. Longer audio is cut into windows at quiet moments.

pub mod bench;
pub mod config;
pub mod ct2;
pub mod decode;
pub mod mel;
pub mod model;
pub mod normalize;
mod ops;
mod settings;
pub mod tokens;

pub use settings::Settings;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use self::config::WhisperConfig;
use self::decode::{DecodeOptions, WindowDecoder, WindowResult};
use self::mel::{MelFilters, WINDOW_FRAMES};
use self::model::Whisper;
use self::tokens::WhisperTokens;

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error("{}: {message}", path.display())]
    BadModel { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("model directory {} is missing {file}; run `wick models pull` (or `wick models import-ct2` for a CTranslate2 model)", dir.display())]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("language {0:?} is not in this model's vocabulary")]
    UnknownLanguage(String),
    #[error("speech-to-text failed: {0}")]
    Inference(#[from] candle_core::Error),
}

impl SttError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SttError::Io { path: path.to_path_buf(), source }
    }
}

/// How the transcriber decodes.
#[derive(Debug, Clone)]
pub struct SttOptions {
    /// Language code for multilingual models; `None` detects it per window. Ignored by
    /// English-only models.
    pub language: Option<String>,
    /// A window whose loudest 100 ms stays below this level (dB relative to full scale) is
    /// silence and never reaches the model: Whisper tends to "hear" a word in room noise.
    pub silence_threshold_dbfs: f32,
    pub decode: DecodeOptions,
}

impl Default for SttOptions {
    fn default() -> Self {
        Self { language: None, silence_threshold_dbfs: DEFAULT_SILENCE_DBFS, decode: DecodeOptions::default() }
    }
}

/// Speech peaks sit around -25..-10 dBFS; the quiet rooms of the dev clips sit below -47.
pub const DEFAULT_SILENCE_DBFS: f32 = -50.0;

/// Level in dBFS of the loudest 100 ms block of `samples` (16 kHz).
pub fn peak_level_dbfs(samples: &[f32]) -> f32 {
    const BLOCK: usize = 1_600;
    let loudest = samples
        .chunks(BLOCK)
        .map(|b| (b.iter().map(|s| s * s).sum::<f32>() / b.len() as f32).sqrt())
        .fold(0.0f32, f32::max);
    20.0 * loudest.max(1e-10).log10()
}

/// Where the time of one transcription went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SttTimings {
    pub front_end_s: f64,
    pub encoder_s: f64,
    pub decoder_s: f64,
    pub windows: usize,
    pub tokens: usize,
}

#[derive(Debug, Clone)]
pub struct Transcript {
    pub text: String,
    pub language: Option<String>,
    pub windows: Vec<WindowResult>,
    pub timings: SttTimings,
}

pub struct Transcriber {
    model: Whisper,
    tokens: WhisperTokens,
    filters: MelFilters,
    options: SttOptions,
}

impl Transcriber {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path, options: SttOptions, device: &Device) -> Result<Self, SttError> {
        let file = |name: &'static str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(SttError::MissingFile { dir: dir.to_path_buf(), file: name })
            }
        };
        let config = WhisperConfig::load(&file("config.json")?)?;
        let tokens = WhisperTokens::load(&file("tokenizer.json")?)?;
        let weights = file("model.safetensors")?;
        // f16 halves memory traffic on the GPU; CPU matmuls are fastest in f32.
        let dtype = if device.is_cuda() { DType::F16 } else { DType::F32 };
        let corrupt = |what: String| SttError::BadModel {
            path: weights.clone(),
            message: format!(
                "{what}; the file may be truncated or corrupt: run `wick models verify` and `wick models pull` again"
            ),
        };
        let bad = |e: candle_core::Error| corrupt(format!("cannot load Whisper weights ({e})"));
        let embed_is_f16 = embedding_is_f16(&weights).map_err(corrupt)?;
        // SAFETY: the file is memory-mapped read-only; wick's model store never rewrites a file
        // in place (updates land under a temporary name and are renamed over it).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(std::slice::from_ref(&weights), dtype, device) }
            .map_err(bad)?;
        let model = Whisper::load(vb, config, embed_is_f16).map_err(bad)?;
        if let Some(lang) = &options.language {
            if model.config.is_multilingual() && tokens.language(lang).is_none() {
                return Err(SttError::UnknownLanguage(lang.clone()));
            }
        }
        let filters = MelFilters::slaney(model.config.num_mel_bins);
        Ok(Self { model, tokens, filters, options })
    }

    pub fn is_multilingual(&self) -> bool {
        self.model.config.is_multilingual()
    }

    /// Transcribes 16 kHz mono audio of any length.
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript, SttError> {
        let mut timings = SttTimings::default();
        let t0 = Instant::now();
        let mel = mel::log_mel(samples, &self.filters);
        let loudness = mel.frame_loudness();
        timings.front_end_s = t0.elapsed().as_secs_f64();

        let mut decoder = WindowDecoder::new(&self.model, &self.tokens, &self.options.decode);
        let mut windows = Vec::new();
        let mut language = None;
        let mut seek = 0;
        while seek < mel.content_frames {
            let end = window_end(&loudness, seek, mel.content_frames);
            let window_audio = &samples[seek * mel::HOP..(end * mel::HOP).min(samples.len())];
            let level = peak_level_dbfs(window_audio);
            if level < self.options.silence_threshold_dbfs {
                tracing::debug!(seek_s = seek as f32 / 100.0, level_dbfs = level, "window below the silence threshold");
                windows.push(WindowResult::silence());
                seek = end;
                continue;
            }
            let t = Instant::now();
            let audio = self.model.encode(&mel.window(seek, end))?;
            let mut state = self.model.start_decoding(&audio)?;
            timings.encoder_s += t.elapsed().as_secs_f64();

            let t = Instant::now();
            let prompt = self.prompt(&mut state, &mut language)?;
            let result = decoder.decode(&mut state, &prompt)?;
            timings.decoder_s += t.elapsed().as_secs_f64();
            timings.tokens += result.tokens.len();
            tracing::debug!(
                seek_s = seek as f32 / 100.0,
                no_speech = result.no_speech_prob,
                avg_logprob = result.avg_logprob,
                temperature = result.temperature,
                compression = result.compression_ratio,
                silent = result.silent,
                text = %result.text,
                "decoded window"
            );
            windows.push(result);
            seek = end;
        }
        timings.windows = windows.len();
        let text = windows.iter().map(|w| w.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
        Ok(Transcript { text, language, windows, timings })
    }

    /// The start of the decoder's input: `<|startoftranscript|>`, and for multilingual models
    /// the language and task; then `<|notimestamps|>`.
    fn prompt(&self, state: &mut model::DecoderState, language: &mut Option<String>) -> Result<Vec<u32>, SttError> {
        let t = &self.tokens;
        let mut prompt = vec![t.sot];
        if self.is_multilingual() {
            let code = match &self.options.language {
                Some(code) => code.clone(),
                None => decode::detect_language(&self.model, t, state)?.unwrap_or_else(|| "en".into()),
            };
            prompt.push(t.language(&code).ok_or_else(|| SttError::UnknownLanguage(code.clone()))?);
            prompt.extend(t.transcribe);
            *language = Some(code);
        } else {
            *language = Some("en".into());
        }
        prompt.push(t.no_timestamps);
        Ok(prompt)
    }
}

/// Reads the safetensors header (which also checks that the file holds all the data it
/// declares) and tells whether the token embedding is stored in f16.
fn embedding_is_f16(path: &Path) -> Result<bool, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // SAFETY: read-only map of a file the store replaces only by rename.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
    let tensors =
        safetensors::SafeTensors::deserialize(&map).map_err(|e| format!("not a valid safetensors file ({e})"))?;
    let embed = tensors.tensor("model.decoder.embed_tokens.weight").map_err(|_| {
        "no tensor model.decoder.embed_tokens.weight: not a Whisper checkpoint in Hugging Face layout".to_string()
    })?;
    Ok(embed.dtype() == safetensors::Dtype::F16)
}

/// Where the window starting at `seek` ends: all remaining audio if it fits in 30 s, otherwise
/// the quietest 100 ms in the window's last 5 s, so words are rarely cut in half.
fn window_end(loudness: &[f32], seek: usize, content_frames: usize) -> usize {
    if content_frames - seek <= WINDOW_FRAMES {
        return content_frames;
    }
    const SEARCH: usize = 500;
    const SPAN: usize = 10;
    let lo = seek + WINDOW_FRAMES - SEARCH;
    (lo..seek + WINDOW_FRAMES - SPAN)
        .min_by(|&a, &b| {
            let sum = |s: usize| loudness[s..s + SPAN].iter().sum::<f32>();
            sum(a).total_cmp(&sum(b))
        })
        .map_or(seek + WINDOW_FRAMES, |s| s + SPAN / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cut_at_the_quietest_point_and_never_overrun() {
        let mut loudness = vec![1.0f32; 10_000];
        loudness[2700..2720].iter_mut().for_each(|l| *l = -1.0);
        let end = window_end(&loudness, 0, 10_000);
        assert!((2700..2720).contains(&end), "cut at {end}");
        assert_eq!(window_end(&loudness, 8000, 10_000), 10_000);
        let flat = vec![0.0f32; 7000];
        let end = window_end(&flat, 0, 7000);
        assert!(end > 2500 && end <= WINDOW_FRAMES);
    }

    #[test]
    fn peak_level_finds_the_loudest_block() {
        let mut samples = vec![1e-4f32; 16_000];
        assert!((peak_level_dbfs(&samples) + 80.0).abs() < 0.1);
        samples[8_000..9_600].iter_mut().for_each(|s| *s = 0.1);
        assert!((peak_level_dbfs(&samples) + 20.0).abs() < 0.1);
        assert!(peak_level_dbfs(&[]) <= -200.0);
    }
}
