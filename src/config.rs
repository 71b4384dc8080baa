//! `wick.toml`: the appliance's settings. Each table belongs to the room it configures
//! (`[audio]` is `audio::Settings`, `[stt]` is `stt::Settings`, ...), which defines its keys,
//! defaults and limits; this file reads the TOML, composes the tables and reports an error
//! with the key's full name. Every key is optional and documented in `wick.example.toml`;
//! unknown keys and out-of-range values are errors that name the key.
//!
//! On a device the settings come in two layers: the image's `/etc/wick/wick.toml` (the board's
//! defaults, replaced by every update) and the owner's `/data/wick/wick.toml` on the data
//! partition (kept across updates), whose keys override the first file's one by one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::device::DeviceChoice;
use crate::settings::{Checked, Invalid};
use crate::{audio, input, llm, models, pipeline, stt, tts};

/// Where the device's config lives; used when `--config` is not given and the file exists.
pub const SYSTEM_CONFIG: &str = "/etc/wick/wick.toml";
/// The owner's changes to it, on the data partition so that updates keep them; read after
/// [`SYSTEM_CONFIG`] when `--config` is not given and the file exists.
pub const LOCAL_CONFIG: &str = "/data/wick/wick.toml";

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
    /// The files these settings came from, in the order they were applied (none: defaults).
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
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
    /// Loads `explicit` if given (it must exist), else the system config and the local one
    /// over it, each if present, else defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Self::from_file(path),
            None => {
                let present: Vec<&Path> =
                    [SYSTEM_CONFIG, LOCAL_CONFIG].into_iter().map(Path::new).filter(|p| p.is_file()).collect();
                Self::from_layers(&present)
            }
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Self::from_layers(&[path])
    }

    /// Reads each file in turn, a later file's keys replacing an earlier one's (tables merge key
    /// by key; any other value, arrays included, is replaced whole). Each file must be valid on
    /// its own terms (syntax, known keys, types) and is named in its errors; the values are
    /// checked once merged. No files: the defaults.
    pub fn from_layers(paths: &[&Path]) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        for path in paths {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
            let table = Self::parse_table(&text, path)?;
            merge(&mut merged, table);
        }
        let name = match paths {
            [] => PathBuf::from("(defaults)"),
            [one] => one.to_path_buf(),
            [below @ .., last] => {
                let below: Vec<String> = below.iter().map(|p| p.display().to_string()).collect();
                PathBuf::from(format!("{} (over {})", last.display(), below.join(", ")))
            }
        };
        let mut config = Self::from_table(merged, &name)?;
        config.sources = paths.iter().map(|p| p.to_path_buf()).collect();
        Ok(config)
    }

    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::from_table(Self::parse_table(text, path)?, path)
    }

    /// One file's table, checked for syntax, unknown keys and types (not yet for values, which
    /// may depend on another file's).
    fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
        // Parsed as a Config from the text, so that an error points at its line and column.
        toml::from_str::<Config>(text).map_err(|e| parse_error(path, e))?;
        toml::from_str(text).map_err(|e| parse_error(path, e))
    }

    fn from_table(table: toml::Table, path: &Path) -> Result<Config, ConfigError> {
        let config = Config::deserialize(table).map_err(|e| parse_error(path, e))?;
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

fn parse_error(path: &Path, e: toml::de::Error) -> ConfigError {
    ConfigError::Parse { path: path.into(), message: e.to_string().trim_end().to_string() }
}

/// Lays `over` onto `base`: tables merge key by key, any other value replaces the one below.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
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

    #[test]
    fn a_local_file_overrides_the_system_file_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("etc.toml");
        let local = dir.path().join("data.toml");
        std::fs::write(&system, "[input]\nbutton = \"gpio\"\ngpio_chip = \"twin-gpio\"\n[llm]\ncontext = 1024\n")
            .unwrap();
        std::fs::write(&local, "[input]\nbutton = \"evdev\"\n[llm]\nmax_tokens = 1000\n").unwrap();
        let c = Config::from_layers(&[&system, &local]).unwrap();
        assert_eq!(c.input.button, input::ButtonKind::Evdev);
        assert_eq!(c.input.gpio_chip, "twin-gpio", "keys the local file leaves alone stay the system file's");
        assert_eq!((c.llm.context, c.llm.max_tokens), (1024, 1000));
        assert_eq!(c.sources, vec![system.clone(), local.clone()]);

        // Each file is checked on its own for keys and types, and named.
        std::fs::write(&local, "[input]\nbuton = \"evdev\"\n").unwrap();
        let e = Config::from_layers(&[&system, &local]).unwrap_err().to_string();
        assert!(e.contains("data.toml") && e.contains("buton"), "{e}");
        // Values are checked once merged: 1024 tokens of context cannot hold 2000-token answers.
        std::fs::write(&local, "[llm]\nmax_tokens = 2000\n").unwrap();
        let e = Config::from_layers(&[&system, &local]).unwrap_err().to_string();
        assert!(e.contains("data.toml (over ") && e.contains("etc.toml") && e.contains("`llm.max_tokens`"), "{e}");
        assert_eq!(Config::from_layers(&[]).unwrap().sources, Vec::<PathBuf>::new());
    }
}
