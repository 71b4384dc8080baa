//! The turn state machine driven through a whole pipeline of fake stages: each fake does what
//! the test scripted for its next call (answer, fail, panic, or hold until cancelled), so every
//! state can be reached and left on purpose, without models or sound devices.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::*;

/// What a fake stage does on a call.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Its usual answer.
    Answer,
    Fail,
    Panic,
    /// The LLM writes one token, then waits until cancelled; the voice says a minute.
    Hold,
}

/// The scripted next acts of each stage; an empty script answers.
#[derive(Default)]
struct Script {
    hear: Mutex<VecDeque<Act>>,
    think: Mutex<VecDeque<Act>>,
    voice: Mutex<VecDeque<Act>>,
    mic_panics: AtomicBool,
    /// A stage is holding (the LLM waiting to be cancelled, the voice's minute being played).
    holding: AtomicBool,
    /// The loudspeaker has audio queued (from its first play to its drain or stop).
    sounding: AtomicBool,
    /// Idle checks of the loudspeaker, and those made while it had audio queued.
    idle_checks: AtomicUsize,
    idle_checks_while_sounding: AtomicUsize,
}

impl Script {
    fn next(queue: &Mutex<VecDeque<Act>>) -> Act {
        queue.lock().unwrap().pop_front().unwrap_or(Act::Answer)
    }
}

struct FakeMic(Arc<Script>);

impl Microphone for FakeMic {
    fn rate(&self) -> Option<u32> {
        Some(16_000)
    }
    fn read(&mut self, out: &mut Vec<f32>) -> StageResult<Captured> {
        assert!(!self.0.mic_panics.load(Ordering::Acquire), "injected: the microphone panics");
        // Ten times faster than a real device: 20 ms of audio every 2 ms.
        std::thread::sleep(Duration::from_millis(2));
        out.extend(std::iter::repeat_n(0.1, 320));
        Ok(Captured::Audio)
    }
}

struct FakeHear(Arc<Script>);

impl Hear for FakeHear {
    fn hear(&mut self, _: &[f32], _: &dyn Fn()) -> StageResult<String> {
        match Script::next(&self.0.hear) {
            Act::Fail => Err("injected: hearing fails".into()),
            Act::Panic => panic!("injected: hearing panics"),
            _ => Ok("What time is it?".into()),
        }
    }
}

struct FakeThink(Arc<Script>);

impl Think for FakeThink {
    fn think(
        &mut self,
        _: &str,
        on_text: &mut dyn FnMut(&str),
        on_token: &mut dyn FnMut(),
        cancelled: &dyn Fn() -> bool,
    ) -> StageResult<Thought> {
        let words: &[&str] = match Script::next(&self.0.think) {
            Act::Fail => return Err("injected: thinking fails".into()),
            Act::Panic => panic!("injected: thinking panics"),
            Act::Hold => {
                on_token();
                on_text("Well");
                self.0.holding.store(true, Ordering::Release);
                while !cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                return Ok(Thought { text: "Well".into(), prompt_tokens: 5, gen_tokens: 1 });
            }
            Act::Answer => &["It ", "is ", "noon."],
        };
        for w in words {
            if cancelled() {
                break;
            }
            on_token();
            on_text(w);
        }
        Ok(Thought { text: words.concat(), prompt_tokens: 5, gen_tokens: words.len() })
    }
}

struct FakeVoice(Arc<Script>);

impl Speak for FakeVoice {
    fn rate(&self) -> u32 {
        16_000
    }
    fn speak(&mut self, _: &str, on_audio: &mut dyn FnMut(&[f32])) -> StageResult<()> {
        let seconds = match Script::next(&self.0.voice) {
            Act::Fail => return Err("injected: the voice fails".into()),
            Act::Panic => panic!("injected: the voice panics"),
            Act::Hold => {
                self.0.holding.store(true, Ordering::Release);
                60
            }
            Act::Answer => 1,
        };
        on_audio(&vec![0.2; 16_000 * seconds]);
        Ok(())
    }
}

/// Plays a period in half a millisecond: a long answer takes long enough to interrupt.
struct FakeSpeaker(Arc<Script>);

