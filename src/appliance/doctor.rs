//! `wick doctor`: checks that the configured appliance can run here (sound devices, the
//! button, CUDA, the model files and their checksums, the memory the models need) and says
//! what to fix. Each finding is one line; any failure makes the command exit non-zero.

use std::path::Path;

use serde::Serialize;

use super::assemble::{Assembly, ModelPaths};
use crate::config::Config;
use crate::input::ButtonKind;
use crate::tts::voice::{model_path, settings_path, VoiceConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Works as configured.
    Ok,
    /// For information (what is there to choose from).
    Info,
    /// Works, but not as well as it could.
    Warn,
    /// The configured appliance cannot run until this is fixed.
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub area: &'static str,
    pub level: Level,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, area: &'static str, level: Level, what: impl Into<String>, fix: Option<String>) {
        self.findings.push(Finding { area, level, what: what.into(), fix });
    }

    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Fail)
    }
}

/// The appliance's resident memory target (DESIGN.md: voice budget).
pub const MEMORY_BUDGET_BYTES: u64 = 3_500_000_000;

/// Checks the appliance `assembly` puts together: the model files are the ones it would load.
pub fn run(assembly: &Assembly) -> Report {
    let mut r = Report::default();
    let config = &assembly.config;
    settings(&mut r, config);
    sound(&mut r, config);
    button(&mut r, config);
    slots(&mut r);
    let on_gpu = gpu(&mut r, assembly);
    let models = assembly.model_paths();
    model_files(&mut r, &models);
    voice_speaker(&mut r, config, &models);
    memory(&mut r, config, &models, on_gpu);
    r
}

/// Which files the settings came from, so a surprising value can be traced to its file.
fn settings(r: &mut Report, config: &Config) {
    let what = match config.sources.as_slice() {
        [] => format!("built-in defaults (no {} or {})", crate::config::SYSTEM_CONFIG, crate::config::LOCAL_CONFIG),
        sources => {
            let names: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
            format!("settings from {}", names.join(", then "))
        }
    };
    r.add("config", Level::Info, what, None);
}

fn sound(r: &mut Report, config: &Config) {
    use crate::audio::devices::{cards, pcm_hints, probe};
    use crate::audio::Direction;
    let found = cards();
    if found.is_empty() {
        r.add("audio", Level::Info, "no sound cards (no /proc/asound/cards entries)", None);
    }
    for c in &found {
        r.add("audio", Level::Info, format!("card {}: {} ({})", c.index, c.id, c.name), None);
    }
    for (direction, pcm) in [(Direction::Capture, &config.audio.capture), (Direction::Playback, &config.audio.playback)]
    {
        let names: Vec<String> = pcm_hints(direction).into_iter().map(|h| h.name).collect();
        r.add(
            "audio",
            Level::Info,
            format!("{direction} PCMs: {}", if names.is_empty() { "none".into() } else { names.join(", ") }),
            None,
        );
        match probe(pcm, &config.audio, direction) {
            Ok(f) => r.add(
                "audio",
                Level::Ok,
                format!(
                    "{direction} device {:?} opens: {} Hz, {} channel(s), {:?}, {} frames per period",
                    pcm.device, f.rate, f.channels, f.format, f.period_frames
                ),
                None,
            ),
            // The error names the device and the key to change.
            Err(e) => r.add("audio", Level::Fail, e.to_string(), None),
        }
    }
}

fn button(r: &mut Report, config: &Config) {
    use crate::input::{find_line, list_chips, list_devices, parse_key};
    let i = &config.input;
    let chips = list_chips();
    for c in &chips {
        match &c.error {
            None => r.add(
                "button",
                Level::Info,
                format!("GPIO chip {} ({}): {} lines", c.path.display(), c.label, c.lines),
                None,
            ),
            Some(e) => r.add("button", Level::Info, format!("GPIO chip {}: {e}", c.path.display()), None),
        }
    }
    let devices = list_devices();
    for d in devices.iter().filter(|d| d.keys > 0 || d.error.is_some()) {
        match &d.error {
            None => r.add(
                "button",
                Level::Info,
                format!("input device {} ({:?}): {} keys", d.path.display(), d.name, d.keys),
                None,
            ),
            Some(e) => r.add("button", Level::Info, format!("input device {}: {e}", d.path.display()), None),
        }
    }
    match i.button {
        ButtonKind::None => r.add(
            "button",
            Level::Warn,
            format!(
                "no hardware button is configured (input.button = \"none\"): only the control socket {} works",
                i.socket_path().display()
            ),
            Some("set input.button = \"gpio\" or \"evdev\" for a push-to-talk button".into()),
        ),
        ButtonKind::Gpio => match find_line(&i.gpio_chip, &i.gpio_line) {
            Ok(line) if line.used && line.consumer != "wick" => r.add(
                "button",
                Level::Fail,
                format!(
                    "GPIO line {} ({:?}) on {} is held by {:?}",
                    line.offset,
                    line.name,
                    line.chip_path.display(),
                    line.consumer
                ),
                Some(
                    "free the line (stop that program, or fix the device tree) or pick another input.gpio_line".into(),
                ),
            ),
            Ok(line) => r.add(
                "button",
                Level::Ok,
                format!(
                    "button: GPIO line {} ({:?}) on {} ({}), active {}",
                    line.offset,
                    line.name,
                    line.chip_path.display(),
                    line.chip_label,
                    if i.active_low { "low" } else { "high" }
                ),
                None,
            ),
            Err(e) => r.add("button", Level::Fail, e.to_string(), None),
        },
        ButtonKind::Evdev => {
            let key = parse_key(&i.evdev_key);
            let device = devices.iter().find(|d| d.name == i.evdev_device || d.path == Path::new(&i.evdev_device));
            match (key, device) {
                (Err(e), _) => r.add("button", Level::Fail, e.to_string(), None),
                (Ok(_), None) => r.add(
                    "button",
                    Level::Fail,
                    format!("input device {:?} not found", i.evdev_device),
                    Some("set input.evdev_device to one of the devices above (name or /dev/input/event* path)".into()),
                ),
                (Ok(_), Some(d)) => r.add(
                    "button",
                    Level::Ok,
                    format!("button: key {} of {} ({:?})", i.evdev_key, d.path.display(), d.name),
                    None,
                ),
            }
        }
    }
}

