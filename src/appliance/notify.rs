//! systemd's notify protocol, for `Type=notify` with `WatchdogSec=`: READY=1 once the
//! appliance can answer (models loaded, sound devices open), STATUS= lines with its state,
//! WATCHDOG=1 at half the interval, STOPPING=1 at the end. Outside systemd (no NOTIFY_SOCKET)
//! every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Notifier {
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    ready: bool,
}

impl Notifier {
    pub fn from_env() -> Self {
        let watchdog = sd_notify::watchdog_enabled();
        if let Some(w) = watchdog {
            tracing::info!(interval_s = w.as_secs_f64(), "systemd watchdog enabled: pinging at half the interval");
        }
        Self { watchdog, last_ping: None, ready: false }
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("telling systemd {states:?}: {e}");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// READY=1, once.
    pub fn ready(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        }
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// WATCHDOG=1 when half the interval has passed. Called from the supervisor's loop, so a
    /// stuck supervisor stops the pings and systemd restarts the appliance.
    pub fn tick(&mut self, now: Instant) {
        let Some(interval) = self.watchdog else { return };
        if self.last_ping.is_none_or(|last| now.saturating_duration_since(last) >= interval / 2) {
            self.last_ping = Some(now);
            self.send(&[NotifyState::Watchdog]);
        }
    }
}