impl Loudspeaker for FakeSpeaker {
    fn rate(&self) -> Option<u32> {
        Some(16_000)
    }
    fn period_frames(&self) -> usize {
        320
    }
    fn play(&mut self, _: &[f32]) -> StageResult<bool> {
        self.0.sounding.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_micros(500));
        Ok(true)
    }
    fn stop(&mut self) {
        self.0.sounding.store(false, Ordering::Release);
    }
    fn drain(&mut self) {
        self.0.sounding.store(false, Ordering::Release);
    }
    fn idle(&mut self) {
        self.0.idle_checks.fetch_add(1, Ordering::AcqRel);
        if self.0.sounding.load(Ordering::Acquire) {
            self.0.idle_checks_while_sounding.fetch_add(1, Ordering::AcqRel);
        }
    }
}

struct Harness {
    script: Arc<Script>,
    controls: Sender<Control>,
    states: Receiver<State>,
    turns: Receiver<TurnRecord>,
    run: Option<JoinHandle<Result<(), StageFailure>>>,
    /// Press times advance by a second per press, so holds are never taps.
    clock: Instant,
}

const WAIT: Duration = Duration::from_secs(30);

impl Harness {
    fn start() -> Harness {
        let script = Arc::new(Script::default());
        let (controls, controls_rx) = unbounded();
        let (state_tx, states) = unbounded();
        let (turn_tx, turns) = unbounded();
        let s = script.clone();
        let run = std::thread::spawn(move || {
            let stages = Stages {
                microphone: Box::new(FakeMic(s.clone())),
                hear: Box::new(FakeHear(s.clone())),
                think: Box::new(FakeThink(s.clone())),
                voice: Box::new(FakeVoice(s.clone())),
                loudspeaker: Box::new(FakeSpeaker(s.clone())),
            };
            let settings = Settings {
                recorder: RecorderSettings {
                    preroll: Duration::from_millis(300),
                    max_record: Duration::from_secs(3600),
                },
                tap: Duration::from_millis(150),
                stall: Duration::from_secs(60),
            };
            let hooks = Hooks {
                on_turn: Box::new(move |r| turn_tx.send(r.clone()).unwrap()),
                on_state: Box::new(move |st| state_tx.send(st).unwrap()),
                ..Default::default()
            };
            let mut pipeline = Pipeline::start(stages, settings, hooks, false);
            let ended = pipeline.run(&controls_rx, false);
            pipeline.shutdown();
            ended.map(|_| ())
        });
        Harness { script, controls, states, turns, run: Some(run), clock: Instant::now() }
    }

    fn press(&mut self) {
        self.clock += Duration::from_secs(1);
        self.controls.send(Control::Press { at: self.clock }).unwrap();
    }

    /// Releases after `held` from the last press.
    fn release_after(&mut self, held: Duration) {
        self.controls.send(Control::Release { at: self.clock + held }).unwrap();
    }

    fn release(&mut self) {
        self.release_after(Duration::from_millis(800));
    }

    fn tap(&self) {
        self.controls.send(Control::Tap { at: Instant::now() }).unwrap();
    }

