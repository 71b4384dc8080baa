//! The supervisor: the turn state machine. It takes the (debounced) button and the stages'
//! reports, starts and ends recordings, cancels stale turns by moving the generation on, and
//! keeps each turn's record until every stage has let go of it.
//!
//! States: idle -> listening (button held) -> thinking (until the first sample plays) ->
//! speaking -> idle. A press while thinking or speaking cancels the answer and listens
//! (barge-in); a release within the tap time after such a press, or a `tap`, only stops.
//!
//! A stage that dies (panics) or stalls (no heartbeat within the stall limit) is not restarted
//! here: the turn under way ends as failed, the voice apologises if it still can, and the run
//! ends with a [`StageFailure`] for the service to exit non-zero and systemd to restart it.
//! A restart of the process is the one recovery that is always sound: a panic can leave a
//! model's state half-updated, and on the Jetson all three engines share one CUDA context,
//! which a fault in one of them can leave unusable for the others.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Serialize;

use super::health::{Health, StageHealth};
use super::messages::{Generation, RecorderCommand, SpeechItem, StageEvent, TurnId};
use super::thinking::TokenCount;
use super::turn::{Outcome, TurnRecord};
use crate::measure::round3;

/// What the supervisor is told from outside: the button (already debounced), a status query,
/// or the end.
#[derive(Debug)]
pub enum Control {
    Press {
        at: Instant,
    },
    Release {
        at: Instant,
    },
    /// Stop whatever is being said or thought, without listening.
    Tap {
        at: Instant,
    },
    /// Answer one line of JSON.
    Status {
        reply: Sender<String>,
    },
    /// Cancel the current turn and end the pipeline.
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Idle,
    Listening,
    Thinking,
    Speaking,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Idle => "idle",
            State::Listening => "listening",
            State::Thinking => "thinking",
            State::Speaking => "speaking",
        })
    }
}

/// Said when a stage has failed and wick is about to restart.
pub const STAGE_FAILED: &str = "Sorry, something went wrong. I am restarting.";
/// The longest the apology may take before the run ends anyway.
const APOLOGY_MAX: Duration = Duration::from_secs(15);

/// A stage thread that panicked or stopped showing signs of life: the run is over.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct StageFailure {
    pub stage: &'static str,
    pub error: String,
}

/// What the caller does with the supervisor's news.
pub struct Hooks {
    /// A turn ended (answered, cancelled, ...): log it.
    pub on_turn: Box<dyn FnMut(&TurnRecord)>,
    pub on_state: Box<dyn FnMut(State)>,
    /// Extra fields for `status` (the devices' states).
    pub status: Box<dyn Fn() -> serde_json::Value>,
    /// Called at least every 100 ms while the supervisor runs, with whether every stage is
    /// alive (the watchdog is fed only then).
    pub tick: Box<dyn FnMut(bool)>,
    /// A stage failed: the run will end once the turn is closed.
    pub on_failure: Box<dyn FnMut(&StageFailure)>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            on_turn: Box::new(|_| {}),
            on_state: Box::new(|_| {}),
            status: Box::new(|| serde_json::json!({})),
            tick: Box::new(|_| {}),
            on_failure: Box::new(|_| {}),
        }
    }
}

/// The supervisor's ways into the stages.
pub(super) struct Links {
    pub(super) recorder: Sender<RecorderCommand>,
    /// For the apology when the stage that would say it is gone.
    pub(super) speech: Sender<SpeechItem>,
    pub(super) tokens: TokenCount,
}

/// A stage failure being closed: the apology under way, if any.
struct Failing {
    failure: StageFailure,
    since: Instant,
    apology: Option<TurnId>,
    apology_played: bool,
}

pub(super) struct Supervisor {
    pub(super) generation: Generation,
    pub(super) links: Links,
    health: Health,
    failing: Option<Failing>,
    pub(super) tap: Duration,
    pub(super) hooks: Hooks,
    pub(super) state: State,
    /// The turn being recorded: its id, when the press came, and whether it cut an answer short.
    listening: Option<(TurnId, Instant, bool)>,
    /// The turn being thought about or spoken.
    active: Option<TurnId>,
    /// A capped recording ended while the button was still held: its release means nothing.
    ignore_release: bool,
    /// Turns not yet logged.
    records: BTreeMap<TurnId, TurnRecord>,
    pub(super) turns_logged: usize,
    /// The last turn logged (what `wick ask` prints).
    pub(super) last_logged: Option<TurnRecord>,
}

