//! Speech to text: Whisper on Candle. A voice activity detector finds the speech in the audio
//! (16 kHz mono); only that part, brought to a speaking level, goes through the log-mel front
//! end, the encoder (once per 30 s window) and the decoder, which writes text token by token
//! with a cached self-attention state. Longer audio is cut into windows at quiet moments.

pub mod activity;
mod attend;
pub mod bench;
pub mod config;
pub mod ct2;
pub mod decode;
mod dense;
pub mod level;
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

use self::activity::ActivityOptions;
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
    /// What counts as speech; only speech reaches the model.
    pub activity: ActivityOptions,
    /// The level (loudest 100 ms, dBFS) speech is brought to before Whisper hears it, within
    /// the activity's gain ceiling.
    pub speech_level_dbfs: f32,
    pub span: EncoderSpan,
    pub decode: DecodeOptions,
}

/// How much of each 30 s window the encoder hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderSpan {
    /// All 30 s, the speech followed by silence padding, as Whisper was trained.
    #[default]
    Window,
    /// The speech and a margin of padding, in whole seconds: the encoder's work shrinks with
    /// the question (a 3 s question costs about a quarter of a window), which a slow CPU or an
    /// emulated one needs. Whisper was trained on whole windows, so words can change; the
    /// idea is whisper.cpp's `audio_ctx`.
    Speech,
}

impl EncoderSpan {
    /// Padding heard after the speech with [`EncoderSpan::Speech`], in mel frames (10 ms).
    /// On the dev clips tiny.en's words are those of whole windows from 3 s on; with 2 s
    /// one clip (5.7 s) fell into a repetition loop, with 1 s one lost all its words.
    const SPEECH_MARGIN_FRAMES: usize = 400;

    /// The mel frames the encoder hears for `content` frames of audio: always even (the
    /// encoder's second convolution halves them), never more than a window.
    pub fn frames(self, content: usize) -> usize {
        match self {
            EncoderSpan::Window => WINDOW_FRAMES,
            EncoderSpan::Speech => {
                (content + Self::SPEECH_MARGIN_FRAMES).div_ceil(100).saturating_mul(100).min(WINDOW_FRAMES)
            }
        }
    }
}

impl Default for SttOptions {
    fn default() -> Self {
        Self {
            language: None,
            activity: ActivityOptions::default(),
            speech_level_dbfs: DEFAULT_SPEECH_LEVEL_DBFS,
            span: EncoderSpan::default(),
            decode: DecodeOptions::default(),
        }
    }
}

/// The dev clips' loudest 100 ms sit at -22..-13 dBFS as recorded. Speech is brought to the
/// bottom of that range: on the dev set, tiny.en's words change least there (a few dB either
/// way flips knife-edge words such as "ill-disposed"), and a loud voice is only made quieter.
pub const DEFAULT_SPEECH_LEVEL_DBFS: f32 = -22.0;

/// Where the time of one transcription went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SttTimings {
    /// Finding the speech (voice activity).
    pub vad_s: f64,
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
    /// Seconds of audio Whisper heard: the speech and its margins (0 when none was found).
    pub speech_s: f64,
    /// Seconds of audio the encoder ran over, padding included: 30 per window heard whole.
    pub encoded_s: f64,
    /// The gain the speech was heard with, in dB (0 when none was found).
    pub gain_db: f32,
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
        self.transcribe_watched(samples, &|| {})
    }

    /// [`Transcriber::transcribe`], calling `progress` before each window and for every
    /// decoded token: a long recording on a slow CPU is work, not a stuck stage.
    pub fn transcribe_watched(&self, samples: &[f32], progress: &dyn Fn()) -> Result<Transcript, SttError> {
        let mut timings = SttTimings::default();
        let t0 = Instant::now();
        let activity = &self.options.activity;
        let speech = activity::find_speech(samples, activity);
        let pad = activity.pad_ms as usize * mel::SAMPLE_RATE / 1_000;
        timings.vad_s = t0.elapsed().as_secs_f64();
        // The cut is put on the mel hop grid of the whole recording, so the frames Whisper sees
        // are those it would have seen untrimmed.
        let Some(extent) = speech.extent(pad, samples.len()).map(|e| e.start / mel::HOP * mel::HOP..e.end) else {
            tracing::debug!(audio_s = samples.len() as f64 / mel::SAMPLE_RATE as f64, "no speech found");
            return Ok(Transcript {
                text: String::new(),
                language: None,
                windows: Vec::new(),
                timings,
                speech_s: 0.0,
                encoded_s: 0.0,
                gain_db: 0.0,
            });
        };
        let gain_db = level::gain_db(
            level::loudest_block_dbfs(&samples[extent.clone()]),
            self.options.speech_level_dbfs,
            activity.max_gain_db,
        );
        // Speech that starts right at the beginning gets the margin in silence, so Whisper
        // always hears it the same way: its words can change with where in the window the
        // speech begins.
        let lead = pad.saturating_sub(speech.spans[0].start) / mel::HOP * mel::HOP;
        let mut audio = vec![0.0; lead];
        audio.extend(level::amplified(&samples[extent.clone()], gain_db));
        tracing::debug!(
            from_s = extent.start as f64 / mel::SAMPLE_RATE as f64,
            to_s = extent.end as f64 / mel::SAMPLE_RATE as f64,
            gain_db,
            "speech found"
        );

        let t0 = Instant::now();
        let mel = mel::log_mel(&audio, &self.filters);
        let loudness = mel.frame_loudness();
        timings.front_end_s = t0.elapsed().as_secs_f64();

        let mut decoder = WindowDecoder::new(&self.model, &self.tokens, &self.options.decode).with_progress(progress);
        let mut windows = Vec::new();
        let mut language = None;
        let mut seek = 0;
        let mut encoded_frames = 0;
        while seek < mel.content_frames {
            let end = window_end(&loudness, seek, mel.content_frames);
            // A window of a long recording with no speech in it is not worth the encoder.
            let in_recording = (extent.start + seek * mel::HOP).saturating_sub(lead)
                ..(extent.start + end * mel::HOP).saturating_sub(lead);
            if !speech.overlaps(&in_recording) {
                tracing::debug!(seek_s = seek as f32 / 100.0, "window without speech");
                windows.push(WindowResult::silence());
                seek = end;
                continue;
            }
            progress();
            let t = Instant::now();
            let frames = self.options.span.frames(end - seek);
            encoded_frames += frames;
            let encoded = self.model.encode(&mel.window(seek, end, frames), progress)?;
            let mut state = self.model.start_decoding(&encoded)?;
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
        let speech_s = audio.len() as f64 / mel::SAMPLE_RATE as f64;
        let encoded_s = encoded_frames as f64 / 100.0;
        Ok(Transcript { text, language, windows, timings, speech_s, encoded_s, gain_db })
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
    fn the_speech_span_is_whole_seconds_after_a_margin_and_never_more_than_a_window() {
        assert_eq!(EncoderSpan::Window.frames(120), WINDOW_FRAMES);
        assert_eq!(EncoderSpan::Speech.frames(0), 400);
        assert_eq!(EncoderSpan::Speech.frames(301), 800);
        assert_eq!(EncoderSpan::Speech.frames(2_700), WINDOW_FRAMES);
        assert_eq!(EncoderSpan::Speech.frames(WINDOW_FRAMES), WINDOW_FRAMES);
    }

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
}
