//! Getting a lost device back: the growing pause between attempts and the rule for what the
//! log says about them. Sound devices (`audio`) and buttons (`input`) both go missing (a USB
//! microphone unplugged, a driver reloaded); both retry the same way, so a device that stays
//! missing costs next to nothing and fills no log.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Delay before the first retry: short enough that a replugged device is back almost at once.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);

/// When to try again: [`FIRST_RETRY`] after the first failure, doubling up to a cap. Pure: the
/// caller passes the clock in.
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

    /// The longest pause.
    pub fn max(&self) -> Duration {
        self.max
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

/// The last error said about a device, so that one that persists is logged once at error
/// level and then only at debug level: the same reason again every few seconds is noise.
#[derive(Debug, Default)]
pub struct Repeats {
    last: Option<String>,
}

impl Repeats {
    /// Whether `error` differs from the one before (then say it out loud); remembers it.
    pub fn is_new(&mut self, error: &str) -> bool {
        if self.last.as_deref() == Some(error) {
            return false;
        }
        self.last = Some(error.to_string());
        true
    }

    /// Forgets the last error (the device works again).
    pub fn clear(&mut self) {
        self.last = None;
    }
}

/// Calls `open` until it succeeds, pausing by `backoff` before each attempt (the device was
/// just lost, so the first attempt waits too). Each new reason is logged at error level as
/// "`what` still unavailable: reason", a repeated one at debug level; success is logged too.
/// Blocks the calling thread: for devices that have a thread of their own.
pub fn until_open<T, E: Display>(what: &str, backoff: &mut Backoff, mut open: impl FnMut() -> Result<T, E>) -> T {
    let mut repeats = Repeats::default();
    loop {
        std::thread::sleep(backoff.failed(Instant::now()));
        match open() {
            Ok(device) => {
                backoff.reset();
                tracing::info!("{what} is back");
                return device;
            }
            Err(e) => {
                let e = e.to_string();
                if repeats.is_new(&e) {
                    tracing::error!("{what} still unavailable: {e}");
                } else {
                    tracing::debug!("{what} still unavailable: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_reason_is_new_once_until_another_comes_or_it_is_cleared() {
        let mut r = Repeats::default();
        assert!(r.is_new("unplugged"));
        assert!(!r.is_new("unplugged"));
        assert!(r.is_new("permission denied"));
        assert!(r.is_new("unplugged"));
        r.clear();
        assert!(r.is_new("unplugged"));
    }

    #[test]
    fn until_open_retries_with_growing_pauses_until_it_works() {
        let mut backoff = Backoff::new(Duration::from_millis(40));
        let mut tries = 0;
        let start = Instant::now();
        let got = until_open("test device", &mut backoff, || {
            tries += 1;
            if tries < 4 {
                Err(format!("attempt {tries} failed"))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(got, 4);
        // Four pauses before four attempts, each at least the capped 40 ms.
        assert!(start.elapsed() >= Duration::from_millis(160), "{:?}", start.elapsed());
        assert_eq!(backoff.failures(), 0, "success resets the backoff");
    }
}
