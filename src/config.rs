//! `wick.toml`: the appliance's settings. Every key is optional and documented in
//! `wick.example.toml`; unknown keys and out-of-range values are errors that name the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the device's config lives; used when `--config` is not given and the file exists.
pub const SYSTEM_CONFIG: &str = "/etc/wick/wick.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config {}: `{key}` {message}", path.display())]
    Invalid { path: PathBuf, key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub models: ModelsConfig,
    pub stt: SttConfig,
    pub llm: LlmConfig,
    pub tts: TtsConfig,
    pub audio: AudioConfig,
    pub input: InputConfig,
    pub runtime: RuntimeConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
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

impl Default for LlmConfig {
    fn default() -> Self {
        let s = crate::llm::sampling::SamplingOptions::default();
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

impl LlmConfig {
    /// How long a conversation may sit idle before it is forgotten (`None`: never).
    pub fn idle_reset(&self) -> Option<std::time::Duration> {
        (self.idle_reset_s > 0).then(|| std::time::Duration::from_secs(self.idle_reset_s))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Model data directory; `--models-dir` and `WICK_MODELS` take precedence.
    pub dir: Option<PathBuf>,
    /// Model set to run (`default` or `test`); unset picks `default` when it is pulled, else `test`.
    pub set: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SttConfig {
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

impl Default for SttConfig {
    fn default() -> Self {
        let d = crate::stt::decode::DecodeOptions::default();
        Self {
            model_dir: None,
            language: "en".into(),
            temperatures: d.temperatures,
            compression_ratio_threshold: d.compression_ratio_threshold,
            logprob_threshold: d.logprob_threshold,
            no_speech_threshold: d.no_speech_threshold,
            max_tokens: d.max_tokens,
            silence_threshold_dbfs: crate::stt::DEFAULT_SILENCE_DBFS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtsConfig {
    /// A Piper voice (`.onnx.json`) to use instead of the model set's.
    pub voice: Option<PathBuf>,
    /// Overrides of the voice file's inference settings.
    pub noise_scale: Option<f32>,
    pub length_scale: Option<f32>,
    pub noise_w: Option<f32>,
    /// Speaker of a multi-speaker voice: an id (`3`) or a name from its speaker_id_map
    /// (`"p239"`); none is speaker 0.
    pub speaker: Option<crate::tts::voice::SpeakerChoice>,
    /// Seeds the voice's noise: the same text sounds the same every time.
    pub seed: u64,
    /// espeak-ng voice of the fallback synthesizer (and of phonemes when the voice file names none).
    pub espeak_voice: String,
}

impl Default for TtsConfig {
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

/// A sample format of a sound device, as ALSA names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SampleFormat {
    S16,
    S32,
    #[serde(rename = "FLOAT")]
    F32,
}

/// One sound device (capture or playback).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcmConfig {
    /// ALSA PCM name, e.g. "default", "plughw:CARD=Device", "dsnoop:CARD=mic".
    pub device: String,
    /// Frames per second; unset: the device's own (48000 when it takes any).
    pub rate: Option<u32>,
    /// 1 or 2 (stereo is downmixed on capture and duplicated on playback); unset: the device's own.
    pub channels: Option<u32>,
    /// Sample format; unset: the first the device takes of S16, S32, FLOAT.
    pub format: Option<SampleFormat>,
}

impl Default for PcmConfig {
    fn default() -> Self {
        Self { device: "default".into(), rate: None, channels: None, format: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    pub capture: PcmConfig,
    pub playback: PcmConfig,
    /// One ALSA period in milliseconds: the step at which audio is read, written and cancelled.
    pub period_ms: u32,
    /// Periods in the device buffer.
    pub buffer_periods: u32,
    /// Longest wait between attempts to reopen a device that is missing or went away.
    pub reopen_max_s: f64,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            capture: PcmConfig::default(),
            playback: PcmConfig::default(),
            period_ms: 20,
            buffer_periods: 4,
            reopen_max_s: 10.0,
        }
    }
}

/// Which push-to-talk button `wick run` listens to (the control socket always works too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ButtonKind {
    /// No hardware button: the control socket (and stdin with `wick run --stdin`) only.
    None,
    /// A GPIO line through the kernel's character device.
    Gpio,
    /// A key of an input device (gpio-keys overlay, USB button, keyboard).
    Evdev,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    pub button: ButtonKind,
    /// GPIO chip by label ("tegra234-gpio") or path ("/dev/gpiochip0").
    pub gpio_chip: String,
    /// GPIO line by name ("PQ.05", header pin 29 on the Orin NX devkit) or offset ("105").
    pub gpio_line: String,
    /// The line reads low while the button is held (a button to ground with a pull-up).
    pub active_low: bool,
    /// Edges closer together than this are one (kernel debounce on GPIO, the same in software for every source).
    pub debounce_ms: u64,
    /// Input device by path ("/dev/input/event3") or by name ("gpio-keys").
    pub evdev_device: String,
    /// Key code name, e.g. "KEY_PROG1", "BTN_0", "KEY_SPACE".
    pub evdev_key: String,
    /// Control socket (`press`, `release`, `tap`, `status` lines); unset: $XDG_RUNTIME_DIR/wick/control.sock,
    /// or /run/wick/control.sock.
    pub socket: Option<std::path::PathBuf>,
    /// Group that may use the control socket (mode 0660); unset: the process's group.
    pub socket_group: Option<String>,
    /// A press shorter than this while thinking or speaking only stops the answer.
    pub tap_ms: u64,
    /// Audio kept from before the press, so the first syllable is not lost.
    pub preroll_ms: u64,
    /// A recording ends by itself after this long.
    pub max_record_s: f64,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            button: ButtonKind::None,
            gpio_chip: "tegra234-gpio".into(),
            gpio_line: "PQ.05".into(),
            active_low: true,
            debounce_ms: 25,
            evdev_device: "gpio-keys".into(),
            evdev_key: "KEY_PROG1".into(),
            socket: None,
            socket_group: None,
            tap_ms: 150,
            preroll_ms: 300,
            max_record_s: 30.0,
        }
    }
}

impl InputConfig {
    /// The control socket's path: configured, else in the user's runtime directory, else /run/wick.
    pub fn socket_path(&self) -> std::path::PathBuf {
        if let Some(p) = &self.socket {
            return p.clone();
        }
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => Path::new(&dir).join("wick/control.sock"),
            _ => PathBuf::from("/run/wick/control.sock"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// CPU threads for inference; 0 uses every core.
    pub threads: usize,
}

impl Config {
    /// Loads `explicit` if given (it must exist), else the system config if present, else defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Self::from_file(path),
            None if Path::new(SYSTEM_CONFIG).is_file() => Self::from_file(Path::new(SYSTEM_CONFIG)),
            None => Ok(Config::default()),
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string().trim_end().to_string() })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { path: path.into(), key, message });
        if let Some(set) = &self.models.set {
            if set.is_empty() {
                return invalid("models.set", "must name a model set, e.g. \"default\" or \"test\"".into());
            }
        }
        let s = &self.stt;
        let lang_ok = s.language == "auto"
            || (2..=3).contains(&s.language.len()) && s.language.chars().all(|c| c.is_ascii_lowercase());
        if !lang_ok {
            return invalid(
                "stt.language",
                format!("is {:?}; use a language code such as \"en\", or \"auto\"", s.language),
            );
        }
        if s.temperatures.is_empty() || s.temperatures.iter().any(|t| !(0.0..=2.0).contains(t)) {
            return invalid(
                "stt.temperatures",
                format!("is {:?}; give one or more values in 0.0..=2.0, e.g. [0.0, 0.2, 0.4]", s.temperatures),
            );
        }
        if !(0.0..=1.0).contains(&s.no_speech_threshold) {
            return invalid(
                "stt.no_speech_threshold",
                format!("is {}; it is a probability in 0.0..=1.0", s.no_speech_threshold),
            );
        }
        if s.compression_ratio_threshold.is_nan() || s.compression_ratio_threshold <= 0.0 {
            return invalid(
                "stt.compression_ratio_threshold",
                format!("is {}; it must be positive (Whisper uses 2.4)", s.compression_ratio_threshold),
            );
        }
        if s.logprob_threshold.is_nan() || s.logprob_threshold > 0.0 {
            return invalid(
                "stt.logprob_threshold",
                format!("is {}; a log-probability is at most 0 (Whisper uses -1.0)", s.logprob_threshold),
            );
        }
        if !(1..=440).contains(&s.max_tokens) {
            return invalid(
                "stt.max_tokens",
                format!("is {}; use 1..=440 (the decoder holds 448 positions)", s.max_tokens),
            );
        }
        if !(-120.0..=0.0).contains(&s.silence_threshold_dbfs) {
            return invalid(
                "stt.silence_threshold_dbfs",
                format!("is {}; use a level in -120.0..=0.0 dBFS (-120 turns the gate off)", s.silence_threshold_dbfs),
            );
        }
        let t = &self.tts;
        for (key, value, positive) in [
            ("tts.noise_scale", t.noise_scale, false),
            ("tts.noise_w", t.noise_w, false),
            ("tts.length_scale", t.length_scale, true),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
                    let what = if positive { "a positive number (1.0 is normal speed)" } else { "0 or more" };
                    return invalid(key, format!("is {v}; use {what}"));
                }
            }
        }
        if t.espeak_voice.trim().is_empty() {
            return invalid("tts.espeak_voice", "is empty; name an espeak-ng voice such as \"en-us\"".into());
        }
        let l = &self.llm;
        if !(16..=131_072).contains(&l.context) {
            return invalid(
                "llm.context",
                format!("is {}; use 16..=131072 tokens (2048 suits a voice assistant)", l.context),
            );
        }
        if l.max_tokens == 0 || l.max_tokens >= l.context {
            return invalid(
                "llm.max_tokens",
                format!("is {}; use 1 up to less than llm.context ({})", l.max_tokens, l.context),
            );
        }
        if !(0.0..=5.0).contains(&l.temperature) {
            return invalid("llm.temperature", format!("is {}; use 0.0 (greedy) ..= 5.0", l.temperature));
        }
        if !(l.top_p > 0.0 && l.top_p <= 1.0) {
            return invalid("llm.top_p", format!("is {}; use a probability in (0.0, 1.0]", l.top_p));
        }
        if !(l.repeat_penalty >= 1.0 && l.repeat_penalty <= 10.0) {
            return invalid("llm.repeat_penalty", format!("is {}; use 1.0 (off) ..= 10.0", l.repeat_penalty));
        }
        let a = &self.audio;
        for (key, pcm) in [("audio.capture", &a.capture), ("audio.playback", &a.playback)] {
            if pcm.device.trim().is_empty() {
                return invalid(key, "has an empty device; name an ALSA PCM such as \"default\"".into());
            }
            if pcm.rate.is_some_and(|r| !(8_000..=192_000).contains(&r)) {
                return invalid(key, format!("rate is {}; use 8000..=192000 Hz", pcm.rate.unwrap_or(0)));
            }
            if pcm.channels.is_some_and(|c| !(1..=2).contains(&c)) {
                return invalid(key, format!("channels is {}; use 1 or 2", pcm.channels.unwrap_or(0)));
            }
        }
        if !(1..=200).contains(&a.period_ms) {
            return invalid("audio.period_ms", format!("is {}; use 1..=200 (20 is usual)", a.period_ms));
        }
        if !(2..=64).contains(&a.buffer_periods) {
            return invalid("audio.buffer_periods", format!("is {}; use 2..=64", a.buffer_periods));
        }
        if !(a.reopen_max_s >= 0.1 && a.reopen_max_s <= 3600.0) {
            return invalid("audio.reopen_max_s", format!("is {}; use 0.1..=3600 seconds", a.reopen_max_s));
        }
        let i = &self.input;
        if i.button == ButtonKind::Gpio && (i.gpio_chip.trim().is_empty() || i.gpio_line.trim().is_empty()) {
            return invalid("input.gpio_line", "and input.gpio_chip must name the button's line and chip".into());
        }
        if i.button == ButtonKind::Evdev && (i.evdev_device.trim().is_empty() || i.evdev_key.trim().is_empty()) {
            return invalid("input.evdev_key", "and input.evdev_device must name the button's key and device".into());
        }
        if i.debounce_ms > 1000 {
            return invalid("input.debounce_ms", format!("is {}; use 0..=1000 (25 is usual)", i.debounce_ms));
        }
        if i.tap_ms > 2000 {
            return invalid("input.tap_ms", format!("is {}; use 0..=2000 (150 is usual)", i.tap_ms));
        }
        if i.preroll_ms > 5000 {
            return invalid("input.preroll_ms", format!("is {}; use 0..=5000", i.preroll_ms));
        }
        if !(i.max_record_s >= 1.0 && i.max_record_s <= 600.0) {
            return invalid("input.max_record_s", format!("is {}; use 1..=600 seconds", i.max_record_s));
        }
        if self.runtime.threads > 1024 {
            return invalid(
                "runtime.threads",
                format!("is {}; use 0 for all cores or a core count", self.runtime.threads),
            );
        }
        Ok(())
    }

    /// Generation options from `[llm]`.
    pub fn generate_options(&self) -> crate::llm::engine::GenerateOptions {
        let l = &self.llm;
        crate::llm::engine::GenerateOptions {
            max_tokens: l.max_tokens,
            sampling: crate::llm::sampling::SamplingOptions {
                temperature: l.temperature,
                top_k: l.top_k,
                top_p: l.top_p,
                repeat_penalty: l.repeat_penalty,
                seed: l.seed,
                ..Default::default()
            },
        }
    }

    /// Decoding options for the transcriber, from `[stt]`.
    pub fn stt_options(&self) -> crate::stt::SttOptions {
        let s = &self.stt;
        crate::stt::SttOptions {
            language: (s.language != "auto").then(|| s.language.clone()),
            silence_threshold_dbfs: s.silence_threshold_dbfs,
            decode: crate::stt::decode::DecodeOptions {
                temperatures: s.temperatures.clone(),
                compression_ratio_threshold: s.compression_ratio_threshold,
                logprob_threshold: s.logprob_threshold,
                no_speech_threshold: s.no_speech_threshold,
                max_tokens: s.max_tokens,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("wick.toml"))
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let example = include_str!("../wick.example.toml");
        let c = parse(example).expect("the example config must be valid");
        let d = Config::default();
        assert_eq!(c.stt.temperatures, d.stt.temperatures);
        assert_eq!(c.stt.no_speech_threshold, d.stt.no_speech_threshold);
        assert_eq!(c.stt.max_tokens, d.stt.max_tokens);
        assert_eq!(c.stt.silence_threshold_dbfs, d.stt.silence_threshold_dbfs);
        assert_eq!(c.runtime.threads, d.runtime.threads);
        assert_eq!(c.audio.capture.device, d.audio.capture.device);
        assert_eq!(
            (c.audio.period_ms, c.audio.buffer_periods, c.audio.reopen_max_s),
            (d.audio.period_ms, d.audio.buffer_periods, d.audio.reopen_max_s)
        );
        assert_eq!(c.input.button, d.input.button);
        assert_eq!(
            (c.input.debounce_ms, c.input.tap_ms, c.input.preroll_ms),
            (d.input.debounce_ms, d.input.tap_ms, d.input.preroll_ms)
        );
        assert_eq!((c.input.max_record_s, c.input.active_low), (d.input.max_record_s, d.input.active_low));
        assert_eq!((&c.input.gpio_chip, &c.input.gpio_line), (&d.input.gpio_chip, &d.input.gpio_line));
        assert_eq!(c.llm.system, d.llm.system);
        assert_eq!(c.generate_options().sampling, d.generate_options().sampling);
        assert_eq!((c.llm.context, c.llm.max_tokens), (d.llm.context, d.llm.max_tokens));
    }

    #[test]
    fn a_speaker_is_an_id_or_a_name() {
        use crate::tts::voice::SpeakerChoice;
        assert_eq!(parse("[tts]\nspeaker = 3\n").unwrap().tts.speaker, Some(SpeakerChoice::Id(3)));
        assert_eq!(parse("[tts]\nspeaker = \"p239\"\n").unwrap().tts.speaker, Some(SpeakerChoice::Name("p239".into())));
        assert_eq!(parse("").unwrap().tts.speaker, None);
        let e = parse("[tts]\nspeaker = 1.5\n").unwrap_err().to_string();
        assert!(e.contains("speaker"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[stt]\nlanguag = \"en\"\n").unwrap_err().to_string();
        assert!(e.contains("languag") && e.contains("wick.toml"), "{e}");
        let e = parse("[sst]\n").unwrap_err().to_string();
        assert!(e.contains("sst"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("[stt]\nno_speech_threshold = 1.5\n", "stt.no_speech_threshold"),
            ("[stt]\ntemperatures = []\n", "stt.temperatures"),
            ("[stt]\nlanguage = \"English\"\n", "stt.language"),
            ("[stt]\nmax_tokens = 0\n", "stt.max_tokens"),
            ("[stt]\nsilence_threshold_dbfs = 3.0\n", "stt.silence_threshold_dbfs"),
            ("[runtime]\nthreads = 100000\n", "runtime.threads"),
            ("[audio.capture]\nchannels = 6\n", "audio.capture"),
            ("[audio.playback]\nrate = 100\n", "audio.playback"),
            ("[audio]\nperiod_ms = 0\n", "audio.period_ms"),
            ("[input]\nmax_record_s = 0.5\n", "input.max_record_s"),
            ("[input]\ndebounce_ms = 5000\n", "input.debounce_ms"),
            ("[llm]\ntop_p = 0.0\n", "llm.top_p"),
            ("[llm]\ncontext = 100\nmax_tokens = 200\n", "llm.max_tokens"),
            ("[llm]\nrepeat_penalty = 0.5\n", "llm.repeat_penalty"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?} gave {e}");
        }
        let e = parse("[stt]\nmax_tokens = \"many\"\n").unwrap_err().to_string();
        assert!(e.contains("max_tokens"), "{e}");
    }
}
