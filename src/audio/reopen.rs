//! Keeping a sound device alive: a device that is missing at start or goes away later (a USB
//! microphone unplugged, a driver reloaded) is closed and reopened with backoff (`crate::retry`)
//! while the rest of the appliance keeps running, and its state is shared for the supervisor to
//! report.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::pcm::{CaptureKind, PcmError, PcmFormat, Playback, PlaybackKind, Stream, StreamKind};
use super::settings::{PcmSettings, Settings};
use crate::retry::{Backoff, Repeats};

/// The longest a read waits for a missing device before returning, so that the caller's loop
/// keeps handling its messages.
const POLL: Duration = Duration::from_millis(100);

/// A device's state as the supervisor reports it, e.g. `{"state":"unavailable","error":"...","retry_in_s":0.5}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum DeviceState {
    Opening,
    Open(PcmFormat),
    /// `retry_in_s` is the wait that was scheduled when the state was last updated.
    Unavailable {
        error: String,
        retry_in_s: f64,
    },
}

/// A device that is opened again, with [`Backoff`], whenever it is missing or goes away.
pub struct Reopening<K: StreamKind> {
    cfg: PcmSettings,
    audio: Settings,
    device: Option<Stream<K>>,
    backoff: Backoff,
    state: Arc<Mutex<DeviceState>>,
    /// Open attempts that failed since the device was last open.
    attempts: u32,
    /// So that a device that stays missing is reported once, not per retry.
    repeats: Repeats,
    was_open: bool,
    /// Xruns of devices closed before the current one.
    past_xruns: u64,
}

pub type ReopeningCapture = Reopening<CaptureKind>;
pub type ReopeningPlayback = Reopening<PlaybackKind>;

impl<K: StreamKind> Reopening<K> {
    /// Tries to open the device now; a failure is logged and retried later, never returned.
    pub fn new(cfg: &PcmSettings, audio: &Settings) -> Reopening<K> {
        let mut r = Reopening {
            cfg: cfg.clone(),
            audio: audio.clone(),
            device: None,
            backoff: audio.reopen_backoff(),
            state: Arc::new(Mutex::new(DeviceState::Opening)),
            attempts: 0,
            repeats: Repeats::default(),
            was_open: false,
            past_xruns: 0,
        };
        r.try_open();
        r
    }

    /// Shared with the supervisor, which reports it.
    pub fn state(&self) -> Arc<Mutex<DeviceState>> {
        Arc::clone(&self.state)
    }

    /// The agreed format while the device is open.
    pub fn format(&self) -> Option<PcmFormat> {
        self.device.as_ref().map(Stream::format)
    }

    pub fn is_open(&self) -> bool {
        self.device.is_some()
    }

    /// Open attempts that failed since the device was last open (0 while it is open).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Xruns recovered over every device opened so far.
    pub fn xruns(&self) -> u64 {
        self.past_xruns + self.device.as_ref().map_or(0, Stream::xruns)
    }