    /// Waits for the supervisor to enter `state` (states passed on the way are skipped).
    fn reach(&self, state: State) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.states.recv_deadline(deadline) {
                Ok(s) if s == state => return,
                Ok(_) => {}
                Err(_) => panic!("never reached {state}"),
            }
        }
    }

    /// Waits until a stage holds in its scripted `Hold` (then clears the mark).
    fn holding(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.script.holding.swap(false, Ordering::AcqRel) {
            assert!(Instant::now() < deadline, "no stage held");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn turn(&self) -> TurnRecord {
        self.turns.recv_timeout(WAIT).expect("a turn record")
    }

    /// A status answer from the supervisor: every control sent before it has been handled.
    fn status(&self) -> serde_json::Value {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.controls.send(Control::Status { reply }).unwrap();
        serde_json::from_str(&answer.recv_timeout(WAIT).unwrap()).unwrap()
    }

    fn answered_turn(&mut self) -> TurnRecord {
        self.press();
        self.reach(State::Listening);
        self.release();
        self.reach(State::Idle);
        self.turn()
    }

    /// Shuts down; the run's end.
    fn end(mut self) -> Result<(), StageFailure> {
        let _ = self.controls.send(Control::Shutdown);
        self.run.take().unwrap().join().expect("the supervisor thread")
    }

    /// Waits for the run to end by itself (a stage failure).
    fn ended(mut self) -> Result<(), StageFailure> {
        self.run.take().unwrap().join().expect("the supervisor thread")
    }
}

#[test]
fn a_turn_goes_from_idle_through_every_state_and_back() {
    let mut h = Harness::start();
    h.press();
    h.reach(State::Listening);
    h.release();
    h.reach(State::Thinking);
    h.reach(State::Speaking);
    h.reach(State::Idle);
    let r = h.turn();
    assert_eq!(r.outcome, Outcome::Answered, "{r:?}");
    assert_eq!((r.transcript.as_str(), r.reply.as_str()), ("What time is it?", "It is noon."));
    assert!(r.stt_done_s.is_some() && r.first_token_s.is_some() && r.first_sample_played_s.is_some());
    assert!(r.done_s.is_some() && r.reply_audio_s > 0.9, "{r:?}");
    assert!(h.end().is_ok());
}

#[test]
fn controls_that_mean_nothing_in_a_state_are_ignored() {
    let mut h = Harness::start();
    // Idle: a release and a tap change nothing.
    h.release();
    h.tap();
    assert_eq!(h.status()["state"], "idle");
    // Listening: a second press is the same press.
    h.press();
    h.reach(State::Listening);
    h.controls.send(Control::Press { at: h.clock }).unwrap();
    assert_eq!(h.status()["state"], "listening");
    h.release();
    h.reach(State::Idle);
    let r = h.turn();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(h.status()["turns"], 1, "one press, one turn");
    assert!(h.turns.try_recv().is_err());
    assert!(h.end().is_ok());
}

#[test]
fn a_press_too_short_to_be_speech_records_nothing() {
    let mut h = Harness::start();
    h.press();
    h.reach(State::Listening);
    h.release_after(Duration::from_millis(50));
    h.reach(State::Idle);
    assert_eq!(h.status()["turns"], 0);
    // A tap while listening throws the recording away too.
    h.press();
    h.reach(State::Listening);
    h.tap();
    h.reach(State::Idle);
    assert_eq!(h.status()["turns"], 0);
    assert_eq!(h.answered_turn().outcome, Outcome::Answered, "the next press is heard");
    assert!(h.end().is_ok());
}

#[test]
fn a_press_while_thinking_or_speaking_cancels_and_the_new_turn_is_answered() {
    let mut h = Harness::start();
    // While thinking: the LLM holds after one token.
    h.script.think.lock().unwrap().push_back(Act::Hold);
    h.press();
    h.release();
    h.reach(State::Thinking);
    h.holding();
    h.press();
    h.reach(State::Listening);
    let old = h.turn();
    assert_eq!((old.outcome, old.cancelled_by), (Outcome::Cancelled, Some("barge-in")), "{old:?}");
    assert_eq!(old.tokens_at_cancel, Some(1), "{old:?}");
    h.release();
    h.reach(State::Idle);
    assert_eq!(h.turn().outcome, Outcome::Answered);

    // While speaking: the voice says a minute; the old turn ends while the new one starts.
    h.script.voice.lock().unwrap().push_back(Act::Hold);
    h.press();
    h.release();
    h.reach(State::Speaking);
    h.holding();
    h.press();
    h.reach(State::Listening);
    h.release();
    let (first, second) = (h.turn(), h.turn());
    assert_eq!((first.outcome, first.cancelled_by), (Outcome::Cancelled, Some("barge-in")), "{first:?}");
    assert!(first.reply_audio_s < 60.0, "the minute was cut short: {first:?}");
    assert_eq!(second.outcome, Outcome::Answered, "{second:?}");
    assert!(second.turn > first.turn);
    assert!(h.end().is_ok());
}

#[test]
fn an_idle_loudspeaker_is_checked_for_unplugging_and_a_sounding_one_is_left_alone() {
    let mut h = Harness::start();
    let deadline = Instant::now() + WAIT;
    while h.script.idle_checks.load(Ordering::Acquire) < 2 {
        assert!(Instant::now() < deadline, "the idle loudspeaker was never checked");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A minute of answer, then a second one: no check while either sounds.
    h.script.voice.lock().unwrap().push_back(Act::Hold);
    assert_eq!(h.answered_turn().outcome, Outcome::Answered);
    assert_eq!(h.answered_turn().outcome, Outcome::Answered);
    assert_eq!(h.script.idle_checks_while_sounding.load(Ordering::Acquire), 0);
    assert!(h.end().is_ok());
}

#[test]
fn a_tap_while_thinking_or_speaking_only_stops() {
    let mut h = Harness::start();
    let script = h.script.clone();
    for (queue, state) in [(&script.think, State::Thinking), (&script.voice, State::Speaking)] {
        queue.lock().unwrap().push_back(Act::Hold);
        h.press();
        h.release();
        h.reach(state);
        h.holding();
        h.tap();
        h.reach(State::Idle);
        let r = h.turn();
        assert_eq!((r.outcome, r.cancelled_by), (Outcome::Cancelled, Some("tap")), "{r:?}");
        assert_eq!(h.status()["state"], "idle", "a tap does not listen");
    }
    assert!(h.end().is_ok());
}

#[test]
fn a_stage_error_fails_only_its_turn_with_an_apology() {
    let mut h = Harness::start();
    h.script.hear.lock().unwrap().push_back(Act::Fail);
    let r = h.answered_turn();
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.error.as_deref().unwrap().starts_with("stt: injected"), "{r:?}");
    assert_eq!(r.reply, hearing::HEARING_FAILED);

    h.script.think.lock().unwrap().push_back(Act::Fail);
    let r = h.answered_turn();
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert_eq!(r.reply, thinking::THINKING_FAILED);
    assert!(r.reply_audio_s > 0.0, "the apology was played: {r:?}");

    // The voice fails on the first chunk: the rest is still said.
    h.script.voice.lock().unwrap().push_back(Act::Fail);
    let r = h.answered_turn();
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.error.as_deref().unwrap().starts_with("tts: injected"), "{r:?}");

    assert_eq!(h.answered_turn().outcome, Outcome::Answered, "errors do not end the run");
    assert!(h.end().is_ok());
}

