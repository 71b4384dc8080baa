//! The supervisor: the turn state machine. It takes the (debounced) button and the stages'
//! reports, starts and ends recordings, cancels stale turns by moving the generation on, and
//! keeps each turn's record until every stage has let go of it.
//!
//! States: idle -> listening (button held) -> thinking (until the first sample plays) ->
//! speaking -> idle. A press while thinking or speaking cancels the answer and listens
//! (barge-in); a release within the tap time after such a press, or a `tap`, only stops.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Serialize;

use super::messages::{Generation, RecorderCommand, StageEvent, TurnId};
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

/// What the caller does with the supervisor's news.
pub struct Hooks {
    /// A turn ended (answered, cancelled, ...): log it.
    pub on_turn: Box<dyn FnMut(&TurnRecord)>,
    pub on_state: Box<dyn FnMut(State)>,
    /// Extra fields for `status` (the devices' states).
    pub status: Box<dyn Fn() -> serde_json::Value>,
    /// Called at least every 100 ms while the supervisor runs (the watchdog).
    pub tick: Box<dyn FnMut()>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            on_turn: Box::new(|_| {}),
            on_state: Box::new(|_| {}),
            status: Box::new(|| serde_json::json!({})),
            tick: Box::new(|| {}),
        }
    }
}

pub(super) struct Supervisor {
    pub(super) generation: Generation,
    pub(super) recorder: Sender<RecorderCommand>,
    pub(super) tokens: TokenCount,
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
    pub(super) fn new(
        generation: Generation,
        recorder: Sender<RecorderCommand>,
        tokens: TokenCount,
        tap: Duration,
        hooks: Hooks,
    ) -> Self {
        Self {
            generation,
            recorder,
            tokens,
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

    /// Handles one control; false after `Shutdown`.
    pub(super) fn control(&mut self, control: Control) -> bool {
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
                });
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
            let _ = self.recorder.send(RecorderCommand::Discard { turn });
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
        let _ = self.recorder.send(RecorderCommand::Start { turn });
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
        let _ = self.recorder.send(RecorderCommand::Stop { turn });
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
        let (token_turn, count) = *self.tokens.lock().unwrap();
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
        let turn = event.turn();
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
