//! What the stages send each other, and the turn counter that makes old work stale.
//!
//! Every message carries the turn it belongs to. A barge-in, a tap or a shutdown moves the
//! [`Generation`] on; each stage compares its message's turn with it between steps (the LLM
//! every token, the voice every chunk, playback every period) and drops what is stale.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub type TurnId = u64;

/// The one turn whose work is still wanted.
#[derive(Debug, Clone, Default)]
pub struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn current(&self) -> TurnId {
        self.0.load(Ordering::Acquire)
    }

    pub fn is_current(&self, turn: TurnId) -> bool {
        self.current() == turn
    }

    /// Starts a new turn; everything of older turns becomes stale at once.
    pub fn advance(&self) -> TurnId {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// A finished recording, resampled for Whisper.
#[derive(Debug)]
pub struct Utterance {
    pub turn: TurnId,
    /// Mono, 16 kHz.
    pub samples: Vec<f32>,
}

/// A transcript worth answering.
#[derive(Debug)]
pub struct Heard {
    pub turn: TurnId,
    pub text: String,
}

/// Text on its way to the voice.
#[derive(Debug)]
pub enum SpeechItem {
    Text {
        turn: TurnId,
        text: String,
    },
    /// Nothing more will be said in this turn.
    End {
        turn: TurnId,
    },
}

/// Audio on its way to the loudspeaker.
#[derive(Debug)]
pub enum Sound {
    /// Mono samples at `rate` (the voice's; playback converts to the device's).
    Audio {
        turn: TurnId,
        samples: Vec<f32>,
        rate: u32,
    },
    End {
        turn: TurnId,
    },
}

#[derive(Debug)]
pub enum RecorderCommand {
    /// Start an utterance with the pre-roll.
    Start {
        turn: TurnId,
    },
    /// End the utterance and send it to speech-to-text.
    Stop {
        turn: TurnId,
    },
    /// Throw the utterance away (a tap, or a press too short to be speech).
    Discard {
        turn: TurnId,
    },
    Shutdown,
}

/// What the stages tell the supervisor. Every stage reports the end of its part of a turn,
/// even of a stale one, so the supervisor knows when a cancelled turn has settled.
#[derive(Debug)]
pub enum StageEvent {
    /// The recorder finished an utterance: on release, at the cap, or at the end of a file.
    Recorded {
        turn: TurnId,
        at: Instant,
        audio_s: f64,
        capped: bool,
    },
    /// Speech-to-text is done; `forwarded` when the text went on to the LLM.
    Transcribed {
        turn: TurnId,
        text: String,
        at: Instant,
        forwarded: bool,
    },
    FirstToken {
        turn: TurnId,
        at: Instant,
    },
    Replied {
        turn: TurnId,
        text: String,
        prompt_tokens: usize,
        gen_tokens: usize,
    },
    /// The voice has the first audio of the turn ready.
    FirstChunk {
        turn: TurnId,
        at: Instant,
    },
    /// The first period of the turn went to the loudspeaker.
    FirstSample {
        turn: TurnId,
        at: Instant,
    },
    /// Everything of the turn has been played (or dropped, with no device).
    Played {
        turn: TurnId,
        at: Instant,
        samples: usize,
        rate: u32,
    },
    Failed {
        turn: TurnId,
        stage: &'static str,
        error: String,
    },
    /// A stage thread ended by a panic: whatever it held of any turn is lost.
    Died {
        stage: &'static str,
        error: String,
    },
}

impl StageEvent {
    /// The turn the event is about (none for a stage's death).
    pub fn turn(&self) -> Option<TurnId> {
        Some(match self {
            StageEvent::Recorded { turn, .. }
            | StageEvent::Transcribed { turn, .. }
            | StageEvent::FirstToken { turn, .. }
            | StageEvent::Replied { turn, .. }
            | StageEvent::FirstChunk { turn, .. }
            | StageEvent::FirstSample { turn, .. }
            | StageEvent::Played { turn, .. }
            | StageEvent::Failed { turn, .. } => *turn,
            StageEvent::Died { .. } => return None,
        })
    }
}
