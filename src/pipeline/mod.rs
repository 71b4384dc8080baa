//! The streaming pipeline: one thread per stage, bounded channels between them, and the
//! supervisor's turn state machine on the caller's thread.
//!
//! ```text
//! microphone -> recorder -> stt -> llm -> chunker -> voice -> playback -> loudspeaker
//! ```
//! The LLM's text goes to the voice chunk by chunk while it is still writing, and playback
//! starts on the first chunk. Stages know each other only through `messages`; the models and
//! devices come in through the traits of `stages`. Each stage thread beats a heartbeat
//! (`health`); a stage that panics or stalls ends the turn and the run (`Ended::StageFailed`),
//! for the service to exit and systemd to restart it.

#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod health;
pub mod hearing;
pub mod messages;
pub mod playback;
pub mod recorder;
pub mod speaking;
pub mod stages;
pub mod supervisor;
#[cfg(test)]
mod tests;
pub mod thinking;
pub mod turn;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver};

pub use health::StageHealth;
pub use messages::{Generation, TurnId};
pub use recorder::RecorderSettings;
pub use stages::{Captured, Hear, Loudspeaker, Microphone, Speak, StageError, StageResult, Think, Thought};
pub use supervisor::{Control, Hooks, StageFailure, State};
pub use turn::{Outcome, TurnRecord};

use messages::{RecorderCommand, StageEvent};
use supervisor::Supervisor;

/// The models and devices the pipeline runs.
pub struct Stages {
    pub microphone: Box<dyn Microphone>,
    pub hear: Box<dyn Hear>,
    pub think: Box<dyn Think>,
    pub voice: Box<dyn Speak>,
    pub loudspeaker: Box<dyn Loudspeaker>,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub recorder: RecorderSettings,
    /// A press shorter than this is a tap: nothing is recorded.
    pub tap: Duration,
    /// A stage without a heartbeat for this long is stuck.
    pub stall: Duration,
}

/// A running pipeline: the stage threads, and the supervisor waiting to be driven by `run`.
pub struct Pipeline {
    supervisor: Supervisor,
    events: Receiver<StageEvent>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts every stage thread. With `record_now`, the first turn is already listening: a
    /// file as microphone is recorded from its first sample to its end.
    pub fn start(stages: Stages, settings: Settings, hooks: Hooks, record_now: bool) -> Pipeline {
        #[cfg(feature = "fault-injection")]
        let stages = fault::inject(stages);
        let generation = Generation::default();
        let first = record_now.then(|| generation.advance());
        // Capacities: one utterance at a time is being heard; answers are short lists of
        // chunks; audio pieces are sentences, a few seconds each.
        let (recorder_tx, recorder_rx) = bounded(16);
        let (utterance_tx, utterance_rx) = bounded(2);
        let (heard_tx, heard_rx) = bounded(2);
        let (speech_tx, speech_rx) = bounded(64);
        let (sound_tx, sound_rx) = bounded(16);
        let (event_tx, event_rx) = bounded(256);
        let tokens = Arc::new(Mutex::new((0, 0)));
        let beats = ["recorder", "stt", "llm", "tts", "playback"].map(health::Heartbeat::new);
        let [recorder_beat, stt_beat, llm_beat, tts_beat, playback_beat] = beats.clone();
        let threads = vec![
            recorder::spawn(
                stages.microphone,
                settings.recorder,
                first,
                recorder_rx,
                utterance_tx,
                event_tx.clone(),
                recorder_beat,
            ),
            hearing::spawn(
                stages.hear,
                generation.clone(),
                utterance_rx,
                heard_tx,
                speech_tx.clone(),
                event_tx.clone(),
                stt_beat,
            ),
            thinking::spawn(
                stages.think,
                generation.clone(),
                heard_rx,
                speech_tx.clone(),
                event_tx.clone(),
                tokens.clone(),
                llm_beat,
            ),
            speaking::spawn(stages.voice, generation.clone(), speech_rx, sound_tx, event_tx.clone(), tts_beat),
            playback::spawn(stages.loudspeaker, generation.clone(), sound_rx, event_tx, playback_beat),
        ];
        let health = health::Health::new(beats.to_vec(), settings.stall);
        let links = supervisor::Links { recorder: recorder_tx, speech: speech_tx, tokens };
        let mut supervisor = Supervisor::new(generation, links, health, settings.tap, hooks);
        if let Some(turn) = first {
            supervisor.listening_to(turn, Instant::now());
        }
        Pipeline { supervisor, events: event_rx, threads }
    }

    /// Runs the supervisor until `Shutdown` (or the controls close), or, with `until_quiet`,
    /// until no turn is under way. Returns the last turn logged, or the stage failure that
    /// ended the run (after its turn was logged and the apology, if any, was said).
    pub fn run(&mut self, controls: &Receiver<Control>, until_quiet: bool) -> Result<Option<TurnRecord>, StageFailure> {
        let tick = Duration::from_millis(100);
        loop {
            self.supervisor.tick(Instant::now());
            if let Some(failure) = self.supervisor.finished(Instant::now()) {
                return Err(failure);
            }
            if until_quiet && self.supervisor.quiet() {
                break;
            }
            select! {
                recv(controls) -> c => match c {
                    Ok(c) => if !self.supervisor.control(c) { break },
                    Err(_) => { self.supervisor.control(Control::Shutdown); break }
                },
                recv(self.events) -> e => match e {
                    Ok(e) => self.supervisor.event(e),
                    // Every stage thread is gone: nothing can be heard or said any more.
                    Err(_) => return Err(self.supervisor.all_stages_gone()),
                },
                default(tick) => {}
            }
        }
        Ok(self.supervisor.last_logged.clone())
    }

    /// The last turn logged.
    pub fn last_turn(&self) -> Option<TurnRecord> {
        self.supervisor.last_logged.clone()
    }

    pub fn state(&self) -> State {
        self.supervisor.state
    }

    /// Ends every stage thread (cancelling what is under way) and waits a little for them.
    pub fn shutdown(mut self) {
        self.supervisor.control(Control::Shutdown);
        let _ = self.supervisor.links.recorder.send(RecorderCommand::Shutdown);
        let Pipeline { supervisor, events, threads } = self;
        // Closing the recorder's commands ends the chain: each stage ends when its input closes.
        drop(supervisor);
        let deadline = Instant::now() + Duration::from_secs(5);
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            // Keep draining reports so that no stage blocks on a full event channel.
            let _ = events.recv_timeout(Duration::from_millis(20));
        }
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("a stage thread did not end in time (a blocked device read?): leaving it");
            }
        }
    }
}
