//! Audio in and out: WAV files, resampling to the rates the stages need, and the sound devices
//! themselves. ALSA capture and playback move mono `f32` one period at a time at the device's
//! rate (`pcm`); a device that is missing or goes away is reopened with backoff (`reopen`); and
//! `devices` lists and probes devices for `wick doctor`.

mod convert;
pub mod devices;
mod pcm;
mod reopen;
mod resample;
mod settings;
mod wav;

pub use devices::{CardInfo, PcmHint};
pub use pcm::{Capture, CaptureKind, Direction, PcmError, PcmFormat, Playback, PlaybackKind, Stream, StreamKind};
pub use reopen::{DeviceState, Reopening, ReopeningCapture, ReopeningPlayback};
pub use resample::{resample, Converter, ResampleError};
pub use settings::{PcmSettings, SampleFormat, Settings};
pub use wav::{read_wav_mono, write_wav_mono_f32, write_wav_mono_i16, AudioError, MonoAudio};

/// The rate Whisper's front end is built for.
pub const STT_SAMPLE_RATE: u32 = 16_000;

/// Reads any supported WAV file and returns mono samples at 16 kHz, ready for speech-to-text.
pub fn load_for_stt(path: &std::path::Path) -> Result<Vec<f32>, AudioError> {
    let audio = read_wav_mono(path)?;
    resample(&audio.samples, audio.sample_rate, STT_SAMPLE_RATE)
        .map_err(|e| AudioError::Resample { path: path.to_path_buf(), message: e.to_string() })
}