/// Reports the compute device the models would run on (opening it, as loading them would);
/// true when that is a GPU.
fn gpu(r: &mut Report, assembly: &Assembly) -> bool {
    let choice = assembly.device_choice();
    let device = match assembly.device() {
        Ok(d) => d,
        Err(e) => {
            r.add(
                "gpu",
                Level::Fail,
                format!("compute device ({choice}, from runtime.device or --device): {e}"),
                Some("set runtime.device to \"cpu\", or to a CUDA device this machine has".into()),
            );
            return false;
        }
    };
    let name = crate::device::describe(device);
    if device.is_cuda() {
        let what = match crate::device::gpu_info(device) {
            Some(g) => format!(
                "{}, compute capability {}.{}, {:.0} of {:.0} MiB free",
                g.name, g.compute_capability.0, g.compute_capability.1, g.free_mib, g.total_mib
            ),
            None => "the driver does not say which GPU it is".into(),
        };
        r.add("gpu", Level::Ok, format!("CUDA device {name} ({what}): models run on the GPU"), None);
    } else if !cfg!(feature = "cuda") {
        r.add(
            "gpu",
            Level::Warn,
            "built without CUDA: models run on the CPU",
            Some("build with `cargo build --release --features cuda` on a machine with the CUDA toolkit".into()),
        );
    } else if choice == crate::device::DeviceChoice::Cpu {
        r.add("gpu", Level::Info, "runtime.device (or --device) is cpu: models run on the CPU", None);
    } else {
        // `auto` fell back to the CPU; opening cuda:0 again says why.
        let why = match crate::device::open(crate::device::DeviceChoice::Cuda(0)) {
            Err(e) => e.to_string(),
            Ok(_) => "it opened on a second try".into(),
        };
        r.add("gpu", Level::Warn, format!("built with CUDA, but models run on the CPU: {why}"), None);
    }
    device.is_cuda()
}

/// The voice's speakers, and whether `tts.speaker` is one of them: a wrong one would leave
/// the appliance speaking with espeak-ng.
fn voice_speaker(r: &mut Report, config: &Config, m: &ModelPaths) {
    let Ok(path) = &m.tts else { return };
    let voice = match VoiceConfig::read(&settings_path(path)) {
        Ok(v) => v,
        Err(e) => {
            let fix = format!("run `wick models pull --set {}`, or point tts.voice at a Piper .onnx.json", m.set);
            return r.add("models", Level::Warn, format!("tts: {e}"), Some(fix));
        }
    };
    let speakers = voice.num_speakers.max(1) as usize;
    match voice.speaker_id(config.tts.speaker.as_ref(), speakers) {
        Ok(id) if speakers > 1 => {
            r.add("models", Level::Ok, format!("tts: speaker {id} of the voice's {speakers}"), None)
        }
        Ok(_) => {}
        Err(e) => r.add(
            "models",
            Level::Warn,
            format!("tts.speaker: {e}"),
            Some("fix tts.speaker in wick.toml; until then wick speaks with espeak-ng".into()),
        ),
    }
}

