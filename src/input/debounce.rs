//! Software debouncing of a button's raw edges, the same for every source. Pure and
//! deterministic: it never reads the clock, the caller passes every Instant, so the tests can
//! replay exact bounce patterns.
//!
//! A change is accepted the moment it is seen (a press must not wait out the window: it would
//! cut the first syllable), then edges are ignored for `window`, because a contact bounces
//! right after it moves. The raw level keeps being tracked meanwhile, so if the contact settled
//! on the other level (a burst ending released), [`Debouncer::poll`] accepts that once the
//! window is over.

use std::time::{Duration, Instant};

/// Turns a button's raw edges into accepted level changes. Starts released.
#[derive(Debug, Clone)]
pub struct Debouncer {
    window: Duration,
    /// The level last reported to the caller.
    accepted: bool,
    /// The level the last edge said the contact is at.
    raw: bool,
    /// When the accepted level last changed; edges within `window` after it are bounce.
    changed_at: Option<Instant>,
}

impl Debouncer {
    /// A debouncer that ignores edges for `window` after each accepted change (zero: none).
    pub fn new(window: Duration) -> Self {
        Debouncer { window, accepted: false, raw: false, changed_at: None }
    }

    /// The accepted level: true while the button counts as held.
    pub fn pressed(&self) -> bool {
        self.accepted
    }

    /// Feeds a raw edge seen at `at`; returns the new level if this edge changes it.
    ///
    /// Edges must come in time order. Call [`poll`](Self::poll) by [`deadline`](Self::deadline),
    /// or a change that settled during the window waits until the next edge.
    pub fn edge(&mut self, pressed: bool, at: Instant) -> Option<bool> {
        self.raw = pressed;
        if self.in_window(at) || pressed == self.accepted {
            return None;
        }
        Some(self.accept(at))
    }

    /// When [`poll`](Self::poll) must be called: the end of the window, if the raw level has
    /// settled away from the accepted one during it. `None`: nothing pending.
    pub fn deadline(&self) -> Option<Instant> {
        match self.changed_at {
            Some(t) if self.raw != self.accepted => Some(t + self.window),
            _ => None,
        }
    }

    /// Accepts a level that settled during the window, once the window is over at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<bool> {
        match self.deadline() {
            Some(deadline) if now >= deadline => Some(self.accept(now)),
            _ => None,
        }
    }

    fn in_window(&self, at: Instant) -> bool {
        // An edge stamped before the last change (out of order) counts as inside the window.
        self.changed_at.is_some_and(|t| at.saturating_duration_since(t) < self.window)
    }

    fn accept(&mut self, at: Instant) -> bool {
        self.accepted = self.raw;
        // The new window starts at the change, so the settling contact's bounces are ignored too.
        self.changed_at = Some(at);
        self.accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(25);

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// Feeds (pressed, ms) edges, polling whenever a deadline has passed before the next edge,
    /// then polls far in the future; returns every accepted change with its time in ms.
    fn run(window: Duration, edges: &[(bool, u64)]) -> Vec<(bool, u64)> {
        let t0 = Instant::now();
        let mut d = Debouncer::new(window);
        let mut out = vec![];
        let poll_until = |d: &mut Debouncer, until: Instant, out: &mut Vec<(bool, u64)>| {
            while let Some(deadline) = d.deadline().filter(|&dl| dl <= until) {
                assert_eq!(d.poll(deadline - Duration::from_nanos(1)), None, "poll before the deadline");
                let level = d.poll(deadline).expect("a change is due at the deadline");
                out.push((level, (deadline - t0).as_millis() as u64));
            }
        };
        for &(pressed, at) in edges {
            poll_until(&mut d, ms(t0, at), &mut out);
            if let Some(level) = d.edge(pressed, ms(t0, at)) {
                out.push((level, at));
            }
        }
        poll_until(&mut d, ms(t0, 100_000), &mut out);
        assert_eq!(d.deadline(), None);
        out
    }

    #[test]
    fn a_clean_press_is_accepted_at_once() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(WINDOW);
        assert_eq!(d.edge(true, t0), Some(true));
        assert!(d.pressed());
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn a_bounce_burst_ending_pressed_is_one_press() {
        let out = run(WINDOW, &[(true, 0), (false, 2), (true, 4), (false, 5), (true, 7)]);
        assert_eq!(out, vec![(true, 0)]);
    }

    #[test]
    fn a_bounce_burst_ending_released_is_a_press_then_a_release_after_the_window() {
        let out = run(WINDOW, &[(true, 0), (false, 2), (true, 4), (false, 6)]);
        assert_eq!(out, vec![(true, 0), (false, 25)]);
    }

    #[test]
    fn the_release_waits_for_the_window_then_is_reported_by_poll() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(WINDOW);
        assert_eq!(d.edge(true, t0), Some(true));
        assert_eq!(d.edge(false, ms(t0, 3)), None);
        assert_eq!(d.deadline(), Some(ms(t0, 25)));
        assert_eq!(d.poll(ms(t0, 24)), None);
        assert_eq!(d.poll(ms(t0, 30)), Some(false));
        assert!(!d.pressed());
        assert_eq!(d.deadline(), None);
        assert_eq!(d.poll(ms(t0, 60)), None);
    }

    #[test]
    fn a_short_tap_longer_than_the_window_is_a_press_and_a_release() {
        let out = run(WINDOW, &[(true, 0), (true, 1), (false, 80)]);
        assert_eq!(out, vec![(true, 0), (false, 80)]);
    }

    #[test]
    fn bounces_on_release_are_ignored_too() {
        let out = run(WINDOW, &[(true, 0), (false, 500), (true, 502), (false, 503)]);
        assert_eq!(out, vec![(true, 0), (false, 500)]);
        // Ending on a bounce back to pressed after the release: one more press after the window.
        let out = run(WINDOW, &[(true, 0), (false, 500), (true, 502)]);
        assert_eq!(out, vec![(true, 0), (false, 500), (true, 525)]);
    }

    #[test]
    fn repeated_levels_are_not_changes() {
        let out = run(WINDOW, &[(false, 0), (true, 100), (true, 200), (false, 300), (false, 400)]);
        assert_eq!(out, vec![(true, 100), (false, 300)]);
    }

    #[test]
    fn a_zero_window_reports_every_change() {
        let out = run(Duration::ZERO, &[(true, 0), (false, 0), (true, 1), (false, 2), (true, 2)]);
        assert_eq!(out, vec![(true, 0), (false, 0), (true, 1), (false, 2), (true, 2)]);
        let mut d = Debouncer::new(Duration::ZERO);
        let t0 = Instant::now();
        assert_eq!(d.edge(true, t0), Some(true));
        assert_eq!(d.edge(false, t0), Some(false));
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn an_out_of_order_edge_counts_as_bounce() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut d = Debouncer::new(WINDOW);
        assert_eq!(d.edge(true, t0), Some(true));
        assert_eq!(d.edge(false, t0 - Duration::from_millis(5)), None);
        assert_eq!(d.poll(ms(t0, 25)), Some(false));
    }
}
