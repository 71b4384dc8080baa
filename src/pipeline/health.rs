//! Whether each stage thread is alive: a heartbeat per stage, beaten while it waits for work
//! (at least every [`BEAT_EVERY`]) and between the steps of its work (a token, a chunk, a
//! period). The supervisor reads them every tick: systemd's watchdog is fed only while every
//! stage has shown life within the stall limit, and `status` shows each stage's health.
//!
//! A stage thread that panics is caught where it was spawned ([`spawn_stage`]) and marked
//! dead, so the supervisor can end the turn and the appliance can exit for systemd to restart.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;

use super::messages::StageEvent;

/// How often an idle stage beats: its wait for work wakes at least this often.
pub const BEAT_EVERY: Duration = Duration::from_millis(500);

/// One stage's sign of life.
#[derive(Debug)]
pub struct Heartbeat {
    pub stage: &'static str,
    start: Instant,
    /// Milliseconds from `start` to the last beat.
    last_ms: AtomicU64,
    /// Why the thread ended, if it ended.
    ended: Mutex<Option<String>>,
}

impl Heartbeat {
    pub fn new(stage: &'static str) -> Arc<Self> {
        Arc::new(Self { stage, start: Instant::now(), last_ms: AtomicU64::new(0), ended: Mutex::new(None) })
    }

    pub fn beat(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// Time since the last beat.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        now.saturating_duration_since(last)
    }

    fn end(&self, why: String) {
        *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A stage's health as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum StageHealth {
    Ok {
        silent_s: f64,
    },
    /// No beat within the stall limit: the thread is stuck (a hung model or device).
    Stalled {
        silent_s: f64,
    },
    /// The thread ended: it panicked, or its input closed while the pipeline still runs.
    Dead {
        error: String,
    },
}

/// Every stage's heartbeat and the stall limit.
#[derive(Debug, Clone)]
pub struct Health {
    beats: Vec<Arc<Heartbeat>>,
    stall: Duration,
}

impl Health {
    pub fn new(beats: Vec<Arc<Heartbeat>>, stall: Duration) -> Self {
        Self { beats, stall }
    }

    pub fn of(&self, now: Instant) -> Vec<(&'static str, StageHealth)> {
        self.beats
            .iter()
            .map(|b| {
                let silent = b.silent_for(now);
                let silent_s = crate::measure::round3(silent.as_secs_f64());
                let health = match b.ended() {
                    Some(error) => StageHealth::Dead { error },
                    None if silent > self.stall => StageHealth::Stalled { silent_s },
                    None => StageHealth::Ok { silent_s },
                };
                (b.stage, health)
            })
            .collect()
    }

    /// The first stage that is not well, with what is wrong.
    pub fn first_failure(&self, now: Instant) -> Option<(&'static str, StageHealth)> {
        self.of(now).into_iter().find(|(_, h)| !matches!(h, StageHealth::Ok { .. }))
    }

    pub fn is_alive(&self, stage: &str, now: Instant) -> bool {
        self.of(now).iter().any(|(s, h)| *s == stage && matches!(h, StageHealth::Ok { .. }))
    }

    pub fn json(&self, now: Instant) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .of(now)
            .into_iter()
            .map(|(stage, h)| (stage.to_string(), serde_json::to_value(h).unwrap_or_default()))
            .collect();
        serde_json::Value::Object(map)
    }

    pub fn stall_limit(&self) -> Duration {
        self.stall
    }
}

/// Spawns a stage thread named `wick-<stage>` that runs `body`, catching a panic: the
/// heartbeat is marked dead and the supervisor told, instead of the thread vanishing.
pub fn spawn_stage(
    heartbeat: Arc<Heartbeat>,
    events: Sender<StageEvent>,
    body: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    let stage = heartbeat.stage;
    heartbeat.beat();
    std::thread::Builder::new()
        .name(format!("wick-{stage}"))
        .spawn(move || {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(body)) {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                let error = format!("the {stage} stage panicked: {message}");
                tracing::error!("{error}");
                heartbeat.end(error.clone());
                // The supervisor may be gone (shutdown): then nobody needs to know.
                let _ = events.send_timeout(StageEvent::Died { stage, error }, Duration::from_secs(1));
            }
        })
        .unwrap_or_else(|e| panic!("spawning the {stage} thread: {e}"))
}

/// Receives the next message, beating while waiting; `None` once the channel is closed.
pub fn next<T>(input: &Receiver<T>, heartbeat: &Heartbeat) -> Option<T> {
    loop {
        heartbeat.beat();
        match input.recv_timeout(BEAT_EVERY) {
            Ok(item) => {
                heartbeat.beat();
                return Some(item);
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_stage_is_stalled_and_a_panicking_one_is_dead() {
        let (events, reports) = crossbeam_channel::unbounded();
        let quiet = Heartbeat::new("llm");
        let doomed = Heartbeat::new("tts");
        let health = Health::new(vec![quiet.clone(), doomed.clone()], Duration::from_millis(200));
        let now = Instant::now();
        assert!(health.first_failure(now).is_none());
        let later = now + Duration::from_millis(500);
        assert!(matches!(health.first_failure(later), Some(("llm", StageHealth::Stalled { .. }))));

        let t = spawn_stage(doomed.clone(), events, || panic!("injected"));
        t.join().expect("the panic is caught in the thread");
        match reports.recv_timeout(Duration::from_secs(5)) {
            Ok(StageEvent::Died { stage: "tts", error }) => assert!(error.contains("injected"), "{error}"),
            other => panic!("{other:?}"),
        }
        quiet.beat();
        let h = health.of(Instant::now());
        assert!(matches!(&h[1].1, StageHealth::Dead { error } if error.contains("tts stage panicked")), "{h:?}");
        assert!(!health.is_alive("tts", Instant::now()));
        assert_eq!(health.json(Instant::now())["tts"]["state"], "dead");
    }

    #[test]
    fn waiting_for_work_beats() {
        let (tx, rx) = crossbeam_channel::unbounded::<u32>();
        let hb = Heartbeat::new("stt");
        let waiter = {
            let hb = hb.clone();
            std::thread::spawn(move || next(&rx, &hb))
        };
        // The waiting thread keeps beating: its last beat moves on while nothing arrives (the
        // deadline only bounds a machine too loaded to schedule it at all).
        let first = hb.last_ms.load(Ordering::Acquire);
        let deadline = Instant::now() + Duration::from_secs(60);
        while hb.last_ms.load(Ordering::Acquire) <= first + BEAT_EVERY.as_millis() as u64 {
            assert!(Instant::now() < deadline, "no beat while waiting");
            std::thread::sleep(Duration::from_millis(50));
        }
        tx.send(7).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(7));
        drop(tx);
    }
}
