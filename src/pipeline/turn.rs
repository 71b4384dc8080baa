//! One turn's record: what was heard and said, what it cost, and when each stage got there,
//! in seconds from the release of the button (the latency the user feels).

use std::time::Instant;

use serde::Serialize;

use super::messages::TurnId;
use crate::measure::round3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    /// Nothing worth answering was heard: the apology was said, the LLM was not asked.
    NothingHeard,
    /// A stage failed; what could be said was said.
    Failed,
    /// Stopped by a barge-in, a tap or a shutdown.
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    pub turn: TurnId,
    pub outcome: Outcome,
    pub transcript: String,
    pub reply: String,
    /// Seconds of audio recorded (pre-roll included).
    pub recorded_s: f64,
    /// The recording reached the cap before the release.
    pub capped: bool,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Tokens sampled when the turn was cancelled; `gen_tokens` may exceed it by at most the
    /// one token whose logits were already computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_at_cancel: Option<usize>,
    /// Seconds of reply audio played.
    pub reply_audio_s: f64,
    pub stt_done_s: Option<f64>,
    pub first_token_s: Option<f64>,
    pub first_chunk_s: Option<f64>,
    pub first_sample_played_s: Option<f64>,
    pub done_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a cancelled turn was cancelled: "barge-in", "tap" or "shutdown".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<&'static str>,
    #[serde(skip)]
    pub(super) released: Option<Instant>,
    /// The transcript was sent on to the LLM.
    #[serde(skip)]
    pub(super) forwarded: bool,
    /// Speech-to-text has the turn's utterance and has not reported yet.
    #[serde(skip)]
    pub(super) stt_pending: bool,
    /// The LLM has the turn and has not reported yet.
    #[serde(skip)]
    pub(super) llm_pending: bool,
}

impl TurnRecord {
    pub fn new(turn: TurnId) -> Self {
        Self {
            turn,
            outcome: Outcome::Answered,
            transcript: String::new(),
            reply: String::new(),
            recorded_s: 0.0,
            capped: false,
            prompt_tokens: 0,
            gen_tokens: 0,
            tokens_at_cancel: None,
            reply_audio_s: 0.0,
            stt_done_s: None,
            first_token_s: None,
            first_chunk_s: None,
            first_sample_played_s: None,
            done_s: None,
            error: None,
            cancelled_by: None,
            released: None,
            forwarded: false,
            stt_pending: false,
            llm_pending: false,
        }
    }

    /// Seconds from the release to `at` (rounded to the millisecond).
    pub(super) fn since_release(&self, at: Instant) -> Option<f64> {
        self.released.map(|r| round3(at.saturating_duration_since(r).as_secs_f64()))
    }

    /// No stage holds the turn any more.
    pub(super) fn settled(&self) -> bool {
        !self.stt_pending && !self.llm_pending
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a turn record is plain data")
    }
}
