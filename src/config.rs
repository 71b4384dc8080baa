//! `wick.toml`: the appliance's settings. Each table belongs to the room it configures
//! (`[audio]` is `audio::Settings`, `[stt]` is `stt::Settings`, ...), which defines its keys,
//! defaults and limits; this file reads the TOML, composes the tables and reports an error
//! with the key's full name. Every key is optional and documented in `wick.example.toml`;
//! unknown keys and out-of-range values are errors that name the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::device::DeviceChoice;
use crate::settings::{Checked, Invalid};
use crate::{audio, input, llm, models, pipeline, stt, tts};

/// Where the device's config lives; used when `--config` is not given and the file exists.
pub const SYSTEM_CONFIG: &str = "/etc/wick/wick.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config {}: `{key}` {message}", path.display())]
    Invalid { path: PathBuf, key: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub models: models::Settings,
    pub stt: stt::Settings,
    pub llm: llm::Settings,
    pub tts: tts::Settings,
    pub audio: audio::Settings,
    pub input: input::Settings,
    pub runtime: Runtime,
}

/// The `[runtime]` table: what all three engines share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// CPU threads for inference; 0 uses every core.
    pub threads: usize,
    /// Compute device: "cpu", "cuda", "cuda:N", or "auto" (CUDA when built with it and present).
    pub device: DeviceChoice,
    /// A stage silent this long (seconds) is stuck: the turn ends and wick exits for systemd to
    /// restart it.
    pub stage_stall_s: f64,
}

impl Default for Runtime {
    fn default() -> Self {
        Self { threads: 0, device: DeviceChoice::default(), stage_stall_s: 20.0 }
    }
}

impl Runtime {
    fn check(&self) -> Checked {
        if self.threads > 1024 {
            return Err(Invalid::new("threads", format!("is {}; use 0 for all cores or a core count", self.threads)));
        }
        if !(1.0..=600.0).contains(&self.stage_stall_s) {
            return Err(Invalid::new(
                "stage_stall_s",
                format!(
                    "is {}; use 1..=600 seconds, longer than the slowest step (a 30 s window of Whisper, a \
                     voice chunk)",
                    self.stage_stall_s
                ),
            ));
        }
        Ok(())
    }
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

    /// Asks each table's room whether its values are usable; the first refusal is the error.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let tables: [(&str, Checked); 7] = [
            ("models", self.models.check()),
            ("stt", self.stt.check()),
            ("tts", self.tts.check()),
            ("llm", self.llm.check()),
            ("audio", self.audio.check()),
            ("input", self.input.check()),
            ("runtime", self.runtime.check()),
        ];
        for (table, checked) in tables {
            if let Err(Invalid { key, message }) = checked {
                return Err(ConfigError::Invalid { path: path.into(), key: format!("{table}.{key}"), message });
            }
        }
        Ok(())
    }

    /// The pipeline's timing, from `[input]` (what a press means and how long one may record)
    /// and `[runtime]` (when a stage is stuck).
    pub fn pipeline_settings(&self) -> pipeline::Settings {
        let i = &self.input;
        pipeline::Settings {
            recorder: pipeline::RecorderSettings {
                preroll: Duration::from_millis(i.preroll_ms),
                max_record: Duration::from_secs_f64(i.max_record_s),
            },
            tap: Duration::from_millis(i.tap_ms),
            stall: Duration::from_secs_f64(self.runtime.stage_stall_s),
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
        assert_eq!(c.stt.vad_threshold, d.stt.vad_threshold);
        assert_eq!(c.runtime.threads, d.runtime.threads);
        assert_eq!(c.runtime.device, d.runtime.device);
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
        assert_eq!(c.llm.generate_options().sampling, d.llm.generate_options().sampling);
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
    fn the_device_is_cpu_cuda_or_cuda_n() {
        assert_eq!(parse("").unwrap().runtime.device, DeviceChoice::Auto);
        assert_eq!(parse("[runtime]\ndevice = \"cpu\"\n").unwrap().runtime.device, DeviceChoice::Cpu);
        assert_eq!(parse("[runtime]\ndevice = \"cuda:1\"\n").unwrap().runtime.device, DeviceChoice::Cuda(1));
        let e = parse("[runtime]\ndevice = \"gpu\"\n").unwrap_err().to_string();
        assert!(e.contains("device") && e.contains("\"gpu\"") && e.contains("cuda:N"), "{e}");
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
            ("[models]\nset = \"\"\n", "models.set"),
            ("[stt]\nno_speech_threshold = 1.5\n", "stt.no_speech_threshold"),
            ("[stt]\ntemperatures = []\n", "stt.temperatures"),
            ("[stt]\nlanguage = \"English\"\n", "stt.language"),
            ("[stt]\nmax_tokens = 0\n", "stt.max_tokens"),
            ("[stt]\nmax_gain_db = 90.0\n", "stt.max_gain_db"),
            ("[stt]\nvad_threshold = 1.5\n", "stt.vad_threshold"),
            ("[tts]\nlength_scale = 0.0\n", "tts.length_scale"),
            ("[tts]\nespeak_voice = \" \"\n", "tts.espeak_voice"),
            ("[runtime]\nthreads = 100000\n", "runtime.threads"),
            ("[audio.capture]\nchannels = 6\n", "audio.capture"),
            ("[audio.playback]\nrate = 100\n", "audio.playback"),
            ("[audio]\nperiod_ms = 0\n", "audio.period_ms"),
            ("[input]\nmax_record_s = 0.5\n", "input.max_record_s"),
            ("[input]\ndebounce_ms = 5000\n", "input.debounce_ms"),
            ("[input]\nbutton = \"gpio\"\ngpio_line = \"\"\n", "input.gpio_line"),
            ("[llm]\ntop_p = 0.0\n", "llm.top_p"),
            ("[llm]\ncontext = 100\nmax_tokens = 200\n", "llm.max_tokens"),
            ("[llm]\nrepeat_penalty = 0.5\n", "llm.repeat_penalty"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text:?} gave {e}");
        }
        let e = parse("[stt]\nmax_tokens = \"many\"\n").unwrap_err().to_string();
        assert!(e.contains("max_tokens"), "{e}");
    }
}