fn model_files(r: &mut Report, m: &ModelPaths) {
    for (role, path) in [("stt", &m.stt), ("llm", &m.llm), ("tts", &m.tts)] {
        match path {
            Ok(p) => r.add("models", Level::Ok, format!("{role}: {}", p.display()), None),
            Err(e) => {
                let level = if role == "tts" { Level::Warn } else { Level::Fail };
                let fix = format!("run `wick models pull --set {}`, or set the model in wick.toml", m.set);
                r.add("models", level, format!("{role}: {e}"), Some(fix));
            }
        }
    }
    match &m.checksums {
        Ok(files) => {
            let bad: Vec<_> = files.iter().filter(|f| f.2.is_some()).collect();
            if bad.is_empty() {
                r.add(
                    "models",
                    Level::Ok,
                    format!("{} files of set {:?} match their sha256", files.len(), m.set),
                    None,
                );
            }
            for (role, name, problem) in bad {
                r.add(
                    "models",
                    Level::Fail,
                    format!("{role} file {name}: {}", problem.as_deref().unwrap_or("")),
                    Some(format!("run `wick models pull --set {}` to fetch it again", m.set)),
                );
            }
        }
        Err(e) => r.add("models", Level::Fail, format!("cannot check the model files: {e}"), None),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Total memory of this machine, from /proc/meminfo.
fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn memory(r: &mut Report, config: &Config, m: &ModelPaths, on_gpu: bool) {
    let mut parts: Vec<(String, u64)> = Vec::new();
    if let Ok(dir) = &m.stt {
        // Whisper's f16 weights are widened to f32 on the CPU.
        let weights = file_size(&dir.join("model.safetensors"));
        parts.push(("Whisper weights".into(), if on_gpu { weights } else { weights * 2 }));
    }
    if let Ok(path) = &m.llm {
        parts.push(("LLM weights (quantized, memory-mapped)".into(), file_size(path)));
        match crate::llm::GgufFile::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| crate::llm::model::LlamaConfig::from_gguf(&f.content))
        {
            Ok(c) => {
                let context = config.llm.context.min(c.context_length) as u64;
                // The model keeps its KV cache in f16 on a GPU, f32 on the CPU.
                let (width, dtype) = if on_gpu { (2, "f16") } else { (4, "f32") };
                let kv = 2 * c.n_layer as u64 * context * (c.n_kv_head * c.head_dim) as u64 * width;
                parts.push((format!("KV cache ({context} tokens, {dtype})"), kv));
            }
            Err(e) => r.add("memory", Level::Warn, format!("cannot read the LLM's shape for the KV cache: {e}"), None),
        }
    }
    if let Ok(voice) = &m.tts {
        // tts.voice may name either file; the weights are the .onnx.
        let onnx = model_path(&settings_path(voice)).unwrap_or_default();
        parts.push(("voice weights".into(), file_size(&onnx)));
    }
    let total: u64 = parts.iter().map(|p| p.1).sum();
    let mb = |b: u64| b as f64 / 1e6;
    let detail = parts.iter().map(|(n, b)| format!("{n} {:.0} MB", mb(*b))).collect::<Vec<_>>().join(", ");
    let budget_gb = MEMORY_BUDGET_BYTES as f64 / 1e9;
    let level = if total > MEMORY_BUDGET_BYTES { Level::Warn } else { Level::Ok };
    r.add(
        "memory",
        level,
        format!(
            "the configured models need about {:.0} MB before working memory ({detail}); the appliance's budget is {budget_gb:.1} GB",
            mb(total)
        ),
        (level == Level::Warn).then(|| "use a smaller model or a shorter llm.context".to_string()),
    );
    if let Some(mem) = mem_total() {
        if total > mem * 9 / 10 {
            r.add(
                "memory",
                Level::Fail,
                format!("this machine has {:.0} MB: the models do not fit", mb(mem)),
                Some("use the smaller models (models.set = \"test\") or a shorter llm.context".into()),
            );
        }
    }
}

/// The root slots and the health gate's last verdict, on an image with RAUC (`/etc/rauc/system.conf`).
fn slots(r: &mut Report) {
    if !Path::new("/etc/rauc/system.conf").exists() {
        r.add("update", Level::Info, "no /etc/rauc/system.conf: not an appliance image, no A/B updates here", None);
        return;
    }
    match super::rauc::status() {
        Ok(status) => {
            r.add("update", Level::Ok, format!("booted slot {} ({})", status.booted, status.compatible), None);
            for line in status.lines() {
                r.add("update", Level::Info, line, None);
            }
        }
        Err(e) => r.add(
            "update",
            Level::Warn,
            format!("cannot read the slots: {e}"),
            Some("check `systemctl status rauc` and `journalctl -u rauc`".into()),
        ),
    }
    if let Some(h) = std::fs::read_to_string(super::gate::REPORT)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    {
        let verdict = h["verdict"].as_str().unwrap_or("?");
        let level = if verdict == "failed" || verdict == "rolled-back" { Level::Warn } else { Level::Ok };
        let problems: Vec<_> = h["problems"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
        r.add(
            "update",
            level,
            format!(
                "health gate: {verdict} on slot {}{}",
                h["slot"].as_str().unwrap_or("?"),
                if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) }
            ),
            (level == Level::Warn)
                .then(|| "the update was rolled back: see `journalctl -u wick-health` for why".into()),
        );
    }
}
