//! The `[audio]` table: which ALSA devices to open and how. Unset rate, channels and format are
//! the device's own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::{Backoff, FIRST_RETRY};
use crate::settings::{Checked, Invalid};

/// A sample format of a sound device, as ALSA names them (and so do `wick.toml` and reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SampleFormat {
    S16,
    S32,
    #[serde(rename = "FLOAT")]
    F32,
}

impl SampleFormat {
    /// The name `wick.toml` uses.
    pub fn name(self) -> &'static str {
        match self {
            SampleFormat::S16 => "S16",
            SampleFormat::S32 => "S32",
            SampleFormat::F32 => "FLOAT",
        }
    }
}

/// One sound device (capture or playback).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcmSettings {
    /// ALSA PCM name, e.g. "default", "plughw:CARD=Device", "dsnoop:CARD=mic".
    pub device: String,
    /// Frames per second; unset: the device's own (48000 when it takes any).
    pub rate: Option<u32>,
    /// 1 or 2 (stereo is downmixed on capture and duplicated on playback); unset: the device's own.
    pub channels: Option<u32>,
    /// Sample format; unset: the first the device takes of S16, S32, FLOAT.
    pub format: Option<SampleFormat>,
}

impl Default for PcmSettings {
    fn default() -> Self {
        Self { device: "default".into(), rate: None, channels: None, format: None }
    }
}

impl PcmSettings {
    /// `key` is the device's table within `[audio]` ("capture" or "playback").
    fn check(&self, key: &'static str) -> Checked {
        if self.device.trim().is_empty() {
            return Err(Invalid::new(key, "has an empty device; name an ALSA PCM such as \"default\""));
        }
        if let Some(rate) = self.rate.filter(|r| !(8_000..=192_000).contains(r)) {
            return Err(Invalid::new(key, format!("rate is {rate}; use 8000..=192000 Hz")));
        }
        if let Some(channels) = self.channels.filter(|c| !(1..=2).contains(c)) {
            return Err(Invalid::new(key, format!("channels is {channels}; use 1 or 2")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub capture: PcmSettings,
    pub playback: PcmSettings,
    /// One ALSA period in milliseconds: the step at which audio is read, written and cancelled.
    pub period_ms: u32,
    /// Periods in the device buffer.
    pub buffer_periods: u32,
    /// Longest wait between attempts to reopen a device that is missing or went away.
    pub reopen_max_s: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            capture: PcmSettings::default(),
            playback: PcmSettings::default(),
            period_ms: 20,
            buffer_periods: 4,
            reopen_max_s: 10.0,
        }
    }
}

impl Settings {
    pub fn check(&self) -> Checked {
        self.capture.check("capture")?;
        self.playback.check("playback")?;
        if !(1..=200).contains(&self.period_ms) {
            return Err(Invalid::new("period_ms", format!("is {}; use 1..=200 (20 is usual)", self.period_ms)));
        }
        if !(2..=64).contains(&self.buffer_periods) {
            return Err(Invalid::new("buffer_periods", format!("is {}; use 2..=64", self.buffer_periods)));
        }
        if !(self.reopen_max_s >= 0.1 && self.reopen_max_s <= 3600.0) {
            return Err(Invalid::new("reopen_max_s", format!("is {}; use 0.1..=3600 seconds", self.reopen_max_s)));
        }
        Ok(())
    }

    /// The pauses between attempts to reopen a device, growing up to `reopen_max_s`.
    pub fn reopen_backoff(&self) -> Backoff {
        let max = if self.reopen_max_s.is_finite() && self.reopen_max_s > 0.0 {
            Duration::from_secs_f64(self.reopen_max_s)
        } else {
            FIRST_RETRY
        };
        Backoff::new(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_reopen_backoff_stops_growing_at_reopen_max_s() {
        let audio = Settings { reopen_max_s: 2.0, ..Settings::default() };
        let mut b = audio.reopen_backoff();
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..5).map(|_| b.failed(t0)).collect();
        assert_eq!(waits.last(), Some(&Duration::from_secs(2)));
    }

    #[test]
    fn bad_devices_are_named_by_their_table() {
        let mut s = Settings::default();
        s.playback.rate = Some(100);
        assert_eq!(s.check().unwrap_err().key, "playback");
        let mut s = Settings::default();
        s.capture.device = " ".into();
        assert_eq!(s.check().unwrap_err().key, "capture");
    }
}