    fn set_state(&self, state: DeviceState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// Opens the device if it is closed and the backoff allows; true when it is open.
    fn ensure_open(&mut self, wait: bool) -> bool {
        if self.device.is_some() {
            return true;
        }
        if let Some(at) = self.backoff.next_attempt() {
            let now = Instant::now();
            if at > now {
                if !wait {
                    return false;
                }
                std::thread::sleep((at - now).min(POLL));
                if !self.backoff.ready(Instant::now()) {
                    return false;
                }
            }
        }
        self.try_open()
    }

    fn try_open(&mut self) -> bool {
        let direction = K::DIRECTION;
        let name = &self.cfg.device;
        match Stream::<K>::open(&self.cfg, &self.audio) {
            Ok(device) => {
                let format = device.format();
                if self.was_open || self.attempts > 0 {
                    tracing::info!(
                        "{direction} device \"{name}\" is back after {} attempt{}: {format}",
                        self.attempts + 1,
                        if self.attempts == 0 { "" } else { "s" }
                    );
                } else {
                    tracing::info!("{direction} device \"{name}\" open: {format}");
                }
                self.set_state(DeviceState::Open(format));
                self.device = Some(device);
                self.backoff.reset();
                self.attempts = 0;
                self.repeats.clear();
                self.was_open = true;
                true
            }
            Err(e) => {
                self.attempts += 1;
                let wait = self.backoff.failed(Instant::now());
                let error = e.to_string();
                if self.repeats.is_new(&error) {
                    tracing::error!(
                        "{error}; retrying in {:.2} s, then at most every {:.1} s",
                        wait.as_secs_f64(),
                        self.backoff.max().as_secs_f64()
                    );
                } else {
                    tracing::debug!(
                        "{direction} device \"{name}\" still unavailable after {} attempts; retrying in {:.2} s",
                        self.attempts,
                        wait.as_secs_f64()
                    );
                }
                self.set_state(DeviceState::Unavailable { error, retry_in_s: wait.as_secs_f64() });
                false
            }
        }
    }

    /// Handles an error from the open device: a device that went away is closed and reopened
    /// later; anything else is the caller's.
    fn handle(&mut self, e: PcmError) -> Result<(), PcmError> {
        if !matches!(e, PcmError::Gone { .. }) {
            return Err(e);
        }
        if let Some(device) = self.device.take() {
            self.past_xruns += device.xruns();
        }
        let wait = self.backoff.failed(Instant::now());
        let error = e.to_string();
        tracing::error!("{error}; reopening in {:.2} s", wait.as_secs_f64());
        // Said now; the same reason from the reopening attempts is not said again.
        self.repeats.is_new(&error);
        self.set_state(DeviceState::Unavailable { error, retry_in_s: wait.as_secs_f64() });
        Ok(())
    }
}

impl ReopeningCapture {
    /// Ok(true): one period appended to `out`. Ok(false): no device; returned within about
    /// 100 ms, after an attempt to reopen it if one was due.
    pub fn read(&mut self, out: &mut Vec<f32>) -> Result<bool, PcmError> {
        if !self.ensure_open(true) {
            return Ok(false);
        }
        let device = self.device.as_mut().expect("ensure_open returned true");
        match device.read(out) {
            Ok(()) => Ok(true),
            Err(e) => self.handle(e).map(|()| false),
        }
    }
}

impl ReopeningPlayback {
    /// Ok(true): `mono` was queued. Ok(false): no device, `mono` was dropped. Does not wait for a
    /// missing device (there is nothing to pace), but reopens it when the backoff allows.
    pub fn write(&mut self, mono: &[f32]) -> Result<bool, PcmError> {
        if !self.ensure_open(false) {
            return Ok(false);
        }
        let device = self.device.as_mut().expect("ensure_open returned true");
        match device.write(mono) {
            Ok(()) => Ok(true),
            Err(e) => self.handle(e).map(|()| false),
        }
    }

    /// While nothing plays: closes a device that went away (so the kernel can free its card)
    /// and reopens a missing one when the backoff allows, so `status` tells the truth between
    /// answers too.
    pub fn check(&mut self) {
        match self.device.as_ref().map(Playback::check) {
            Some(Err(e)) => {
                // Only Gone comes from check().
                let _ = self.handle(e);
            }
            Some(Ok(())) => {}
            None => {
                self.ensure_open(false);
            }
        }
    }

    /// Drops what is queued; nothing to do without a device.
    pub fn stop(&mut self) -> Result<(), PcmError> {
        match self.device.as_mut().map(Playback::stop) {
            Some(Err(e)) => self.handle(e),
            _ => Ok(()),
        }
    }

    /// Waits until what is queued has played; nothing to do without a device.
    pub fn drain(&mut self) -> Result<(), PcmError> {
        match self.device.as_mut().map(Playback::drain) {
            Some(Err(e)) => self.handle(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::SampleFormat;

    #[test]
    fn device_state_serializes_as_tagged_json() {
        let open =
            DeviceState::Open(PcmFormat { rate: 16_000, channels: 1, format: SampleFormat::S16, period_frames: 320 });
        assert_eq!(
            serde_json::to_value(&open).unwrap(),
            serde_json::json!({"state": "open", "rate": 16000, "channels": 1, "format": "S16", "period_frames": 320})
        );
        let gone = DeviceState::Unavailable { error: "cannot open".into(), retry_in_s: 0.5 };
        assert_eq!(
            serde_json::to_value(&gone).unwrap(),
            serde_json::json!({"state": "unavailable", "error": "cannot open", "retry_in_s": 0.5})
        );
        assert_eq!(serde_json::to_value(DeviceState::Opening).unwrap(), serde_json::json!({"state": "opening"}));
    }
}