#[test]
fn a_panic_in_any_stage_fails_the_turn_and_ends_the_run() {
    for (stage, apology) in [("stt", true), ("llm", true), ("tts", false)] {
        let mut h = Harness::start();
        let queue = match stage {
            "stt" => &h.script.hear,
            "llm" => &h.script.think,
            _ => &h.script.voice,
        };
        queue.lock().unwrap().push_back(Act::Panic);
        h.press();
        h.reach(State::Listening);
        h.release();
        let r = h.turn();
        assert_eq!(r.outcome, Outcome::Failed, "{stage}: {r:?}");
        assert!(r.error.as_deref().unwrap().contains(&format!("the {stage} stage panicked")), "{r:?}");
        assert_eq!(r.reply == supervisor::STAGE_FAILED, apology, "{stage}: {r:?}");
        let failure = h.ended().expect_err("a panic ends the run");
        assert_eq!(failure.stage, stage);
    }
}

#[test]
fn a_microphone_that_panics_while_idle_or_listening_ends_the_run() {
    let h = Harness::start();
    h.script.mic_panics.store(true, Ordering::Release);
    assert_eq!(h.ended().expect_err("the recorder died").stage, "recorder");
    assert!(Harness::start().end().is_ok());

    let mut h = Harness::start();
    h.press();
    h.reach(State::Listening);
    h.script.mic_panics.store(true, Ordering::Release);
    let r = h.turn();
    assert_eq!(r.outcome, Outcome::Failed, "the recording under way is lost: {r:?}");
    assert_eq!(h.ended().expect_err("the recorder died").stage, "recorder");
}
