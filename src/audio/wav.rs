//! WAV decoding through hound, with the checks an appliance needs before audio reaches a model:
//! a supported rate, a known sample format, at least one sample.

use std::path::{Path, PathBuf};

/// Rates accepted from files; outside this range the input is almost surely not speech audio.
const MIN_RATE: u32 = 8_000;
const MAX_RATE: u32 = 48_000;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: no such file; check the path", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a readable WAV file ({message}); convert it, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`", path.display())]
    NotWav { path: PathBuf, message: String },
    #[error("{}: unsupported WAV format: {message}; use 16/24/32-bit integer or 32-bit float PCM", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: sample rate {rate} Hz is outside the supported 8000..=48000 Hz", path.display())]
    Rate { path: PathBuf, rate: u32 },
    #[error("{}: the WAV file holds no audio samples", path.display())]
    Empty { path: PathBuf },
    #[error("{}: resampling failed: {message}", path.display())]
    Resample { path: PathBuf, message: String },
    #[error("{}: cannot write WAV: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// Mono audio at its original rate.
#[derive(Debug, Clone)]
pub struct MonoAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the file before downmixing.
    pub channels: u16,
}

impl MonoAudio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// Reads a WAV file (mono or multi-channel, integer or float PCM) and averages the channels.
pub fn read_wav_mono(path: &Path) -> Result<MonoAudio, AudioError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AudioError::NotFound { path: path.to_path_buf() },
        _ => AudioError::Io { path: path.to_path_buf(), source: e },
    })?;
    let reader = hound::WavReader::new(std::io::BufReader::new(file))
        .map_err(|e| AudioError::NotWav { path: path.to_path_buf(), message: e.to_string() })?;
    let spec = reader.spec();
    if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
        return Err(AudioError::Rate { path: path.to_path_buf(), rate: spec.sample_rate });
    }
    if spec.channels == 0 {
        return Err(AudioError::Format { path: path.to_path_buf(), message: "zero channels".into() });
    }
    let interleaved = decode_samples(path, reader)?;
    let channels = spec.channels as usize;
    let samples: Vec<f32> =
        interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect();
    if samples.is_empty() {
        return Err(AudioError::Empty { path: path.to_path_buf() });
    }
    Ok(MonoAudio { samples, sample_rate: spec.sample_rate, channels: spec.channels })
}

fn decode_samples<R: std::io::Read>(path: &Path, reader: hound::WavReader<R>) -> Result<Vec<f32>, AudioError> {
    let spec = reader.spec();
    let bad = |e: hound::Error| AudioError::NotWav { path: path.to_path_buf(), message: e.to_string() };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(bad),
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader.into_samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>().map_err(bad)
        }
        (format, bits) => {
            Err(AudioError::Format { path: path.to_path_buf(), message: format!("{bits}-bit {format:?}") })
        }
    }
}

/// Writes mono float samples as a 32-bit float WAV, through a temporary name so a reader never
/// sees a half-written file.
pub fn write_wav_mono_f32(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), AudioError> {
    write_wav_mono(path, samples, sample_rate, hound::SampleFormat::Float)
}

/// Writes mono samples in [-1, 1] as a 16-bit WAV (what players and ALSA take everywhere),
/// clipping anything outside.
pub fn write_wav_mono_i16(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), AudioError> {
    write_wav_mono(path, samples, sample_rate, hound::SampleFormat::Int)
}

fn write_wav_mono(
    path: &Path,
    samples: &[f32],
    sample_rate: u32,
    format: hound::SampleFormat,
) -> Result<(), AudioError> {
    let err = |message: String| AudioError::Write { path: path.to_path_buf(), message };
    let tmp = path.with_extension("wav.tmp");
    let bits_per_sample = if format == hound::SampleFormat::Float { 32 } else { 16 };
    let spec = hound::WavSpec { channels: 1, sample_rate, bits_per_sample, sample_format: format };
    let mut writer = hound::WavWriter::create(&tmp, spec).map_err(|e| err(e.to_string()))?;
    for &s in samples {
        let written = if format == hound::SampleFormat::Float {
            writer.write_sample(s)
        } else {
            writer.write_sample((s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16)
        };
        written.map_err(|e| err(e.to_string()))?;
    }
    writer.finalize().map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}
