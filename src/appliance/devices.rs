//! The ALSA microphone and loudspeaker as pipeline stages. Both keep running when their device
//! is missing or goes away: reads and writes report it, the devices reopen themselves.

use std::sync::{Arc, Mutex};

use crate::audio::{DeviceState, ReopeningCapture, ReopeningPlayback, Settings};
use crate::pipeline::{Captured, Loudspeaker, Microphone, StageResult};

pub struct AlsaMicrophone(ReopeningCapture);

impl AlsaMicrophone {
    /// Opens the configured capture device, or starts retrying it (the error is logged).
    pub fn new(audio: &Settings) -> Self {
        Self(ReopeningCapture::new(&audio.capture, audio))
    }

    pub fn state(&self) -> Arc<Mutex<DeviceState>> {
        self.0.state()
    }
}

impl Microphone for AlsaMicrophone {
    fn rate(&self) -> Option<u32> {
        self.0.format().map(|f| f.rate)
    }

    fn read(&mut self, out: &mut Vec<f32>) -> StageResult<Captured> {
        Ok(if self.0.read(out)? { Captured::Audio } else { Captured::Unavailable })
    }
}

pub struct AlsaLoudspeaker(ReopeningPlayback);

impl AlsaLoudspeaker {
    pub fn new(audio: &Settings) -> Self {
        Self(ReopeningPlayback::new(&audio.playback, audio))
    }

    pub fn state(&self) -> Arc<Mutex<DeviceState>> {
        self.0.state()
    }
}

impl Loudspeaker for AlsaLoudspeaker {
    fn rate(&self) -> Option<u32> {
        self.0.format().map(|f| f.rate)
    }

    fn period_frames(&self) -> usize {
        self.0.format().map_or(960, |f| f.period_frames)
    }

    fn play(&mut self, samples: &[f32]) -> StageResult<bool> {
        Ok(self.0.write(samples)?)
    }

    fn stop(&mut self) {
        if let Err(e) = self.0.stop() {
            tracing::warn!("stopping playback: {e}");
        }
    }

    fn drain(&mut self) {
        if let Err(e) = self.0.drain() {
            tracing::warn!("draining playback: {e}");
        }
    }

    fn idle(&mut self) {
        self.0.check();
    }
}
