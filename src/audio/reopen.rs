//! Keeping a sound device alive: a device that is missing at start or goes away later (a USB
//! microphone unplugged, a driver reloaded) is closed and reopened with backoff while the rest of
//! the appliance keeps running, and its state is shared for the supervisor to report.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::pcm::{CaptureKind, PcmError, PcmFormat, Playback, PlaybackKind, Stream, StreamKind};
use crate::config::{AudioConfig, PcmConfig};

/// Delay before the first retry: short enough that a replugged device is back almost at once.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The longest a read waits for a missing device before returning, so that the caller's loop
/// keeps handling its messages.
const POLL: Duration = Duration::from_millis(100);

/// When to try again: 0.25 s after the first failure, doubling up to a cap. Pure: the caller
/// passes the clock in.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff { first: FIRST_RETRY.min(max), max, failures: 0, next_attempt: None }
    }

    /// The backoff `audio.reopen_max_s` asks for.
    pub fn from_config(audio: &AudioConfig) -> Backoff {
        let max = if audio.reopen_max_s.is_finite() && audio.reopen_max_s > 0.0 {
            Duration::from_secs_f64(audio.reopen_max_s)
        } else {
            FIRST_RETRY
        };
        Backoff::new(max)
    }

    /// Records a failure at `now` and returns how long to wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        // 2^16 times the first delay is far past any sensible cap; stop doubling there.
        let delay = self.first.saturating_mul(1 << self.failures.min(16)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(now + delay);
        delay
    }

    /// Whether an attempt may be made at `now`: nothing failed yet, or the wait is over.
    pub fn ready(&self, now: Instant) -> bool {
        self.next_attempt.is_none_or(|at| now >= at)
    }

    pub fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Called on success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.next_attempt = None;
    }
}

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
    cfg: PcmConfig,
    audio: AudioConfig,
    device: Option<Stream<K>>,
    backoff: Backoff,
    state: Arc<Mutex<DeviceState>>,
    /// Open attempts that failed since the device was last open.
    attempts: u32,
    /// The last error logged, so that a device that stays missing is reported once, not per retry.
    last_error: Option<String>,
    was_open: bool,
    /// Xruns of devices closed before the current one.
    past_xruns: u64,
}

pub type ReopeningCapture = Reopening<CaptureKind>;
pub type ReopeningPlayback = Reopening<PlaybackKind>;

impl<K: StreamKind> Reopening<K> {
    /// Tries to open the device now; a failure is logged and retried later, never returned.
    pub fn new(cfg: &PcmConfig, audio: &AudioConfig) -> Reopening<K> {
        let mut r = Reopening {
            cfg: cfg.clone(),
            audio: audio.clone(),
            device: None,
            backoff: Backoff::from_config(audio),
            state: Arc::new(Mutex::new(DeviceState::Opening)),
            attempts: 0,
            last_error: None,
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
                self.last_error = None;
                self.was_open = true;
                true
            }
            Err(e) => {
                self.attempts += 1;
                let wait = self.backoff.failed(Instant::now());
                let error = e.to_string();
                if self.last_error.as_deref() != Some(error.as_str()) {
                    tracing::error!(
                        "{error}; retrying in {:.2} s, then at most every {:.1} s",
                        wait.as_secs_f64(),
                        self.backoff.max.as_secs_f64()
                    );
                } else {
                    tracing::debug!(
                        "{direction} device \"{name}\" still unavailable after {} attempts; retrying in {:.2} s",
                        self.attempts,
                        wait.as_secs_f64()
                    );
                }
                self.set_state(DeviceState::Unavailable { error: error.clone(), retry_in_s: wait.as_secs_f64() });
                self.last_error = Some(error);
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
        self.set_state(DeviceState::Unavailable { error: error.clone(), retry_in_s: wait.as_secs_f64() });
        self.last_error = Some(error);
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
    use crate::config::SampleFormat;

    #[test]
    fn backoff_doubles_from_a_quarter_second_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(b.ready(t0), "nothing failed yet");
        let waits: Vec<f64> = (0..9).map(|i| b.failed(t0 + Duration::from_secs(i)).as_secs_f64()).collect();
        assert_eq!(waits, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]);
        assert_eq!(b.failures(), 9);

        // The last failure was at t0 + 8 s and waits 10 s.
        let last = t0 + Duration::from_secs(8);
        assert_eq!(b.next_attempt(), Some(last + Duration::from_secs(10)));
        assert!(!b.ready(last + Duration::from_millis(9_999)));
        assert!(b.ready(last + Duration::from_secs(10)));

        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.ready(t0));
        assert_eq!(b.failed(t0), Duration::from_millis(250));
    }

    #[test]
    fn backoff_with_a_cap_below_the_first_retry_waits_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(b.failed(t0), Duration::from_millis(100));
        assert_eq!(b.failed(t0), Duration::from_millis(100));
    }

    #[test]
    fn backoff_survives_many_failures() {
        let mut b = Backoff::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let last = (0..1000).map(|_| b.failed(t0)).last().unwrap();
        assert_eq!(last, Duration::from_secs(3600));
    }

    #[test]
    fn backoff_from_config_uses_reopen_max_s() {
        let audio = AudioConfig { reopen_max_s: 2.0, ..AudioConfig::default() };
        let mut b = Backoff::from_config(&audio);
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..5).map(|_| b.failed(t0)).collect();
        assert_eq!(waits.last(), Some(&Duration::from_secs(2)));
    }

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