impl Supervisor {
    pub(super) fn new(generation: Generation, links: Links, health: Health, tap: Duration, hooks: Hooks) -> Self {
        Self {
            generation,
            links,
            health,
            failing: None,
            tap,
            hooks,
            state: State::Idle,
            listening: None,
            active: None,
            ignore_release: false,
            records: BTreeMap::new(),
            turns_logged: 0,
            last_logged: None,
        }
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            tracing::info!(from = %self.state, to = %state, "state");
            self.state = state;
            (self.hooks.on_state)(state);
        }
    }

    /// A turn already recording (a file as microphone starts recording at once).
    pub(super) fn listening_to(&mut self, turn: TurnId, at: Instant) {
        self.records.insert(turn, TurnRecord::new(turn));
        self.listening = Some((turn, at, false));
        self.set_state(State::Listening);
    }

    /// Feeds the caller's tick (the watchdog) and looks at every stage's heartbeat.
    pub(super) fn tick(&mut self, now: Instant) {
        let failure = self.health.first_failure(now);
        (self.hooks.tick)(failure.is_none() && self.failing.is_none());
        if let (Some((stage, health)), None) = (failure, &self.failing) {
            let error = match health {
                StageHealth::Dead { error } => error,
                StageHealth::Stalled { silent_s } => {
                    format!("the {stage} stage has shown no sign of life for {silent_s} s: it is stuck")
                }
                StageHealth::Ok { .. } => unreachable!("first_failure returns only failures"),
            };
            self.stage_failed(stage, error, now);
        }
    }

    /// Ends the turns under way as failed, apologises if the voice still works, and marks the
    /// run as ending.
    fn stage_failed(&mut self, stage: &'static str, error: String, now: Instant) {
        if self.failing.is_some() {
            return;
        }
        tracing::error!(stage, "{error}: ending the turn; wick exits for systemd to restart it");
        let failure = StageFailure { stage, error };
        (self.hooks.on_failure)(&failure);
        let can_apologise = !matches!(stage, "tts" | "playback")
            && self.health.is_alive("tts", now)
            && self.health.is_alive("playback", now);
        let mut ended = Vec::new();
        if let Some((turn, _, _)) = self.listening.take() {
            let _ = self.links.recorder.try_send(RecorderCommand::Discard { turn });
            ended.push(turn);
        }
        ended.extend(self.active.take());
        // Everything of the old turns is stale now; the apology is a turn of its own.
        self.generation.advance();
        let apology = (can_apologise && !ended.is_empty()).then(|| {
            let turn = self.generation.advance();
            let said = self.links.speech.try_send(SpeechItem::Text { turn, text: STAGE_FAILED.into() }).is_ok()
                && self.links.speech.try_send(SpeechItem::End { turn }).is_ok();
            (turn, said)
        });
        for turn in ended {
            if let Some(mut r) = self.records.remove(&turn) {
                r.outcome = Outcome::Failed;
                r.error = Some(format!("{stage}: {}", failure.error));
                r.done_s = r.since_release(now);
                if apology.is_some_and(|(_, said)| said) {
                    r.reply = STAGE_FAILED.into();
                }
                self.log(r);
            }
        }
        // Turns already cancelled and waiting for the stages to let go will never hear back.
        let waiting: Vec<TurnId> = self.records.keys().copied().collect();
        for turn in waiting {
            if let Some(r) = self.records.remove(&turn) {
                self.log(r);
            }
        }
        self.set_state(State::Idle);
        self.failing = Some(Failing {
            failure,
            since: now,
            apology: apology.filter(|(_, said)| *said).map(|(turn, _)| turn),
            apology_played: false,
        });
    }

    /// The failure that ends the run, once its turn is closed and the apology said.
    pub(super) fn finished(&self, now: Instant) -> Option<StageFailure> {
        let f = self.failing.as_ref()?;
        let done = f.apology.is_none() || f.apology_played || now.saturating_duration_since(f.since) > APOLOGY_MAX;
        done.then(|| f.failure.clone())
    }

    /// Every stage's thread has ended (their reports' channel closed).
    pub(super) fn all_stages_gone(&mut self) -> StageFailure {
        let error = "every stage thread has ended".to_string();
        self.stage_failed("pipeline", error, Instant::now());
        self.failing.as_ref().map(|f| f.failure.clone()).expect("set just above")
    }

    /// Handles one control; false after `Shutdown`.
    pub(super) fn control(&mut self, control: Control) -> bool {
        if self.failing.is_some()
            && matches!(control, Control::Press { .. } | Control::Release { .. } | Control::Tap { .. })
        {
            tracing::info!("a stage has failed and wick is restarting: {control:?} ignored");
            return true;
        }
        match control {
            Control::Press { at } => self.press(at),
            Control::Release { at } => self.release(at),
            Control::Tap { .. } => {
                self.discard_listening();
                self.cancel_active("tap");
                self.generation.advance();
                self.set_state(State::Idle);
            }
            Control::Status { reply } => {
                let mut v = serde_json::json!({
                    "state": self.state,
                    "turn": self.active.or(self.listening.map(|l| l.0)),
                    "turns": self.turns_logged,
                    "stages": self.health.json(Instant::now()),
                });
                if let Some(f) = &self.failing {
                    v["failure"] = serde_json::json!({ "stage": f.failure.stage, "error": f.failure.error });
                }
                if let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), (self.hooks.status)()) {
                    obj.extend(extra);
                }
                let _ = reply.send(v.to_string());
            }
            Control::Shutdown => {
                self.discard_listening();
                self.cancel_active("shutdown");
                self.generation.advance();
                // A shutdown does not wait for the stages to report: log what is known.
                let pending: Vec<TurnId> = self.records.keys().copied().collect();
                for turn in pending {
                    if let Some(mut r) = self.records.remove(&turn) {
                        r.outcome = Outcome::Cancelled;
                        r.cancelled_by.get_or_insert("shutdown");
                        self.log(r);
                    }
                }
                self.set_state(State::Idle);
                return false;
            }
        }
        true
    }

    /// Throws away the recording under way, if any: it never becomes a turn.
    fn discard_listening(&mut self) {
        if let Some((turn, _, _)) = self.listening.take() {
            let _ = self.links.recorder.send(RecorderCommand::Discard { turn });
            self.records.remove(&turn);
        }
    }

    fn press(&mut self, at: Instant) {
        if self.listening.is_some() {
            return;
        }
        let interrupted = self.active.is_some();
        self.cancel_active("barge-in");
        let turn = self.generation.advance();
        let _ = self.links.recorder.send(RecorderCommand::Start { turn });
        self.records.insert(turn, TurnRecord::new(turn));
        self.listening = Some((turn, at, interrupted));
        self.ignore_release = false;
        self.set_state(State::Listening);
    }

    fn release(&mut self, at: Instant) {
        let Some((turn, pressed, interrupted)) = self.listening else {
            if !std::mem::take(&mut self.ignore_release) {
                tracing::debug!("release without a press: ignored");
            }
            return;
        };
        let held = at.saturating_duration_since(pressed);
        if held < self.tap {
            // Too short to be speech: after a barge-in it was a tap that only stops the answer.
            self.discard_listening();
            tracing::info!(held_ms = held.as_millis() as u64, interrupted, "a tap: nothing recorded");
            self.set_state(State::Idle);
            return;
        }
        self.listening = None;
        let _ = self.links.recorder.send(RecorderCommand::Stop { turn });
        self.begin_thinking(turn, at);
    }

    fn begin_thinking(&mut self, turn: TurnId, released: Instant) {
        if let Some(r) = self.records.get_mut(&turn) {
            r.released = Some(released);
            r.stt_pending = true;
        }
        self.active = Some(turn);
        self.set_state(State::Thinking);
    }

    /// Cancels the turn being thought about or spoken, keeping its record until it settles.
    fn cancel_active(&mut self, why: &'static str) {
        let Some(turn) = self.active.take() else { return };
        self.generation.advance();
        let (token_turn, count) = *self.links.tokens.lock().unwrap();
        if let Some(r) = self.records.get_mut(&turn) {
            r.outcome = Outcome::Cancelled;
            r.cancelled_by = Some(why);
            r.tokens_at_cancel = Some(if token_turn == turn { count } else { 0 });
            r.done_s = r.since_release(Instant::now());
        }
        tracing::info!(turn, why, "turn cancelled");
        self.log_if_settled(turn);
    }

    pub(super) fn event(&mut self, event: StageEvent) {
        let Some(turn) = event.turn() else {
            if let StageEvent::Died { stage, error } = event {
                self.stage_failed(stage, error, Instant::now());
            }
            return;
        };
        if let Some(f) = self.failing.as_mut().filter(|f| f.apology == Some(turn)) {
            f.apology_played |= matches!(event, StageEvent::Played { .. });
            return;
        }
        let Some(r) = self.records.get_mut(&turn) else {
            tracing::debug!(?event, "report for a turn already logged");
            return;
        };
        match event {
            StageEvent::Recorded { at, audio_s, capped, .. } => {
                r.recorded_s = round3(audio_s);
                r.capped = capped;
                r.stt_pending = true;
                if self.listening.is_some_and(|l| l.0 == turn) {
                    // The recording ended by itself (the cap, or the end of a file).
                    self.listening = None;
                    self.ignore_release = capped;
                    self.begin_thinking(turn, at);
                }
            }
            StageEvent::Transcribed { text, at, forwarded, .. } => {
                r.stt_pending = false;
                r.transcript = text;
                r.stt_done_s = r.since_release(at);
                r.forwarded = forwarded;
                r.llm_pending = forwarded;
            }
            StageEvent::FirstToken { at, .. } => r.first_token_s = r.since_release(at),
            StageEvent::Replied { text, prompt_tokens, gen_tokens, .. } => {
                r.llm_pending = false;
                r.reply = text;
                r.prompt_tokens = prompt_tokens;
                r.gen_tokens = gen_tokens;
            }
            StageEvent::FirstChunk { at, .. } => r.first_chunk_s = r.since_release(at),
            StageEvent::FirstSample { at, .. } => {
                r.first_sample_played_s = r.since_release(at);
                if self.active == Some(turn) {
                    self.set_state(State::Speaking);
                }
            }
            StageEvent::Played { at, samples, rate, .. } => {
                if rate > 0 {
                    r.reply_audio_s = round3(samples as f64 / rate as f64);
                }
                if self.active == Some(turn) {
                    r.done_s = r.since_release(at);
                    r.outcome = if r.error.is_some() {
                        Outcome::Failed
                    } else if r.forwarded {
                        Outcome::Answered
                    } else {
                        Outcome::NothingHeard
                    };
                    // The record says what was said, apologies included.
                    if r.reply.is_empty() {
                        r.reply = match (r.forwarded, r.error.is_some()) {
                            (false, false) => super::hearing::NOTHING_HEARD,
                            (false, true) => super::hearing::HEARING_FAILED,
                            (true, true) => super::thinking::THINKING_FAILED,
                            (true, false) => "",
                        }
                        .to_string();
                    }
                    // Played comes after every other stage's report of the turn.
                    r.stt_pending = false;
                    r.llm_pending = false;
                    self.active = None;
                    self.set_state(State::Idle);
                }
            }
            StageEvent::Failed { stage, error, .. } => {
                tracing::error!(turn, stage, "{error}");
                r.error = Some(format!("{stage}: {error}"));
            }
            StageEvent::Died { .. } => unreachable!("handled above: a death has no turn"),
        }
        self.log_if_settled(turn);
    }

    /// Logs a turn that is over: played to the end, or cancelled and let go by every stage.
    fn log_if_settled(&mut self, turn: TurnId) {
        let over = self.active != Some(turn) && self.listening.is_none_or(|l| l.0 != turn);
        if over
            && self
                .records
                .get(&turn)
                .is_some_and(|r| r.settled() && (r.done_s.is_some() || r.outcome == Outcome::Cancelled))
        {
            let r = self.records.remove(&turn).expect("checked above");
            self.log(r);
        }
    }

    fn log(&mut self, r: TurnRecord) {
        self.turns_logged += 1;
        (self.hooks.on_turn)(&r);
        self.last_logged = Some(r);
    }

    /// True when no turn is under way or waiting to be logged.
    pub(super) fn quiet(&self) -> bool {
        self.records.is_empty() && self.active.is_none() && self.listening.is_none()
    }
}
